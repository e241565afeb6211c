"""The console's tables pages: every user table and view, which model versions were trained from it
and which were written into it with their predictions (``mldb.lineage``).

A relation is named as ``mldb.lineage`` names it: ``name`` in schema ``main``, ``schema.name``
elsewhere, so ``/tables/customers`` and ``/tables/staging.events`` link both ways with the lineage
graph (lineage lower-cases names; DuckDB's identifiers are case-insensitive, so matching is too).
Row counts on the list are ``duckdb_tables().estimated_size`` (storage metadata, no scan; exact
unless rows were deleted since the last checkpoint); a table's page counts exactly (``count(*)``
over one table is a cheap scan in DuckDB). Views get no count: counting runs their query.
"""

from __future__ import annotations

import duckdb

from mldb.console.pages import NotFound, page

LIST_LIMIT = 1000
SAMPLE_ROWS = 10
TEXT_CHARS = 200  # a sampled value longer than this is shortened
WRITERS_LIMIT = 200

# every user relation of the open database (not mldb's catalog, not DuckDB's own, not temporary)
_RELATIONS = """
SELECT *, CASE WHEN schema_name = 'main' THEN relation ELSE schema_name || '.' || relation END AS name FROM (
    SELECT schema_name, table_name AS relation, 'table' AS kind, estimated_size AS rows, column_count AS columns
    FROM duckdb_tables()
    WHERE database_name = current_database() AND schema_name <> 'mldb' AND NOT internal AND NOT temporary
    UNION ALL
    SELECT schema_name, view_name, 'view', NULL, column_count
    FROM duckdb_views()
    WHERE database_name = current_database() AND schema_name <> 'mldb' AND NOT internal AND NOT temporary)
"""

# (model, version) pairs trained from each relation: read directly, or a base table read through a view
_TRAINED = """
SELECT relation, target AS model, list(DISTINCT target_version ORDER BY target_version) AS versions
FROM (SELECT lower(source) AS relation, target, target_version FROM mldb.lineage WHERE kind = 'training'
      UNION ALL
      SELECT lower(via), target, target_version FROM mldb.lineage WHERE kind = 'training' AND via IS NOT NULL)
GROUP BY ALL ORDER BY relation, model
"""

_WRITTEN = """
SELECT lower(target) AS relation, source AS model,
       list(DISTINCT source_version ORDER BY source_version) FILTER (source_version IS NOT NULL) AS versions
FROM mldb.lineage WHERE kind IN ('prediction', 'embedding') GROUP BY ALL ORDER BY relation, model
"""


@page("/tables", "tables.html")
def tables(reader) -> dict:
    """Every user table and view with its (estimated) row count, the models trained from it and
    the models whose predictions were written into it."""
    total = reader.value(f"SELECT count(*) FROM ({_RELATIONS})")
    rows = reader.rows(f"{_RELATIONS} ORDER BY schema_name <> 'main', schema_name, relation LIMIT {LIST_LIMIT}")
    lineage = reader.has_table("lineage")  # (a plain DuckDB file has no mldb catalog)
    trained = _by_relation(reader, _TRAINED) if lineage else {}
    written = _by_relation(reader, _WRITTEN) if lineage else {}
    listed = [{"name": row["name"], "schema": row["schema_name"], "relation": row["relation"], "kind": row["kind"],
               "rows": row["rows"], "column_count": row["columns"],
               "trained": trained.get(row["name"].lower(), []), "written_by": written.get(row["name"].lower(), [])}
              for row in rows]
    return {"tables": listed, "shown": len(listed), "total": total,
            "row_counts": "estimated (duckdb_tables().estimated_size); views are not counted"}


