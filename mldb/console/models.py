"""The console's model pages: every model at a glance (``/models``) and one model in full (``/models/<name>``).

The list is a handful of aggregate queries over the whole catalog (deployed versions, the last day of the
prediction log, the newest drift run, open alerts), joined in DuckDB, so it costs the same with 3 models or
50 models x 20 versions and a million logged statements. A model's page reads only that model's rows and
caps every list ("showing N of M"). Catalog tables a feature added later (monitors, alerts, shadows, the
lifecycle's statistics) may be missing from an older file: what is missing is left out, not an error.

The JSON twins (times as ISO text, intervals as seconds):

    GET /api/models -> {"count": 3, "models": [{"name", "url", "task", "algorithm", "target",
        "deployed_version", "latest_version", "shadow_version", "versions", "metric": {"name", "value"} | null,
        "last_trained", "predictions_1d", "statements_1d", "open_alerts",
        "drift": {"status": "drifted" | "stable" | "no drift monitor" | "not run yet" | "check failed",
                  "monitor", "checked_at", "drifted_features", "max_psi"}}]}
    GET /api/models/<name> -> {"model": {name, target, task, algorithm, deployed_version, latest_version,
        shadow_version, training_query, options, created_at, updated_at}, "url",
        "versions": [{version, algorithm, task, created_at, rows, train_rows, valid_rows, metrics: {..},
                      hyperparameters: {..}, fingerprint, train_seconds, device, training_query, source_tables,
                      deployed, shadow, source_data: {state, how, detail}}]  (newest first, at most 20),
        "versions_total", "fingerprint_rows", "metric_names", "hyperparameter_names",
        "deployments": {rows, total}, "deploy_decisions": {rows, total}, "feature_stats": {version, rows},
        "feature_importance": {version, rows}, "monitors": [..], "monitor_runs": {rows, total},
        "alerts": {rows, total, open}, "predictions": {by_version: [..], last_day: {statements, predictions}},
        "charts": {training | volume | drift | importance: {url, width, height}}, "lineage": {url, chart}}
"""

from __future__ import annotations

import json
from urllib.parse import quote

import duckdb
import sqlglot

from mldb.console import charts  # (also registers the model charts)
from mldb.console.pages import NotFound, page
from mldb.frontend import MLDB
from mldb.frontend.expressions import MldbFunction
from mldb.lifecycle import snapshots
from mldb.lifecycle.lineage import tables_read

VERSIONS_SHOWN = 20
RUNS_SHOWN = 20
ALERTS_SHOWN = 20
DEPLOYMENTS_SHOWN = 50
IMPORTANCE_SHOWN = 50
# a version whose training set had more rows than this is compared by row count, not by fingerprint
FINGERPRINT_ROWS = 200_000
SOURCE_SECONDS = 2  # re-running one training query (a view may have become a scan of anything) stops after this

# the metric a model is judged by on the list, per task: the first one its version recorded
KEY_METRICS = {"regression": ("r2", "rmse", "mae")}
CLASSIFICATION_METRICS = ("accuracy", "f1", "roc_auc")


def model_url(name: str) -> str:
    return "/models/" + quote(name, safe="")


# -- the list --------------------------------------------------------------------------------
@page("/models", "models.html")
def models(reader) -> dict:
    """Every model: its deployed version's metric, recent predictions, drift status and open alerts."""
    if not reader.has_table("models") or not reader.has_table("model_versions"):
        return {"models": [], "count": 0}
    rows = reader.rows(_list_sql(reader))
    listed = [_listed(row) for row in rows]
    return {"models": listed, "count": len(listed)}


