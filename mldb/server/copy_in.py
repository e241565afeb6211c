"""COPY ... FROM STDIN: spool the client's CopyData, then one INSERT ... SELECT FROM read_csv.

The CopyData is written to a temporary file as it comes (``Spool``, bytes only), then one
``INSERT INTO t (...) SELECT ... FROM read_csv(spool, ...)`` runs through the session, so
DuckDB parses it in bulk and index maintenance and the transaction path apply; a
CopyFail, a hang-up or a bad line insert nothing. PostgreSQL's text format is read with
DuckDB's CSV reader without quoting (``\\N`` nulls, tab-separated); its backslash escapes
are decoded in SQL, and only in values that hold a backslash. Values in PostgreSQL's
spelling (``t``/``f``, ``{1,2}``, ``\\x0a``) become DuckDB's in the same SELECT.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from typing import NamedTuple

import duckdb

from mldb import errors

from mldb.server.copy import Copy, CopyError, Options, literal


_LONG = 1 << 20  # a line longer than this is measured exactly and read with DuckDB's single-threaded reader
_MAX_LINE = 2_000_000  # DuckDB's default max_line_size
_BATCH = 65_536  # rows per Arrow batch from the private reader
_STREAM_FAILED = "reading the stream registered as"
# an exponent of 30 and beyond (a literal first letter keeps the search at C speed: [eE] would not)
_HUGE = (re.compile(rb"e[-+]?0*(?:[3-9][0-9]|[0-9]{3})"), re.compile(rb"E[-+]?0*(?:[3-9][0-9]|[0-9]{3})"))
# PostgreSQL's name and the least value that rounds past the type's largest
_FLOAT_LIMITS = {"DOUBLE": ("double precision", "1.7976931348623157e308"), "FLOAT": ("real", "3.4028235677973366e38")}


ROWS = "mldb_copy_rows"  # the spool's rows as a statement reads them (see ``Spooled``)


class Spooled(NamedTuple):
    """A statement over the spool's rows: ``sql`` reads them as ``ROWS``, which ``reader`` (a
    ``read_csv(...)`` call) yields. The reader runs in a private DuckDB instance, its Arrow
    stream registered as ``ROWS`` on the client's connection for that one statement: the
    served database reads no file outside the client's directories (mldb.server.access), and
    the spool is the server's file, not the client's."""

    sql: str
    reader: str

    @contextlib.contextmanager
    def registered(self, session):
        """Run ``sql`` through ``session`` inside this block; errors of a lazily read batch keep
        DuckDB's class (the stream wraps them in an InvalidInput error)."""
        private = duckdb.connect()
        try:
            try:
                stream = private.sql(f"SELECT * FROM {self.reader}").to_arrow_reader(_BATCH)
            except duckdb.Error as error:
                raise errors.translate(error) from None
            session.register(ROWS, stream)
            try:
                yield self.sql
            except errors.Error as error:
                raise _unwrapped(error) from None
            finally:
                with contextlib.suppress(errors.Error):
                    session.unregister(ROWS)
        finally:
            private.close()


def _unwrapped(error: errors.Error) -> errors.Error:
    message = str(error)
    if _STREAM_FAILED not in message:
        return error
    inner = message.split("IOError: ", 1)[-1]
    return errors.DataError(inner, sqlstate="22P02" if inner.startswith("Conversion Error") else "22P04")


