"""PostgreSQL types for DuckDB results and bind parameters: OIDs, text and binary formats.

``pg_type(duckdb_type)`` maps a DuckDB type (as ``str(description[i][1])`` or DESCRIBE
spells it) to a ``PgType`` with the value encoders for both wire formats;
``param_decoder(oid, fmt)`` turns a Bind value back into the Python object DuckDB binds.
Values arrive as DuckDB's Python objects (int, Decimal, date, datetime, list, ...).
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import math
import re
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

Encoder = Callable[[object], bytes]

BOOL, BYTEA, NAME, INT8, INT2, INT2VECTOR, INT4, TEXT, OID = 16, 17, 19, 20, 21, 22, 23, 25, 26
JSON, FLOAT4, FLOAT8, UNKNOWN, BPCHAR, VARCHAR = 114, 700, 701, 705, 1042, 1043
DATE, TIME, TIMESTAMP, TIMESTAMPTZ, INTERVAL, NUMERIC, UUID, JSONB = 1082, 1083, 1114, 1184, 1186, 1700, 2950, 3802

ARRAY_OF = {
    BOOL: 1000, BYTEA: 1001, INT2: 1005, INT4: 1007, TEXT: 1009, VARCHAR: 1015, INT8: 1016, FLOAT4: 1021,
    FLOAT8: 1022, DATE: 1182, TIME: 1183, TIMESTAMP: 1115, TIMESTAMPTZ: 1185, INTERVAL: 1187,
    NUMERIC: 1231, UUID: 2951, JSON: 199, NAME: 1003, OID: 1028, BPCHAR: 1014, JSONB: 3807,
}
ELEMENT_OF = {array: element for element, array in ARRAY_OF.items()}
NAMES = {BOOL: "bool", BYTEA: "bytea", NAME: "name", INT8: "int8", INT2: "int2", INT2VECTOR: "int2vector",
         INT4: "int4", TEXT: "text",
         OID: "oid", JSON: "json", FLOAT4: "float4", FLOAT8: "float8", BPCHAR: "bpchar", VARCHAR: "varchar",
         DATE: "date", TIME: "time", TIMESTAMP: "timestamp", TIMESTAMPTZ: "timestamptz", INTERVAL: "interval",
         NUMERIC: "numeric", UUID: "uuid", JSONB: "jsonb"}

_EPOCH_DATE = dt.date(2000, 1, 1).toordinal()
_EPOCH = dt.datetime(2000, 1, 1)
_EPOCH_TZ = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
_MICRO = dt.timedelta(microseconds=1)
_WIDE = decimal.Context(prec=1000)  # NUMERIC holds up to 131072 digits; decimal's default is 28


@dataclass(frozen=True)
class PgType:
    oid: int
    size: int  # typlen: -1 for variable length
    text: Encoder  # value -> text-format bytes
    binary: Encoder  # value -> binary-format bytes
    modifier: int = -1


# -- text format -----------------------------------------------------------------------------


def _text_str(value) -> bytes:
    return str(value).encode()


def _duckdb_text(value) -> str:
    """A value inside a MAP as DuckDB's cast to VARCHAR writes it (``true``, ``NULL``, ``[1, 2]``)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(_duckdb_text, value)) + "]"
    if isinstance(value, dict):
        return _map_text(value)
    return str(value)


def _map_text(value) -> str:
    pairs = value.items() if isinstance(value, dict) else value  # a dict, or Arrow's list of (key, value)
    return "{" + ", ".join(f"{_duckdb_text(key)}={_duckdb_text(item)}" for key, item in pairs) + "}"


def _text_map(value) -> bytes:
    """A MAP as DuckDB's text (and COPY TO STDOUT) writes it: ``{false=0.45, true=0.1}``."""
    return _map_text(value).encode()


_FRACTION_ZEROS = re.compile(r"(\.\d*?)0+(?=$|[+-])")
_WHOLE_HOUR_OFFSET = re.compile(r"([+-]\d\d):00$")


def _text_clock(value) -> bytes:
    """A time or timestamp as PostgreSQL writes it: no trailing zeros in the fraction
    (``03:04:05``, ``03:04:05.5``), a whole-hour offset as ``+00``, a year before 1 as
    ``0044-03-15 01:02:03+00 BC`` (DuckDB's Python value is then its text ``0044-03-15 (BC) 01:02:03+00``)."""
    text, era = _era(str(value))
    text = _FRACTION_ZEROS.sub(r"\1", text).replace(".+", "+").replace(".-", "-").rstrip(".")
    return (_WHOLE_HOUR_OFFSET.sub(r"\1", text) + era).encode()