def _list_sql(reader) -> str:
    """One query: models joined to their deployed version and to per-model aggregates of the other tables."""
    shadow = "m.shadow_version" if reader.has_column("models", "shadow_version") else "NULL::INTEGER"
    volume = _volume_cte(reader)
    drift = _drift_cte(reader)
    alerts = ("SELECT model, count(*) AS open_alerts FROM mldb.alerts WHERE NOT coalesce(acknowledged, false) "
              "GROUP BY model") if reader.has_table("alerts") else "SELECT NULL::VARCHAR AS model, 0 AS open_alerts"
    return f"""
WITH trained AS (SELECT model, count(*) AS versions, max(created_at) AS last_trained
                 FROM mldb.model_versions GROUP BY model),
     volume AS ({volume}),
     drift AS ({drift}),
     alerts AS ({alerts})
SELECT m.name, m.target, coalesce(v.task, m.task) AS task, coalesce(v.algorithm, m.algorithm) AS algorithm,
       m.deployed_version, m.latest_version, {shadow} AS shadow_version, v.metrics, t.versions, t.last_trained,
       coalesce(p.predictions, 0) AS predictions_1d, coalesce(p.statements, 0) AS statements_1d,
       d.drift_monitors, d.monitor AS drift_monitor, d.started_at AS drift_checked_at, d.outcome AS drift_outcome,
       d.triggered AS drift_triggered, d.drifted_features, d.max_psi, coalesce(a.open_alerts, 0) AS open_alerts
FROM mldb.models m
LEFT JOIN mldb.model_versions v ON v.model = m.name AND v.version = m.deployed_version
LEFT JOIN trained t ON t.model = m.name
LEFT JOIN volume p ON p.model = m.name
LEFT JOIN drift d ON d.model = m.name
LEFT JOIN alerts a ON a.model = m.name
ORDER BY m.name"""


def _volume_cte(reader) -> str:
    if not reader.has_table("prediction_log"):
        return "SELECT NULL::VARCHAR AS model, 0 AS predictions, 0 AS statements"
    served = " AND shadow_of IS NULL" if reader.has_column("prediction_log", "shadow_of") else ""
    return ("SELECT model, sum(rows) AS predictions, count(*) AS statements FROM mldb.prediction_log "
            f"WHERE logged_at >= now()::TIMESTAMP - INTERVAL 1 DAY{served} GROUP BY model")


def _drift_cte(reader) -> str:
    """Per model: how many drift monitors it has, and the newest run of any of them."""
    if not (reader.has_table("monitors") and reader.has_table("monitor_runs")):
        return ("SELECT NULL::VARCHAR AS model, 0 AS drift_monitors, NULL::VARCHAR AS monitor, "
                "NULL::TIMESTAMP AS started_at, NULL::VARCHAR AS outcome, NULL::BOOLEAN AS triggered, "
                "NULL::DOUBLE AS drifted_features, NULL::DOUBLE AS max_psi")
    return """
SELECT k.model, k.drift_monitors, r.monitor, r.started_at, r.outcome, r.triggered,
       TRY_CAST(r."values"->>'drifted_features' AS DOUBLE) AS drifted_features,
       TRY_CAST(r."values"->>'max_psi' AS DOUBLE) AS max_psi
FROM (SELECT model, count(*) AS drift_monitors FROM mldb.monitors WHERE lower(check_kind) = 'drift' GROUP BY model) k
LEFT JOIN (SELECT r.*, mo.model AS monitored FROM mldb.monitor_runs r JOIN mldb.monitors mo ON mo.name = r.monitor
           WHERE lower(mo.check_kind) = 'drift'
           QUALIFY row_number() OVER (PARTITION BY mo.model ORDER BY r.started_at DESC, r.id DESC) = 1) r
       ON r.monitored = k.model"""


def _listed(row: dict) -> dict:
    metrics = _json(row.pop("metrics"))
    return {
        "name": row["name"], "url": model_url(row["name"]), "task": row["task"], "algorithm": row["algorithm"],
        "target": row["target"], "deployed_version": row["deployed_version"],
        "latest_version": row["latest_version"], "shadow_version": row["shadow_version"],
        "versions": row["versions"] or 0, "metric": key_metric(row["task"], metrics),
        "last_trained": row["last_trained"], "predictions_1d": int(row["predictions_1d"]),
        "statements_1d": int(row["statements_1d"]), "drift": _drift(row), "open_alerts": int(row["open_alerts"]),
    }


def key_metric(task: str | None, metrics: dict) -> dict | None:
    """The metric the list shows for a version: ``{"name": "accuracy", "value": 0.95}`` (None: none recorded)."""
    names = KEY_METRICS.get(task or "", CLASSIFICATION_METRICS)
    for name in names:
        if _is_number(metrics.get(name)):
            return {"name": name, "value": metrics[name]}
    return None


