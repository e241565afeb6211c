"""Feature and target encoders: fitted on the training split, saved as JSON, applied to Arrow batches.

A fitted feature is a plain dict ``{"name", "type", "kind", "encoding", "width", ...params}``:

- ``standard``  numeric / BOOLEAN: ``(x - mean) / std``, NULL -> mean (0 after scaling)
- ``onehot``    VARCHAR / ENUM with few values (or, without EMBED, the top values of long text);
                one column per category plus one for NULL / unseen values
- ``embed``     long free text through ``mldb.vectors.embedding.embed_texts`` (the default EMBED model)
- ``vector``    FLOAT[n] / LIST of numbers: each component standardised
- ``date``      DATE / TIMESTAMP: year, month, day, weekday (+ hour) standardised

Trees (``USING lightgbm``) take the same columns in a tree form (:class:`TreeEncoder`): ``raw``
numbers, ``category`` codes for text, ``raw_vector`` / ``raw_date`` / ``raw_embed``; unscaled, missing
values left missing (NaN).

Everything is vectorized over whole Arrow arrays (pyarrow.compute + numpy).

NaN is NULL: a NaN training value is left out of the mean, and a NaN (or NULL) value is
encoded as the mean. The network computes in float32: an infinite value, or one beyond float32's
range (about 3.4e38), cannot be scaled. Training refuses it (``DataError`` 22003, naming the
column); at PREDICT, where a model has no say over its inputs, such a value (or one whose scaled
value is beyond float32's range) is encoded as a missing value is, as NULL and NaN are, always,
without numpy warnings: ``PREDICT(r, 'inf')``, ``PREDICT(r, 1e39)`` and ``PREDICT(r, NULL)`` agree.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mldb import errors
from mldb.models import inference

FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_CATEGORIES = 50  # one-hot at most this many values (most frequent first)
MAX_TREE_CATEGORIES = 1024  # category codes for trees: this many values (LightGBM bins at most max_bin of them)
LONG_TEXT = 30.0  # average length above which a many-valued text column counts as free text
_DATE_PARTS = ("year", "month", "day", "day_of_week")
MAX_YEAR = 30000  # Arrow's year/month/day are wrong beyond about ±32767 ('infinity' included)
_MAX_DAYS = (MAX_YEAR - 1970) * 365


# -- kinds of columns ------------------------------------------------------------------
def kind_of(arrow_type: pa.DataType) -> str | None:
    """'numeric' | 'text' | 'vector' | 'date' | 'null' for an Arrow type, None if unusable."""
    if pa.types.is_dictionary(arrow_type):
        return kind_of(arrow_type.value_type)
    if pa.types.is_null(arrow_type):
        return "null"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_boolean(arrow_type):
        return "numeric"
    if pa.types.is_decimal(arrow_type):
        return "numeric"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return "text"
    if pa.types.is_date(arrow_type) or pa.types.is_timestamp(arrow_type):
        return "date"
    if pa.types.is_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return "vector" if kind_of(arrow_type.value_type) == "numeric" else None
    return None


def _plain(array) -> pa.Array:
    """One contiguous array; dictionary (ENUM) arrays decoded to their values."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_string_view(array.type):
        array = array.cast(pa.string())
    return array


