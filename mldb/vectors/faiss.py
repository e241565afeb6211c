"""FAISS indexes: build, search (with a key filter), add, remove, serialize.

An ``IndexState`` is a FAISS index over positions 0..n-1 plus three arrays: ``keys``
(position -> the table's key value), ``alive`` (False once that row was deleted or
updated) and ``hashes``. Removing is marking a position dead, which every index type
allows; a search skips dead positions with an ID selector, and the index is rebuilt once
a quarter of it is dead.

States are values: ``add`` and ``remove`` return a new ``IndexState`` with new arrays
that shares the FAISS index (and its lock) with the old one. FAISS only appends, so an
older state stays valid: a search through it only considers its own ``len(keys)``
positions (an ID selector hides positions added since). Every call into the FAISS index
(add, search, reconstruct, serialize) holds the shared lock, since adding to an HNSW
graph while searching it is not safe. Metrics map to FAISS as: cosine -> inner product on L2-normalised vectors
(distance 1 - ip), l2 -> L2 (distance sqrt), ip -> inner product (distance -ip), so
distances equal DuckDB's ``array_cosine_distance`` / ``array_distance`` /
``array_negative_inner_product``.

The committed state of each index is kept per database (``mldb.vectors.store.VectorState``).
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from mldb.options import Option, Schema

METRICS = {"cosine": "array_cosine_distance", "l2": "array_distance", "ip": "array_negative_inner_product"}
KINDS = ("flat", "hnsw", "ivf")
MAX_LIST = 1 << 20  # nlist and nprobe: FAISS's largest documented IVF (IVF1048576)
# CREATE INDEX ... USING FAISS (col) WITH (...). Bounds are FAISS's own: HNSW computes
# 1 / log(m), so m = 1 segfaults and m = 0 aborts (m >= 2); an IVF search requires nprobe > 0
# (and uses min(nprobe, nlist)); ef_* are candidate-list sizes (>= 1). The upper bounds keep a
# typo (m = 100000) from building a graph of gigabytes. ``max_memory`` (default: half the
# machine's memory, see ``memory_limit``) caps the build's estimated bytes and is not stored.
OPTIONS = Schema(
    "CREATE INDEX ... USING FAISS",
    Option("metric", "text", "cosine", choices=tuple(METRICS)),
    Option("type", "text", "hnsw", choices=KINDS),
    Option("key", "text"),
    Option("m", "int", 32, low=2, high=256),
    Option("ef_construction", "int", 64, low=1, high=1 << 16),
    Option("ef_search", "int", 64, low=1, high=1 << 16),
    Option("nlist", "int", 0, low=0, high=MAX_LIST),
    Option("nprobe", "int", 16, low=1, high=MAX_LIST),
    Option("max_memory", "bytes", low=1),
)
APPLIES = {"hnsw": ("m", "ef_construction", "ef_search"), "ivf": ("nlist", "nprobe"), "flat": ()}
TUNING = ("m", "ef_construction", "ef_search", "nlist", "nprobe")  # the options that depend on the type
EXACT_BELOW = 10_000  # a filter letting at most this many rows through is answered exactly
DEAD_FRACTION = 0.25  # rebuild once this share of positions is dead
_BUILD_STEP_HNSW = 16384  # rows a build adds to an HNSW graph in one call (see ``_add_watched``)
_BUILD_STEP = 65536  # rows a build adds to a flat or IVF index in one call


@dataclass
class IndexState:
    name: str
    index: object  # a faiss.Index over positions
    keys: np.ndarray  # int64, position -> key
    alive: np.ndarray  # bool, position -> still in the table
    hashes: np.ndarray  # uint64, position -> DuckDB hash() of the vector it was built from
    metric: str
    kind: str
    options: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # shared by every state of one index

    @property
    def dim(self) -> int:
        return self.index.d

    @property
    def live_count(self) -> int:
        return int(self.alive.sum())

    @property
    def needs_compaction(self) -> bool:
        return len(self.keys) > 0 and (len(self.keys) - self.live_count) > DEAD_FRACTION * len(self.keys)


def index_bytes(rows: int, dim: int, kind: str, m: int) -> int:
    """About what an index of ``rows`` vectors holds: the vectors (float32), an HNSW graph
    (2m neighbours of 4 bytes per vector at its lowest level) and the keys, hashes and alive flags."""
    links = 8 * m if kind == "hnsw" else 0
    return rows * (4 * dim + links + 17)


def build_bytes(rows: int, dim: int, kind: str, m: int) -> int:
    """About the most a build holds at once: the index and two more copies of the vectors
    (as read from the table, and as prepared for FAISS)."""
    return index_bytes(rows, dim, kind, m) + 2 * 4 * rows * dim


def memory_limit() -> int:
    """The default ``max_memory`` of a build: half the machine's memory (8 GiB where unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, ValueError, OSError):
        return 8 << 30


