"""Steps for the monitor statements: CREATE MONITOR, RUN MONITOR, SHOW MONITORS, ALTER MONITOR ...
PAUSE | RESUME, DROP MONITOR and ACKNOWLEDGE ALERT.

CREATE MONITOR checks everything it can before writing anything: the model exists, each query parses
and binds (run with LIMIT 0) and has the columns its use needs, the interval is positive, and the
condition names only the check's values and is a boolean. A monitor's queries are stored as SQL text
and run again at each run, so they see the data of that moment.
"""

from __future__ import annotations

from datetime import timedelta

import sqlglot
from sqlglot import exp

from mldb import errors
from mldb.frontend import MLDB
from mldb.frontend.reads import placeholders, reads_only
from mldb.lifecycle import drift
from mldb.models import registry, rules
from mldb.monitors import checks, clock, runner, store
from mldb.result import Result

LONGEST_EVERY = "INTERVAL 100 YEAR"  # (longer: a first run past the year 9999 cannot be written down)


# -- CREATE MONITOR ---------------------------------------------------------------------
def create_monitor(session, node, params) -> Result:
    name = _monitor_name(node.name, "CREATE MONITOR")
    if placeholders(node):
        raise errors.ProgrammingError("CREATE MONITOR: a monitor is kept and runs later, when no parameters are "
                                      "given: write the values into the statement instead of ? or $n",
                                      sqlstate="42601")
    if _taken(session, name, node):
        return Result.done("CREATE MONITOR")
    monitor = _definition(session, name, node)
    with session.database.lock, session.transaction():
        if _taken(session, name, node):  # (looked at again under the lock: another session may have made it)
            return Result.done("CREATE MONITOR")
        store.delete(session, name)
        store.insert(session, monitor, node.sql(dialect=MLDB))
    return Result.done("CREATE MONITOR")


def _taken(session, name: str, node) -> bool:
    """Whether the name is taken and IF NOT EXISTS says do nothing; 42710 when taken without OR REPLACE."""
    if store.find(session, name) is None or node.args.get("replace"):
        return False
    if node.args.get("exists"):
        return True
    raise errors.ProgrammingError(f"monitor '{name}' already exists; use CREATE OR REPLACE MONITOR to redefine it",
                                  sqlstate="42710")


def _definition(session, name: str, node) -> store.Monitor:
    model_name = registry.model_name(node.args["model"], "CREATE MONITOR")
    rows = session.sql("SELECT task FROM mldb.models WHERE name = ?", [model_name]).fetchall()
    if not rows:
        raise registry.unknown_model(session, model_name)
    model, kind, action = registry.load_model(session, model_name), node.args["check"], node.args["action"]
    check_query = _query_sql(node.args["query"], f"CHECK {kind.upper()}")
    _needs(session, check_query, model, f"CHECK {kind.upper()}", target=kind == "evaluate")
    if kind == "drift":
        drift.saved_stats(session.con, model.name, model.version)  # (raises: no training statistics)
    condition = checks.condition_sql(node.args.get("condition"), kind, checks.value_types(kind, rows[0][0]), session)
    train_query = holdout_query = None
    if node.args.get("source") is not None:
        train_query = _query_sql(node.args["source"], "THEN TRAIN FROM")
        _needs(session, train_query, model, "THEN TRAIN FROM", features=False)
    if node.args.get("holdout") is not None:
        holdout_query = _query_sql(node.args["holdout"], "DEPLOY IF BETTER ON")
        _needs(session, holdout_query, model, "DEPLOY IF BETTER ON")
    every = _interval(session, node.args.get("every"))
    created = clock.now()
    return store.Monitor(name=name, model=model_name, check_kind=kind, check_query=check_query, every=every,
                         condition=condition, action=action, train_query=train_query, holdout_query=holdout_query,
                         paused=False, disabled=False, disabled_reason=None,
                         next_run_at=runner.first_run(every, created), created_at=created)


def _monitor_name(written: str, statement: str) -> str:
    name = str(written).strip()
    if not name:
        raise errors.ProgrammingError(f"{statement}: a monitor name cannot be empty", sqlstate="42602")
    return name.lower()


