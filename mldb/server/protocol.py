"""The PostgreSQL v3 wire protocol: reading frontend messages and building backend ones.

Only bytes live here: no sessions, no SQL. ``read_startup`` / ``read_message`` read
from a socket file; ``Payload`` walks a message body; the ``*_message`` functions
build complete backend messages (type byte, length, body) ready to send.
See https://www.postgresql.org/docs/current/protocol-message-formats.html
"""

from __future__ import annotations

import struct

PROTOCOL_3 = 196608  # 3.0
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102

MAX_STARTUP = 10_000  # as PostgreSQL: a longer startup packet is invalid
MAX_MESSAGE = 1 << 28  # 256 MiB: a longer message is refused and the connection closed
MAX_AUTH_MESSAGE = 65_535  # password and SASL messages, as PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH

_INT32 = struct.Struct("!i")
_HEADER = struct.Struct("!ci")
_INT16 = struct.Struct("!h")


class ProtocolViolation(Exception):
    """The client sent bytes that are not a valid message (SQLSTATE 08P01)."""


class ConnectionClosed(Exception):
    """The client went away (EOF on the socket)."""


def _read_exact(stream, size: int) -> bytes:
    data = stream.read(size)
    if data is not None and len(data) == size:
        return data
    parts, got = [data or b""], len(data or b"")  # an unbuffered (start-up) stream may return less
    while got < size:
        more = stream.read(size - got)
        if not more:
            raise ConnectionClosed()
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def read_startup(stream) -> tuple[int, bytes]:
    """The untyped first packet: (protocol code or request code, rest of the body)."""
    (length,) = _INT32.unpack(_read_exact(stream, 4))
    if length < 8 or length > MAX_STARTUP:
        raise ProtocolViolation(f"invalid length of startup packet: {length}")
    body = _read_exact(stream, length - 4)
    return _INT32.unpack_from(body)[0], body[4:]


def read_message(stream, limit: int = MAX_MESSAGE) -> tuple[bytes, bytes]:
    """One typed frontend message: (type byte, body). A length over ``limit`` is refused before
    anything of the body is read."""
    kind, length = _HEADER.unpack(_read_exact(stream, 5))
    if length < 4 or length > limit:
        raise ProtocolViolation(f"invalid message length {length} for message type {kind!r}")
    return kind, _read_exact(stream, length - 4)


def startup_parameters(body: bytes) -> dict[str, str]:
    """``name\\0value\\0 ... \\0`` -> dict."""
    payload, params = Payload(body), {}
    try:
        while (name := payload.cstring()) != "":
            params[name] = payload.cstring()
    except ProtocolViolation:
        raise ProtocolViolation("malformed startup packet: parameters must be name/value pairs ending with a zero byte")
    if payload.pos != len(body):
        raise ProtocolViolation("malformed startup packet: bytes after the parameter list")
    return params