def _faiss():
    import faiss

    return faiss


def _prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if metric == "cosine":
        vectors = vectors.copy()
        _faiss().normalize_L2(vectors)
    return vectors


def build(name: str, keys: np.ndarray, hashes: np.ndarray, vectors: np.ndarray, options: dict,
          check: Callable[[], None] | None = None) -> IndexState:
    """A new index over ``vectors`` (n, d) whose rows have the given ``keys``.

    ``check()`` (e.g. the statement's cancel check) is called every 50 ms while rows are added."""
    faiss = _faiss()
    metric, kind = options["metric"], options["type"]
    dim = vectors.shape[1]
    faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    data = _prepare(vectors, metric)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(options["m"]), faiss_metric)
        index.hnsw.efConstruction = int(options["ef_construction"])
    elif kind == "ivf":
        nlist = int(options["nlist"]) or max(1, min(4096, int(np.sqrt(len(data))), len(data) // 39))
        nlist = min(nlist, max(1, len(data)))
        index = faiss.IndexIVFFlat(faiss.IndexFlat(dim, faiss_metric), dim, nlist, faiss_metric)
        index.cp.min_points_per_centroid = 1  # (few rows per list is the user's choice: no WARNING on stderr)
        index.train(data if len(data) else np.zeros((1, dim), dtype=np.float32))
        index.make_direct_map()
    else:
        index = faiss.IndexFlat(dim, faiss_metric)
    _add_watched(index, data, _BUILD_STEP_HNSW if kind == "hnsw" else _BUILD_STEP, check)
    return IndexState(name, index, np.asarray(keys, dtype=np.int64), np.ones(len(keys), dtype=bool),
                      np.asarray(hashes, dtype=np.uint64), metric, kind, dict(options))


def _add_watched(index, data: np.ndarray, step: int, check: Callable[[], None] | None) -> None:
    """Add ``data`` in chunks of ``step`` rows on a worker thread, with FAISS's threads on all
    the cores (``mldb.threads.for_long_regions``), while this thread calls ``check()`` every
    50 ms. A cancel is answered at once; the worker stops after the chunk it is in (its index is
    dropped). The chunks are large because each one ends at a barrier of FAISS's statically
    scheduled threads: with 4096-row chunks a 30k-row build took 1.18x one ``add`` of
    everything, with 16384-row chunks 1.03x (medians of two, here)."""
    from mldb import threads

    stop, failed = threading.Event(), []

    def work() -> None:
        try:
            with threads.faiss_threads(threads.for_long_regions()):
                for start in range(0, len(data), step):
                    if stop.is_set():
                        return
                    index.add(data[start:start + step])
        except BaseException as error:  # noqa: BLE001 - raised again on the statement's thread
            failed.append(error)

    worker = threading.Thread(target=work, name="mldb-index-build", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.05)
            if check is not None:
                check()
    finally:
        stop.set()
    if failed:
        raise failed[0]


def add(state: IndexState, keys: np.ndarray, hashes: np.ndarray, vectors: np.ndarray) -> IndexState:
    """A new state with rows ``keys`` appended (the FAISS index is shared and grows).

    Only the newest state of an index may be added to: positions are appended after
    ``index.ntotal``, which must be ``len(state.keys)``."""
    if not len(keys):
        return state
    data = _prepare(vectors, state.metric)
    with state.lock:
        if state.index.ntotal != len(state.keys):
            raise RuntimeError(f"index {state.name}: adding to a state that is not the newest")
        state.index.add(data)
    return replace(state, keys=np.concatenate([state.keys, np.asarray(keys, dtype=np.int64)]),
                   hashes=np.concatenate([state.hashes, np.asarray(hashes, dtype=np.uint64)]),
                   alive=np.concatenate([state.alive, np.ones(len(keys), dtype=bool)]))


def remove(state: IndexState, positions: np.ndarray) -> IndexState:
    """A new state with ``positions`` dead (their vectors stay in FAISS until a rebuild)."""
    if not len(positions):
        return state
    alive = state.alive.copy()
    alive[positions] = False
    return replace(state, alive=alive)


# -- search --------------------------------------------------------------------------------

def search(state: IndexState, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
    """Top-``k`` (keys, distances) per query row among live rows whose key is in ``allowed``.

    Returns k results whenever k rows qualify: a selective filter is answered exactly on
    the qualifying rows; otherwise FAISS searches with an ID selector, and a search that
    comes back short (HNSW under a filter can) is redone exactly.
    """
    mask = state.alive if allowed is None else state.alive & np.isin(state.keys, allowed)
    count = int(mask.sum())
    k = min(int(k), count)
    if k <= 0:
        empty = np.zeros((len(queries), 0))
        return empty.astype(np.int64), empty.astype(np.float32)
    queries = _prepare(queries, state.metric)
    if allowed is not None and count <= EXACT_BELOW:
        return _exact(state, queries, k, np.flatnonzero(mask))
    with state.lock:
        everything = count == len(mask) and state.index.ntotal == len(mask)  # (a newer state may have added rows)
        scores, positions = _faiss_search(state, queries, k, None if everything else mask)
    if (positions < 0).any() or (positions >= len(mask)).any():
        return _exact(state, queries, k, np.flatnonzero(mask))
    return state.keys[positions], _distances(scores, state.metric)


def _faiss_search(state: IndexState, queries: np.ndarray, k: int, mask: np.ndarray | None):
    faiss = _faiss()
    selector = bits = None
    if mask is not None:
        bits = np.packbits(mask, bitorder="little")  # positions past len(mask) read as 0: not selected
        selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))  # (its size is in bytes)
    if state.kind == "hnsw":
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(int(state.options["ef_search"]), k))
    elif state.kind == "ivf":
        params = faiss.SearchParametersIVF(sel=selector, nprobe=max(1, int(state.options["nprobe"])))
        # (max: an index made before options were checked may hold nprobe = 0)
    else:
        params = faiss.SearchParameters(sel=selector)
    scores, positions = state.index.search(queries, k, params=params)
    del bits  # kept alive until the search returned
    return scores, positions