def _drift(row: dict) -> dict:
    """``drifted`` when the newest drift run triggered or found a drifted feature, ``stable`` when it did not."""
    if not row["drift_monitors"]:
        status = "no drift monitor"
    elif row["drift_checked_at"] is None:
        status = "not run yet"
    elif row["drift_outcome"] not in (None, "ok"):
        status = "check failed"
    elif row["drift_triggered"] or (row["drifted_features"] or 0) >= 1:
        status = "drifted"
    else:
        status = "stable"
    return {"status": status, "monitor": row["drift_monitor"], "checked_at": row["drift_checked_at"],
            "drifted_features": _whole(row["drifted_features"]), "max_psi": row["max_psi"]}


# -- one model ---------------------------------------------------------------------------------
@page("/models/{name:path}", "model.html")
def model(reader, name: str) -> dict:
    """One model: its facts, versions side by side, deployments, statistics, monitors, alerts and predictions."""
    found = find_model(reader, name)
    name = found["name"]
    versions, total = _versions(reader, found)
    shown = found["deployed_version"] or found["latest_version"]
    return {
        "model": found,
        "url": model_url(name),
        "versions": versions,
        "versions_total": total,
        "fingerprint_rows": FINGERPRINT_ROWS,
        "metric_names": _keys(version["metrics"] for version in versions),
        "hyperparameter_names": _keys(version["hyperparameters"] for version in versions),
        "deployments": _deployments(reader, name),
        "deploy_decisions": _decisions(reader, name),
        "feature_stats": {"version": shown, "rows": _feature_stats(reader, name, shown)},
        "feature_importance": {"version": shown, "rows": _importance(reader, name, shown)},
        "monitors": _monitors(reader, name),
        "monitor_runs": _runs(reader, name),
        "alerts": _alerts(reader, name),
        "predictions": _predictions(reader, name),
        "charts": _charts(reader, name),
        # (the lineage pages, mldb.console.lineage: "name@*" is the model's versions, never a table of that name)
        "lineage": {"url": "/lineage?node=" + quote(name + "@*", safe=""),
                    "chart": "/charts/lineage/" + quote(name + "@*", safe="") + ".svg"},
    }


def _charts(reader, name: str) -> dict:
    """Each chart's address and size in pixels (the drift chart has a panel per drift monitor that ran)."""
    panels = {"drift": max(1, len(charts.drift_monitors(reader, name)))}
    width, height = (round(inches * 100) for inches in charts.SIZE)
    return {kind: {"url": f"/charts{model_url(name)}/{kind}.svg", "width": width,
                   "height": height * panels.get(kind, 1)} for kind in charts.MODEL_CHARTS}


def find_model(reader, name: str) -> dict:
    """The model's ``mldb.models`` row (names are stored lower-case, as SQL writes them), or NotFound."""
    if not reader.has_table("models"):
        raise NotFound(f"no model named '{name}': this database has no models")
    shadow = "shadow_version" if reader.has_column("models", "shadow_version") else "NULL::INTEGER AS shadow_version"
    row = reader.row(f"SELECT name, target, task, algorithm, deployed_version, latest_version, {shadow}, "
                     "training_query, options, created_at, updated_at FROM mldb.models "
                     "WHERE name = ? OR name = ? ORDER BY name = ? DESC LIMIT 1", [name, name.lower(), name])
    if row is None:
        raise NotFound(f"no model named '{name}'")
    row["options"] = _json(row["options"])
    return row


def _versions(reader, found: dict) -> tuple[list[dict], int]:
    name = found["name"]
    total = reader.value("SELECT count(*) FROM mldb.model_versions WHERE model = ?", [name])
    rows = reader.rows(
        "SELECT version, algorithm, task, created_at, rows, train_rows, valid_rows, metrics, hyperparameters, "
        "fingerprint, train_seconds, device, training_query, source_tables FROM mldb.model_versions "
        f"WHERE model = ? ORDER BY version DESC LIMIT {VERSIONS_SHOWN}", [name])
    for row in rows:
        row["metrics"] = {key: value for key, value in _json(row["metrics"]).items() if key != "rows"}
        row["hyperparameters"] = _json(row["hyperparameters"])
        row["deployed"] = row["version"] == found["deployed_version"]
        row["shadow"] = row["version"] == found["shadow_version"]
    _source_data(reader, name, rows)
    return rows, total