def _floats(array: pa.Array) -> np.ndarray:
    """float64 values with NULL as NaN."""
    if array.type == pa.float64():  # (PREDICT's usual input: no cast, and no copy without NULLs)
        return array.to_numpy(zero_copy_only=False)
    return np.asarray(pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _scaling(values: np.ndarray) -> tuple[list, list]:
    mean = np.nanmean(values, axis=0)
    std = np.nanstd(values, axis=0)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    return np.nan_to_num(mean).tolist(), std.tolist()


# -- fitting ---------------------------------------------------------------------------
def fit_feature(model: str, name: str, sql_type: str, array, embed_model: str | None = None,
                trees: bool = False) -> dict:
    """Fit one column's encoder on the training rows (in the tree form for ``trees``: see :class:`TreeEncoder`)."""
    array = _plain(array)
    kind = kind_of(array.type)
    if kind is None or kind == "null":
        found = "only NULLs" if kind == "null" else f"type {sql_type}"
        raise errors.DataError(f"model '{model}': feature column '{name}' has {found}, which mldb cannot use "
                               f"as a feature; leave it out of the training query")
    mask = known(array)
    if array.null_count == len(array) or (mask is not None and not pc.any(mask).as_py()):
        raise errors.DataError(f"model '{model}': feature column '{name}' is NULL in every training row"
                               + ("" if array.null_count == len(array) else " (NaN counts as NULL)"))
    if kind == "vector" and not (pc.max(pc.list_value_length(array)).as_py() or 0):
        raise errors.DataError(f"model '{model}': feature column '{name}' holds only empty lists, which have "
                               f"nothing to learn from; leave it out of the training query")
    feature = {"name": name, "type": sql_type, "kind": kind}
    if trees:
        return feature | _fit_tree(kind, array, embed_model)
    if kind == "text":
        return feature | _fit_text(array, embed_model)
    return feature | _FITTERS[kind](array)


def known(array) -> pa.Array | None:
    """A mask of the values that are neither NULL nor NaN (``None`` when every value is known)."""
    array = _plain(array)
    valid = pc.is_valid(array)
    if pa.types.is_floating(array.type):
        valid = pc.and_kleene(valid, pc.invert(pc.is_nan(array)))  # (a NULL's is_nan is NULL: and_ gave NULL)
    return None if pc.all(valid).as_py() is not False else valid


def check_finite(model: str, what: str, values) -> None:
    """Refuse ``inf`` / ``-inf`` in training values (a column, or a vector column's components):
    no mean or scale can be computed with them."""
    values = _plain(values)
    if kind_of(values.type) == "vector":
        values = pc.list_flatten(values)
    if kind_of(values.type) == "date":
        far = int(_far_dates(values).sum())
        if far:
            raise errors.DataError(
                f"model '{model}': {what} holds {far} date/time value{'s' if far > 1 else ''} that "
                f"{'are' if far > 1 else 'is'} infinite or beyond year {MAX_YEAR} either way, which cannot be "
                "encoded; filter them out (WHERE isfinite(...)) or replace them (CASE)", sqlstate="22003")
        return
    if not pa.types.is_floating(values.type):
        return
    infinite = pc.sum(pc.is_inf(values)).as_py() or 0
    if infinite:
        raise errors.DataError(
            f"model '{model}': {what} holds {infinite} infinite value{'s' if infinite > 1 else ''} (inf or -inf), "
            "which cannot be scaled; filter them out (WHERE isfinite(...)) or replace them (NULLIF, CASE); "
            "NaN counts as NULL", sqlstate="22003")
    huge = pc.sum(pc.greater(pc.abs(values), FLOAT32_MAX)).as_py() or 0
    if huge:
        raise errors.DataError(
            f"model '{model}': {what} holds {huge} value{'s' if huge > 1 else ''} beyond the range of the model's "
            f"float32 inputs (about ±3.4e38); scale them down or filter them out", sqlstate="22003")


def _fit_numeric(array: pa.Array) -> dict:
    mean, std = _scaling(_floats(array))
    return {"encoding": "standard", "width": 1, "mean": mean, "std": std}


def _fit_text(array: pa.Array, embed_model: str | None = None) -> dict:
    counts = pc.value_counts(array.drop_null())
    values, frequencies = counts.field("values"), counts.field("counts").to_numpy()
    order = np.argsort(-frequencies, kind="stable")[:MAX_CATEGORIES]
    categories = values.take(pa.array(order)).to_pylist()
    if len(values) > MAX_CATEGORIES and _mean_length(array) > LONG_TEXT:
        embedded = _fit_embedding(array, embed_model)
        if embedded is not None:
            return embedded
        return {"encoding": "onehot", "width": len(categories) + 1, "categories": categories,
                "note": f"long text without EMBED: one-hot of the {len(categories)} most frequent values"}
    return {"encoding": "onehot", "width": len(categories) + 1, "categories": categories}


def _mean_length(array: pa.Array) -> float:
    lengths = pc.utf8_length(array.drop_null())
    return float(pc.mean(lengths).as_py() or 0.0)


def _embedder():
    try:
        from mldb.vectors.embedding import embed_texts
    except ImportError:
        return None
    return embed_texts


def _fit_embedding(array: pa.Array, embed_model: str | None) -> dict | None:
    embed = _embedder()
    if embed is None:
        return None
    vectors = np.asarray(embed(array.fill_null("").to_pylist(), embed_model), dtype=np.float64)
    mean, std = _scaling(vectors)
    return {"encoding": "embed", "width": vectors.shape[1], "embed_model": embed_model, "mean": mean, "std": std}


def _vector_dim(array: pa.Array) -> int:
    """The most frequent length of the non-empty lists."""
    lengths = pc.list_value_length(array).drop_null().to_numpy()
    lengths = lengths[lengths > 0]  # (an empty list is a missing value, imputed as NULL is)
    return int(np.bincount(lengths).argmax()) if len(lengths) else 0


def _fit_vector(array: pa.Array) -> dict:
    dim = _vector_dim(array)
    values = _vectors(array, dim)
    mean, std = _scaling(values)
    return {"encoding": "vector", "width": dim, "dim": dim, "mean": mean, "std": std}


def _fit_date(array: pa.Array) -> dict:
    parts = _date_parts_of(array)
    mean, std = _scaling(_date_parts(array, parts))
    return {"encoding": "date", "width": len(parts), "parts": parts, "mean": mean, "std": std}


_FITTERS = {"numeric": _fit_numeric, "vector": _fit_vector, "date": _fit_date}


def _date_parts_of(array: pa.Array) -> list[str]:
    return list(_DATE_PARTS) + (["hour"] if pa.types.is_timestamp(array.type) else [])


def _fit_tree(kind: str, array: pa.Array, embed_model: str | None) -> dict:
    """The tree form's encoder: nothing to fit for a number; a text column's categories (or, for long
    free text, its EMBED width); a vector's length; a date's parts."""
    if kind == "numeric":
        return {"encoding": "raw", "width": 1}
    if kind == "vector":
        dim = _vector_dim(array)
        return {"encoding": "raw_vector", "width": dim, "dim": dim}
    if kind == "date":
        parts = _date_parts_of(array)
        return {"encoding": "raw_date", "width": len(parts), "parts": parts}
    counts = pc.value_counts(array.drop_null())
    values, frequencies = counts.field("values"), counts.field("counts").to_numpy()
    embed = _embedder()
    if len(values) > MAX_CATEGORIES and _mean_length(array) > LONG_TEXT and embed is not None:
        width = len(embed([values[0].as_py()], embed_model)[0])
        return {"encoding": "raw_embed", "width": width, "embed_model": embed_model}
    order = np.argsort(-frequencies, kind="stable")[:MAX_TREE_CATEGORIES]
    return {"encoding": "category", "width": 1, "categories": values.take(pa.array(order)).to_pylist()}


# -- transforming ----------------------------------------------------------------------
class Encoder:
    """A model's fitted features, ready to encode Arrow batches into the network's float32 input.

    What does not change between batches (each feature's column range, the means and scales
    of the standardised columns as float32 vectors) is worked out once, here, not per batch:
    PREDICT encodes every DuckDB vector with the same ``Encoder`` (``ModelVersion.encoder``) into
    the same matrix (one per thread and row count: see ``inference.ThreadBuffers``).
    The matrix is filled feature-major, so a numeric column is one contiguous copy, and the
    standardised rows are scaled in one numpy pass; the network reads its transpose (a strided
    view, no copy).
    """

    def __init__(self, model: str, features: list[dict]):
        self.model, self.features = model, features
        self.starts = np.cumsum([0] + [feature["width"] for feature in features])[:-1].tolist()
        self.width = sum(feature["width"] for feature in features)
        standard = [(at, f) for at, f in zip(self.starts, features) if f["encoding"] == "standard"]
        self.scaled = [at for at, _ in standard]
        self.means = np.asarray([f["mean"] for _, f in standard], np.float32)[:, None]
        self.stds = np.asarray([f["std"] for _, f in standard], np.float32)[:, None]
        self.numeric = len(standard) == len(features)  # only standardised columns: nothing to zero first
        self._kept = inference.ThreadBuffers()

    def __call__(self, arrays: list) -> np.ndarray:
        """(rows, width) float32: a transposed view of the feature-major matrix (this thread's, reused
        by its next call)."""
        rows = len(arrays[0]) if arrays else 0
        out = self._kept.get(rows, lambda: np.empty((self.width, rows), dtype=np.float32))
        if not self.numeric:
            out.fill(0.0)  # (NULL columns of other encodings are left as zeros)
        with np.errstate(over="ignore", invalid="ignore"):  # (out of float32's range: missing, see the module)
            for at, feature, array in zip(self.starts, self.features, arrays):
                self._fill(out, at, feature, _plain(array))
            self._scale(out)
        return out.T

    def _fill(self, out: np.ndarray, at: int, feature: dict, array: pa.Array) -> None:
        check_type(self.model, feature, array.type)
        if feature["encoding"] == "standard":  # (a value beyond float32's range turns inf here: missing)
            out[at] = np.nan if pa.types.is_null(array.type) else _floats(array)
        elif not pa.types.is_null(array.type) or feature["encoding"] in _TEXT_ENCODINGS:
            if pa.types.is_null(array.type):  # (an untyped NULL is a NULL text: one-hot's NULL slot, EMBED's '')
                array = pa.nulls(len(array), pa.string())
            out[at : at + feature["width"]] = _ENCODERS[feature["encoding"]](feature, array).T

    def _scale(self, out: np.ndarray) -> None:
        """``(x - mean) / std`` on the standardised rows; NULL / NaN / inf become 0 (the mean)."""
        if not self.scaled:
            return
        contiguous = self.scaled == list(range(self.scaled[0], self.scaled[0] + len(self.scaled)))
        block = out[self.scaled[0] : self.scaled[0] + len(self.scaled)] if contiguous else out[self.scaled]
        block -= self.means
        block /= self.stds
        np.copyto(block, 0.0, where=~np.isfinite(block))  # (twice as fast as nan_to_num)
        if not contiguous:
            out[self.scaled] = block


def transform(model: str, features: list[dict], arrays: list) -> np.ndarray:
    """Encode the feature columns (in ``features`` order) into one C-contiguous float32 matrix."""
    return np.ascontiguousarray(Encoder(model, features)(arrays))


class TreeEncoder:
    """The tree form of a model's features (``USING lightgbm``): one float64 matrix, numbers unscaled,
    text as category codes (passed to LightGBM as ``categorical_feature``, no one-hot), and every missing
    value -- NULL, NaN, a NULL or wrong-length vector, a date beyond ``MAX_YEAR`` -- as NaN, which LightGBM
    sends down the branch it learnt for missing values rather than imputing it. A text value not among
    the training's categories gets the code one past them ('other'). Vectors, dates and long text keep
    the columns of their network encodings (components, parts, EMBED's vector), unscaled.

    As :class:`Encoder`: filled feature-major into a matrix reused per thread and row count; the
    (rows, width) transposed view is F-contiguous, which LightGBM reads as a column-major matrix
    without copying it."""

    def __init__(self, model: str, features: list[dict]):
        self.model, self.features = model, features
        self.starts = np.cumsum([0] + [feature["width"] for feature in features])[:-1].tolist()
        self.width = sum(feature["width"] for feature in features)
        self.categorical = [at for at, f in zip(self.starts, features) if f["encoding"] == "category"]
        self._categories = [pa.array(f["categories"], pa.string()) if f["encoding"] == "category" else None
                            for f in features]
        self._kept = inference.ThreadBuffers()

    def __call__(self, arrays: list) -> np.ndarray:
        """(rows, width) float64: a transposed view of this thread's feature-major matrix (reused by its
        next call with as many rows)."""
        rows = len(arrays[0]) if arrays else 0
        out = self._kept.get(rows, lambda: np.empty((self.width, rows), dtype=np.float64))
        for at, feature, categories, array in zip(self.starts, self.features, self._categories, arrays):
            array = _plain(array)
            check_type(self.model, feature, array.type)
            end = at + feature["width"]
            if pa.types.is_null(array.type):
                out[at:end] = np.nan
            elif categories is not None:
                out[at] = _category_codes(array, categories)
            elif feature["encoding"] == "raw":
                out[at] = _floats(array)
            else:
                out[at:end] = _TREE_ENCODERS[feature["encoding"]](feature, array).T
        return out.T


def _category_codes(array: pa.Array, categories: pa.Array) -> np.ndarray:
    """Each value's index among ``categories`` (float64), ``len(categories)`` for another value, NaN for NULL."""
    codes = pc.fill_null(pc.index_in(array, value_set=categories), len(categories))
    if array.null_count:
        codes = pc.if_else(pc.is_valid(array), codes, pa.scalar(None, codes.type))
    return _floats(codes)


def _raw_embed(feature: dict, array: pa.Array) -> np.ndarray:
    embed = _embedder()
    if embed is None:
        raise errors.OperationalError(f"feature '{feature['name']}' was encoded with EMBED, which is not available")
    out = np.full((len(array), feature["width"]), np.nan)
    valid = pc.is_valid(array)
    if array.null_count < len(array):
        texts = array.filter(valid).to_pylist()
        out[valid.to_numpy(zero_copy_only=False)] = embed(texts, feature.get("embed_model"))
    return out


def _raw_date(feature: dict, array: pa.Array) -> np.ndarray:
    parts = [part for part in feature["parts"] if part != "hour" or pa.types.is_timestamp(array.type)]
    values = _date_parts(array, parts)
    if len(parts) < len(feature["parts"]):
        values = np.concatenate([values, np.full((len(array), 1), np.nan)], axis=1)
    return values


_TREE_ENCODERS = {"raw_vector": lambda feature, array: _vectors(array, feature["dim"]),
                  "raw_date": _raw_date, "raw_embed": _raw_embed}


def _in_float32(values: np.ndarray) -> np.ndarray:
    """float64 values with those beyond float32's range made NaN (missing), so none turns into inf."""
    beyond = np.abs(values) > FLOAT32_MAX
    return np.where(beyond, np.nan, values) if beyond.any() else values


def check_type(model: str, feature: dict, arrow_type: pa.DataType) -> None:
    kind = kind_of(arrow_type)
    if kind == "null" or kind == feature["kind"]:
        return
    raise errors.ProgrammingError(
        f"model '{model}' needs feature '{feature['name']}' as {feature['type']} ({feature['kind']}); "
        f"found {arrow_type} ({kind or 'unsupported'})")


def _standardize(feature: dict, values: np.ndarray) -> np.ndarray:
    mean, std = np.asarray(feature["mean"]), np.asarray(feature["std"])
    scaled = _in_float32((_in_float32(values) - mean) / std)
    return np.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0)