def _query_sql(source: exp.Expression, where: str) -> str:
    if isinstance(source, exp.Subquery):
        return reads_only(source.this, where).sql(dialect=MLDB)
    return f"SELECT * FROM {source.sql(dialect=MLDB)}"


def _needs(session, query: str, model, where: str, *, features: bool = True, target: bool = True) -> None:
    """The query binds (run with LIMIT 0) and has the model's feature columns and/or its target (42703), each
    of a type the model can read (42804): a run must not be the first to find out."""
    result = session.execute(f"SELECT * FROM ({query}) AS monitor_query LIMIT 0")
    found = [column[0] for column in result.description]
    types = {column[0]: str(column[1]) for column in result.description}
    result.fetchall()
    have = {column.lower() for column in found}
    needed = ([feature["name"] for feature in model.features] if features else []) + ([model.target] if target else [])
    missing = [column for column in needed if column.lower() not in have]
    if missing:
        raise errors.ProgrammingError(f"{where}: model '{model.name}' needs column{'s' if len(missing) > 1 else ''} "
                                      f"{', '.join(missing)}; the query has: {', '.join(found) or 'no columns'}",
                                      sqlstate="42703")
    _not_session_only(session, query, where)
    if features:
        rules.check_columns(model, types)  # (each feature of its kind: 42804)
    if target and features:
        rules.check_target(model, next(kind for name, kind in types.items() if name.lower() == model.target.lower()))


def _not_session_only(session, query: str, where: str) -> None:
    """A monitor runs later in other sessions (another connection, a server's thread, ``mldb monitor``): its
    query must not read a TEMP table or view, or a frame registered on this connection, which only this
    session sees (42P01: every run would fail)."""
    tree = sqlglot.parse_one(query, dialect=MLDB)
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    names = sorted({table.name.lower() for table in tree.find_all(exp.Table)
                    if isinstance(table.this, exp.Identifier) and table.name.lower() not in ctes
                    and (table.catalog.lower() == "temp" or (not table.catalog and table.db.lower() in ("", "main")))})
    if not names:
        return
    local = session.sql("SELECT table_name FROM duckdb_tables() WHERE database_name = 'temp' AND lower(table_name) "
                        "IN (SELECT unnest(?)) UNION SELECT view_name FROM duckdb_views() WHERE database_name = 'temp' "
                        "AND lower(view_name) IN (SELECT unnest(?)) ORDER BY 1", [names, names]).fetchall()
    if local:
        raise errors.ProgrammingError(f"{where}: {', '.join(row[0] for row in local)} is only this session's (a TEMP "
                                      f"table or view, or a registered frame), and a monitor runs in other sessions; "
                                      f"read a table or a view of the database", sqlstate="42P01")


def _interval(session, node: exp.Expression | None) -> timedelta | None:
    """EVERY's interval: a constant (it is read once, here), positive and at most ``LONGEST_EVERY`` (22023)."""
    if node is None:
        return None
    sql = node.sql(dialect=MLDB)
    if node.find(exp.Query, exp.Subquery, exp.Func, exp.Column) is not None:
        raise errors.ProgrammingError(f"EVERY needs a constant interval (INTERVAL 1 HOUR, INTERVAL '90 minutes'); "
                                      f"found {sql}", sqlstate="22023")
    every = f"CAST({sql} AS INTERVAL)"
    positive, too_long = session.sql(f"SELECT {every} > INTERVAL 0 SECOND, {every} > {LONGEST_EVERY}").fetchall()[0]
    if not positive:
        raise errors.ProgrammingError(f"EVERY needs a positive interval; found {sql}", sqlstate="22023")
    if too_long:
        raise errors.ProgrammingError(f"EVERY needs an interval of at most {LONGEST_EVERY}; found {sql}",
                                      sqlstate="22023")
    return session.sql(f"SELECT {every}").fetchall()[0][0]


