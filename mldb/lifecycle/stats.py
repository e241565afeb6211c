"""Per-column statistics of a training set, saved with each model version.

One row per column in ``mldb.feature_stats``. Numbers (and dates, and the length of
free text) keep count, nulls, mean, std, min, max, 101 percentiles and ten
quantile bins with their counts; categories keep their 20 most frequent values with
counts and the count of everything else. DRIFT compares new data with these rows,
so the training data itself never has to be kept. Everything is computed on whole
Arrow arrays with ``pyarrow.compute`` and numpy: no Python loop over rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mldb import errors
from mldb.models import features as model_features

TOP_VALUES = 20  # categories kept per column; the rest count as "other"
BINS = 10  # quantile bins for numbers (PSI)
PERCENTILES = np.linspace(0.0, 1.0, 101)  # the training CDF kept for Kolmogorov-Smirnov

SCHEMA = pa.schema([
    ("model", pa.string()), ("version", pa.int32()), ("feature", pa.string()), ("role", pa.string()),
    ("kind", pa.string()), ("type", pa.string()), ("count", pa.int64()), ("nulls", pa.int64()),
    ("mean", pa.float64()), ("std", pa.float64()), ("min", pa.float64()), ("max", pa.float64()),
    ("quantiles", pa.list_(pa.float64())), ("bin_edges", pa.list_(pa.float64())),
    ("bin_counts", pa.list_(pa.int64())), ("top_values", pa.list_(pa.string())),
    ("top_counts", pa.list_(pa.int64())), ("other_count", pa.int64()),
])


def kind_of(arrow_type: pa.DataType, encoding: str | None = None) -> str:
    """How a column is summarised: numeric, categorical, text (by length) or vector.

    The models' own classification of types, with two differences for statistics:
    booleans are counted as categories, and dates and times are summarised as numbers."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_boolean(arrow_type):
        return "categorical"
    kind = model_features.kind_of(arrow_type)
    if kind == "text":
        return "text" if encoding and ("text" in encoding or "embed" in encoding) else "categorical"
    if kind == "date" or pa.types.is_temporal(arrow_type):
        return "numeric"
    return kind if kind in ("numeric", "vector") else "other"


def numbers(array: pa.Array | pa.ChunkedArray, kind: str) -> tuple[np.ndarray, int]:
    """The finite values of a numeric / text column as float64, and how many were null or NaN."""
    if kind == "text":
        array = pc.utf8_length(_as_strings(array))
    elif pa.types.is_temporal(array.type):
        return _finite(_temporal_as_float(array))
    try:
        values = pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise errors.ProgrammingError(f"expected a number, found a column of type {array.type}") from None
    return _finite(values)


def _finite(values: np.ndarray) -> tuple[np.ndarray, int]:
    finite = values[np.isfinite(values)]
    return finite, len(values) - len(finite)


def categories(array: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array, int]:
    """Distinct values (as text) with their counts, most frequent first, and the null count."""
    strings = _as_strings(array)
    counted = pc.value_counts(pc.drop_null(strings))
    counted = counted.take(pc.array_sort_indices(counted.field("counts"), order="descending"))
    return counted.field("values"), counted.field("counts"), strings.null_count


def profile(model: str, version: int, table: pa.Table, features: list[dict]) -> pa.Table:
    """Statistics rows (``SCHEMA``) for every feature and, with role 'target', the other columns."""
    encodings = {f["name"]: f.get("encoding") for f in features}
    rows = []
    for name in table.column_names:
        role = "feature" if name in encodings else "target"
        rows.append(column_stats(table.column(name), encodings.get(name)) | {"feature": name, "role": role})
    for row in rows:
        row.update(model=model, version=version)
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def column_stats(array: pa.Array | pa.ChunkedArray, encoding: str | None = None) -> dict:
    kind = kind_of(array.type, encoding)
    row = {"kind": kind, "type": str(array.type), "count": len(array), "nulls": array.null_count}
    if kind in ("numeric", "text"):
        row.update(_numeric_stats(array, kind))
    elif kind == "categorical":
        row.update(_category_stats(array))
    return row


def _numeric_stats(array, kind: str) -> dict:
    values, missing = numbers(array, kind)
    if not len(values):
        return {"nulls": missing}
    ordered = np.sort(values)
    quantiles = _quantiles(ordered, PERCENTILES)
    edges = np.unique(quantiles[100 // BINS : 100 : 100 // BINS])  # the deciles, from the same sort
    ends = np.concatenate([[0], np.searchsorted(ordered, edges, side="left"), [len(ordered)]])
    return {
        "nulls": missing, "mean": float(values.mean()), "std": float(values.std()),
        "min": float(ordered[0]), "max": float(ordered[-1]), "quantiles": quantiles.tolist(),
        "bin_edges": edges.tolist(), "bin_counts": np.diff(ends).tolist(),  # (= bin_counts(values, edges))
    }


def _quantiles(ordered: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(values, q)`` (linear) from the values sorted once: ``np.quantile`` partitions
    again for each of the 101 percentiles (measured 10-70 ms against 6 ms for one sort, 100k rows)."""
    position = q * (len(ordered) - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, len(ordered) - 1)
    weight = position - low
    return ordered[low] * (1 - weight) + ordered[high] * weight


def _category_stats(array) -> dict:
    values, counts, nulls = categories(array)
    top = counts[:TOP_VALUES]
    total = pc.sum(counts).as_py() or 0
    return {
        "nulls": nulls, "top_values": values[:TOP_VALUES].to_pylist(), "top_counts": top.to_pylist(),
        "other_count": total - (pc.sum(top).as_py() or 0),
    }


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin: (-inf, e1), [e1, e2), ..., [ek, inf)."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def _as_strings(array):
    if pa.types.is_dictionary(array.type):
        array = pc.cast(array, array.type.value_type)
    return pc.cast(array, pa.string())


def _temporal_as_float(array) -> np.ndarray:
    """Dates as days, timestamps as microseconds since the epoch, as float64 (NULL as NaN);
    'infinity' / '-infinity' (the integer type's extremes, as DuckDB stores them) as inf / -inf, so
    they count as missing as a float column's inf does. (Microseconds beyond 2**53, after the year
    2255, lose their last digits: no matter for statistics.)"""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_date(array.type):
        ints, top = pc.cast(pc.cast(array, pa.date32()), pa.int32()), np.iinfo(np.int32).max
    elif pa.types.is_timestamp(array.type):
        ints, top = pc.cast(array, pa.int64()), np.iinfo(np.int64).max
        scale = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}[array.type.unit]
    else:
        ints, top = pc.cast(array, pa.int64()), None
    raw = ints.to_numpy(zero_copy_only=False)
    values = np.array(pc.cast(ints, pa.float64(), safe=False).to_numpy(zero_copy_only=False), dtype=np.float64)
    if top is not None:
        values[np.abs(np.nan_to_num(np.asarray(raw, dtype=np.float64))) >= float(top)] = np.inf
    if pa.types.is_timestamp(array.type):
        values = values * scale
    return values