def _encode_onehot(feature: dict, array: pa.Array) -> np.ndarray:
    categories = feature["categories"]
    index = pc.index_in(array, value_set=pa.array(categories, pa.string()))
    index = pc.fill_null(index, len(categories)).to_numpy(zero_copy_only=False)
    out = np.zeros((len(array), len(categories) + 1), dtype=np.float32)
    out[np.arange(len(array)), index] = 1.0
    return out


def _encode_embed(feature: dict, array: pa.Array) -> np.ndarray:
    embed = _embedder()
    if embed is None:
        raise errors.OperationalError(f"feature '{feature['name']}' was encoded with EMBED, which is not available")
    texts = array.fill_null("").to_pylist()
    return _standardize(feature, np.asarray(embed(texts, feature.get("embed_model")), dtype=np.float64))


def _vectors(array: pa.Array, dim: int) -> np.ndarray:
    """(rows, dim) float64; NULL or wrong-length lists become NaN rows (imputed later)."""
    lengths = pc.fill_null(pc.list_value_length(array), -1).to_numpy(zero_copy_only=False)
    out = np.full((len(array), dim), np.nan)
    valid = lengths == dim
    if valid.any():
        kept = array.filter(pa.array(valid))
        out[valid] = _floats(pc.list_flatten(kept)).reshape(-1, dim)
    return out