# -- RUN / SHOW / ALTER / DROP / ACKNOWLEDGE -------------------------------------------------
def run_monitor(session, node, params) -> Result:
    written = _parameter(node.this, params, "RUN MONITOR ?", "the monitor's name")
    row = runner.run(session, _monitor_name(written, "RUN MONITOR"))
    session.sql("SELECT * FROM mldb.monitor_runs WHERE id = ?", [row["id"]])
    return Result.from_duckdb(session.con, "RUN MONITOR")


def show_monitors(session, node, params) -> Result:
    session.sql(
        "SELECT m.name, m.model, m.check_kind AS check, m.every, m.condition, m.action, "
        "CASE WHEN m.disabled THEN 'disabled' WHEN models.name IS NULL THEN 'model missing' "
        "WHEN m.paused THEN 'paused' ELSE 'active' END AS status, "
        "m.next_run_at, r.started_at AS last_run_at, r.outcome AS last_outcome, "
        "coalesce(a.open_alerts, 0) AS open_alerts, m.created_at FROM mldb.monitors m "
        "LEFT JOIN mldb.models models ON models.name = m.model "
        "LEFT JOIN (SELECT monitor, max(id) AS id FROM mldb.monitor_runs GROUP BY monitor) last "
        "ON last.monitor = m.name "
        "LEFT JOIN mldb.monitor_runs r ON r.id = last.id "
        "LEFT JOIN (SELECT monitor, count(*) AS open_alerts FROM mldb.alerts WHERE NOT acknowledged "
        "GROUP BY monitor) a ON a.monitor = m.name ORDER BY m.name")
    return Result.from_duckdb(session.con, "SHOW MONITORS")


def alter_monitor(session, node, params) -> Result:
    name = _monitor_name(node.name, "ALTER MONITOR")
    paused = bool(node.args["paused"])
    with session.database.lock, session.transaction():
        monitor = store.get(session, name)
        if not paused and monitor.disabled and registry.model_row(session, monitor.model) is None:
            raise errors.ProgrammingError(f"ALTER MONITOR {name} RESUME: {monitor.disabled_reason}; create the "
                                          f"model again first, or DROP MONITOR {name}", sqlstate="42704")
        store.set_paused(session, name, paused)
    return Result.done("ALTER MONITOR")


def drop_monitor(session, node, params) -> Result:
    """DROP MONITOR [IF EXISTS]: the definition goes; its runs and alerts stay as history."""
    name = _monitor_name(node.name, "DROP MONITOR")
    with session.database.lock, session.transaction():
        if store.find(session, name) is None:
            if node.args.get("exists"):
                return Result.done("DROP MONITOR")
            raise store.unknown(session, name)
        store.delete(session, name)
    return Result.done("DROP MONITOR")


def acknowledge_alert(session, node, params) -> Result:
    text = _parameter(node.this, params, "ACKNOWLEDGE ALERT ?", "the alert's id")
    if not text.isdigit():
        raise errors.ProgrammingError(f"ACKNOWLEDGE ALERT: an alert id is a positive integer (as mldb.alerts "
                                      f"lists); found {text}", sqlstate="22023")
    with session.transaction():
        if not store.acknowledge(session, int(text), clock.now()):
            raise errors.ProgrammingError(f"alert {text} does not exist (SELECT * FROM mldb.alerts lists them)",
                                          sqlstate="42704")
    return Result.done("ACKNOWLEDGE ALERT")


def _parameter(node: exp.Expression | str, params, statement: str, what: str) -> str:
    """The name or id as written, or the parameter given for ``?`` / ``$1`` (an application acts on what it
    just read: ``execute("ACKNOWLEDGE ALERT ?", [alert_id])``, ``execute("RUN MONITOR ?", [name])``)."""
    if not isinstance(node, exp.Placeholder):
        return node.name if isinstance(node, exp.Expression) else str(node)
    values = list(params.values()) if isinstance(params, dict) else list(params or [])
    if len(values) != 1:
        raise errors.ProgrammingError(f"{statement} takes one parameter, {what}; {len(values)} given",
                                      sqlstate="42P02")
    return str(values[0]).strip()
