"""The console's predictions pages: the prediction log (``mldb.prediction_log``, one row per model
version a statement called) with filters, and the trace of one logged statement: its text, the
model versions it used, what each was trained on (source tables, query, data fingerprint,
snapshot), its sampled rows and the tables it wrote.

The log may hold millions of rows, so DuckDB does all the work: the filter, ``ORDER BY logged_at
DESC LIMIT n`` (a top-n, not a sort of the log) and the per-model totals (one GROUP BY, whose sum
is also the "of M"); Python only sees the rows shown.
"""

from __future__ import annotations

import datetime
import json

import sqlglot

from mldb.console.pages import BadRequest, NotFound, page

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
SHORT_STATEMENT = 120  # characters of a statement the log's table shows (the trace shows all of it)
TRACE_LIMIT = 200
SAMPLE_LIMIT = 20

_LOG_COLUMNS = (
    "model, version, rows, calls, seconds, started_at, logged_at, query_fingerprint, "
    f"left(statement, {SHORT_STATEMENT}) AS statement, length(statement) > {SHORT_STATEMENT} AS shortened, "
    "shadow_of, agreement, mean_abs_diff")


@page("/predictions", "predictions.html", query=("model", "version", "since", "until", "limit"))
def predictions(reader, model: str | None = None, version: str | None = None, since: str | None = None,
                until: str | None = None, limit: str | None = None) -> dict:
    """The newest log rows matching the filters, how many match, and per-model totals of those."""
    filters = {"model": model, "version": _version(version), "since": _time("since", since),
               "until": _time("until", until), "limit": _limit(limit)}
    if not reader.has_table("prediction_log"):
        return {"filters": filters, "models": [], "log": [], "shown": 0, "total": 0, "totals": []}
    where, params = _where(filters)
    # the newest rows' ids first, then only those rows' columns (long statements are read for n rows, not all)
    log = reader.rows(f"SELECT {_LOG_COLUMNS} FROM mldb.prediction_log WHERE rowid IN (SELECT rowid FROM "
                      f"mldb.prediction_log {where} ORDER BY logged_at DESC LIMIT {filters['limit']}) "
                      "ORDER BY logged_at DESC", params)
    totals = reader.rows(
        "SELECT model, count(*) AS entries, sum(rows) AS rows, sum(calls) AS calls, sum(seconds) AS seconds, "
        f"max(logged_at) AS last_logged_at FROM mldb.prediction_log {where} GROUP BY model ORDER BY model", params)
    return {"filters": filters, "models": _models(reader), "log": log, "shown": len(log),
            "total": sum(row["entries"] for row in totals), "totals": totals}


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise BadRequest(f"version must be a whole number, got {text!r}") from None


def _time(name: str, text: str | None) -> datetime.datetime | None:
    """An ISO 8601 date or timestamp; one with an offset is taken to UTC (the log's times are UTC)."""
    if text is None:
        return None
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 time such as 2026-01-31T12:00:00, got {text!r}") from None
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {text!r}")
    return value


def _where(filters: dict) -> tuple[str, list]:
    conditions = {"model": "model = ?", "version": "version = ?", "since": "logged_at >= ?",
                  "until": "logged_at <= ?"}
    chosen = [(sql, filters[name]) for name, sql in conditions.items() if filters[name] is not None]
    if not chosen:
        return "", []
    return "WHERE " + " AND ".join(sql for sql, _ in chosen), [value for _, value in chosen]


def _models(reader) -> list[str]:
    """The model filter's choices: every model, and the dropped ones the log still names."""
    known = "UNION SELECT name FROM mldb.models" if reader.has_table("models") else ""
    return [row["model"] for row in reader.rows(
        f"SELECT DISTINCT model FROM mldb.prediction_log WHERE model IS NOT NULL {known} ORDER BY 1")]


@page("/predictions/{fingerprint}", "statement.html")
def statement(reader, fingerprint: str) -> dict:
    """The trace of the statements logged under ``fingerprint`` (the same query shape): full text,
    each model version used and its training data, sampled rows, and the tables it wrote."""
    if not reader.has_table("prediction_log"):
        raise NotFound(f"no logged statement with fingerprint {fingerprint!r}")
    log = reader.rows(
        "SELECT model, version, rows, calls, seconds, started_at, logged_at, statement, shadow_of, agreement, "
        "mean_abs_diff FROM mldb.prediction_log WHERE query_fingerprint = ? "
        f"ORDER BY logged_at DESC LIMIT {TRACE_LIMIT}",
        [fingerprint])
    if not log:
        raise NotFound(f"no logged statement with fingerprint {fingerprint!r}")
    texts = _texts(log)
    versions = _versions(reader, fingerprint)
    return {"fingerprint": fingerprint, "statement": texts[0]["statement"], "texts": texts,
            "log": log, "shown": len(log), "total": sum(version["entries"] for version in versions),
            "versions": versions, "samples": _samples(reader, fingerprint),
            "written": _written(reader, [text["statement"] for text in texts], versions)}