def _by_relation(reader, sql: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for row in reader.rows(sql):
        found.setdefault(row["relation"], []).append({"model": row["model"], "versions": row["versions"] or []})
    return found


@page("/tables/{name:path}", "table.html")
def table(reader, name: str) -> dict:
    """One table or view: its columns, exact row count (tables), the model versions trained from it,
    the model versions that wrote into it (with the statement and time) and its first rows."""
    relation = _relation(reader, name)
    columns = reader.rows(
        "SELECT column_name AS name, data_type AS type, is_nullable AS nullable FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? ORDER BY column_index",
        [relation["schema_name"], relation["relation"]])
    source = f"{_quote(relation['schema_name'])}.{_quote(relation['relation'])}"
    rows = reader.value(f"SELECT count(*) FROM {source}") if relation["kind"] == "table" else None
    lineage = reader.has_table("lineage")
    return {"name": relation["name"], "schema": relation["schema_name"], "relation": relation["relation"],
            "kind": relation["kind"], "rows": rows, "columns": columns,
            "definition": relation["definition"] if relation["kind"] == "view" else None,
            "trained": _trained(reader, relation["name"]) if lineage else [],
            "written_by": _writers(reader, relation["name"]) if lineage else [],
            "sample": _sample(reader, relation, source, columns)}


def _relation(reader, name: str) -> dict:
    """The relation called ``name`` (``table`` in main, or ``schema.table``), else NotFound."""
    found = reader.row(
        f"SELECT r.*, v.sql AS definition FROM ({_RELATIONS}) r "
        "LEFT JOIN duckdb_views() v ON v.database_name = current_database() AND v.schema_name = r.schema_name "
        "AND v.view_name = r.relation WHERE lower(r.name) = lower(?) ORDER BY r.schema_name <> 'main' LIMIT 1",
        [name])
    if found is None:
        raise NotFound(f"no table or view named {name!r}")
    return found


def _trained(reader, name: str) -> list[dict]:
    """Each model version trained from the relation (``via``: the view it was read through)."""
    return reader.rows(
        "SELECT target AS model, target_version AS version, "
        "string_agg(DISTINCT via, ', ') FILTER (lower(via) <> lower(?)) AS via, "
        "min(created_at) AS created_at FROM mldb.lineage "
        "WHERE kind = 'training' AND (lower(source) = lower(?) OR lower(via) = lower(?)) "
        "GROUP BY ALL ORDER BY model, version", [name, name, name])


def _writers(reader, name: str) -> list[dict]:
    """Each write of model predictions (or embeddings) into the relation, newest first, with the
    statement: the edge's own, else the prediction-log row of that model version that the same
    statement logged (it started before the edge was recorded and was logged within a minute after)."""
    return reader.rows(
        "WITH edges AS (SELECT *, row_number() OVER () AS edge FROM mldb.lineage "
        f"WHERE kind IN ('prediction', 'embedding') AND lower(target) = lower(?) ORDER BY created_at DESC LIMIT {WRITERS_LIMIT}) "
        "SELECT e.source AS model, e.source_version AS version, e.kind, e.created_at, "
        "coalesce(any_value(e.statement), arg_min(p.statement, p.logged_at)) AS statement, "
        "arg_min(p.query_fingerprint, p.logged_at) AS fingerprint "
        "FROM edges e LEFT JOIN mldb.prediction_log p ON p.model = e.source "
        "AND p.version IS NOT DISTINCT FROM e.source_version AND p.started_at <= e.created_at "
        "AND p.logged_at BETWEEN e.created_at AND e.created_at + INTERVAL 1 MINUTE "
        "GROUP BY e.source, e.source_version, e.kind, e.created_at, e.edge ORDER BY e.created_at DESC", [name])


def _sample(reader, relation: dict, source: str, columns: list[dict]) -> dict:
    """The first rows, every value as text (DuckDB's own rendering, cut in SQL; BLOBs as their
    size). A view that calls mldb's functions (PREDICT, EMBED) is not run: that would score rows
    and write to the prediction log."""
    names = [column["name"] for column in columns]
    if relation["kind"] == "view" and "mldb_execution" in (relation["definition"] or ""):  # (as database.py)
        return {"columns": names, "rows": [], "skipped": "the view calls mldb's functions: reading it would predict"}
    shown = ", ".join(_shown(column) for column in columns)
    try:
        rows = reader.cursor().execute(f"SELECT {shown} FROM {source} LIMIT {SAMPLE_ROWS}").fetchall()
    except duckdb.Error as error:
        return {"columns": names, "rows": [], "skipped": f"could not read it: {error}"}
    return {"columns": names, "rows": [[_shorten(value) for value in row] for row in rows], "skipped": None}


def _shown(column: dict) -> str:
    name = _quote(column["name"])
    if column["type"] == "BLOB":
        return f"CASE WHEN {name} IS NULL THEN NULL ELSE '<' || octet_length({name}) || ' bytes>' END"
    return f"left(CAST({name} AS VARCHAR), {TEXT_CHARS + 1})"


def _shorten(text: str | None) -> str | None:
    return text if text is None or len(text) <= TEXT_CHARS else text[:TEXT_CHARS] + "…"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