class Spool:
    """The incoming CopyData in a temporary file (removed on ``close``).

    In text format a backslash before the delimiter escapes it, which DuckDB's reader does not
    know: such escapes become ``\\xNN`` as they come (C-speed search; only chunks holding one
    are rewritten), and the SQL decoding turns them back into the character."""

    def __init__(self, options: Options, floats: bool = False):
        handle, self.path = tempfile.mkstemp(prefix="mldb-copy-", suffix=".csv")
        self.file = os.fdopen(handle, "wb", buffering=1 << 20)
        self.size = 0
        self.lines = 0  # newline-ended lines so far (a last line without one is counted by ``finish``)
        self.longest = 0  # the longest physical line seen, in bytes (past _LONG: read single-threaded)
        self.quoted = False  # a CSV quote byte was seen (a record may then span lines)
        self._open_line = 0  # bytes of the line still open at the end of the data so far
        self._quote = (options.quote or "").encode()[:1] if options.format == "csv" else b""
        self._tail = b""  # the last bytes written (for the end-of-data marker)
        self.huge = False  # a number that may be out of a float's range was seen (checked after the load)
        self._huge = _HUGE if floats else None
        self._carry = b""  # trailing backslashes held back until the next chunk
        delimiter = options.delimiter.encode()
        self._escaped = (b"\\" + delimiter) if options.format == "text" else None
        self._hex = b"\\x%02x" % delimiter[0]
        self._pattern = re.compile(rb"\\(\\|" + re.escape(delimiter) + rb")") if self._escaped else None

    def write(self, data: bytes) -> None:
        if self._escaped is not None:
            data = self._carry + data
            kept = len(data) - len(data.rstrip(b"\\"))
            self._carry, data = (data[len(data) - kept:], data[: len(data) - kept]) if kept else (b"", data)
            if self._escaped in data:
                data = self._pattern.sub(lambda m: b"\\\\" if m.group(1) == b"\\" else self._hex, data)
        self._put(data)

    def _put(self, data: bytes) -> None:
        if data:
            self.file.write(data)
            self.size += len(data)
            self._tail = (self._tail + data)[-4:]
            self._measure(data)

    def _measure(self, data: bytes) -> None:
        """Count the lines and measure the longest one (exactly when it ends a chunk or spans chunks;
        inside a chunk only whether it passes ``_LONG``) at C speed: bytes.count/find, no loop per line."""
        self.quoted = self.quoted or (bool(self._quote) and self._quote in data)
        if self._huge is not None and not self.huge:
            self.huge = self._huge[0].search(data) is not None or (b"E" in data and self._huge[1].search(data) is not None)
        newlines = data.count(b"\n")
        if not newlines:
            self._open_line += len(data)
            self.longest = max(self.longest, self._open_line)
            return
        self.lines += newlines
        first, last = data.find(b"\n"), data.rfind(b"\n")
        self.longest = max(self.longest, self._open_line + first)
        if last - first > _LONG >= self.longest:  # a line over _LONG holds a newline-free aligned half-window
            half = _LONG // 2
            if any(data.find(b"\n", start, start + half) == -1 for start in range(first + 1, last - half + 1, half)):
                self.longest = _LONG + 1
        self._open_line = len(data) - last - 1
        self.longest = max(self.longest, self._open_line)

    def finish(self) -> None:
        """Flush, dropping PostgreSQL's end-of-data line ``\\.`` if the data ends with it."""
        self._put(self._carry)
        self.file.flush()
        for marker in (b"\\.\r\n", b"\\.\n", b"\\."):
            before = self.size - len(marker)
            if self._tail.endswith(marker) and (before == 0 or self._tail[-len(marker) - 1 : -len(marker)] == b"\n"):
                self.file.truncate(before)
                self.size, self._open_line = before, 0
                self.lines -= marker.count(b"\n")
                break
        self.lines += 1 if self._open_line else 0
        self.file.close()

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# DuckDB types read as typed columns (their text has no backslash); the rest are read as VARCHAR
_TYPED = re.compile(r"^(BOOLEAN|TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|"
                    r"FLOAT|DOUBLE|DECIMAL\(\d+,\d+\)|DATE|TIME|TIMESTAMP|TIMESTAMP_S|TIMESTAMP_MS|TIMESTAMP_NS|"
                    r"TIMESTAMP WITH TIME ZONE|TIME WITH TIME ZONE|INTERVAL|UUID)$")
