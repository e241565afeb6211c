"""COPY ... FROM STDIN / TO STDOUT: PostgreSQL's text and CSV formats over the wire.

``parse`` reads the statement (sqlglot's tokens, the new ``WITH (FORMAT csv, ...)``
syntax and the old ``WITH CSV HEADER`` one); a COPY that names a file is not ours
and goes to DuckDB as written.

In: the client's CopyData is spooled to a temporary file as it comes (``Spool``,
bytes only), then one ``INSERT INTO t (...) SELECT ... FROM read_csv(spool, ...)``
runs through the session, so DuckDB parses it in bulk and index maintenance and the
transaction path apply; a CopyFail, a hang-up or a bad line insert nothing.
PostgreSQL's text format is read with DuckDB's CSV reader without quoting (``\\N``
nulls, tab-separated); its backslash escapes are decoded in SQL, and only in values
that hold a backslash. Values in PostgreSQL's spelling (``t``/``f``, ``{1,2}``,
``\\x0a``) become DuckDB's in the same SELECT.

Out: the query's Arrow batches are encoded column by column with the same text
encoders as a SELECT (``columns.encode_column``), escaped or quoted with Arrow
kernels and framed as one CopyData message per row (``Encoder``).
"""

from __future__ import annotations

import codecs
import os
import re
import tempfile
from dataclasses import dataclass, field

from sqlglot.tokens import TokenType

from mldb.frontend import split_statements

_BOOL_WORDS = {"true": True, "on": True, "1": True, "false": False, "off": False, "0": False}
_VALUE_OPTIONS = ("delimiter", "null", "quote", "escape", "encoding", "default")
_LIST_OPTIONS = ("force_quote", "force_not_null", "force_null")
_ENCODINGS = {"utf8": "utf-8", "utf-8": "utf-8", "unicode": "utf-8", "sql_ascii": "utf-8", "latin1": "latin-1",
              "iso88591": "latin-1", "iso-8859-1": "latin-1"}


class CopyError(Exception):
    """A COPY the server refuses before any data moves: message and SQLSTATE."""

    def __init__(self, message: str, sqlstate: str):
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass
class Options:
    format: str = "text"
    delimiter: str | None = None
    null: str | None = None
    header: bool | str = False  # True, False or "match"
    quote: str | None = None
    escape: str | None = None
    encoding: str = "utf-8"
    force_quote: list[str] | str = field(default_factory=list)  # column names, or "*"
    force_not_null: list[str] | str = field(default_factory=list)
    force_null: list[str] | str = field(default_factory=list)


@dataclass
class Copy:
    incoming: bool  # FROM STDIN (else TO STDOUT)
    table: str | None  # the table's name as written (None for COPY (query) TO STDOUT)
    columns: list[str] | None  # the column list as written
    query: str | None  # COPY (query) TO STDOUT
    options: Options
    where: str | None = None  # COPY ... FROM STDIN WHERE condition

    def select_sql(self) -> str:
        """The query whose rows COPY TO STDOUT sends."""
        if self.query is not None:
            return self.query
        return f"SELECT {', '.join(self.columns) if self.columns else '*'} FROM {self.table}"


# -- parsing the statement --------------------------------------------------------------------


def parse(sql: str) -> Copy | None:
    """The COPY statement if it reads from STDIN or writes to STDOUT; None for any other COPY."""
    statements = split_statements(sql)
    if not statements or len(statements) != 1 or statements[0].first_word != "COPY":
        return None
    return _Reader(sql, statements[0].tokens).copy()