def _source_data(reader, name: str, versions: list[dict]) -> None:
    """Each version's ``source_data``: whether its training query returns other rows now than it trained on.

    As SHOW VERSIONS does (``mldb.lifecycle.snapshots``): the training rows' order-independent fingerprint,
    recomputed once per distinct query. A version trained on more than FINGERPRINT_ROWS rows is compared by
    its row count only (re-reading that many rows would cost a page seconds), and says so."""
    saved = {}
    if reader.has_table("snapshots"):
        saved = {row["version"]: row for row in reader.rows(
            "SELECT version, rows, fingerprint, columns FROM mldb.snapshots WHERE model = ?", [name])}
    current: dict = {}
    for version in versions:
        version["source_data"] = _compare(reader, version, saved.get(version["version"]), current)


def _compare(reader, version: dict, saved: dict | None, current: dict) -> dict:
    """``{"state": changed | unchanged | same row count | unknown, "how": fingerprint | row count, "detail"}``;
    ``current`` keeps what each (query, columns) returns now, for the versions trained on the same query."""
    query = version["training_query"]
    if not query:
        return {"state": "unknown", "how": None, "detail": "no training query recorded"}
    by_fingerprint = saved is not None and (saved["rows"] or 0) <= FINGERPRINT_ROWS
    columns = tuple(saved["columns"]) if by_fingerprint else None
    if (query, columns) not in current:
        current[query, columns] = _current_rows(reader, query, columns)
    now = current[query, columns]
    if "verdict" in now:  # (not run again, or failed)
        return now["verdict"]
    if by_fingerprint:
        return _by_fingerprint(saved, now)
    return _by_row_count(version["rows"], now, saved is not None)


def _by_fingerprint(saved: dict, now: dict) -> dict:
    if now["rows"] is None:
        return {"state": "changed", "how": "row count",
                "detail": f"rows changed: {saved['rows']} -> more than {FINGERPRINT_ROWS:,}"}
    if now["fingerprint"] == saved["fingerprint"]:
        return {"state": "unchanged", "how": "fingerprint", "detail": f"the same {saved['rows']} rows"}
    detail = (f"rows changed: {saved['rows']} -> {now['rows']}" if now["rows"] != saved["rows"]
              else f"the same number of rows ({now['rows']}), other values")
    return {"state": "changed", "how": "fingerprint", "detail": detail}


def _by_row_count(trained_rows, now: dict, too_many: bool) -> dict:
    if now["rows"] != trained_rows:
        return {"state": "changed", "how": "row count", "detail": f"rows changed: {trained_rows} -> {now['rows']}"}
    why = "too many rows to fingerprint on a page" if too_many else "no fingerprint recorded"
    return {"state": "same row count", "how": "row count",
            "detail": f"the same number of rows ({trained_rows}); values not compared ({why})"}


def _current_rows(reader, query: str, columns: tuple | None) -> dict:
    """The training query's rows now: their count, and with ``columns`` their fingerprint (as
    ``mldb.lifecycle.snapshots`` computes it at training time), reading at most FINGERPRINT_ROWS + 1
    rows (more: ``rows`` is None). A table or column gone: changed. Not run at all (``verdict``: what
    to show instead): a query that calls mldb's functions (that would score every row again)."""
    if _calls_mldb(reader, query):
        return _unknown("not compared: the training query calls mldb's functions (PREDICT, EMBED), itself or "
                        "through a view; re-running it would score its rows again")
    try:
        with reader.time_limit(SOURCE_SECONDS) as cursor:
            relation = _one_select(cursor, query)
            if relation is None:
                return _unknown("not compared: the recorded training query is not one SELECT")
            if columns is None:
                return {"rows": relation.aggregate("count(*)").fetchall()[0][0]}
            listed = ", ".join(snapshots.quoted(column) for column in columns)
            table = relation.project(listed).limit(FINGERPRINT_ROWS + 1).to_arrow_table()
    except duckdb.InterruptException:
        return _unknown(f"not compared: the training query ran longer than {SOURCE_SECONDS:g} s")
    except (duckdb.CatalogException, duckdb.BinderException) as error:
        return _failed("changed", error)
    except duckdb.Error as error:
        return _failed("unknown", error)
    if table.num_rows > FINGERPRINT_ROWS:
        return {"rows": None}
    return {"rows": table.num_rows, "fingerprint": snapshots.fingerprint(reader.cursor(), table)}