def _encode_vector(feature: dict, array: pa.Array) -> np.ndarray:
    return _standardize(feature, _vectors(array, feature["dim"]))


def _date_parts(array: pa.Array, parts: list[str]) -> np.ndarray:
    """The parts as float64 columns; a value beyond ``MAX_YEAR`` (at PREDICT: training refuses it) is
    missing, as NULL is."""
    values = np.stack([_floats(getattr(pc, part)(array)) for part in parts], axis=1)
    far = _far_dates(array)
    if far.any():
        values[far] = np.nan
    return values


def _far_dates(array: pa.Array) -> np.ndarray:
    """A mask of the DATE / TIMESTAMP values that are infinite or beyond ``MAX_YEAR`` either way."""
    if pa.types.is_date(array.type):
        days = pc.cast(pc.cast(array, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False)
    else:
        per_day = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}[array.type.unit]
        days = pc.cast(array, pa.int64()).to_numpy(zero_copy_only=False) // per_day
    days = np.nan_to_num(np.asarray(days, dtype=np.float64))  # (NULL, as NaN, is not far)
    return np.abs(days) > _MAX_DAYS


def _encode_date(feature: dict, array: pa.Array) -> np.ndarray:
    return _standardize(feature, _raw_date(feature, array))


_TEXT_ENCODINGS = ("onehot", "embed")
_ENCODERS = {"onehot": _encode_onehot, "embed": _encode_embed,
             "vector": _encode_vector, "date": _encode_date}


