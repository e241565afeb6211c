"""``executemany`` of a plain ``INSERT ... VALUES (?, ...)`` as one INSERT of an Arrow table.

DuckDB's ``executemany`` runs the prepared statement once per parameter set; here the
parameter sets become the columns of an Arrow table (one conversion per column, in C) and

    INSERT INTO t (a, b) VALUES (?, upper(?))
 -> INSERT INTO t (a, b) SELECT mldb_p0, upper(mldb_p1) FROM mldb_executemany_rows

runs once, reading that table as a replacement scan (frames.py). ``None`` when the
statement is another kind (RETURNING, ON CONFLICT, several rows of VALUES, ...) or the
values do not fit one Arrow type per column: the caller then runs it row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter

from sqlglot import exp

from mldb.frames import Scope
from mldb.frontend import MLDB, parse, split_statements

ROWS = "mldb_executemany_rows"
_MIN_ROWS = 2  # one row is a plain execute


@dataclass
class Plan:
    sql: str
    scope: Scope


def insert_plan(sql: str, rows) -> Plan | None:
    if len(rows) < _MIN_ROWS or not isinstance(sql, str):
        return None
    statements = split_statements(sql)
    if not statements or len(statements) != 1 or statements[0].first_word != "INSERT":
        return None
    tree = parse(statements[0])
    values = tree.expression if isinstance(tree, exp.Insert) else None
    if not isinstance(values, exp.Values) or len(values.expressions) != 1 or _has_extras(tree):
        return None
    placeholders = list(values.find_all(exp.Placeholder, bfs=False))
    keys = _keys(placeholders, rows[0])
    table = _table(keys, rows) if keys is not None else None
    if table is None:
        return None
    for placeholder, key in zip(placeholders, keys):
        placeholder.replace(exp.column(_column(key)))
    tree.set("expression", exp.select(*values.expressions[0].expressions).from_(ROWS))
    return Plan(tree.sql(dialect=MLDB), Scope({ROWS: table}))


def _has_extras(tree: exp.Insert) -> bool:
    return any(tree.args.get(arg) for arg in ("returning", "conflict", "alternative", "where", "with_", "ignore",
                                              "by_name", "overwrite", "using", "hint"))


def _keys(placeholders: list, first) -> list | None:
    """What each placeholder reads from a parameter set: an index (``?``, ``$1``) or a name (``$x``)."""
    if not placeholders:
        return None
    names = [p.this or "" for p in placeholders]  # ``?`` has none; ``$1`` / ``$x`` theirs
    if all(not name for name in names) and isinstance(first, (list, tuple)):
        return list(range(len(names)))
    if all(name.isdigit() for name in names) and isinstance(first, (list, tuple)):
        return [int(name) - 1 for name in names]
    if all(name and not name.isdigit() for name in names) and isinstance(first, dict):
        return names
    return None


def _table(keys: list, rows):
    """The parameter sets as columns, one per distinct key; ``None`` if they do not fit."""
    import pyarrow as pa

    width = len(keys) if isinstance(keys[0], int) and len(set(keys)) == len(keys) else None
    try:
        if width is not None and set(map(len, rows)) != {width}:
            return None  # a parameter set of another length: DuckDB's error, row by row
        return pa.table({_column(key): pa.array(list(map(itemgetter(key), rows))) for key in dict.fromkeys(keys)})
    except (pa.ArrowException, TypeError, ValueError, OverflowError, KeyError, IndexError):
        return None


def _column(key) -> str:
    return f"mldb_p{key}"
