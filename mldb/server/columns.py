"""Whole-batch encoding of large results: Arrow columns -> wire field values, no per-row Python.

``encode_column(array, kind, fmt)`` returns a ``large_binary`` array holding each value's
wire bytes (NULL stays NULL): Arrow compute kernels for the text format of numbers,
strings, booleans, dates, timestamps and decimals; numpy byte-swapping for the binary
format of fixed-width types; the per-value encoders of ``types`` for the rest.
``protocol.data_rows`` then lays the columns out as DataRow messages in one pass.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mldb.server import types
from mldb.server.types import PgType

_BINARY = pa.large_binary()
_DAYS_2000 = 10_957  # 2000-01-01 in days since 1970-01-01
_MICROS_2000 = _DAYS_2000 * 86_400_000_000
# PostgreSQL type -> numpy big-endian dtype of its binary format (fixed-width types)
_FIXED = {types.INT2: ">i2", types.INT4: ">i4", types.INT8: ">i8", types.OID: ">u4", types.FLOAT4: ">f4",
          types.FLOAT8: ">f8", types.BOOL: "u1"}
_TEXT_CAST = frozenset({types.INT2, types.INT4, types.INT8, types.OID, types.NUMERIC, types.DATE})
_STRINGS = frozenset({types.TEXT, types.JSON})


def encode_column(array: pa.Array, kind: PgType, fmt: int) -> pa.Array:
    encoded = _binary_vectorized(array, kind) if fmt else _text_vectorized(array, kind)
    if encoded is None:
        encode = kind.binary if fmt else kind.text
        encoded = pa.array([None if value is None else encode(value) for value in array.to_pylist()], _BINARY)
    return encoded


def _text_vectorized(array: pa.Array, kind: PgType) -> pa.Array | None:
    oid, arrow = kind.oid, array.type
    if oid in _STRINGS and (pa.types.is_string(arrow) or pa.types.is_large_string(arrow)):
        return pc.cast(array, _BINARY)
    if oid in _TEXT_CAST and not pa.types.is_date64(arrow):
        return pc.cast(pc.cast(array, pa.string()), _BINARY)
    if oid == types.BOOL:
        return pc.cast(pc.if_else(array, "t", "f"), _BINARY)
    if oid in (types.FLOAT4, types.FLOAT8) and not pc.any(pc.is_nan(array)).as_py() \
            and not pc.any(pc.is_inf(array)).as_py():
        return pc.cast(pc.cast(array, pa.string()), _BINARY)
    if oid == types.TIMESTAMP and pa.types.is_timestamp(arrow) and arrow.tz is None:
        text = pc.cast(pc.cast(array, pa.timestamp("us")), pa.string())  # always 6 fractional digits
        trimmed = pc.replace_substring_regex(pc.replace_substring_regex(text, r"0+$", ""), r"\.$", "")
        return pc.cast(trimmed, _BINARY)  # as PostgreSQL (and types._text_clock) writes it
    return None


def _binary_vectorized(array: pa.Array, kind: PgType) -> pa.Array | None:
    oid, arrow = kind.oid, array.type
    if oid in _STRINGS and (pa.types.is_string(arrow) or pa.types.is_large_string(arrow)):
        return pc.cast(array, _BINARY)
    if oid in _FIXED and (pa.types.is_integer(arrow) or pa.types.is_floating(arrow) or pa.types.is_boolean(arrow)):
        values = array.fill_null(False if pa.types.is_boolean(arrow) else 0).to_numpy(zero_copy_only=False)
        return _fixed(values.astype(_FIXED[oid]), array)
    if oid == types.DATE and pa.types.is_date32(arrow):
        days = array.cast(pa.int32()).fill_null(0).to_numpy() - _DAYS_2000
        return _fixed(days.astype(">i4"), array)
    if oid in (types.TIMESTAMP, types.TIMESTAMPTZ) and pa.types.is_timestamp(arrow):
        micros = pc.cast(array, pa.timestamp("us", arrow.tz)).cast(pa.int64()).fill_null(0).to_numpy()
        return _fixed((micros - _MICROS_2000).astype(">i8"), array)
    return None


def _fixed(values: np.ndarray, like: pa.Array) -> pa.Array:
    """Big-endian numpy values -> binary values of that width, NULL where ``like`` is NULL."""
    width = values.dtype.itemsize
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(values), [None, pa.py_buffer(values.tobytes())])
    encoded = pc.cast(fixed, _BINARY)
    return pc.if_else(pc.is_valid(like), encoded, pa.scalar(None, _BINARY)) if like.null_count else encoded
