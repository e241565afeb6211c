"""Describe a statement before it runs: its ``$n`` parameters, their types, its result columns.

Drivers that prepare (asyncpg, pg8000, JDBC) ask for this between Parse and Bind, so
the statement has no parameter values yet. DuckDB's Python API cannot prepare, so:

- ``scan_parameters`` finds ``$n`` outside strings, identifiers and comments;
- ``infer_types`` parses the statement with sqlglot (each ``$n`` renamed to a column
  ``__pg_param_n``) and reads each parameter's type from where it stands: a cast, the
  other side of a comparison or arithmetic, an ``IN`` / ``BETWEEN`` subject, an INSERT
  column, ``SET col =``, ``LIMIT``; DuckDB's ``DESCRIBE`` gives the types of those
  neighbours; anything else is text, as PostgreSQL's ``unknown``;
- ``result_columns`` runs ``DESCRIBE`` on the statement with typed NULLs for the
  parameters (nothing is executed).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from mldb import errors
from mldb.frontend import MLDB

_PARAM = "__pg_param_"
ROW_WORDS = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "FROM", "SHOW", "DESCRIBE", "SUMMARIZE",
                       "EXPLAIN", "PRAGMA", "CALL", "PIVOT", "UNPIVOT", "(", "RETURNING"})


@dataclass
class Span:
    start: int
    end: int
    number: int


# What can hide a ``$n`` (strings, quoted names, comments, $tag$ quotes), or a parameter itself.
_LEXEMES = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/"""
                      r"|\$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?\$(?P=tag)\$|(?<![\w$])\$(?P<number>\d+)", re.DOTALL)


def scan_parameters(sql: str) -> list[Span]:
    """Positions of ``$1``, ``$2``, ... that are parameters (not inside quotes or comments)."""
    return [Span(match.start(), match.end(), int(match.group("number")))
            for match in _LEXEMES.finditer(sql) if match.group("number")]


def substitute(sql: str, spans: list[Span], replace) -> str:
    """The text with each parameter replaced by ``replace(number)``."""
    parts, last = [], 0
    for span in spans:
        parts += [sql[last : span.start], replace(span.number)]
        last = span.end
    return "".join(parts) + sql[last:]


def parameter_count(spans: list[Span]) -> int:
    return max((span.number for span in spans), default=0)


# -- parameter types -----------------------------------------------------------------------------


# Catalog queries (SQLAlchemy's reflection, psql's \\d) come back with the same text again and
# again, and their types depend only on the catalog's shape: their parameter and result types are
# kept per text (the parse and the DESCRIBEs cost more than running the query).
_CATALOG_PREFIXES = ("pg_", "duckdb_", "mldb_")
_CACHE_LIMIT = 1024


@functools.lru_cache(maxsize=_CACHE_LIMIT)
def is_catalog_query(sql: str) -> bool:
    """Whether ``sql`` reads only catalog relations (``pg_*``, ``duckdb_*()``, information_schema)."""
    if "pg_" not in sql and "duckdb_" not in sql and "information_schema" not in sql:
        return False
    try:
        tree = sqlglot.parse_one(substitute(sql, scan_parameters(sql), lambda n: f"{_PARAM}{n}"), dialect=MLDB)
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
        return False
    if not isinstance(tree, (exp.Query, exp.Subquery)):
        return False
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    tables = list(tree.find_all(exp.Table))
    return bool(tables) and all(
        table.name in ctes or table.name.startswith(_CATALOG_PREFIXES)
        or table.db.lower() in ("pg_catalog", "information_schema") for table in tables)


def _remember(cache: dict, key, value):
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def infer_types(session, sql: str, spans: list[Span]) -> list[str | None]:
    """The DuckDB type each parameter takes from its context, ``None`` where nothing tells."""
    cache, key = session.database.described, ("types", sql)  # (per database: its catalog's shape)
    if key in cache:
        return list(cache[key])
    types = _infer_types(session, sql, spans)
    if is_catalog_query(sql):
        _remember(cache, key, list(types))
    return types


def _infer_types(session, sql: str, spans: list[Span]) -> list[str | None]:
    count = parameter_count(spans)
    types: list[str | None] = [None] * count
    try:
        tree = sqlglot.parse_one(substitute(sql, spans, lambda n: f"{_PARAM}{n}"), dialect=MLDB)
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
        return types
    for column in tree.find_all(exp.Column):
        if column.name.startswith(_PARAM) and not column.table:
            number = int(column.name[len(_PARAM) :])
            if types[number - 1] is None:
                types[number - 1] = _context_type(session, column)
    return types


def _context_type(session, node: exp.Expression) -> str | None:
    parent = node.parent
    while isinstance(parent, exp.Paren):
        node, parent = parent, parent.parent
    if isinstance(parent, exp.Any):  # x = ANY($1): a list of x's type
        element = _context_type(session, parent)
        return f"{element}[]" if element else None
    if isinstance(parent, exp.Cast):  # DuckDB spells the type canonically (INT -> INTEGER)
        return _describe_first(session, f"SELECT CAST(NULL AS {_type_sql(parent.to)})")
    if isinstance(parent, (exp.Limit, exp.Offset)):
        return "BIGINT"
    if isinstance(parent, (exp.Like, exp.ILike)):
        return "VARCHAR"
    if isinstance(parent, exp.Tuple) and isinstance(parent.parent, exp.Values):
        return _insert_column_type(session, parent, parent.expressions.index(node))
    neighbour = _neighbour(node, parent)
    if neighbour is None or _has_param(neighbour):
        return None
    return _expression_type(session, node, neighbour)