# PostgreSQL text-format escapes (\b \f \n \r \t \v, \ooo, \xhh, \c = c) decoded to UTF-8 bytes
_PIECES = r"'(?s)\\(?:[0-7]{1,3}|x[0-9A-Fa-f]{1,2}|.)|[^\\]+|\\$'"
_ESCAPE_HEX = ("CASE WHEN p[1] <> '\\' OR p = '\\' THEN hex(p) "
               "WHEN p = '\\b' THEN '08' WHEN p = '\\f' THEN '0C' WHEN p = '\\n' THEN '0A' "
               "WHEN p = '\\r' THEN '0D' WHEN p = '\\t' THEN '09' WHEN p = '\\v' THEN '0B' "
               "WHEN regexp_full_match(p, '\\\\x[0-9A-Fa-f]+') THEN lpad(p[3:], 2, '0') "
               "WHEN regexp_full_match(p, '\\\\[0-7]+') THEN printf('%02X', ((ascii(lpad(p[2:], 3, '0')[1]) - 48) * 64 "
               "+ (ascii(lpad(p[2:], 3, '0')[2]) - 48) * 8 + ascii(lpad(p[2:], 3, '0')[3]) - 48) % 256) "
               "ELSE hex(p[2:]) END")


def columns_sql(description) -> list[tuple[str, str]]:
    """(quoted name, DuckDB type) of the target columns, from a ``SELECT cols FROM t LIMIT 0``."""
    return [('"' + column[0].replace('"', '""') + '"', str(column[1])) for column in description]


def load_sql(copy: Copy, targets: list[tuple[str, str]], path: str, spool: Spool | None = None) -> Spooled:
    """``INSERT INTO t (cols) SELECT <conversions> FROM rows``, rows being ``read_csv(path,
    <PostgreSQL's options>)``.

    DuckDB's reader silently reads nothing from a line over about 33 MB past its ``max_line_size``
    (and refuses one over 2 MB): PostgreSQL takes fields up to 1 GB, so the limit is the whole
    spool's size (a CSV record may span lines; the limit costs nothing when unused), and a long
    line is read single-threaded (the parallel reader cannot take one over its buffer)."""
    reader, selects, _ = _reading(copy, targets, path, spool)
    names = [name for name, _ in targets]
    select = f"SELECT {', '.join(selects)} FROM {ROWS}"
    if copy.where:
        select = f"SELECT * FROM ({select}) AS copy_rows ({', '.join(names)}) WHERE {copy.where}"
    return Spooled(f"INSERT INTO {copy.table} ({', '.join(names)}) {select}", reader)


def locate_sql(copy: Copy, targets: list[tuple[str, str]], path: str, spool: Spool) -> Spooled | None:
    """The first row whose value (read as text) does not convert to its column's type: ``line,
    column index, the text as sent``. Run only after the load failed on a conversion, to name
    the line and the user's spelling (``{1,2,3}``, not mldb's ``[1,2,3]``)."""
    reader, selects, texts = _reading(copy, targets, path, spool, parallel=False)
    if not texts:
        return None
    checks = [(index, f"TRY({selects[index]}) IS NULL AND {pre} IS NOT NULL") for index, pre in texts.items()]
    which = "CASE " + " ".join(f"WHEN {check} THEN {index}" for index, check in checks) + " END"
    raw = "CASE " + " ".join(f"WHEN {check} THEN c{index}" for index, check in checks) + " END"
    return Spooled(f"SELECT line, bad, raw FROM (SELECT row_number() OVER () AS line, {which} AS bad, "
                   f"{raw} AS raw FROM {ROWS}) WHERE bad IS NOT NULL ORDER BY line LIMIT 1", reader)


def located_error(copy: Copy, targets: list[tuple[str, str]], message: str, found: tuple) -> str:
    line, index, raw = found
    name, kind = targets[index]
    reason = re.sub(r"with value '.*?' can't", f"with value '{shortened(str(raw))}' can't", message.split("\n")[0])
    return (f'COPY {copy.table}, line {line + (1 if copy.options.header else 0)}, column {name[1:-1]}: '
            f'invalid input value for type {kind}: "{shortened(str(raw))}"\n{reason}')


