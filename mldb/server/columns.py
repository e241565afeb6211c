"""Whole-batch encoding of large results: Arrow columns -> wire field values, no per-row Python.

``data_rows(batch, kinds, formats)`` is one Arrow record batch as DataRow messages. When
every column is sent in binary with one width and holds no NULL (ids, numbers, dates,
timestamps: a PREDICT's output), every row has the same layout and the messages are one
numpy structured array (``protocol.fixed_data_rows``). Otherwise ``encode_column(array,
kind, fmt)`` gives each column as a ``large_binary`` array of each value's wire bytes
(NULL stays NULL): Arrow compute kernels for the text format of numbers, strings,
booleans, dates, timestamps and decimals; numpy byte-swapping for the binary format of
fixed-width types; the per-value encoders of ``types`` for the rest; and
``protocol.data_rows`` lays the columns out as DataRow messages in one pass. A date, timestamp
or time column holding a value beyond Python's types (infinity, a year before 1 or after 9999,
24:00:00) is encoded value by value from DuckDB's own Python values of it, as the first rows are.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mldb.server import protocol, types
from mldb.server.types import PgType

_BINARY = pa.large_binary()
_DAYS_2000 = 10_957  # 2000-01-01 in days since 1970-01-01
_MICROS_2000 = _DAYS_2000 * 86_400_000_000
# PostgreSQL type -> numpy big-endian dtype of its binary format (fixed-width types)
_FIXED = {types.INT2: ">i2", types.INT4: ">i4", types.INT8: ">i8", types.OID: ">u4", types.FLOAT4: ">f4",
          types.FLOAT8: ">f8", types.BOOL: "u1"}
_TEXT_CAST = frozenset({types.INT2, types.INT4, types.INT8, types.OID, types.NUMERIC, types.DATE})
_STRINGS = frozenset({types.TEXT, types.JSON})


def data_rows(batch: pa.RecordBatch, kinds: list[PgType], formats: list[int]) -> bytes:
    """The DataRow messages of a whole batch, in each column's format (0 text, 1 binary)."""
    columns = [batch.column(i) for i in range(batch.num_columns)]
    fixed = [_fixed_values(array, kind) if fmt and not array.null_count else None
             for array, kind, fmt in zip(columns, kinds, formats)]
    if fixed and all(values is not None for values in fixed):
        return protocol.fixed_data_rows(fixed)
    return protocol.data_rows([encode_column(array, kind, fmt) for array, kind, fmt in zip(columns, kinds, formats)])


def encode_column(array: pa.Array, kind: PgType, fmt: int) -> pa.Array:
    ordinary = _python_years(array)
    encoded = None
    if ordinary:
        encoded = _binary_vectorized(array, kind) if fmt else _text_vectorized(array, kind)
    if encoded is None:
        encode = kind.binary if fmt else kind.text
        values = array.to_pylist() if ordinary else _duckdb_values(array)
        encoded = pa.array([None if value is None else encode(value) for value in values], _BINARY)
    return encoded


# Dates, timestamps and times beyond Python's types (DuckDB's infinity, years before 1 or after
# 9999, 24:00:00) are rare: a column holding one is encoded value by value from the very values
# DuckDB's Python API gives for them (the first rows of a result, ``portal``, are encoded from
# those), so that every row of a result is written alike.
_FIRST_DAY, _LAST_DAY = -719_162, 2_932_896  # 0001-01-01 and 9999-12-31 in days since 1970-01-01
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_INFINITY = (-(1 << 63) + 1, (1 << 63) - 1)  # DuckDB's -infinity and infinity of a timestamp


def _python_years(array: pa.Array) -> bool:
    """Whether every date, timestamp or time in ``array`` (a list's items included) is one
    Python's ``date``, ``datetime`` or ``time`` holds: True for other types; one vectorised min/max."""
    arrow = array.type
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow) or pa.types.is_fixed_size_list(arrow):
        return _python_years(array.flatten())
    if pa.types.is_date32(arrow):
        low, high, values = _FIRST_DAY, _LAST_DAY, array.cast(pa.int32())
    elif pa.types.is_timestamp(arrow):
        per = _PER_SECOND[arrow.unit]
        margin = 2 * 86_400 if arrow.tz else 0  # a zone's local time may cross a year the instant does not
        low = max((_FIRST_DAY * 86_400 + margin) * per, _INFINITY[0] + 1)
        high = min(((_LAST_DAY + 1) * 86_400 - margin) * per - 1, _INFINITY[1] - 1)
        values = array.cast(pa.int64())
    elif pa.types.is_time(arrow):
        low, high, values = 0, 86_400 * _PER_SECOND[arrow.unit] - 1, array.cast(pa.int64())
    else:
        return True
    if values.null_count == len(values):
        return True
    bounds = pc.min_max(values)
    return bounds["min"].as_py() >= low and bounds["max"].as_py() <= high