def _type_sql(data_type: exp.DataType) -> str:
    """A cast's type as DuckDB reads it: PostgreSQL's FLOAT(p) is REAL up to 24 bits, else DOUBLE
    (sqlglot writes REAL(53), which DuckDB refuses, and a failed DESCRIBE aborts the transaction)."""
    if data_type.this == exp.DataType.Type.FLOAT and data_type.expressions:
        bits = data_type.expressions[0].this
        return "REAL" if bits.is_int and int(bits.name) <= 24 else "DOUBLE"
    return data_type.sql(dialect=MLDB)


def _neighbour(node: exp.Expression, parent: exp.Expression | None) -> exp.Expression | None:
    if isinstance(parent, (exp.In, exp.Between)):
        return parent.this if node is not parent.this else None
    if isinstance(parent, exp.Binary):
        return parent.expression if node is parent.this else parent.this
    return None


def _has_param(node: exp.Expression) -> bool:
    return any(c.name.startswith(_PARAM) for c in node.find_all(exp.Column))


def _expression_type(session, node: exp.Expression, neighbour: exp.Expression) -> str | None:
    """DESCRIBE ``SELECT <neighbour> FROM <the FROM clause the parameter sits under>``."""
    if isinstance(neighbour, exp.Literal):
        return "VARCHAR" if neighbour.is_string else ("BIGINT" if neighbour.is_int else "DOUBLE")
    query = exp.Select(expressions=[neighbour.copy()])
    scope = node.find_ancestor(exp.Select, exp.Update, exp.Delete)
    if isinstance(scope, exp.Select):
        for key in ("from_", "joins"):
            if scope.args.get(key):
                query.set(key, _nulled(scope.args[key]))
    elif scope is not None:  # UPDATE / DELETE: the target table
        query.set("from_", exp.From(this=scope.this.copy()))
    ctes = node.root().args.get("with_")  # the statement's WITH, so CTE names resolve
    if ctes is not None:
        query.set("with_", _nulled(ctes))
    return _describe_first(session, query.sql(dialect=MLDB))


def _nulled(value):
    """A copy of a clause (or list of clauses) with every parameter replaced by NULL."""
    if isinstance(value, list):
        return [_nulled(item) for item in value]
    copy = value.copy()
    for column in list(copy.find_all(exp.Column)):
        if column.name.startswith(_PARAM):
            column.replace(exp.Null())
    return copy


def _insert_column_type(session, row: exp.Tuple, position: int) -> str | None:
    insert = row.find_ancestor(exp.Insert)
    if insert is None:
        return None
    target = insert.this
    if isinstance(target, exp.Schema):
        columns = [column.sql(dialect=MLDB) for column in target.expressions]
        if position >= len(columns):
            return None
        return _describe_first(session, f"SELECT {columns[position]} FROM {target.this.sql(dialect=MLDB)}")
    types = _describe(session, f"SELECT * FROM {target.sql(dialect=MLDB)}")
    return types[position][1] if types and position < len(types) else None


def _describe_first(session, query: str) -> str | None:
    types = _describe(session, query)
    return types[0][1] if types else None


def _describe(session, query: str) -> list[tuple[str, str]] | None:
    try:
        return [(row[0], row[1]) for row in session.sql(f"DESCRIBE {query}").fetchall()]
    except errors.Error:
        return None


# -- result columns ------------------------------------------------------------------------------


def returns_rows(first_word: str, sql: str) -> bool:
    return first_word in ROW_WORDS or " RETURNING " in f" {sql.upper()} "


def result_columns(session, sql: str, spans: list[Span], types: list[str | None]) -> list[tuple[str, str]] | None:
    """(name, DuckDB type) of each result column, from DESCRIBE with typed NULL parameters."""
    cache, key = session.database.described, ("columns", sql, tuple(types))
    if key in cache:
        return cache[key]
    columns = _result_columns(session, sql, spans, types)
    if columns is not None and is_catalog_query(sql):
        _remember(cache, key, columns)
    return columns


def _result_columns(session, sql: str, spans: list[Span], types: list[str | None]) -> list[tuple[str, str]] | None:
    nulled = substitute(sql, spans, lambda n: f"CAST(NULL AS {types[n - 1] or 'VARCHAR'})").strip().rstrip(";")
    first = nulled.split(None, 1)[0].upper() if nulled else ""
    if first in ("INSERT", "UPDATE", "DELETE", "MERGE"):  # DESCRIBE cannot read these, and a failed
        nulled = _returning_query(nulled)                # statement would abort the client's transaction
        if nulled is None:
            return None
    return _describe(session, nulled)


def _returning_query(sql: str) -> str | None:
    """``INSERT/UPDATE/DELETE ... RETURNING a, b`` as ``SELECT a, b FROM <target>`` (same columns)."""
    try:
        tree = sqlglot.parse_one(sql, dialect=MLDB)
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
        return None
    returning = tree.args.get("returning")
    target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
    if returning is None or not isinstance(target, exp.Table):
        return None
    query = exp.Select(expressions=[e.copy() for e in returning.expressions]).from_(target.copy())
    return query.sql(dialect=MLDB)