def _one_select(cursor, query: str):
    """``query`` as a relation when DuckDB's own parser reads it as exactly one SELECT, else None. The
    text is a catalog row (anyone with SQL may have edited it; the file may come from anyone): pasted
    into SQL, a second statement in it would run, and COPY ... TO a file works even read-only."""
    statements = cursor.extract_statements(query)
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        return None
    return cursor.sql(query)


def _unknown(detail: str) -> dict:
    return {"verdict": {"state": "unknown", "how": None, "detail": detail}}


def _failed(state: str, error: Exception) -> dict:
    detail = f"the training query fails now: {str(error).splitlines()[0]}"
    return {"verdict": {"state": state, "how": None, "detail": detail}}


def _calls_mldb(reader, query: str) -> bool:
    """Whether ``query`` calls mldb's functions (PREDICT, EMBED...), itself or in a view it reads
    (a stored view calls them through the ``mldb_execution`` variable, as ``mldb.database`` notes)."""
    if _mldb_function_in(query):
        return True
    views = {row["name"]: row["sql"] for row in reader.rows(
        "SELECT lower(CASE WHEN schema_name = 'main' THEN view_name ELSE schema_name || '.' || view_name END) "
        "AS name, sql FROM duckdb_views() WHERE database_name = current_database() AND NOT internal")}
    pending, seen = tables_read(query), set()
    while pending:
        name = pending.pop()
        if name in views and name not in seen:
            seen.add(name)
            if "mldb_execution" in views[name]:
                return True
            pending += tables_read(views[name])
    return False


def _mldb_function_in(query: str) -> bool:
    try:
        return sqlglot.parse_one(query, read=MLDB).find(MldbFunction) is not None
    except sqlglot.errors.SqlglotError:
        return False


def _deployments(reader, name: str) -> dict:
    if not reader.has_table("deployments"):
        return {"rows": [], "total": 0}
    return _capped(reader, "SELECT version, previous_version, reason, deployed_at FROM mldb.deployments "
                           "WHERE model = ? ORDER BY deployed_at DESC", [name], DEPLOYMENTS_SHOWN)


def _decisions(reader, name: str) -> dict:
    if not reader.has_table("deploy_decisions"):
        return {"rows": [], "total": 0}
    return _capped(reader, "SELECT version, champion_version, metric, value, champion_value, holdout, holdout_rows, "
                           "deployed, decided_at FROM mldb.deploy_decisions WHERE model = ? ORDER BY decided_at DESC",
                   [name], DEPLOYMENTS_SHOWN)


def _feature_stats(reader, name: str, version) -> list[dict]:
    if version is None or not reader.has_table("feature_stats"):
        return []
    rows = reader.rows(
        "SELECT feature, role, kind, type, count, nulls, mean, std, min, max, top_values, top_counts, other_count "
        "FROM mldb.feature_stats WHERE model = ? AND version = ? "
        "ORDER BY CASE role WHEN 'feature' THEN 0 WHEN 'target' THEN 1 ELSE 2 END, rowid", [name, version])
    for row in rows:
        values, counts = row.pop("top_values") or [], row.pop("top_counts") or []
        row["top"] = [{"value": value, "count": count} for value, count in zip(values, counts)]
    return rows


def _importance(reader, name: str, version) -> list[dict]:
    if version is None or not reader.has_table("feature_importance"):
        return []
    return reader.rows("SELECT feature, importance, method FROM mldb.feature_importance "
                       f"WHERE model = ? AND version = ? ORDER BY importance DESC LIMIT {IMPORTANCE_SHOWN}",
                       [name, version])


