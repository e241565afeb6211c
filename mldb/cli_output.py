"""How the ``mldb`` command prints a result: the output modes of DuckDB's CLI.

    table     ASCII grid, headers centred, then "(N rows)" as psql does (the default)
    box       the same grid in Unicode box-drawing characters
    duckbox   DuckDB's own renderer (types under the names, numbers right-aligned)
    markdown  a Markdown table; numeric columns marked right-aligned
    csv       RFC 4180 CSV (Python's csv module); json: one array; jsonlines: one object a line
    line      one ``name = value`` a line, a blank line between rows
    list      values joined by the separator ("|"); tabs: by a tab; html: <tr> rows

Values are rendered by DuckDB, not by Python: each Arrow batch of the result is read by a
private in-memory DuckDB that casts every column back to the statement's type and then to
VARCHAR (``to_json`` in the JSON modes), so a float, date, list or struct prints as DuckDB's
CLI prints it, and whole batches are converted at once. The line modes write each batch as
it arrives; the grid modes need every row for their widths, so in the interactive shell they
show at most ``maxrows`` rows and say how many there were. Output that is not the interactive
terminal (``-c``, ``-f``, stdin, ``.output FILE``) is never cut.

As DuckDB's CLI: the grids (table, box, markdown and duckbox) show a newline, carriage return
or tab in a value as ``\\n``, ``\\r``, ``\\t`` (raw, they would break the grid), markdown writes
``|`` as ``\\|``, and csv takes a separator of any length. Unlike DuckDB's, the JSON modes write
a non-finite FLOAT or DOUBLE as the string ``"Infinity"``, ``"-Infinity"`` or ``"NaN"`` (as
PostgreSQL's ``to_json``), not as a bare ``Infinity``, which is not JSON.
"""

from __future__ import annotations

import contextlib
import csv
import html
import io
import json
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import TextIO

import duckdb

MODES = ("table", "box", "duckbox", "markdown", "csv", "json", "jsonlines", "line", "list", "tabs", "html")
_GRIDS = ("table", "box", "duckbox", "markdown")
_SEPARATORS = {"csv": ",", "tabs": "\t"}  # every other mode: "|" (as DuckDB's)
_STATUS_MODES = ("table", "box", "duckbox")  # where "CREATE TABLE" / "INSERT 3" lines are printed
BATCH = 64 * 1024

# DuckDB's JSON mode prints these as JSON numbers, booleans, JSON, arrays and objects; any other type
# (DECIMAL and HUGEINT included, as DuckDB does) as a JSON string of its text
_JSON_NATIVE = re.compile(r"^(BOOLEAN|U?(TINYINT|SMALLINT|INTEGER|BIGINT)|FLOAT|DOUBLE|JSON)$|\]$|^(STRUCT|MAP|UNION)\(")
_FLOATS = re.compile(r"^(FLOAT|DOUBLE)(\[\d*\])*$")  # (lists of them hold no strings for the regex below)
_NUMERIC = re.compile(r"^(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|DECIMAL\(.*\))$")

# a grid's frame: the top rule, the rule under the header and the bottom rule as
# (left, fill, join, right), then a row's (left, join, right); None: no such rule
_FRAMES = {
    "table": (("+", "-", "+", "+"), ("+", "-", "+", "+"), ("+", "-", "+", "+"), ("|", "|", "|")),
    "box": (("┌", "─", "┬", "┐"), ("├", "─", "┼", "┤"), ("└", "─", "┴", "┘"), ("│", "│", "│")),
    "markdown": (None, ("|", "-", "|", "|"), None, ("|", "|", "|")),
}


class OutputError(ValueError):
    """The result cannot be written in the current settings (csv with an empty separator)."""