class Payload:
    """A cursor over a message body."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def int16(self) -> int:
        return self._unpack(_INT16, 2)

    def int32(self) -> int:
        return self._unpack(_INT32, 4)

    def _unpack(self, fmt: struct.Struct, size: int) -> int:
        if self.pos + size > len(self.data):
            raise ProtocolViolation("message is shorter than its contents")
        (value,) = fmt.unpack_from(self.data, self.pos)
        self.pos += size
        return value

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolViolation("string without terminating zero byte")
        text = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return text.decode()
        except UnicodeDecodeError:
            raise ProtocolViolation("invalid UTF-8 in message") from None

    def byte(self) -> bytes:
        if self.pos >= len(self.data):
            raise ProtocolViolation("message is shorter than its contents")
        self.pos += 1
        return self.data[self.pos - 1 : self.pos]

    def bytes(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise ProtocolViolation("message is shorter than its contents")
        self.pos += size
        return self.data[self.pos - size : self.pos]

    def int16_list(self) -> list[int]:
        return [self.int16() for _ in range(self.int16())]

    def int32_list(self) -> list[int]:
        return [self.int32() for _ in range(self.int16())]

    def values(self) -> list[bytes | None]:
        """Bind parameter values: int16 count, then (int32 length or -1 for NULL, bytes)."""
        out = []
        for _ in range(self.int16()):
            size = self.int32()
            out.append(None if size == -1 else self.bytes(size))
        return out


# -- backend messages ----------------------------------------------------------------------


def message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + _INT32.pack(len(body) + 4) + body


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def authentication(code: int, data: bytes = b"") -> bytes:
    """AuthenticationOk (0), CleartextPassword (3), MD5Password (5, salt), SASL (10/11/12)."""
    return message(b"R", _INT32.pack(code) + data)


def parameter_status(name: str, value: str) -> bytes:
    return message(b"S", cstr(name) + cstr(value))


def backend_key_data(pid: int, secret: int) -> bytes:
    return message(b"K", struct.pack("!ii", pid, secret))


def ready_for_query(status: bytes) -> bytes:
    return message(b"Z", status)


def row_description(fields: list[tuple[str, int, int, int, int]]) -> bytes:
    """fields: (name, type oid, type size, type modifier, format code)."""
    parts = [_INT16.pack(len(fields))]
    for name, oid, size, modifier, fmt in fields:
        parts.append(cstr(name) + struct.pack("!ihihih", 0, 0, oid, size, modifier, fmt))
    return message(b"T", b"".join(parts))


def parameter_description(oids: list[int]) -> bytes:
    return message(b"t", struct.pack(f"!h{len(oids)}i", len(oids), *oids))


def data_row(values: list[bytes | None]) -> bytes:
    parts = [_INT16.pack(len(values))]
    for value in values:
        parts.append(b"\xff\xff\xff\xff" if value is None else _INT32.pack(len(value)) + value)
    body = b"".join(parts)
    return b"D" + _INT32.pack(len(body) + 4) + body


def command_complete(tag: str) -> bytes:
    return message(b"C", cstr(tag))


def error_fields(kind: bytes, fields: dict[str, str]) -> bytes:
    """ErrorResponse (b'E') or NoticeResponse (b'N'); fields keyed by one-letter codes."""
    body = b"".join(code.encode() + cstr(value) for code, value in fields.items() if value is not None)
    return message(kind, body + b"\0")


def copy_response(kind: bytes, columns: int) -> bytes:
    """CopyInResponse (b'G') or CopyOutResponse (b'H'): text format for every column."""
    return message(kind, struct.pack(f"!bh{columns}h", 0, columns, *([0] * columns)))


PARSE_COMPLETE = message(b"1")
BIND_COMPLETE = message(b"2")
CLOSE_COMPLETE = message(b"3")
NO_DATA = message(b"n")
EMPTY_QUERY = message(b"I")
PORTAL_SUSPENDED = message(b"s")
COPY_DONE = message(b"c")


def data_rows(fields: list) -> bytes:
    """DataRow messages for whole columns at once: ``fields`` are Arrow ``large_binary`` arrays
    of equal length holding each value's wire bytes (NULL for SQL NULL)."""
    import numpy as np
    import pyarrow.compute as pc

    count = len(fields[0])
    sizes = np.full(count, 6, dtype=np.int64)  # the length word itself and the column count
    parts = []
    for field in fields:
        lengths = pc.binary_length(field).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        prefix = _as_binary(lengths.astype(">i4").tobytes(), 4, count)
        parts.append(pc.binary_join_element_wise(prefix, field.fill_null(b""), _EMPTY()))
        sizes += 4 + np.maximum(lengths, 0)
    header = np.zeros(count, dtype=[("kind", "S1"), ("size", ">i4"), ("columns", ">i2")])
    header["kind"], header["size"], header["columns"] = b"D", sizes, len(fields)
    rows = pc.binary_join_element_wise(_as_binary(header.tobytes(), 7, count), *parts, _EMPTY())
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)[rows.offset : rows.offset + count + 1]
    return memoryview(rows.buffers()[2])[offsets[0] : offsets[-1]].tobytes()


def fixed_data_rows(columns: list) -> bytes:
    """DataRow messages for columns of fixed-width binary values without NULLs: ``columns`` are
    numpy arrays of equal length, each value already in its wire form (big-endian). Every row
    has the same layout, so the messages are one packed numpy structured array."""
    import numpy as np

    fields = [("kind", "S1"), ("size", ">i4"), ("columns", ">i2")]
    for number, values in enumerate(columns):
        fields += [(f"length{number}", ">i4"), (f"value{number}", values.dtype)]
    rows = np.empty(len(columns[0]), dtype=fields)
    rows["kind"], rows["size"], rows["columns"] = b"D", rows.dtype.itemsize - 1, len(columns)
    for number, values in enumerate(columns):
        rows[f"length{number}"] = values.dtype.itemsize
        rows[f"value{number}"] = values
    return rows.tobytes()


def copy_data_rows(lines) -> bytes:
    """One CopyData message per row: ``lines`` is an Arrow ``large_binary`` array of rows
    without their newline."""
    import numpy as np
    import pyarrow.compute as pc

    count = len(lines)
    header = np.zeros(count, dtype=[("kind", "S1"), ("size", ">i4")])
    header["kind"], header["size"] = b"d", pc.binary_length(lines).to_numpy(zero_copy_only=False) + 5
    newline = _as_binary(b"\n" * count, 1, count)
    rows = pc.binary_join_element_wise(_as_binary(header.tobytes(), 5, count), lines, newline, _EMPTY())
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)[rows.offset : rows.offset + count + 1]
    return memoryview(rows.buffers()[2])[offsets[0] : offsets[-1]].tobytes()


def _as_binary(data: bytes, width: int, count: int):
    import pyarrow as pa

    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), count, [None, pa.py_buffer(data)])
    return fixed.cast(pa.large_binary())


def _EMPTY():
    import pyarrow as pa

    return pa.scalar(b"", pa.large_binary())