def _monitors(reader, name: str) -> list[dict]:
    if not reader.has_table("monitors"):
        return []
    runs = ("SELECT monitor, max(started_at) AS last_run_at FROM mldb.monitor_runs WHERE model = ? GROUP BY monitor"
            if reader.has_table("monitor_runs") else "SELECT NULL::VARCHAR AS monitor, NULL::TIMESTAMP AS last_run_at "
                                                     "WHERE ? IS NULL")
    return reader.rows("SELECT name, check_kind, every, condition, action, paused, disabled, disabled_reason, "
                       f"next_run_at, r.last_run_at FROM mldb.monitors m LEFT JOIN ({runs}) r ON r.monitor = m.name "
                       "WHERE m.model = ? ORDER BY name", [name, name])


def _runs(reader, name: str) -> dict:
    if not reader.has_table("monitor_runs"):
        return {"rows": [], "total": 0}
    runs = _capped(reader, 'SELECT id, monitor, started_at, seconds, "values", triggered, action, outcome, message, '
                           "model_version_before, model_version_after, scheduled FROM mldb.monitor_runs "
                           "WHERE model = ? ORDER BY started_at DESC, id DESC", [name], RUNS_SHOWN)
    for run in runs["rows"]:
        run["values"] = _json(run["values"])
    return runs


def _alerts(reader, name: str) -> dict:
    if not reader.has_table("alerts"):
        return {"rows": [], "total": 0, "open": 0}
    alerts = _capped(reader, "SELECT id, monitor, raised_at, message, acknowledged, acknowledged_at FROM mldb.alerts "
                             "WHERE model = ? ORDER BY raised_at DESC, id DESC", [name], ALERTS_SHOWN)
    alerts["open"] = reader.value("SELECT count(*) FROM mldb.alerts WHERE model = ? "
                                  "AND NOT coalesce(acknowledged, false)", [name])
    return alerts


def _predictions(reader, name: str) -> dict:
    """The prediction log summed per version (served and shadow rows apart) and over the last day, in one scan."""
    if not reader.has_table("prediction_log"):
        return {"by_version": [], "last_day": {"predictions": 0, "statements": 0}}
    shadow = "shadow_of IS NOT NULL" if reader.has_column("prediction_log", "shadow_of") else "false"
    by_version = reader.rows(
        f"SELECT version, {shadow} AS shadow, count(*) AS statements, sum(rows) AS predictions, "
        "min(logged_at) AS first_at, max(logged_at) AS last_at, "
        "count(*) FILTER (WHERE logged_at >= now()::TIMESTAMP - INTERVAL 1 DAY) AS statements_1d, "
        "coalesce(sum(rows) FILTER (WHERE logged_at >= now()::TIMESTAMP - INTERVAL 1 DAY), 0) AS predictions_1d "
        "FROM mldb.prediction_log WHERE model = ? GROUP BY ALL ORDER BY version DESC, shadow", [name])
    served = [row for row in by_version if not row["shadow"]]
    last_day = {"statements": sum(row["statements_1d"] for row in served),
                "predictions": sum(row["predictions_1d"] for row in served)}
    return {"by_version": by_version, "last_day": last_day}


# -- helpers ------------------------------------------------------------------------------------
def _capped(reader, sql: str, params: list, limit: int) -> dict:
    """The first ``limit`` rows of ``sql`` and how many there are in all."""
    rows = reader.rows(f"{sql} LIMIT {limit}", params)
    total = len(rows) if len(rows) < limit else reader.value(f"SELECT count(*) FROM ({sql})", params)
    return {"rows": rows, "total": total}


def _json(text) -> dict:
    if text is None:
        return {}
    value = json.loads(text) if isinstance(text, str) else text
    return value if isinstance(value, dict) else {}


def _keys(dicts) -> list[str]:
    """Every key of the dicts, in the order first seen."""
    seen: dict = {}
    for each in dicts:
        seen.update(dict.fromkeys(each))
    return list(seen)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value):
    return int(value) if _is_number(value) and float(value).is_integer() else value