def _reading(copy: Copy, targets, path: str, spool: Spool | None, parallel: bool = True):
    """``read_csv(path, <PostgreSQL's options>)``, each column's conversion to its type, and the
    text (before conversion) of the columns converted in SQL."""
    options, text = copy.options, copy.options.format == "text"
    names = [name for name, _ in targets]
    force_not_null = _positions(options.force_not_null, names, "FORCE_NOT_NULL")
    force_null = _positions(options.force_null, names, "FORCE_NULL")
    read_types, selects, texts = [], [], {}
    for index, (_, kind) in enumerate(targets):
        typed = _TYPED.match(kind) is not None and index not in force_null
        read_types.append(f"'c{index}': '{kind if typed else 'VARCHAR'}'")
        value = f"c{index}"
        if not typed:
            value = _unescaped(value) if text else value
            value = f"nullif({value}, {literal(options.null)})" if index in force_null else value
            texts[index] = value
            value = _converted(value, kind)
        selects.append(value)
    settings = {"columns": "{" + ", ".join(read_types) + "}", "delim": literal(options.delimiter),
                "quote": literal(options.quote or ""), "escape": literal(options.escape or ""),
                "nullstr": literal(options.null), "header": "true" if options.header else "false",
                "auto_detect": "false", "allow_quoted_nulls": "false", "strict_mode": "true",
                "encoding": literal(options.encoding),
                "max_line_size": str(max(_MAX_LINE, spool.size + 2) if spool else _MAX_LINE)}
    if not parallel or (spool is not None and spool.longest > _LONG):
        settings["parallel"] = "false"
    if force_not_null:
        settings["force_not_null"] = "[" + ", ".join(f"'c{i}'" for i in force_not_null) + "]"
    reader = f"read_csv({literal(path)}, " + ", ".join(f"{key} = {value}" for key, value in settings.items()) + ")"
    return reader, selects, texts


def header_sql(path: str, options: Options, count: int) -> Spooled:
    """The header line's fields (HEADER MATCH compares them with the column names)."""
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(count)) + "}"
    return Spooled(f"SELECT * FROM {ROWS} LIMIT 1",
                   f"read_csv({literal(path)}, columns = {columns}, delim = {literal(options.delimiter)}, "
                   f"quote = {literal(options.quote or '')}, escape = {literal(options.escape or '')}, header = false, "
                   f"auto_detect = false, strict_mode = false, null_padding = true)")


def _positions(wanted, names: list[str], option: str) -> set[int]:
    if wanted == "*":
        return set(range(len(names)))
    plain = [name[1:-1].replace('""', '"') for name in names]
    found = set()
    for name in wanted:
        if name not in plain:
            raise CopyError(f'{option} column "{name}" not referenced by COPY', "42P10")
        found.add(plain.index(name))
    return found


def _unescaped(value: str) -> str:
    pieces = f"regexp_extract_all({value}, {_PIECES})"
    decoded = f"decode(unhex(array_to_string(list_transform({pieces}, lambda p: {_ESCAPE_HEX}), '')))"
    return f"(CASE WHEN strpos({value}, '\\') = 0 THEN {value} ELSE {decoded} END)"


def _converted(value: str, kind: str) -> str:
    """PostgreSQL's spelling of a value read as VARCHAR -> the column's DuckDB type."""
    if kind == "BLOB":
        return f"(CASE WHEN starts_with({value}, '\\x') THEN unhex({value}[3:]) ELSE CAST({value} AS BLOB) END)"
    if kind.endswith("]"):  # {1,2,3} -> [1,2,3]; unquoted inner braces of nested arrays too
        return (f"CAST(CASE WHEN NOT starts_with({value}, '{{') THEN {value} WHEN strpos({value}, '\"') = 0 "
                f"THEN translate({value}, '{{}}', '[]') ELSE '[' || {value}[2:-2] || ']' END AS {kind})")
    return value