# -- the target ------------------------------------------------------------------------
MAX_INTEGER_CLASSES = 20


def infer_task(model: str, target: str, array, requested: str | None = None, sql_type: str | None = None) -> str:
    """'binary' | 'multiclass' | 'regression' from the target's type (and values).

    A requested ``task`` is checked, never silently overridden: 'binary' with more than two
    classes, 'multiclass' with two, and a classification of a non-integer number (its PREDICT
    would turn into text labels) are refused (22023) saying what the target holds."""
    array = _plain(array)
    kind, shown = kind_of(array.type), sql_type or str(array.type)
    if kind not in ("numeric", "text"):
        raise errors.DataError(f"model '{model}': target column '{target}' has type {shown}; "
                               "a target must be BOOLEAN, VARCHAR/ENUM, an integer or a number")
    task = _task_of(array, kind) if requested in (None, "auto") else requested
    if task == "regression":
        if kind != "numeric" or pa.types.is_boolean(array.type):
            raise errors.DataError(f"model '{model}': regression needs a numeric target; '{target}' is {shown}")
        return task
    _check_classified(model, target, array, requested, shown)
    found = pc.unique(array.drop_null())
    if len(found) < 2:
        raise errors.DataError(f"model '{model}': target '{target}' has one class ({found[0].as_py()!r}) in the "
                               "training rows; a classifier needs at least two")
    inferred = "binary" if len(found) == 2 else "multiclass"
    if requested in ("binary", "multiclass") and requested != inferred:
        raise errors.ProgrammingError(
            f"model '{model}': task = '{requested}' but target '{target}' has {len(found)} classes in the "
            f"training rows; use task = '{inferred}', 'classification' or 'auto'", sqlstate="22023")
    return inferred


