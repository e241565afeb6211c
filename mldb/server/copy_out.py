"""COPY ... TO STDOUT: the query's rows as PostgreSQL text or CSV, one CopyData message per row.

The query runs through the session as any SELECT; its Arrow batches go through one
``SELECT <line> FROM copy_rows`` on a private in-memory DuckDB connection, which spells
each value as PostgreSQL does (``t``/``f``, ``\\x0aff``, ``{1,2}``, ``NaN``, no ``.0`` on
whole doubles), escapes (text) or quotes (CSV) it and joins the row; ``protocol.copy_data_rows``
frames the lines. DuckDB does the per-value work in C++, in parallel; Python sees batches.
"""

from __future__ import annotations

import re

from mldb.server import protocol
from mldb.server.copy import CopyError, Options, literal

_BATCH = 65_536
_INTEGERS = frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                       "UBIGINT", "UHUGEINT"})
# types whose text holds only digits, letters, blanks and . : + - (nothing to escape or quote)
_PLAIN = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|FLOAT|"
                    r"DOUBLE|DECIMAL\(\d+,\d+\)|DATE|TIME|TIMESTAMP|TIMESTAMP_S|TIMESTAMP_MS|TIMESTAMP_NS|"
                    r"TIMESTAMP WITH TIME ZONE|TIME WITH TIME ZONE|INTERVAL|UUID|BOOLEAN)$")
_STRINGS = re.compile(r"^(VARCHAR|JSON|ENUM\(.*\))$")
_TEXT_ESCAPES = (("\\", "\\\\"), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\b", "\\b"), ("\f", "\\f"),
                 ("\v", "\\v"))


class Formatter:
    def __init__(self, options: Options, description):
        self.options = options
        self.names = [column[0] for column in description]
        kinds = [str(column[1]) for column in description]
        forced = options.force_quote
        unknown = set(forced) - set(self.names) if isinstance(forced, list) else set()
        if unknown:
            raise CopyError(f'FORCE_QUOTE column "{sorted(unknown)[0]}" not referenced by COPY', "42P10")
        fields = [self._field(_quoted_name(name), kind, forced == "*" or name in forced)
                  for name, kind in zip(self.names, kinds)]
        self.sql = f"SELECT {(' || ' + literal(options.delimiter) + ' || ').join(fields)} AS line FROM copy_rows"

    def header(self) -> bytes:
        """The column names as a line (a handful of values: Python is fine here)."""
        options = self.options
        if options.format == "text":
            names = [_escape_text(name, options.delimiter) for name in self.names]
        else:
            names = [_quote_csv(name, options) if _needs_quotes(name, options) else name for name in self.names]
        return protocol.message(b"d", (options.delimiter.join(names) + "\n").encode())

    def messages(self, reader, timezone: str):
        """CopyData messages for the rows of ``reader`` (an Arrow RecordBatchReader), a batch at a time."""
        import duckdb
        import pyarrow as pa

        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = ?", [timezone])
            con.register("copy_rows", reader)
            for batch in con.sql(self.sql).to_arrow_reader(_BATCH):
                if batch.num_rows:
                    yield batch.num_rows, protocol.copy_data_rows(batch.column(0).cast(pa.large_binary()))
        finally:
            con.close()

    # -- one column's text
    def _field(self, column: str, kind: str, forced: bool) -> str:
        options, value = self.options, _value(column, kind)
        plain = _PLAIN.match(kind) is not None and not _in_plain_text(options.delimiter)
        if options.format == "text":
            if not plain:
                value = _escaped_sql(value, options.delimiter)
            return f"coalesce({value}, {literal(options.null)})"
        if plain and not forced:
            return f"coalesce({value}, {literal(options.null)})"
        quote, escape = options.quote, options.escape
        inner = f"replace({value}, {literal(escape)}, {literal(escape + escape)})" if escape != quote else value
        quoted = f"{literal(quote)} || replace({inner}, {literal(quote)}, {literal(escape + quote)}) || {literal(quote)}"
        needs = "true" if forced else (f"{value} = {literal(options.null)} OR regexp_matches({value}, "
                                        f"{literal(_char_class(options.delimiter + quote + chr(13) + chr(10)))})")
        return f"(CASE WHEN {value} IS NULL THEN {literal(options.null)} WHEN {needs} THEN {quoted} ELSE {value} END)"