def _duckdb_values(array: pa.Array) -> list:
    """``array``'s values as DuckDB's Python API gives them (``date.max`` for infinity, DuckDB's
    text for a year before 1), read back by a private DuckDB connection in the array's time zone."""
    import duckdb

    con = duckdb.connect()
    try:
        zone = _zone(array.type)
        if zone:
            con.execute("SET TimeZone = ?", [zone])
        return [row[0] for row in con.from_arrow(pa.table({"v": array})).fetchall()]
    finally:
        con.close()


def _zone(arrow: pa.DataType) -> str | None:
    while pa.types.is_list(arrow) or pa.types.is_large_list(arrow) or pa.types.is_fixed_size_list(arrow):
        arrow = arrow.value_type
    return arrow.tz if pa.types.is_timestamp(arrow) else None


def _text_vectorized(array: pa.Array, kind: PgType) -> pa.Array | None:
    oid, arrow = kind.oid, array.type
    if oid in _STRINGS and (pa.types.is_string(arrow) or pa.types.is_large_string(arrow)):
        return pc.cast(array, _BINARY)
    if oid in _TEXT_CAST and not pa.types.is_date64(arrow):
        return pc.cast(pc.cast(array, pa.string()), _BINARY)
    if oid == types.BOOL:
        return pc.cast(pc.if_else(array, "t", "f"), _BINARY)
    if oid in (types.FLOAT4, types.FLOAT8) and pa.types.is_floating(arrow):
        return _float_text(array, 6 if oid == types.FLOAT4 else 15)
    if oid == types.TIMESTAMP and pa.types.is_timestamp(arrow) and arrow.tz is None:
        # (always 6 fractional digits; nanoseconds are cut off, as DuckDB's Python values have none)
        text = pc.cast(pc.cast(array, pa.timestamp("us"), safe=False), pa.string())
        trimmed = pc.replace_substring_regex(pc.replace_substring_regex(text, r"0+$", ""), r"\.$", "")
        return pc.cast(trimmed, _BINARY)  # as PostgreSQL (and types._text_clock) writes it
    return None


def _binary_vectorized(array: pa.Array, kind: PgType) -> pa.Array | None:
    oid, arrow = kind.oid, array.type
    if oid in _STRINGS and (pa.types.is_string(arrow) or pa.types.is_large_string(arrow)):
        return pc.cast(array, _BINARY)
    values = _fixed_values(array, kind)
    return None if values is None else _fixed(values, array)


def _fixed_values(array: pa.Array, kind: PgType) -> np.ndarray | None:
    """The binary format of a fixed-width column as big-endian numpy values (0 where NULL),
    None for a column of another type."""
    oid, arrow = kind.oid, array.type
    if oid in _FIXED and (pa.types.is_integer(arrow) or pa.types.is_floating(arrow) or pa.types.is_boolean(arrow)):
        values = array.fill_null(False if pa.types.is_boolean(arrow) else 0).to_numpy(zero_copy_only=False)
        return values.astype(_FIXED[oid])
    if oid in (types.DATE, types.TIMESTAMP, types.TIMESTAMPTZ) and not _python_years(array):
        return None  # (infinity, years before 1: value by value, ``encode_column``)
    if oid == types.DATE and pa.types.is_date32(arrow):
        days = array.cast(pa.int32()).fill_null(0).to_numpy() - _DAYS_2000
        return days.astype(">i4")
    if oid in (types.TIMESTAMP, types.TIMESTAMPTZ) and pa.types.is_timestamp(arrow):
        micros = pc.cast(array, pa.timestamp("us", arrow.tz), safe=False).cast(pa.int64()).fill_null(0).to_numpy()
        return (micros - _MICROS_2000).astype(">i8")
    return None


def _fixed(values: np.ndarray, like: pa.Array) -> pa.Array:
    """Big-endian numpy values -> binary values of that width, NULL where ``like`` is NULL."""
    width = values.dtype.itemsize
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(values), [None, pa.py_buffer(values.tobytes())])
    encoded = pc.cast(fixed, _BINARY)
    return pc.if_else(pc.is_valid(like), encoded, pa.scalar(None, _BINARY)) if like.null_count else encoded


def _float_text(array: pa.Array, high: int) -> pa.Array:
    """PostgreSQL's float text (``types.float_text``): Arrow's shortest digits where they are
    already in PostgreSQL's fixed-point form (0, and magnitudes in [1e-4, 10**high) that Arrow does not
    write as ``1e+14``), the
    per-value encoder for the rest (NaN, infinities, exponent form: rare in real data)."""
    if high == 6 and array.type != pa.float32():
        array = pc.cast(array, pa.float32())
    values = array.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        size = np.abs(values)
        common = (values == 0) | ((size >= 1e-4) & (size < 10.0**high))
    text = pc.cast(array, pa.string())
    common &= ~np.asarray(pc.fill_null(pc.match_substring(text, "e"), True))  # Arrow's own exponent form
    rare = np.flatnonzero(~common & np.asarray(array.is_valid()))
    if len(rare):
        spelled = np.full(len(values), None, dtype=object)
        spelled[rare] = [types.float_text(value, high) for value in values[rare].tolist()]
        text = pc.if_else(pa.array(common), text, pa.array(spelled, pa.string()))
    return pc.cast(text, _BINARY)
