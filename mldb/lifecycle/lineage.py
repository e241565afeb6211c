"""Lineage: ``mldb.lineage`` holds one row per edge ``source -> target`` with versions.

- ``training``: a table or view the training query read -> the model version. Views
  are followed down to their base tables (parsed from ``duckdb_views()`` with
  sqlglot); a base table reached through a view has the view in ``via``, so
  "which models change if table X changes" is one WHERE on ``source``.
- ``prediction`` / ``embedding``: a model (version) -> the table or view written by
  ``CREATE TABLE/VIEW ... AS`` or ``INSERT ... SELECT`` that called PREDICT or EMBED, or the
  absolute path a ``COPY (...) TO 'path'`` of such a query wrote (a file; under the Ray executor
  a directory), so ``LINEAGE('/data/scored')`` shows where scored files came from.
"""

from __future__ import annotations

import os

import duckdb
import sqlglot
from sqlglot import exp

from mldb import errors

INSERT_EDGES = (
    "INSERT INTO mldb.lineage SELECT ?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP"
)


def tables_read(sql: str) -> list[str]:
    """Names of the tables and views a query reads (CTE names and table functions left out)."""
    from mldb.frontend import MLDB

    try:
        tree = sqlglot.parse_one(sql, read=MLDB)
    except sqlglot.errors.ParseError:
        return []
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    names = []
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier) or table.name.lower() in ctes:
            continue
        name = qualified(table)
        if name not in names:
            names.append(name)
    return names


def qualified(table: exp.Table) -> str:
    """``schema.name`` for tables outside ``main``, else ``name`` (as written, lower-cased)."""
    schema = table.db.lower()
    name = table.name.lower()
    return f"{schema}.{name}" if schema and schema != "main" else name


def base_tables(con: duckdb.DuckDBPyConnection, names: list[str]) -> list[tuple[str, str | None]]:
    """``(relation, via)`` for each name, and the base tables under each view (``via`` = that view)."""
    views = _views(con)
    found: list[tuple[str, str | None]] = []
    for name in names:
        _add(found, (name, None))
        for table in _expand(views, name, seen={name}):
            _add(found, (table, name))
    return found


def _expand(views: dict[str, str], name: str, seen: set[str]) -> list[str]:
    if name not in views:
        return []
    under = []
    for child in tables_read(views[name]):
        if child in seen:
            continue
        seen.add(child)
        under += [child] if child not in views else _expand(views, child, seen)
    return under


def _views(con) -> dict[str, str]:
    rows = con.execute(
        "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
    return {(v if s == "main" else f"{s}.{v}").lower(): sql for s, v, sql in rows}


def _add(found: list, edge: tuple) -> None:
    if edge not in found:
        found.append(edge)


def is_path(name: str) -> bool:
    """Whether a LINEAGE name is a file path (a COPY target) rather than a table, view or model."""
    return "/" in name or os.sep in name


def path_name(path: str) -> str:
    """How a written path is named in ``mldb.lineage``: absolute, normalised, no trailing separator
    (a URL as written)."""
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def relation_exists(con, name: str) -> bool:
    schema, _, table = name.rpartition(".")
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE lower(table_name) = ? AND lower(schema_name) = ?"
        " UNION ALL SELECT count(*) FROM duckdb_views() WHERE lower(view_name) = ? AND lower(schema_name) = ?",
        [table, schema or "main"] * 2).fetchall()
    return any(count for (count,) in row)


def _model_exists(con, name: str) -> bool:
    try:
        return bool(con.execute("SELECT count(*) FROM mldb.models WHERE name = ?", [name]).fetchall()[0][0])
    except duckdb.CatalogException:  # the models feature is not there
        return False


def record_training(con, model: str, version: int, sources: list[str], statement: str | None = None) -> None:
    """Edges from every relation the training read (views expanded) to ``model`` ``version``."""
    con.execute("DELETE FROM mldb.lineage WHERE target = ? AND target_version = ? AND kind = 'training'",
                [model, version])
    names = list(dict.fromkeys(qualified(exp.to_table(source)) for source in sources))
    for source, via in base_tables(con, names):
        con.execute(INSERT_EDGES, [source, None, model, version, "training", via, statement])


def record_output(con, model: str, version: int | None, target: str, kind: str) -> None:
    con.execute(INSERT_EDGES, [model, version, target, None, kind, None, None])


def check_relation(con, name: str) -> None:
    """A clear error for the lineage of a table, view or model that does not exist (any more)
    (a path is known by its edges alone: mldb does not follow files)."""
    if not is_path(name) and (relation_exists(con, name) or _model_exists(con, name)):
        return
    known = con.execute("SELECT count(*) FROM mldb.lineage WHERE source = ? OR target = ?", [name, name]).fetchall()[0]
    if known[0] and is_path(name):
        return
    if known[0]:
        raise errors.ProgrammingError(
            f"'{name}' no longer exists (it was dropped); its past edges stay in mldb.lineage")
    raise errors.ProgrammingError(f"no table, view or model named '{name}'", sqlstate="42P01")