def _task_of(array: pa.Array, kind: str) -> str:
    if pa.types.is_boolean(array.type) or kind == "text":
        return "classification"
    if pa.types.is_integer(array.type):
        distinct = len(pc.unique(array.drop_null()))
        return "classification" if distinct <= MAX_INTEGER_CLASSES else "regression"
    return "regression"


def _check_classified(model: str, target: str, array: pa.Array, requested: str | None, shown: str) -> None:
    """A classifier's target is BOOLEAN, text or an integer: a DOUBLE's values are not classes."""
    if kind_of(array.type) == "numeric" and not (pa.types.is_boolean(array.type) or pa.types.is_integer(array.type)):
        raise errors.ProgrammingError(
            f"model '{model}': task = '{requested}' needs a BOOLEAN, text or integer target; '{target}' is "
            f"{shown}, whose values are not classes; use task = 'regression', or cast the target "
            f"(e.g. CAST({target} AS INTEGER))", sqlstate="22023")


def fit_target(task: str, array) -> dict:
    """The target's encoder: a regression target's mean and scale (fitted on the training rows), or a
    classifier's classes. :func:`mldb.models.train.fit` passes every row with a known target for a
    classifier, not the training split alone: the classes are what the column holds, as an ENUM's values
    are, and a user expects a class in the data (if only in one row that the split put among the
    validation rows) to be one the model knows and is scored on, not an internal error. A class with no
    training row is still never predicted with any confidence; the validation metrics show it."""
    array = _plain(array)
    if task == "regression":
        mean, std = _scaling(_floats(array))
        return {"mean": mean, "std": std}
    labels = pc.cast(array.drop_null(), pa.string())
    return {"classes": sorted(pc.unique(labels).to_pylist())}


def encode_target(task: str, encoder: dict, array) -> np.ndarray:
    """Class indices (int64) or the standardised value (float32); NULL for unseen classes -> -1."""
    array = _plain(array)
    if task == "regression":
        return ((_floats(array) - encoder["mean"]) / encoder["std"]).astype(np.float32)
    labels = pc.cast(array, pa.string())
    index = pc.index_in(labels, value_set=pa.array(encoder["classes"], pa.string()))
    return pc.fill_null(index, -1).to_numpy(zero_copy_only=False).astype(np.int64)
