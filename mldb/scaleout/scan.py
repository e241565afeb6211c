"""The one file scan of a statement that goes out, and the files it reads.

    read_parquet('ev/*.parquet', hive_partitioning = true)   parquet_scan([...])   'ev/e1.parquet'
    read_csv('c/*.csv', header = true)                       read_csv_auto(...)

``scan_of`` reads the FROM item (a reason when it is none of these, or when an option such as
``union_by_name`` would make per-file reads differ from one read of the glob); ``list_files``
expands the patterns with DuckDB's own ``glob()`` here, so the files are the ones DuckDB reads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from sqlglot import exp

from mldb import errors
from mldb.frontend.dialect import MLDB

READERS = {"read_parquet": "parquet", "parquet_scan": "parquet", "read_csv": "csv", "read_csv_auto": "csv"}
READER_WORDS = frozenset(name.upper() for name in READERS)
_FILE_ENDINGS = {".parquet": "parquet", ".csv": "csv", ".csv.gz": "csv", ".tsv": "csv"}
URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_REFUSED_OPTIONS = ("union_by_name", "encryption_config")


@dataclass(frozen=True)
class Scan:
    """The one file scan of a statement, as written: ``read_parquet('ev/*.parquet', hive_partitioning = true)``."""

    reader: str  # 'parquet' or 'csv'
    function: str  # read_parquet, parquet_scan, read_csv, read_csv_auto (a file name: read_parquet / read_csv)
    patterns: tuple[str, ...]
    options: tuple[str, ...]  # each "name = value" as SQL, re-applied to every file
    text: str  # the scan as DuckDB reads it
    files: tuple[str, ...] = ()  # absolute paths, in DuckDB's order (glob's, per pattern)



# -- the scan ------------------------------------------------------------------------------------
def scan_of(table: exp.Table, params) -> Scan | str:
    """The ``Scan`` a FROM item reads, or why it is no file scan that goes out."""
    if table.args.get("sample"):
        return "a SAMPLE needs all rows"
    this = table.this
    if isinstance(this, exp.Identifier):
        reader = reader_of_name(this.name, table)
        if reader is None:
            return f"it reads the table {table.sql(dialect=MLDB)} of this database"
        function = "read_parquet" if reader == "parquet" else "read_csv"
        return _checked_scan(reader, function, (this.name,), (), f"'{_quoted(this.name)}'")
    function = _function_name(this)
    if function not in READERS:
        return f"it reads {this.sql(dialect=MLDB)[:60]}"
    arguments = _arguments(this)
    if not arguments:
        return f"{function}() names no files"
    patterns = _patterns(arguments[0], params)
    if isinstance(patterns, str):
        return patterns
    options = []
    for option in arguments[1:]:
        if not isinstance(option, (exp.EQ, exp.PropertyEQ)):
            return f"{function}(...) option {option.sql(dialect=MLDB)} is not name = value"
        name = option.this.name.lower()
        if name in _REFUSED_OPTIONS and _truthy(option.expression):
            return f"{function}(..., {name} = {option.expression.sql(dialect=MLDB).lower()})"
        options.append(f"{name} = {option.expression.sql(dialect=MLDB)}")
    return _checked_scan(READERS[function], function, patterns, tuple(options), this.sql(dialect=MLDB))


def _checked_scan(reader, function, patterns, options, text) -> Scan | str:
    for pattern in patterns:
        if URL.match(pattern):
            return f"'{pattern}' is not a local or shared path"
    return Scan(reader, function, tuple(patterns), tuple(options), text)


def _function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.ReadParquet):
        return "read_parquet"
    if isinstance(node, exp.ReadCSV):
        return "read_csv"
    return node.sql_name().lower() if isinstance(node, exp.Func) else ""


def _arguments(node: exp.Expression) -> list:
    first = [node.this] if isinstance(node, exp.ReadCSV) and node.this is not None else []
    return first + list(node.expressions)


def _patterns(node: exp.Expression, params) -> tuple[str, ...] | str:
    if isinstance(node, exp.Placeholder):
        node = _bound(node, params)
        if isinstance(node, str):
            return node
    if isinstance(node, exp.Literal) and node.is_string:
        return (node.this,)
    if isinstance(node, (exp.Array, exp.List)) and node.expressions and all(
            isinstance(item, exp.Literal) and item.is_string for item in node.expressions):
        return tuple(item.this for item in node.expressions)
    return "the files are not written as a string or a list of strings"


def _bound(placeholder: exp.Placeholder, params) -> exp.Expression | str:
    """The parameter a numbered ``$n`` (or the only ``?``) stands for, as a literal."""
    name, value = placeholder.name, None
    if isinstance(params, dict):
        value = params.get(name)
    elif isinstance(params, (list, tuple)) and name.isdigit() and 0 < int(name) <= len(params):
        value = params[int(name) - 1]
    elif isinstance(params, (list, tuple)) and name in ("", "?"):
        marks = list(placeholder.root().find_all(exp.Placeholder, bfs=False))
        if len(marks) == len(params) and all(mark.name in ("", "?") for mark in marks):
            value = params[next(index for index, mark in enumerate(marks) if mark is placeholder)]
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, str) for item in value):
        return exp.Array(expressions=[exp.Literal.string(item) for item in value])
    return "the files are a parameter mldb cannot place (write them, or use $n)"


def _truthy(node: exp.Expression) -> bool:
    return not (isinstance(node, exp.Boolean) and not node.this) and node.sql().lower() not in ("0", "'false'")


def reader_of_name(name: str, table: exp.Table | None = None) -> str | None:
    """parquet / csv for a file name DuckDB's replacement scan reads (a quoted name ending .parquet ...)."""
    if table is not None and (not isinstance(table.this, exp.Identifier) or not table.this.quoted
                              or table.args.get("db")):
        return None
    lower = name.lower()
    return next((reader for ending, reader in _FILE_ENDINGS.items() if lower.endswith(ending)), None)