def _text_date(value) -> bytes:
    """A date as PostgreSQL writes it; one DuckDB's Python API cannot make a ``date`` of (before
    year 1, after 9999) comes as DuckDB's text, ``0044-03-15 (BC)``: PostgreSQL's ``0044-03-15 BC``."""
    text, era = _era(str(value))
    return (text + era).encode()


def _era(text: str) -> tuple[str, str]:
    """DuckDB's ``(BC)`` after the date -> (the text without it, PostgreSQL's `` BC`` at the end)."""
    return (text.replace(" (BC)", "", 1), " BC") if " (BC)" in text else (text, "")


def _text_bool(value) -> bytes:
    return b"t" if value else b"f"


def float_text(value, high: int) -> str:
    """A float as PostgreSQL (12 and later) writes it: the shortest digits that read back to the
    same value, fixed-point for a decimal exponent in [-4, high) and ``1e+20`` style beyond
    (``high`` is 15 for float8, 6 for float4: printf's thresholds, as PostgreSQL's float8out /
    float4out), no trailing ``.0``; ``NaN``, ``Infinity``, ``-Infinity``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    shortest = str(np.float32(value)) if high == 6 else repr(float(value))
    sign, digits, exponent = Decimal(shortest).as_tuple()
    while len(digits) > 1 and digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    if digits == (0,):
        return "-0" if sign else "0"
    power = len(digits) - 1 + exponent
    if -4 <= power < high:
        text = format(Decimal((0, digits, exponent)), "f")
    else:
        mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
        text = f"{mantissa}e{'+' if power >= 0 else '-'}{abs(power):02d}"
    return ("-" if sign else "") + text


def _text_float8(value) -> bytes:
    return float_text(value, 15).encode()


def _text_float4(value) -> bytes:
    return float_text(value, 6).encode()


def _text_bytea(value) -> bytes:
    return b"\\x" + bytes(value).hex().encode()


def _as_timedelta(value) -> dt.timedelta:
    """An interval as DuckDB's Python API gives it (a month is 30 days); Arrow's values
    (``MonthDayNano``, in large results encoded from Arrow batches) become the same."""
    if isinstance(value, dt.timedelta):
        return value
    return dt.timedelta(days=value.months * 30 + value.days, microseconds=value.nanoseconds // 1000)


def _text_interval(value) -> bytes:
    value = _as_timedelta(value)
    seconds = value.seconds
    clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if value.microseconds:
        clock += f".{value.microseconds:06d}"
    return (f"{value.days} days {clock}" if value.days else clock).encode()


_ARRAY_QUOTE = re.compile(r'[{},"\\\s]')


def _array_text(element: Encoder) -> Encoder:
    def encode(value) -> bytes:
        parts = []
        for item in value:
            if item is None:
                parts.append(b"NULL")
            elif isinstance(item, (list, tuple)):
                parts.append(encode(item))
            else:
                parts.append(_quote_element(element(item)))
        return b"{" + b",".join(parts) + b"}"

    return encode


def _quote_element(text: bytes) -> bytes:
    decoded = text.decode()
    if decoded and not _ARRAY_QUOTE.search(decoded) and decoded.upper() != "NULL":
        return text
    return b'"' + decoded.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


# -- binary format ---------------------------------------------------------------------------


def _packer(fmt: str) -> Encoder:
    return struct.Struct(fmt).pack


def _bin_text(value) -> bytes:
    return str(value).encode()


def _bin_date(value: dt.date) -> bytes:
    if isinstance(value, str):  # a year DuckDB's Python API cannot make a date of: its text
        return struct.pack("!i", _text_micros(value) // _DAY_MICROS - _DAYS_2000)
    return struct.pack("!i", value.toordinal() - _EPOCH_DATE)


def _bin_timestamp(value: dt.datetime) -> bytes:
    if isinstance(value, str):  # (as for dates)
        return struct.pack("!q", _text_micros(value) - _DAYS_2000 * _DAY_MICROS)
    if value.tzinfo is not None:
        return struct.pack("!q", (value - _EPOCH_TZ) // _MICRO)
    return struct.pack("!q", (value - _EPOCH) // _MICRO)


_DAY_MICROS = 86_400_000_000
_DAYS_2000 = 10_957  # 2000-01-01 in days since 1970-01-01
_DUCKDB_CLOCK = re.compile(r"(-?\d+)-(\d\d)-(\d\d)( \(BC\))?(?: (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
                           r"(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?)?")


def _text_micros(text: str) -> int:
    """Microseconds since 1970-01-01 (UTC where an offset is given) of DuckDB's text of a date or
    timestamp out of Python's years (``0044-03-15 (BC) 01:02:03+00``, ``10000-01-01``); the
    proleptic Gregorian calendar with a year 0 (1 BC), as PostgreSQL's binary format counts."""
    found = _DUCKDB_CLOCK.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"not a date or timestamp: {text!r}")
    year, month, day, bc, hour, minute, second, fraction, sign, off_h, off_m, off_s = found.groups()
    year = 1 - int(year) if bc else int(year)
    seconds = int(hour or 0) * 3600 + int(minute or 0) * 60 + int(second or 0)
    if sign:
        offset = int(off_h) * 3600 + int(off_m or 0) * 60 + int(off_s or 0)
        seconds -= offset if sign == "+" else -offset
    return (_civil_days(year, int(month), int(day)) * 86_400 + seconds) * 1_000_000 + int((fraction or "").ljust(6, "0"))