# in a grid cell (as DuckDB's duckbox writes them)
_GRID_ESCAPES = (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
_MARKDOWN_ESCAPES = _GRID_ESCAPES + (("|", "\\|"),)


@dataclass
class Settings:
    """What ``.mode``, ``.headers``, ``.separator``, ``.nullvalue`` and ``.maxrows`` set."""

    mode: str = "table"
    header: bool = True
    separator: str | None = None  # None: the mode's own
    nullvalue: str = "NULL"
    maxrows: int = 40  # grid modes on the interactive terminal only (DuckDB's default); 0: all

    @property
    def column_separator(self) -> str:
        return self.separator if self.separator is not None else _SEPARATORS.get(self.mode, "|")


@dataclass
class Printer:
    """Writes results to ``stream`` in the current mode. ``limited``: stdout is the interactive
    terminal, where grids show at most ``maxrows`` rows (nothing else is ever cut)."""

    settings: Settings = field(default_factory=Settings)
    stream: TextIO | None = None  # None: sys.stdout at the time of writing
    limited: bool = False
    _con: duckdb.DuckDBPyConnection | None = None

    @property
    def out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    @property
    def _on_terminal(self) -> bool:
        return self.limited and self.stream is None  # not to a file of .output

    def print_result(self, cursor) -> None:
        if cursor.description is None or _is_status_only(cursor):
            if self.settings.mode in _STATUS_MODES:
                count = f" {cursor.rowcount}" if cursor.rowcount >= 0 else ""
                self.out.write(f"{cursor.status}{count}\n" if cursor.status else "OK\n")
            return
        names = [column[0] for column in cursor.description]
        types = [column[1] for column in cursor.description]
        batches = cursor.arrow_reader(BATCH)
        mode = self.settings.mode
        if mode in _GRIDS:
            self._grid(names, types, batches)
        else:
            _LINE_MODES[mode](self, names, types, batches)
        self.out.flush()

    def close(self) -> None:
        con, self._con = self._con, None
        if con is not None:
            con.close()

    # -- values as DuckDB renders them ----------------------------------------------------------
    @contextlib.contextmanager
    def _typed(self, data, types: list[str]):
        """``data`` (an Arrow batch or table) readable in the private DuckDB as ``mldb_printed``;
        yields the connection and each column cast back to the statement's type (Arrow carries
        a UUID as text and a HUGEINT as a DECIMAL)."""
        if self._con is None:
            self._con = duckdb.connect()
        zones = {kind.tz for kind in data.schema.types if getattr(kind, "tz", None)}
        if zones:  # a TIMESTAMPTZ prints in the session's time zone, which Arrow carries
            self._con.execute(f"SET TimeZone = {_literal(zones.pop())}")
        columns = [f"c{i}" for i in range(len(types))]
        self._con.register("mldb_printed", data.rename_columns(columns))
        try:
            yield self._con, [f"CAST({column} AS {kind})" for column, kind in zip(columns, types)]
        finally:
            self._con.unregister("mldb_printed")

    def _rows(self, batch, types: list[str], build) -> list[tuple]:
        """The SQL expressions ``build(texts, typed)`` evaluated by DuckDB over ``batch``: ``typed``
        are its columns, ``texts`` those as DuckDB prints them (a NULL as the null value)."""
        null = _literal(self.settings.nullvalue)
        with self._typed(batch, types) as (con, typed):
            texts = [f"coalesce(CAST({value} AS VARCHAR), {null})" for value in typed]
            return con.execute(f"SELECT {', '.join(build(texts, typed))} FROM mldb_printed").fetchall()

    def _texts(self, batch, types: list[str]) -> list[tuple]:
        return self._rows(batch, types, lambda texts, _: texts)

    def _lines_of(self, batch, types: list[str], line) -> list[str]:
        """One text per row: ``line(texts, typed)`` is a SQL expression over the row's values."""
        return [row[0] for row in self._rows(batch, types, lambda texts, typed: [line(texts, typed)])]

    # -- grids ---------------------------------------------------------------------------------
    def _grid(self, names: list[str], types: list[str], batches) -> None:
        limit = self.settings.maxrows if self._on_terminal and self.settings.maxrows > 0 else None
        if self.settings.mode == "duckbox":
            return self._duckbox(names, types, batches, limit)
        mode = self.settings.mode
        escapes = _MARKDOWN_ESCAPES if mode == "markdown" else _GRID_ESCAPES
        rows, total = [], 0
        for batch in batches:
            if limit is None or len(rows) < limit:
                part = batch.slice(0, None if limit is None else limit - len(rows))
                rows.extend(self._rows(part, types, lambda texts, _: [_replaced(text, escapes) for text in texts]))
            total += batch.num_rows
        aligns = [bool(_NUMERIC.match(kind)) for kind in types]
        header = [_escaped(name, escapes) for name in names] if self.settings.header else None
        self.out.write(_render_grid(_FRAMES[mode], header, rows, aligns))
        if len(rows) < total:
            self.out.write(f"({total} rows, {len(rows)} shown; .maxrows 0 shows all)\n")
        elif mode == "table":
            self.out.write(f"({total} row{'s' if total != 1 else ''})\n")

    def _duckbox(self, names: list[str], types: list[str], batches, limit: int | None) -> None:
        """DuckDB's own box renderer, over the whole result held in the private DuckDB."""
        import shutil

        table = batches.read_all()
        width = shutil.get_terminal_size().columns if self._on_terminal else 1 << 20
        shown = io.StringIO()
        with self._typed(table, types) as (con, typed):
            listed = ", ".join(f"{value} AS {_identifier(name)}" for value, name in zip(typed, names))
            with contextlib.redirect_stdout(shown):  # show() prints through Python's sys.stdout
                con.sql(f"SELECT {listed} FROM mldb_printed").show(
                    max_width=width, max_rows=limit or max(table.num_rows, 1), null_value=self.settings.nullvalue)
        self.out.write(shown.getvalue().rstrip("\n") + "\n")  # show() prints its text and a newline

    # -- line modes: each batch written as it comes ---------------------------------------------
    def _csv(self, names, types, batches) -> None:
        separator = self.settings.column_separator
        if not separator:
            raise OutputError("csv mode needs a separator of at least one character")
        if len(separator) > 1:  # Python's csv module takes one character; DuckDB's CLI any text
            return self._csv_long(names, types, batches, separator)
        writer = csv.writer(self.out, delimiter=separator, lineterminator="\n")
        if self.settings.header:
            writer.writerow(names)
        for batch in batches:
            writer.writerows(self._texts(batch, types))

    def _csv_long(self, names, types, batches, separator: str) -> None:
        """CSV with a separator of several characters, quoted as the csv module quotes (a field
        holding the separator, a quote or a line end), in DuckDB over whole batches."""
        if self.settings.header:
            self.out.write(separator.join(_csv_quoted_text(name, separator) for name in names) + "\n")
        self._write_lines(types, batches, lambda values, _: f" || {_literal(separator)} || ".join(
            _csv_quoted(value, separator) for value in values))

    def _list(self, names, types, batches) -> None:
        separator = self.settings.column_separator
        if self.settings.header:
            self.out.write(separator.join(names) + "\n")
        self._write_lines(types, batches, lambda values, _: f" || {_literal(separator)} || ".join(values))

    def _line(self, names, types, batches) -> None:
        width = max([5, *map(_width, names)])
        labels = [_literal(" " * (width - _width(name)) + name + " = ") for name in names]
        first = True
        for batch in batches:
            if batch.num_rows:
                lines = self._lines_of(batch, types, lambda values, _: " || chr(10) || ".join(
                    f"{label} || {value}" for label, value in zip(labels, values)))
                self.out.write(("" if first else "\n") + "\n\n".join(lines) + "\n")
                first = False

    def _json(self, names, types, batches) -> None:
        started = False
        for batch in batches:
            lines = self._lines_of(batch, types, _json_object(names, types))
            if lines:
                self.out.write((",\n" if started else "[") + ",\n".join(lines))
                started = True
        self.out.write("]\n" if started else "[]\n")

    def _jsonlines(self, names, types, batches) -> None:
        self._write_lines(types, batches, _json_object(names, types))

    def _html(self, names, types, batches) -> None:
        if self.settings.header:
            self.out.write("<tr>" + "".join(f"<th>{_escape(name)}</th>\n" for name in names) + "</tr>\n")
        self._write_lines(types, batches, lambda values, _: "'<tr>' || " + " || ".join(
            f"'<td>' || {_sql_escape(value)} || '</td>' || chr(10)" for value in values) + " || '</tr>'")

    def _write_lines(self, types, batches, line) -> None:
        for batch in batches:
            if batch.num_rows:
                self.out.write("\n".join(self._lines_of(batch, types, line)) + "\n")


_LINE_MODES = {"csv": Printer._csv, "list": Printer._list, "tabs": Printer._list, "line": Printer._line,
               "json": Printer._json, "jsonlines": Printer._jsonlines, "html": Printer._html}


def _json_object(names: list[str], types: list[str]):
    """A SQL expression for a row as DuckDB's CLI writes it in JSON: ``{"name":value,...}``."""
    keys = [json.dumps(name, ensure_ascii=False) + ":" for name in names]

    def line(_, typed) -> str:
        parts = []
        for index, (key, value, kind) in enumerate(zip(keys, typed, types)):
            if not _JSON_NATIVE.search(kind):
                value = f"CAST({value} AS VARCHAR)"
            text = f"CAST(to_json({value}) AS VARCHAR)"
            if _FLOATS.match(kind):  # DuckDB writes a bare Infinity / NaN: as strings, valid JSON
                text = f"regexp_replace({text}, '(-?Infinity|NaN)', '\"\\1\"', 'g')"
            opener = "{" if index == 0 else ","
            parts.append(f"{_literal(opener + key)} || coalesce({text}, 'null')")
        return " || ".join(parts) + " || '}'" if parts else "'{}'"

    return line


def _render_grid(frame, names: list[str] | None, rows: list[tuple], numeric: list[bool]) -> str:
    top, under, bottom, (left, join, right) = frame
    cells = ([list(names)] if names is not None else []) + [list(row) for row in rows]
    widths = [max(_width(row[i]) for row in cells) if cells else 0 for i in range(len(numeric))]

    def rule(parts, markdown=False) -> str:
        start, fill, middle, end = parts
        spans = [fill * (w + 1) + (":" if markdown and num else fill) for w, num in zip(widths, numeric)]
        return start + middle.join(spans) + end + "\n"

    def line(values, centred=False) -> str:
        padded = []
        for value, w in zip(values, widths):
            pad = w - _width(value)
            before = pad // 2 if centred else 0
            padded.append(" " + " " * before + value + " " * (pad - before) + " ")
        return left + join.join(padded) + right + "\n"

    out = [rule(top)] if top else []
    if names is not None:
        out += [line(names, centred=True), rule(under, markdown=frame is _FRAMES["markdown"])]
    out += [line(row) for row in rows]
    out += [rule(bottom)] if bottom else []
    return "".join(out)


def _replaced(value: str, replacements) -> str:
    """A SQL expression: ``value`` with each (old, new) of ``replacements`` made."""
    for old, new in replacements:
        value = f"replace({value}, {_literal(old)}, {_literal(new)})"
    return value


def _escaped(text: str, replacements) -> str:
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def _csv_quoted(value: str, separator: str) -> str:
    """A SQL expression: ``value`` as a CSV field, quoted where it must be."""
    must = " OR ".join(f"contains({value}, {_literal(text)})" for text in (separator, '"', "\n", "\r"))
    return f"""CASE WHEN {must} THEN '"' || replace({value}, '"', '""') || '"' ELSE {value} END"""


def _csv_quoted_text(text: str, separator: str) -> str:
    if any(part in text for part in (separator, '"', "\n", "\r")):
        return '"' + text.replace('"', '""') + '"'
    return text


def _width(text: str) -> int:
    """Columns ``text`` takes on a terminal (East Asian wide characters take two)."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
               for ch in text)


_QUERY_WORDS = frozenset({"SELECT", "WITH", "FROM", "VALUES", "TABLE", "SHOW", "DESCRIBE", "SUMMARIZE",
                          "PRAGMA", "EXPLAIN", "CALL", "PIVOT", "UNPIVOT", "("})


def _is_status_only(cursor) -> bool:
    """DuckDB answers INSERT/CREATE/... with a single ``Count`` column and SET/BEGIN/LOAD/... with
    an empty ``Success`` column; show a status line instead (as psql does)."""
    description = cursor.description
    return (cursor.status not in _QUERY_WORDS and len(description) == 1
            and description[0][0] in ("Count", "Success"))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _escape(text: str) -> str:
    return html.escape(text).replace("&#x27;", "&#39;")


def _sql_escape(value: str) -> str:
    return _replaced(value, (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#39;")))