class _Reader:
    """A walk over the tokens of ``COPY target [(columns)] FROM STDIN|TO STDOUT [WITH] [options] [WHERE ...]``."""

    def __init__(self, sql: str, tokens):
        self.sql, self.tokens, self.pos = sql, tokens, 1

    def copy(self) -> Copy | None:
        query = table = columns = None
        if self._is(TokenType.L_PAREN):
            query = self._parenthesised_text()
        else:
            table = self._name()
            if self._is(TokenType.L_PAREN):
                columns = self._name_list()
        direction = self._word()
        if direction not in ("FROM", "TO") or self._word() not in ("STDIN", "STDOUT"):
            return None  # a file or a program: DuckDB's COPY
        if query is not None and direction == "FROM":
            raise CopyError("COPY FROM a query is not possible: name a table", "42601")
        self._take("WITH")
        options = self._new_options() if self._is(TokenType.L_PAREN) else self._old_options()
        where = None
        if self._take("WHERE"):
            if direction != "FROM":
                raise CopyError("WHERE clause not allowed with COPY TO", "0A000")
            where = self.sql[self.tokens[self.pos].start:] if self.pos < len(self.tokens) else None
            self.pos = len(self.tokens)
        if self.pos < len(self.tokens):
            raise CopyError(f'syntax error in COPY at or near "{self.tokens[self.pos].text}"', "42601")
        return Copy(direction == "FROM", table, columns, query, _checked(options, direction == "FROM"), where)

    # -- tokens
    def _is(self, kind) -> bool:
        return self.pos < len(self.tokens) and self.tokens[self.pos].token_type == kind

    def _word(self) -> str:
        if self.pos >= len(self.tokens):
            raise CopyError("syntax error at end of COPY statement", "42601")
        self.pos += 1
        return self.tokens[self.pos - 1].text.upper()

    def _take(self, word: str) -> bool:
        if self.pos < len(self.tokens) and self.tokens[self.pos].text.upper() == word \
                and self.tokens[self.pos].token_type not in (TokenType.STRING, TokenType.IDENTIFIER):
            self.pos += 1
            return True
        return False

    def _source(self, first: int, last: int) -> str:
        return self.sql[self.tokens[first].start : self.tokens[last].end + 1]

    def _parenthesised_text(self) -> str:
        depth, start = 0, self.pos
        for index in range(self.pos, len(self.tokens)):
            depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(self.tokens[index].token_type, 0)
            if depth == 0:
                self.pos = index + 1
                return self._source(start + 1, index - 1) if index > start + 1 else ""
        raise CopyError("syntax error in COPY: unbalanced parentheses", "42601")

    def _name(self) -> str:
        start = self.pos
        self._word()
        while self._is(TokenType.DOT):
            self.pos += 1
            self._word()
        return self._source(start, self.pos - 1)

    def _name_list(self) -> list[str]:
        self.pos += 1  # (
        names = []
        while True:
            names.append(self._source(self.pos, self.pos))
            self._word()
            if self._is(TokenType.R_PAREN):
                self.pos += 1
                return names
            if not self._is(TokenType.COMMA):
                raise CopyError("syntax error in the column list of COPY", "42601")
            self.pos += 1

    def _value(self):
        """An option's value: a string, number, word, ``*`` or a parenthesised list of names."""
        token = self.tokens[self.pos]
        if token.token_type == TokenType.L_PAREN:
            return [_unquoted(name) for name in self._name_list()]
        self.pos += 1
        if token.token_type in (TokenType.STRING, TokenType.BYTE_STRING, TokenType.NATIONAL_STRING):
            source = self.sql[token.start : token.end + 1]
            return codecs.decode(token.text, "unicode_escape") if source[:1] in "eE" else token.text
        return token.text

    # -- the two option syntaxes
    def _new_options(self) -> dict:
        """``( name [value] [, ...] )`` (PostgreSQL 9.0 and later)."""
        self.pos += 1
        given = {}
        while not self._is(TokenType.R_PAREN):
            name = self._word().lower()
            value = True if self._is(TokenType.COMMA) or self._is(TokenType.R_PAREN) else self._value()
            _add(given, name, value)
            if self._is(TokenType.COMMA):
                self.pos += 1
        self.pos += 1
        return given

    def _old_options(self) -> dict:
        """``BINARY``, ``CSV``, ``HEADER``, ``DELIMITER [AS] 'c'``, ``FORCE QUOTE a, b`` ... (before 9.0; psql's
        ``\\copy ... csv header`` sends these)."""
        given = {}
        while self.pos < len(self.tokens) and not self._take_peek("WHERE"):
            word = self._word()
            if word in ("BINARY", "CSV"):
                _add(given, "format", word.lower())
            elif word in ("HEADER", "FREEZE", "OIDS"):
                _add(given, word.lower(), True)
            elif word in ("DELIMITER", "NULL", "QUOTE", "ESCAPE", "ENCODING"):
                self._take("AS")
                _add(given, word.lower(), self._value())
            elif word == "FORCE":
                _add(given, *self._old_force())
            else:
                raise CopyError(f'syntax error in COPY at or near "{self.tokens[self.pos - 1].text}"', "42601")
        return given

    def _take_peek(self, word: str) -> bool:
        return self.tokens[self.pos].text.upper() == word

    def _old_force(self) -> tuple[str, object]:
        words = [self._word()]
        if words[0] == "NOT":
            words.append(self._word())
        name = "force_" + "_".join(words).lower()
        if self._is(TokenType.STAR):
            self.pos += 1
            return name, "*"
        names = [_unquoted(self._source(self.pos, self.pos))]
        self._word()
        while self._is(TokenType.COMMA):
            self.pos += 1
            names.append(_unquoted(self._source(self.pos, self.pos)))
            self._word()
        return name, names