def _exact(state: IndexState, queries: np.ndarray, k: int, positions: np.ndarray):
    if len(positions):
        with state.lock:
            vectors = state.index.reconstruct_batch(positions)
    else:
        vectors = np.zeros((0, state.dim), np.float32)
    if state.metric == "l2":
        scores = ((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=2)
        order = np.argsort(scores, axis=1, kind="stable")[:, :k]
    else:
        scores = queries @ vectors.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(scores, order, axis=1)
    return state.keys[positions[order]], _distances(chosen, state.metric)


def _distances(scores: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        return (1.0 - scores).astype(np.float32)
    if metric == "l2":
        return np.sqrt(np.maximum(scores, 0)).astype(np.float32)
    return (-scores).astype(np.float32)


# -- serialization ---------------------------------------------------------------------------

def serialize(state: IndexState) -> bytes:
    """The index, keys, alive flags and hashes as one byte string (an ``.npz`` archive).

    An HNSW index with no dead rows is written without its vectors (FAISS's
    ``IO_FLAG_SKIP_STORAGE``): they are the table's, and ``deserialize`` takes them from
    there, so the file does not hold every vector twice.
    """
    faiss = _faiss()
    from_table = state.kind == "hnsw" and bool(state.alive.all())
    flags = faiss.IO_FLAG_SKIP_STORAGE if from_table else 0
    with state.lock:
        if state.index.ntotal != len(state.keys):
            raise RuntimeError(f"index {state.name}: serializing a state that is not the newest")
        data = faiss.serialize_index(state.index, flags)
    buffer = io.BytesIO()
    np.savez(buffer, index=data, keys=state.keys, alive=state.alive,
             hashes=state.hashes, vectors_from_table=np.array(from_table))
    return buffer.getvalue()


def deserialize(name: str, data: bytes, metric: str, kind: str, options: dict,
                table_vectors: Callable[[np.ndarray], np.ndarray]) -> IndexState:
    """Read ``serialize``'s bytes; ``table_vectors(keys)`` gives the vectors an HNSW index was
    written without (rows since deleted may come back as zeros: they are dead anyway)."""
    faiss = _faiss()
    arrays = np.load(io.BytesIO(data))
    index = faiss.deserialize_index(arrays["index"])
    if bool(arrays["vectors_from_table"]):
        storage = faiss.IndexFlat(index.d, index.metric_type)
        storage.add(_prepare(table_vectors(arrays["keys"]), metric))
        storage.this.disown()  # the HNSW index owns and frees it
        index.storage = storage
        index.own_fields = True
    return IndexState(name, index, arrays["keys"], arrays["alive"], arrays["hashes"], metric, kind,
                      dict(options))