def _texts(log: list[dict]) -> list[dict]:
    """The statement's texts among the rows shown, newest first (one fingerprint is one query shape:
    the texts differ only in their literals); each row names its text by position (``text``)."""
    texts: dict[str, dict] = {}
    for row in log:
        statement = row.pop("statement")
        if statement not in texts:
            texts[statement] = {"statement": statement, "entries": 0, "last_logged_at": row["logged_at"],
                                "position": len(texts)}
        texts[statement]["entries"] += 1
        row["text"] = texts[statement]["position"]
    return [{key: value for key, value in text.items() if key != "position"} for text in texts.values()]


def _versions(reader, fingerprint: str) -> list[dict]:
    """Each model version the statement called, with what it was trained on (``training``: the
    version's catalog row; ``sources``: its lineage, base tables under views named with ``via``,
    as the tables pages name them) and its snapshot."""
    rows = reader.rows(
        "SELECT model, version, count(*) AS entries, sum(rows) AS rows, min(started_at) AS first_started_at, "
        "max(logged_at) AS last_logged_at FROM mldb.prediction_log WHERE query_fingerprint = ? "
        "GROUP BY model, version ORDER BY model, version",
        [fingerprint])
    catalog = {name: reader.has_table(name) for name in ("model_versions", "lineage", "snapshots")}
    for row in rows:
        key = [row["model"], row["version"]]
        row["training"] = reader.row(
            "SELECT source_tables, training_query, fingerprint, rows, created_at FROM mldb.model_versions "
            "WHERE model = ? AND version = ?", key) if catalog["model_versions"] else None
        row["sources"] = reader.rows(
            "SELECT source AS table_name, string_agg(DISTINCT via, ', ') AS via FROM mldb.lineage "
            "WHERE kind = 'training' AND target = ? AND target_version = ? GROUP BY source ORDER BY source",
            key) if catalog["lineage"] else []
        row["snapshot"] = reader.row(
            "SELECT rows, fingerprint, stored, table_name, created_at FROM mldb.snapshots "
            "WHERE model = ? AND version = ? ORDER BY created_at DESC LIMIT 1", key) if catalog["snapshots"] else None
    return rows


def _samples(reader, fingerprint: str) -> list[dict]:
    if not reader.has_table("prediction_samples"):
        return []
    rows = reader.rows(
        "SELECT model, version, logged_at, input::VARCHAR AS input, output::VARCHAR AS output "
        f"FROM mldb.prediction_samples WHERE query_fingerprint = ? ORDER BY logged_at DESC LIMIT {SAMPLE_LIMIT}",
        [fingerprint])
    for row in rows:
        row["input"] = json.loads(row["input"]) if row["input"] is not None else None
        row["output"] = json.loads(row["output"]) if row["output"] is not None else None
    return rows


def _written(reader, texts: list[str], versions: list[dict]) -> list[dict]:
    """The tables the statement wrote: lineage edges recorded with its text, and the edges from its
    model versions into the table its text writes (``CREATE TABLE ... AS`` / ``INSERT``) recorded
    while it ran (between its first log row's start and its last row's logging)."""
    if not reader.has_table("lineage"):
        return []
    # (one fingerprint, one shape: every text names the same table, so the newest is parsed)
    targets = [target] if (target := _written_relation(texts[0])) else []
    used = [{"model": row["model"], "version": row["version"]} for row in versions]
    started = min(row["first_started_at"] for row in versions)
    logged = max(row["last_logged_at"] for row in versions)
    return reader.rows(
        "SELECT DISTINCT target AS table_name, source AS model, source_version AS version, kind, created_at "
        "FROM mldb.lineage WHERE kind IN ('prediction', 'embedding') AND (list_contains(?::VARCHAR[], statement) "
        "OR (list_contains(?::VARCHAR[], lower(target)) AND list_contains(?::STRUCT(model VARCHAR, version "
        "INTEGER)[], {'model': source, 'version': source_version}) AND created_at BETWEEN ? AND ?)) "
        "ORDER BY created_at DESC LIMIT 100", [texts, targets, used, started, logged])


def _written_relation(text: str | None) -> str | None:
    from mldb.frontend import MLDB
    from mldb.lifecycle.rules import written_relation

    if not text:
        return None
    try:
        return written_relation(sqlglot.parse_one(text, read=MLDB))
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError):
        return None