def _value(column: str, kind: str) -> str:
    """The value in PostgreSQL's text spelling (VARCHAR)."""
    if kind in _INTEGERS or kind.startswith("DECIMAL") or _STRINGS.match(kind):
        return f"CAST({column} AS VARCHAR)"
    if kind == "BOOLEAN":
        return f"(CASE {column} WHEN true THEN 't' WHEN false THEN 'f' END)"
    if kind in ("DOUBLE", "FLOAT"):
        return _float_sql(column, "1e15" if kind == "DOUBLE" else "1e6")
    if kind == "BLOB":
        return f"('\\x' || lower(hex({column})))"
    element = _list_element(kind)
    if element is not None:
        item = _array_item(_value("x", element) if not _STRINGS.match(element) else "x", element)
        return f"('{{' || array_to_string(list_transform({column}, lambda x: coalesce({item}, 'NULL')), ',') || '}}')"
    return f"CAST({column} AS VARCHAR)"


def _float_sql(column: str, high: str) -> str:
    """A float as PostgreSQL writes it (as ``types.float_text``). DuckDB's text has the shortest
    digits and PostgreSQL's exponent form below 1e-4 and from 1e16; from ``high`` (1e15 for
    float8, 1e6 for float4) PostgreSQL writes ``1.5e+15`` where DuckDB writes ``1500000000000000.0``."""
    text = f"CAST({column} AS VARCHAR)"
    whole = f"split_part(ltrim({text}, '-'), '.', 1)"
    digits = f"rtrim({whole} || split_part({text}, '.', 2), '0')"
    exponent = (f"(CASE WHEN {column} < 0 THEN '-' ELSE '' END) || {digits}[1] || (CASE WHEN length({digits}) > 1 "
                f"THEN '.' || {digits}[2:] ELSE '' END) || 'e+' || lpad(CAST(length({whole}) - 1 AS VARCHAR), 2, '0')")
    return (f"(CASE WHEN isnan({column}) THEN 'NaN' WHEN isinf({column}) THEN "
            f"(CASE WHEN {column} > 0 THEN 'Infinity' ELSE '-Infinity' END) "
            f"WHEN contains({text}, 'e') THEN {text} WHEN abs({column}) >= {high} THEN {exponent} "
            f"WHEN {column} = 0 AND signbit({column}) THEN '-0' "
            f"WHEN {column} = trunc({column}) THEN CAST(CAST({column} AS BIGINT) AS VARCHAR) "
            f"ELSE {text} END)")


def _list_element(kind: str) -> str | None:
    """The element type of a one-level list or array type (``INTEGER[]``, ``FLOAT[3]``), else None."""
    found = re.match(r"^(.*)\[\d*\]$", kind)
    if found is None or "[" in found.group(1) or "(" in found.group(1) and not found.group(1).startswith("DECIMAL"):
        return None
    return found.group(1)


def _array_item(value: str, element: str) -> str:
    """An array element as PostgreSQL quotes it: ``"a b"``, ``""``, ``"NULL"``, ``"x\\"y"``."""
    if _PLAIN.match(element):
        return value
    return (f"(CASE WHEN {value} = '' OR lower({value}) = 'null' OR regexp_matches({value}, '[{{}},\"\\\\\\s]') "
            f"THEN '\"' || replace(replace({value}, '\\', '\\\\'), '\"', '\\\"') || '\"' ELSE {value} END)")


def _escaped_sql(value: str, delimiter: str) -> str:
    """PostgreSQL's text-format escapes, applied only to values that need them."""
    pairs = list(_TEXT_ESCAPES) + ([(delimiter, "\\" + delimiter)] if delimiter not in "\n\r\t\b\f\v" else [])
    replaced = value
    for char, escape in pairs:
        replaced = f"replace({replaced}, {literal(char)}, {literal(escape)})"
    special = _char_class("".join(char for char, _ in pairs))
    return f"(CASE WHEN regexp_matches({value}, {literal(special)}) THEN {replaced} ELSE {value} END)"


def _in_plain_text(delimiter: str) -> bool:
    """Whether the delimiter can occur in a number, date or time (then every value is checked)."""
    return delimiter.isalnum() or delimiter in ".:+- "


def _char_class(chars: str) -> str:
    return "[" + "".join("\\" + c if not c.isalnum() else c for c in chars if c not in "\n\r\t\b\f\v")  \
        + "".join({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\x08", "\f": "\\f", "\v": "\\v"}.get(c, "")
                  for c in chars) + "]"


def _escape_text(text: str, delimiter: str) -> str:
    for char, escape in _TEXT_ESCAPES:
        text = text.replace(char, escape)
    return text.replace(delimiter, "\\" + delimiter) if delimiter not in "\n\r\t\b\f\v" else text


def _needs_quotes(text: str, options: Options) -> bool:
    return text == options.null or any(c in text for c in options.delimiter + options.quote + "\r\n")


def _quote_csv(text: str, options: Options) -> str:
    quote, escape = options.quote, options.escape
    if escape != quote:
        text = text.replace(escape, escape + escape)
    return quote + text.replace(quote, escape + quote) + quote


def _quoted_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