def list_files(session, scan: Scan) -> tuple[str, ...] | str:
    """Every file the scan reads, expanded by DuckDB's own ``glob()`` here (its search path and
    rules), absolute, in DuckDB's order; a reason when a pattern matches nothing."""
    files: list[str] = []
    for pattern in scan.patterns:
        try:
            found = [row[0] for row in session.sql("SELECT file FROM glob(?) ORDER BY file", [pattern]).fetchall()]
        except errors.Error as error:
            return f"DuckDB cannot list '{pattern}' ({error.summary})"
        if not found:
            return f"no file matches '{pattern}'"
        files.extend(os.path.abspath(path) for path in found)
    return tuple(dict.fromkeys(files))


def copy_target(copy: exp.Copy) -> tuple[str] | str:
    """(the directory COPY writes,) or why the COPY runs here."""
    if copy.args.get("kind"):
        return "COPY FROM runs here"
    if not isinstance(copy.this, exp.Subquery) or not isinstance(copy.this.this, exp.Select):
        return f"it reads the table {copy.this.sql(dialect=MLDB)} of this database"
    files = copy.args.get("files") or []
    if len(files) != 1 or not isinstance(files[0], exp.Literal) or not files[0].is_string:
        return "COPY's target is not one path written as a string"
    target = files[0].this
    if URL.match(target):
        return f"'{target}' is not a local or shared path"
    params = {param.this.name.upper(): param.expression for param in copy.args.get("params") or ()}
    fmt = params.get("FORMAT")
    fmt = fmt.name.lower() if fmt is not None else ("parquet" if target.lower().endswith(".parquet") else "csv")
    if fmt != "parquet":
        return f"COPY ... (FORMAT {fmt}) runs here (only FORMAT parquet goes out)"
    if "PARTITION_BY" in params:
        return "COPY ... (PARTITION_BY ...) runs here"
    for option in ("OVERWRITE", "OVERWRITE_OR_IGNORE"):
        if option in params:  # (the workers commit a new directory: they never replace one)
            return f"COPY ... ({option}) runs here (scale-out writes a new directory only)"
    return (target,)




def _quoted(text: str) -> str:
    return text.replace("'", "''")


# -- reading one piece -----------------------------------------------------------------------------
_SNIFFED_AWAY = ("columns", "names", "column_names", "types", "dtypes", "column_types", "auto_type_candidates",
                 "sample_size", "files_to_sniff")  # decided once by the driver: columns = {...} says them


def piece_reading(session, function: str, options: tuple, files: list) -> tuple[list, tuple]:
    """([(name, type)] of all ``files`` read together, the options one file is read with).

    Parquet: the scan's own options; every piece is cast to the glob's types. CSV: DuckDB sniffs
    the dialect from the glob's first file and the types from several files, so a file read alone
    could be typed (or even split) differently. The first file's ``sniff_csv`` (with the user's
    options) gives the dialect as a complete, non-sniffing ``read_csv`` call; its columns are
    replaced by the glob's as DuckDB's ``DESCRIBE`` types them."""
    listed = "[" + ", ".join(_string(path) for path in files) + "]"
    extra = "".join(f", {option}" for option in options)
    reader = "read_parquet" if function in ("read_parquet", "parquet_scan") else "read_csv"
    rows = session.sql(f"DESCRIBE SELECT * FROM {reader}({listed}{extra})").fetchall()
    columns = [(row[0], row[1]) for row in rows]
    if reader == "read_parquet":
        return columns, tuple(options)
    prompt = session.sql(f"SELECT Prompt FROM sniff_csv({_string(files[0])}{extra})").fetchall()[0][0]
    sniffed = [text for name, text in _prompt_options(prompt) if name not in _SNIFFED_AWAY]
    types = ", ".join(f"{_string(name)}: {_string(kind)}" for name, kind in columns)
    return columns, (*sniffed, f"columns = {{{types}}}")


def _prompt_options(prompt: str) -> list[tuple[str, str]]:
    """(name, ``name = value``) of each option of sniff_csv's Prompt (``FROM read_csv('f', auto_detect=false, ...);``)."""
    import sqlglot

    tree = sqlglot.parse_one("SELECT * " + prompt.strip().rstrip(";"), read="duckdb")
    call = tree.args["from_"].this.this
    return [(argument.this.name.lower(), argument.sql(dialect="duckdb")) for argument in _arguments(call)[1:]
            if isinstance(argument, (exp.EQ, exp.PropertyEQ))]


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