def _add(given: dict, name: str, value) -> None:
    if name in given:
        raise CopyError("conflicting or redundant options", "42601")
    given[name] = value


def _unquoted(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def _checked(given: dict, incoming: bool) -> Options:
    """PostgreSQL's option rules (src/backend/commands/copy.c, ProcessCopyOptions)."""
    options = Options()
    for name, value in given.items():
        if name == "format":
            options.format = str(value).lower()
            if options.format not in ("text", "csv", "binary"):
                raise CopyError(f'COPY format "{value}" not recognized', "22023")
        elif name == "header":
            options.header = "match" if str(value).lower() == "match" else _boolean(name, value)
        elif name in ("freeze", "oids"):
            if _boolean(name, value) and name == "oids":
                raise CopyError("COPY with OIDS is not supported", "0A000")
        elif name in _VALUE_OPTIONS:
            if not isinstance(value, str):
                raise CopyError(f'{name} requires a string value', "42601")
            setattr(options, name, value) if name != "default" else _refuse("DEFAULT")
        elif name in _LIST_OPTIONS:
            setattr(options, name, value if value == "*" or isinstance(value, list) else [str(value).lower()])
        else:
            raise CopyError(f'option "{name}" not recognized', "42601")
    return _defaults(options, incoming)


def _boolean(name: str, value) -> bool:
    if value is True:
        return True
    flag = _BOOL_WORDS.get(str(value).lower())
    if flag is None:
        raise CopyError(f"{name} requires a Boolean value", "22023")
    return flag


def _refuse(what: str) -> None:
    raise CopyError(f"COPY {what} is not supported by mldb serve", "0A000")


def _defaults(options: Options, incoming: bool) -> Options:
    csv = options.format == "csv"
    if options.format == "binary":
        raise CopyError("COPY in binary format is not supported by mldb serve: use FORMAT text or csv", "0A000")
    options.delimiter = options.delimiter if options.delimiter is not None else ("," if csv else "\t")
    options.null = options.null if options.null is not None else ("" if csv else "\\N")
    if len(options.delimiter.encode()) != 1:
        raise CopyError("COPY delimiter must be a single one-byte character", "0A000")
    if options.delimiter in "\r\n" or (not csv and options.delimiter == "\\"):
        raise CopyError("COPY delimiter cannot be newline, carriage return or (in text format) backslash", "22023")
    if "\r" in options.null or "\n" in options.null or options.delimiter in options.null:
        raise CopyError("COPY null representation cannot use newline, carriage return or the delimiter", "22023")
    if not csv and (options.quote is not None or options.escape is not None):
        raise CopyError("COPY quote and escape are available only in CSV mode", "0A000")
    if not csv and (options.force_quote or options.force_not_null or options.force_null):
        raise CopyError("COPY FORCE options are available only in CSV mode", "0A000")
    if options.force_quote and incoming:
        raise CopyError("COPY FORCE_QUOTE only available using COPY TO", "0A000")
    if (options.force_not_null or options.force_null) and not incoming:
        raise CopyError("COPY FORCE_NOT_NULL and FORCE_NULL only available using COPY FROM", "0A000")
    if options.header == "match" and not incoming:
        raise CopyError("cannot use \"match\" with HEADER in COPY TO", "0A000")
    if csv:
        options.quote = '"' if options.quote is None else options.quote
        options.escape = options.quote if options.escape is None else options.escape
        if len(options.quote.encode()) != 1 or len(options.escape.encode()) != 1:
            raise CopyError("COPY quote and escape must be single one-byte characters", "0A000")
        if options.quote == options.delimiter:
            raise CopyError("COPY delimiter and quote must be different", "0A000")
    encoding = _ENCODINGS.get(options.encoding.lower().replace("_", ""), None) \
        or _ENCODINGS.get(options.encoding.lower())
    if encoding is None:
        raise CopyError(f'COPY encoding "{options.encoding}" is not supported (UTF8 or LATIN1)', "0A000")
    options.encoding = encoding
    return options


# -- COPY FROM STDIN: spool, then one INSERT ... SELECT FROM read_csv --------------------------------


class Spool:
    """The incoming CopyData in a temporary file (removed on ``close``).

    In text format a backslash before the delimiter escapes it, which DuckDB's reader does not
    know: such escapes become ``\\xNN`` as they come (C-speed search; only chunks holding one
    are rewritten), and the SQL decoding turns them back into the character."""

    def __init__(self, options: Options):
        handle, self.path = tempfile.mkstemp(prefix="mldb-copy-", suffix=".csv")
        self.file = os.fdopen(handle, "wb", buffering=1 << 20)
        self.size = 0
        self._tail = b""  # the last bytes written (for the end-of-data marker)
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

    def finish(self) -> None:
        """Flush, dropping PostgreSQL's end-of-data line ``\\.`` if the data ends with it."""
        self._put(self._carry)
        self.file.flush()
        for marker in (b"\\.\r\n", b"\\.\n", b"\\."):
            before = self.size - len(marker)
            if self._tail.endswith(marker) and (before == 0 or self._tail[-len(marker) - 1 : -len(marker)] == b"\n"):
                self.file.truncate(before)
                self.size = before
                break
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


def load_sql(copy: Copy, targets: list[tuple[str, str]], path: str) -> str:
    """``INSERT INTO t (cols) SELECT <conversions> FROM read_csv(path, <PostgreSQL's options>)``."""
    options, text = copy.options, copy.options.format == "text"
    names = [name for name, _ in targets]
    force_not_null = _positions(options.force_not_null, names, "FORCE_NOT_NULL")
    force_null = _positions(options.force_null, names, "FORCE_NULL")
    read_types, selects = [], []
    for index, (_, kind) in enumerate(targets):
        typed = _TYPED.match(kind) is not None and index not in force_null
        read_types.append(f"'c{index}': '{kind if typed else 'VARCHAR'}'")
        value = f"c{index}"
        if not typed:
            value = _unescaped(value) if text else value
            value = f"nullif({value}, {_literal(options.null)})" if index in force_null else value
            value = _converted(value, kind)
        selects.append(value)
    settings = {"columns": "{" + ", ".join(read_types) + "}", "delim": _literal(options.delimiter),
                "quote": _literal(options.quote or ""), "escape": _literal(options.escape or ""),
                "nullstr": _literal(options.null), "header": "true" if options.header else "false",
                "auto_detect": "false", "allow_quoted_nulls": "false", "strict_mode": "true",
                "encoding": _literal(options.encoding)}
    if force_not_null:
        settings["force_not_null"] = "[" + ", ".join(f"'c{i}'" for i in force_not_null) + "]"
    reader = f"read_csv({_literal(path)}, " + ", ".join(f"{key} = {value}" for key, value in settings.items()) + ")"
    select = f"SELECT {', '.join(selects)} FROM {reader}"
    if copy.where:
        select = f"SELECT * FROM ({select}) AS copy_rows ({', '.join(names)}) WHERE {copy.where}"
    return f"INSERT INTO {copy.table} ({', '.join(names)}) {select}"


def header_sql(path: str, options: Options, count: int) -> str:
    """The header line's fields (HEADER MATCH compares them with the column names)."""
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(count)) + "}"
    return (f"SELECT * FROM read_csv({_literal(path)}, columns = {columns}, delim = {_literal(options.delimiter)}, "
            f"quote = {_literal(options.quote or '')}, escape = {_literal(options.escape or '')}, header = false, "
            f"auto_detect = false, strict_mode = false, null_padding = true) LIMIT 1")


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


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def clean_error(message: str, copy: Copy, targets: list[tuple[str, str]]) -> str:
    """DuckDB's CSV error as PostgreSQL words it (``COPY t, line 2: ...``, the line as DETAIL), naming
    the table's columns and without DuckDB's advice about read_csv options (which COPY's user did not write)."""
    lines = message.strip().split("\n")
    found = re.search(r"CSV Error on Line: (\d+)", lines[0])
    if found is None:
        return message
    original = next((line for line in lines if line.startswith("Original Line:")), None)
    reasons = [line for line in lines[1:] if line.strip() and not line.startswith("Original Line:")][:1]
    reason = re.sub(r'column "c(\d+)"', lambda m: f"column {targets[int(m.group(1))][0]}", reasons[0]) if reasons \
        else lines[0]
    text = f"COPY {copy.table}, line {found.group(1)}: {reason}"
    return text + (f"\n{original}" if original else "")