_REASONS = {"Value with unterminated quote found.": "unterminated CSV quoted field"}  # PostgreSQL's words


def clean_error(message: str, copy: Copy, targets: list[tuple[str, str]]) -> str:
    """DuckDB's CSV error as PostgreSQL words it (``COPY t, line 2: ...``, the line as DETAIL, cut
    short), naming the table's columns and without DuckDB's advice about read_csv options (which
    COPY's user did not write). DuckDB's message is the error line, ``Original Line: ...`` (which may
    span lines), the reason, a blank line and the advice."""
    found = re.search(r"CSV Error on Line: (\d+)", message)
    if found is None:
        return message
    block = message[found.end():].lstrip("\n").split("\n\n")[0].split("\n")
    original, reason = None, None
    if block and block[0].startswith("Original Line:"):
        original, reason = "\n".join(block[:-1]) or block[0], block[-1] if len(block) > 1 else None
    elif block:
        reason = block[0]
    reason = _REASONS.get(reason, reason) if reason else message.split("\n")[0]
    reason = re.sub(r'column "c(\d+)"', lambda m: f"column {targets[int(m.group(1))][0]}", reason)
    text = f"COPY {copy.table}, line {found.group(1)}: {shortened(reason)}"
    return text + (f"\n{shortened(original)}" if original else "")


def shortened(text: str, keep: int = 200) -> str:
    """A message's copy of a line or value, cut to its first ``keep`` characters (a field may be 1 GB)."""
    return text if len(text) <= keep else text[:keep] + "..."


def check_count(copy: Copy, spool: Spool, inserted: int) -> None:
    """Every line sent is a row (unless WHERE filters or CSV quotes let a row span lines): a
    reader that skipped lines must not pass for success (DuckDB's reader has dropped long lines
    and skips blank ones)."""
    if copy.where or spool.quoted:
        return
    sent = spool.lines - (1 if copy.options.header else 0)
    if inserted != max(sent, 0):
        raise CopyError(f"COPY {copy.table}: {max(sent, 0)} lines were sent but {inserted} rows were read "
                        "(a blank line, or a line the reader could not take); nothing was inserted", "22P04")


def range_sql(copy: Copy, targets: list[tuple[str, str]], path: str, spool: Spool) -> Spooled | None:
    """The first float value out of its type's range, as ``line, column index, text`` (DuckDB reads
    ``1e400`` as Infinity; PostgreSQL refuses it: 22003). Only when the spool holds a huge exponent."""
    floats = [(index, kind) for index, (_, kind) in enumerate(targets) if kind in _FLOAT_LIMITS]
    if not spool.huge or not floats:
        return None
    every = [(name, "VARCHAR") for name, _ in targets]
    reader, _, _ = _reading(copy, every, path, spool, parallel=False)
    checks = [(index, f"abs(TRY_CAST(c{index} AS DOUBLE)) > {_FLOAT_LIMITS[kind][1]} AND NOT "
                      f"regexp_matches(c{index}, '^\\s*[-+]?inf', 'i')") for index, kind in floats]
    which = "CASE " + " ".join(f"WHEN {check} THEN {index}" for index, check in checks) + " END"
    raw = "CASE " + " ".join(f"WHEN {check} THEN c{index}" for index, check in checks) + " END"
    return Spooled(f"SELECT line, bad, raw FROM (SELECT row_number() OVER () AS line, {which} AS bad, "
                   f"{raw} AS raw FROM {ROWS}) WHERE bad IS NOT NULL ORDER BY line LIMIT 1", reader)


def range_error(copy: Copy, targets: list[tuple[str, str]], found: tuple) -> CopyError:
    line, index, raw = found
    name, kind = targets[index]
    return CopyError(f'COPY {copy.table}, line {line + (1 if copy.options.header else 0)}, column {name[1:-1]}: '
                     f'"{shortened(str(raw))}" is out of range for type {_FLOAT_LIMITS[kind][0]}', "22003")