def _civil_days(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (astronomical year: 0 is 1 BC)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _bin_time(value: dt.time) -> bytes:
    if isinstance(value, str):  # 24:00:00, which Python's time cannot hold, comes as DuckDB's text
        hour, minute, second = value.split(":")
        whole, _, fraction = second.partition(".")
        micros = ((int(hour) * 60 + int(minute)) * 60 + int(whole)) * 1_000_000 + int(fraction.ljust(6, "0"))
        return struct.pack("!q", micros)
    micros = ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    return struct.pack("!q", micros)


def _bin_interval(value) -> bytes:
    value = _as_timedelta(value)
    return struct.pack("!qii", value.seconds * 1_000_000 + value.microseconds, value.days, 0)


def _bin_numeric(value) -> bytes:
    value = Decimal(value)
    if value.is_nan():
        return struct.pack("!hhHh", 0, 0, 0xC000, 0)
    if value.is_infinite():
        return struct.pack("!hhHh", 0, 0, 0xF000 if value < 0 else 0xD000, 0)
    sign, digits, exponent = value.as_tuple()
    scale = max(0, -exponent)
    text = ("".join(map(str, digits)) + "0" * max(0, exponent)).zfill(scale + 1)
    fraction = text[len(text) - scale :] if scale else ""
    integer = text[: len(text) - scale] if scale else text
    integer = integer.zfill(-(-len(integer) // 4) * 4)
    fraction = fraction.ljust(-(-len(fraction) // 4) * 4, "0")
    groups = [int(integer[i : i + 4]) for i in range(0, len(integer), 4)]
    weight = len(groups) - 1
    groups += [int(fraction[i : i + 4]) for i in range(0, len(fraction), 4)]
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    head = struct.pack("!hhHH", len(groups), weight, 0x4000 if sign else 0, scale)
    return head + struct.pack(f"!{len(groups)}H", *groups)


def _array_binary(element_oid: int, element: Encoder) -> Encoder:
    def encode(value) -> bytes:
        dims, flat = _array_shape(value)
        has_null = any(item is None for item in flat)
        parts = [struct.pack("!iii", len(dims), int(has_null), element_oid)]
        parts += [struct.pack("!ii", size, 1) for size in dims]
        for item in flat:
            data = None if item is None else element(item)
            parts.append(b"\xff\xff\xff\xff" if data is None else struct.pack("!i", len(data)) + data)
        return b"".join(parts)

    return encode


def _array_shape(value) -> tuple[list[int], list]:
    """Dimensions and the flattened elements of a rectangular nested list."""
    dims, level = [], value
    while isinstance(level, (list, tuple)):
        dims.append(len(level))
        level = level[0] if level else None
    flat = list(value)
    for _ in dims[1:]:
        flat = [item for sub in flat for item in sub]
    return (dims if value else []), flat


# -- the DuckDB -> PostgreSQL type map -------------------------------------------------------


def _scalar(oid: int, size: int, text: Encoder, binary: Encoder) -> PgType:
    return PgType(oid, size, text, binary)


_TEXT_TYPE = _scalar(TEXT, -1, _text_str, _bin_text)
_SCALARS = {
    "BOOLEAN": _scalar(BOOL, 1, _text_bool, lambda v: b"\x01" if v else b"\x00"),
    "TINYINT": _scalar(INT2, 2, _text_str, _packer("!h")),
    "UTINYINT": _scalar(INT2, 2, _text_str, _packer("!h")),
    "SMALLINT": _scalar(INT2, 2, _text_str, _packer("!h")),
    "USMALLINT": _scalar(INT4, 4, _text_str, _packer("!i")),
    "INTEGER": _scalar(INT4, 4, _text_str, _packer("!i")),
    "UINTEGER": _scalar(OID, 4, _text_str, _packer("!I")),  # PostgreSQL's oid is an unsigned 32-bit integer
    "BIGINT": _scalar(INT8, 8, _text_str, _packer("!q")),
    "UBIGINT": _scalar(NUMERIC, -1, _text_str, _bin_numeric),
    "HUGEINT": _scalar(NUMERIC, -1, _text_str, _bin_numeric),
    "UHUGEINT": _scalar(NUMERIC, -1, _text_str, _bin_numeric),
    "FLOAT": _scalar(FLOAT4, 4, _text_float4, _packer("!f")),
    "DOUBLE": _scalar(FLOAT8, 8, _text_float8, _packer("!d")),
    "VARCHAR": _TEXT_TYPE,
    "BLOB": _scalar(BYTEA, -1, _text_bytea, bytes),
    "DATE": _scalar(DATE, 4, _text_date, _bin_date),
    "TIME": _scalar(TIME, 8, _text_clock, _bin_time),
    "TIMESTAMP": _scalar(TIMESTAMP, 8, _text_clock, _bin_timestamp),
    "TIMESTAMP_S": _scalar(TIMESTAMP, 8, _text_clock, _bin_timestamp),
    "TIMESTAMP_MS": _scalar(TIMESTAMP, 8, _text_clock, _bin_timestamp),
    "TIMESTAMP_NS": _scalar(TIMESTAMP, 8, _text_clock, _bin_timestamp),
    "TIMESTAMP WITH TIME ZONE": _scalar(TIMESTAMPTZ, 8, _text_clock, _bin_timestamp),
    "INTERVAL": _scalar(INTERVAL, 16, _text_interval, _bin_interval),
    "UUID": _scalar(UUID, 16, _text_str, lambda v: (v if isinstance(v, uuid.UUID) else uuid.UUID(v)).bytes),
    "JSON": _scalar(JSON, -1, _text_str, _bin_text),
}
_MAP_TYPE = _scalar(TEXT, -1, _text_map, lambda value: _text_map(value))
INT2VECTOR_TYPE = _scalar(INT2VECTOR, -1, _text_str, _bin_text)  # pg_index.indoption's "0 0" (text only)
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")
_ARRAY = re.compile(r"^(.*)\[\d*\]$")


def pg_type(duckdb_type: str) -> PgType:
    """The wire type for a DuckDB type name; anything without a PostgreSQL twin is text."""
    name = str(duckdb_type)
    found = _SCALARS.get(name)
    if found is not None:
        return found
    if name.startswith("MAP("):
        return _MAP_TYPE
    decimal = _DECIMAL.fullmatch(name)
    if decimal:
        precision, scale = int(decimal.group(1)), int(decimal.group(2))
        return PgType(NUMERIC, -1, _text_str, _bin_numeric, ((precision << 16) | scale) + 4)
    array = _ARRAY.match(name)
    if array and not name.startswith(("STRUCT", "MAP", "UNION")):
        element = pg_type(array.group(1))
        if element.oid in ARRAY_OF:
            return PgType(ARRAY_OF[element.oid], -1, _array_text(element.text),
                          _array_binary(element.oid, element.binary))
    return _TEXT_TYPE


# -- bind parameters: wire bytes -> Python values ---------------------------------------------


def _parse_bool(text: str) -> bool:
    return text.strip().lower() in ("t", "true", "1", "on", "yes", "y")


def _parse_bytea(text: str) -> bytes:
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def _parse_datetime(text: str):
    try:
        return dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return text  # DuckDB casts PostgreSQL's other spellings itself


def _parse_date(text: str):
    try:
        return dt.date.fromisoformat(_parse_unknown(text.strip()))
    except ValueError:
        return text


_JDBC_DATE = re.compile(r"(\d{4,}-\d\d-\d\d) [+-]\d\d(?::\d\d)?")


def _parse_unknown(text: str) -> str:
    """Untyped text goes to DuckDB as VARCHAR, which casts it where it is used; JDBC's setDate
    sends ``2024-01-31 +00``, which DuckDB's date cast rejects, so its offset is dropped."""
    jdbc_date = _JDBC_DATE.fullmatch(text)
    return jdbc_date.group(1) if jdbc_date else text


_TEXT_PARSERS: dict[int, Callable[[str], object]] = {
    BOOL: _parse_bool, BYTEA: _parse_bytea, INT2: int, INT4: int, INT8: int, OID: int,
    FLOAT4: float, FLOAT8: float, NUMERIC: Decimal, DATE: _parse_date, TIMESTAMP: _parse_datetime,
    TIMESTAMPTZ: _parse_datetime, UUID: uuid.UUID,
}


def _unpacker(fmt: str) -> Callable[[bytes], object]:
    unpack = struct.Struct(fmt).unpack
    return lambda data: unpack(data)[0]


def _unbin_numeric(data: bytes) -> Decimal:
    count, weight, sign, scale = struct.unpack_from("!hhHH", data)
    if sign == 0xC000:
        return Decimal("NaN")
    if sign in (0xD000, 0xF000):
        return Decimal("-Infinity" if sign == 0xF000 else "Infinity")
    groups = struct.unpack_from(f"!{count}H", data, 8)
    digits = "".join(f"{group:04d}" for group in groups) or "0"
    value = Decimal(digits).scaleb(4 * (weight - count + 1), _WIDE)
    value = -value if sign == 0x4000 else value
    return value.quantize(Decimal(1).scaleb(-scale), context=_WIDE)


def _unbin_interval(data: bytes) -> dt.timedelta:
    micros, days, months = struct.unpack("!qii", data)
    return dt.timedelta(days=days + 30 * months, microseconds=micros)


def _unbin_time(data: bytes) -> dt.time:
    micros = struct.unpack("!q", data)[0]
    return (dt.datetime.min + dt.timedelta(microseconds=micros)).time()


_BINARY_PARSERS: dict[int, Callable[[bytes], object]] = {
    BOOL: lambda d: d != b"\x00", BYTEA: bytes, INT2: _unpacker("!h"), INT4: _unpacker("!i"),
    INT8: _unpacker("!q"), OID: _unpacker("!I"), FLOAT4: _unpacker("!f"), FLOAT8: _unpacker("!d"),
    NUMERIC: _unbin_numeric, DATE: lambda d: dt.date.fromordinal(struct.unpack("!i", d)[0] + _EPOCH_DATE),
    TIMESTAMP: lambda d: _EPOCH + struct.unpack("!q", d)[0] * _MICRO,
    TIMESTAMPTZ: lambda d: _EPOCH_TZ + struct.unpack("!q", d)[0] * _MICRO,
    TIME: _unbin_time, INTERVAL: _unbin_interval, UUID: lambda d: uuid.UUID(bytes=bytes(d)),
}


@functools.lru_cache(maxsize=None)  # (a few dozen types and two formats; Bind asks for each value)
def param_decoder(oid: int, fmt: int) -> Callable[[bytes], object]:
    """bytes -> the Python value to bind for a parameter of this type and format (0 text, 1 binary)."""
    element = ELEMENT_OF.get(oid)
    if fmt == 0:
        if element is not None:
            item = _TEXT_PARSERS.get(element, str)
            return lambda data: parse_array_text(data.decode(), item)
        parse = _TEXT_PARSERS.get(oid, _parse_unknown if oid in (0, UNKNOWN) else str)
        return lambda data: parse(data.decode())
    if element is not None:
        return lambda data: _parse_array_binary(data, param_decoder(element, 1))
    return _BINARY_PARSERS.get(oid, lambda data: bytes(data).decode())


def _parse_array_binary(data: bytes, item: Callable[[bytes], object]) -> list:
    ndim, _, _ = struct.unpack_from("!iii", data)
    dims = [struct.unpack_from("!ii", data, 12 + 8 * i)[0] for i in range(ndim)]
    pos, flat = 12 + 8 * ndim, []
    for _ in range(_product(dims)):
        (size,) = struct.unpack_from("!i", data, pos)
        pos += 4
        flat.append(None if size < 0 else item(data[pos : pos + size]))
        pos += max(size, 0)
    for size in reversed(dims[1:]):
        flat = [flat[i : i + size] for i in range(0, len(flat), size)]
    return flat


def _product(dims: list[int]) -> int:
    total = 1 if dims else 0
    for size in dims:
        total *= size
    return total


_ARRAY_TOKEN = re.compile(r'(\{)|(\})|"((?:[^"\\]|\\.)*)"|([^,{}"]+)')


def parse_array_text(text: str, item: Callable[[str], object]) -> list:
    """PostgreSQL's array literal ``{1,2,NULL}`` / ``{{"a b",c}}`` -> nested Python lists."""
    stack: list[list] = [[]]
    for match in _ARRAY_TOKEN.finditer(text.strip()):
        opening, closing, quoted, bare = match.groups()
        if opening:
            stack.append([])
        elif closing:
            done = stack.pop()
            stack[-1].append(done)
        elif quoted is not None:
            stack[-1].append(item(re.sub(r"\\(.)", r"\1", quoted)))
        elif bare is not None and bare.strip():
            bare = bare.strip()
            stack[-1].append(None if bare.upper() == "NULL" else item(bare))
    return stack[0][0] if stack[0] else []