# -- COPY TO STDOUT: Arrow batches -> CopyData messages ---------------------------------------------


class Encoder:
    """Rows of PostgreSQL text or CSV, one CopyData message per row, whole batches at a time."""

    def __init__(self, options: Options, names: list[str], kinds: list):
        import pyarrow as pa

        self.options, self.names, self.kinds = options, names, kinds
        self._binary = pa.large_binary()
        quote_all = options.force_quote == "*"
        forced = set(options.force_quote) if isinstance(options.force_quote, list) else set()
        unknown = forced - set(names)
        if unknown:
            raise CopyError(f'FORCE_QUOTE column "{sorted(unknown)[0]}" not referenced by COPY', "42P10")
        self._forced = [quote_all or name in forced for name in names]

    def header(self) -> bytes:
        import pyarrow as pa

        from mldb.server import protocol

        fields = [self._field(pa.array([name.encode()], self._binary), False) for name in self.names]
        line = self.options.delimiter.encode().join(field[0].as_py() for field in fields) + b"\n"
        return protocol.message(b"d", line)

    def rows(self, batch, encode_column) -> bytes:
        import pyarrow as pa
        import pyarrow.compute as pc

        from mldb.server import protocol

        fields = [self._field(_trimmed(encode_column(batch.column(i), kind, 0), kind), self._forced[i])
                  for i, kind in enumerate(self.kinds)]
        separator = pa.scalar(self.options.delimiter.encode(), self._binary)
        lines = pc.binary_join_element_wise(*fields, separator) if len(fields) > 1 else fields[0]
        return protocol.copy_data_rows(lines)

    def _field(self, values, forced: bool):
        """Escape (text) or quote (CSV) the encoded values; NULL becomes the null string."""
        import pyarrow as pa
        import pyarrow.compute as pc

        options = self.options
        null = pa.scalar(options.null.encode(), self._binary)
        if options.format == "text":
            special = "\\\b\f\n\r\t\v" + (options.delimiter if options.delimiter not in "\b\f\n\r\t\v" else "")
            if pc.any(pc.match_substring_regex(values, "[" + re.escape(special) + "]")).as_py():
                for char in special:
                    values = pc.replace_substring(values, char, _TEXT_ESCAPES.get(char, "\\" + char))
            return values.fill_null(null)
        quote, escape = options.quote, options.escape
        needs = pc.match_substring_regex(values, "[" + re.escape(options.delimiter + quote + "\r\n") + "]")
        needs = pc.or_(needs, pc.equal(values, null))
        if forced:
            needs = pc.is_valid(values)
        if not pc.any(needs).as_py():
            return values.fill_null(null)
        escaped = values
        if escape != quote:
            escaped = pc.replace_substring(escaped, escape, escape + escape)
        escaped = pc.replace_substring(escaped, quote, escape + quote)
        mark = pa.scalar(quote.encode(), self._binary)
        quoted = pc.binary_join_element_wise(mark, escaped, mark, pa.scalar(b"", self._binary))
        return pc.if_else(needs, quoted, values).fill_null(null)


def _trimmed(values, kind):
    """Timestamps as PostgreSQL prints them: no trailing zeros in the fraction (``03:04:05``, ``03:04:05.5``)."""
    import pyarrow.compute as pc

    from mldb.server import types

    if kind.oid != types.TIMESTAMP:
        return values
    return pc.replace_substring_regex(values, r"\.0+$|(\.\d*[1-9])0+$", r"\1")


_TEXT_ESCAPES = {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
