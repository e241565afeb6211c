"""Steps for the model statements: CREATE MODEL, TRAIN, SHOW MODELS, DESCRIBE MODEL, SHOW VERSIONS,
DEPLOY MODEL and DROP MODEL.

Training reads its query through ``session.execute`` (so mldb functions in it work),
trains outside any transaction, then writes the version, its weights (a BLOB), its
training log and the model row in one ``session.transaction()``: a failure leaves
nothing behind and the previously deployed version serving. Results are DuckDB
queries over the catalog, so every frontend reads them alike.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import sqlglot
from sqlglot import exp

from mldb import errors
from mldb.frontend import MLDB
from mldb.frontend.expressions import value_of
from mldb.frontend.reads import one_query, reads_only
from mldb.models import dependents, deployments, policies, registry, search
from mldb import features
from mldb.result import Result
from mldb.vectors import embedding


# -- CREATE MODEL / TRAIN ----------------------------------------------------------------
def create_model(session, node, params) -> Result:
    name = registry.model_name(node.this, "CREATE MODEL")
    existing = registry.model_row(session, name)
    if existing is not None and node.args.get("exists"):
        return _summary(session, name, existing[1], "CREATE MODEL")
    if existing is not None and not node.args.get("replace"):
        raise _exists(name)
    options, policy = policies.take(options_of(node), f"CREATE MODEL {name}")
    definition = {"target": node.args["target"].name, "query": _query_sql(node.args["source"]),
                  "algorithm": _name(node.args.get("algorithm")), "options": options}
    return _train(session, name, definition, status="CREATE MODEL", replace=bool(node.args.get("replace")),
                  policy=policy)


def train_model(session, node, params) -> Result:
    name = registry.model_name(node.this, "TRAIN")
    row = registry.model_row(session, name)
    if row is None:
        raise registry.unknown_model(session, name)
    _, _, latest, target, algorithm, query, stored_options = row
    stored = json.loads(stored_options) if stored_options else {}
    given, policy = policies.take(options_of(node), f"TRAIN {name}")  # (the statement's, never stored)
    algorithm = _name(node.args.get("algorithm")) or algorithm
    stored = search.retrained(stored, given, node.args.get("algorithm") is not None)
    stored = search.inherited(algorithm, stored)  # (TRAIN m USING logistic after an MLP: no hidden layers)
    definition = {"target": node.args["target"].name if node.args.get("target") else target,
                  "query": _query_sql(node.args["source"]) if node.args.get("source") else _stored_query(query),
                  "algorithm": algorithm, "options": stored | given}
    if node.args.get("snapshot"):
        version = node.args.get("snapshot_version")
        definition["query"] = _snapshot_query(session, name, int(version.name) if version else latest)
    return _train(session, name, definition, status="TRAIN", policy=policy)


def _snapshot_query(session, name: str, version: int) -> str:
    known = registry.versions(session, name)
    if version not in known:
        raise errors.ProgrammingError(f"TRAIN {name} FROM SNAPSHOT VERSION {version}: model '{name}' has no "
                                      f"version {version} (versions: {', '.join(map(str, known))})",
                                      sqlstate="42704")
    query = features.fact("snapshot_query", session, name, version)
    if query is None:
        raise errors.ProgrammingError(f"TRAIN {name} FROM SNAPSHOT: no snapshot of the training data of "
                                      f"version {version} is kept (train with WITH (snapshot = true))")
    return query


def _train(session, name: str, definition: dict, *, status: str, replace: bool = False,
           policy: policies.Policy | None = None) -> Result:
    policy = policy or policies.Policy()
    definition["options"] = search.check(name, definition["algorithm"], definition["options"])
    if definition["options"].get("embed_model") and session.database.file_roots is not None:
        embedding.canonical(definition["options"]["embed_model"], session.database.file_roots)  # a served database
    table, types = _read(session, definition["query"])
    planned = policies.planned(policy, status)
    _check_views(session, name, definition, types, status, planned)
    policies.prepare(session, name, policy, table, definition["target"], types, definition["options"],
                     f"{status} {name}")  # (a bad holdout fails before the training)
    outcome = search.fit(name, table, definition["target"], types, definition["algorithm"], definition["options"],
                         check_cancel=session.check_cancel)
    trained = outcome.trained
    with session.database.lock, session.transaction():
        replace = _still_free(session, name, status, replace)
        _check_views(session, name, definition, types, status, planned)
        version = 1 if replace else _next_version(session, name)
        if replace:
            _delete(session, name)
        before = deployments.deployed(session, name)
        _write_version(session, name, version, definition, trained, table, types)
        serves = policies.decide(session, name, version, policy, before)
        if serves and planned is False:  # (if_better: decided only now)
            _check_views(session, name, definition, types, status, serves)
        _write_model(session, name, version, definition, trained, serves)
        policies.record(session, name, version, policy, before)
        _write_trials(session, name, version, outcome.trials)
        registry.invalidate(session, name)
        for listener in features.each("on_trained"):
            listener(session, name, version, table, trained.features, source_tables(definition["query"]),
                     definition["options"])
    registry.invalidate(session, name)
    return _summary(session, name, version, status, policy.decision)


def _still_free(session, name: str, status: str, replace: bool) -> bool:
    """Whether the model row must be replaced, looked at again under the database's lock: training ran
    unlocked, so another connection may have created (or dropped) the model meanwhile. A CREATE MODEL
    that lost that race fails as PostgreSQL's CREATE TABLE does (42710), rather than adding version 2 to
    the winner's model; a TRAIN of a model dropped meanwhile fails as for an unknown model (42704)."""
    exists = registry.model_row(session, name) is not None
    if status == "TRAIN" and not exists:
        raise registry.unknown_model(session, name)
    if status == "CREATE MODEL" and exists and not replace:
        raise _exists(name)
    return status == "CREATE MODEL" and exists


def _check_views(session, name: str, definition: dict, types: dict[str, str], status: str,
                 serves: bool | None = None) -> None:
    """Refuse (2BP01) a version that would be served with another target or other feature columns
    while views call the model (see :mod:`mldb.models.dependents`). A TRAIN while an older version
    is deployed serves nothing new (unless ``serves``: a deployment policy decides); DEPLOY MODEL
    checks that version when it is deployed."""
    row = registry.model_row(session, name)
    if row is None or serves is False or (serves is None and status == "TRAIN" and row[1] != row[2]):
        return
    target = definition["target"]
    new = dependents.signature(target, types.get(target), [(n, t) for n, t in types.items() if n != target])
    doing = f"TRAIN {name}" if status == "TRAIN" else f"CREATE OR REPLACE MODEL {name}"
    dependents.check(session, name, new, doing)


def _exists(name: str) -> errors.ProgrammingError:
    return errors.ProgrammingError(f"model '{name}' already exists; use CREATE OR REPLACE MODEL to start "
                                   f"over or TRAIN {name} for a new version", sqlstate="42710")


def _read(session, query: str) -> tuple[pa.Table, dict[str, str]]:
    """The training rows as one Arrow table (read in batches) and the columns' SQL types."""
    result = session.execute(query)
    if not result.has_rows:
        raise errors.ProgrammingError(f"the training query returns no rows to train on: {query}")
    _check_names(query, [column[0] for column in result.description])
    types = {column[0]: str(column[1]) for column in result.description}
    reader = result.arrow_reader(64 * 1024)
    return pa.Table.from_batches(list(reader), schema=reader.schema), types


def _check_names(query: str, names: list[str], what: str = "the training query") -> None:
    """Every column of the training (or EVALUATE's) query needs its own name (as SQL compares names,
    ignoring case): of two, one would silently be used."""
    seen: dict[str, str] = {}
    for name in names:
        if name.lower() in seen:
            raise errors.ProgrammingError(
                f"{what} has two columns named '{name}'; give each column its own name "
                f"(e.g. SELECT {seen[name.lower()]}, {name} AS {name}_2 ...): {query}", sqlstate="42701")
        seen[name.lower()] = name


def _next_version(session, name: str) -> int:
    return session.sql("SELECT coalesce(max(version), 0) + 1 FROM mldb.model_versions WHERE model = ?",
                       [name]).fetchone()[0]


def _write_version(session, name, version, definition, trained, table, types) -> None:
    target = definition["target"]
    session.sql(
        "INSERT INTO mldb.model_versions (model, version, algorithm, task, target, target_type, classes, "
        "hyperparameters, features, target_encoder, metrics, training_query, source_tables, rows, train_rows, "
        "valid_rows, fingerprint, device, train_seconds, created_at, weights) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, current_localtimestamp(), ?)",
        [name, version, trained.algorithm, trained.task, target, types.get(target),
         json.dumps(trained.target_encoder.get("classes")), json.dumps(trained.hyper),
         json.dumps(trained.features), json.dumps(trained.target_encoder), json.dumps(trained.metrics),
         definition["query"], source_tables(definition["query"]), trained.rows, trained.train_rows,
         trained.valid_rows, fingerprint(table), trained.device, trained.seconds, trained.weights])
    if trained.log:
        session.sql_over("INSERT INTO mldb.training_log SELECT ?, ?, epoch, train_loss, valid_loss, valid_metric, "
                         "metric_name, current_localtimestamp() FROM __mldb_rows", pa.Table.from_pylist(trained.log),
                         [name, version])


_TRIALS = pa.schema([("trial", pa.int32()), ("algorithm", pa.string()), ("params", pa.string()),
                     ("valid_metric", pa.float64()), ("metric_name", pa.string()), ("seconds", pa.float64()),
                     ("chosen", pa.bool_()), ("status", pa.string()), ("error", pa.string())])


def _write_trials(session, name: str, version: int, trials) -> None:
    """One mldb.trials row per candidate the TRAIN tried (a plain TRAIN: one, chosen)."""
    rows = pa.Table.from_pylist([trial.row(number) for number, trial in enumerate(trials, 1)], schema=_TRIALS)
    session.sql_over("INSERT INTO mldb.trials SELECT ?, ?, trial, algorithm, params, valid_metric, metric_name, "
                     "seconds, chosen, status, error, current_localtimestamp() FROM __mldb_rows", rows, [name, version])


def _write_model(session, name, version, definition, trained, serves: bool | None = None) -> None:
    """Insert the model row, or point it at the new version: when ``serves`` (a deployment policy's
    decision), or, without one, when the deployed version was the newest."""
    session.sql(
        "INSERT INTO mldb.models (name, target, task, algorithm, deployed_version, latest_version, training_query, "
        "options, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, current_localtimestamp(), current_localtimestamp()) "
        "ON CONFLICT (name) DO UPDATE SET target = excluded.target, task = excluded.task, "
        "algorithm = excluded.algorithm, training_query = excluded.training_query, options = excluded.options, "
        "deployed_version = CASE WHEN ? THEN excluded.deployed_version WHEN ? THEN mldb.models.deployed_version "
        "WHEN mldb.models.deployed_version = mldb.models.latest_version "
        "THEN excluded.deployed_version ELSE mldb.models.deployed_version END, "
        "latest_version = excluded.latest_version, updated_at = excluded.updated_at",
        [name, definition["target"], trained.task, definition["algorithm"] or "auto", version, version,
         definition["query"], json.dumps(definition["options"]), serves is True, serves is False])


def _delete(session, name: str) -> None:
    """Remove every version of ``name`` (DROP MODEL, CREATE OR REPLACE MODEL), with the lifecycle's records."""
    for table, column in (("training_log", "model"), ("trials", "model"), ("feature_importance", "model"),
                          ("explain_baselines", "model"), ("deployments", "model"), ("deploy_decisions", "model"),
                          ("model_versions", "model"),
                          ("models", "name")):
        session.sql(f"DELETE FROM mldb.{table} WHERE {column} = ?", [name])
    for listener in features.each("on_model_dropped"):
        listener(session, name)


def _summary(session, name: str, version: int, status: str, decision=None) -> Result:
    """TRAIN's row; with a deployment policy, also whether the version serves and the comparison."""
    extra, values = "", []
    if decision is not None:
        extra = (", ? AS deployed, CAST(? AS INTEGER) AS champion_version, CAST(? AS DOUBLE) AS holdout_value, "
                 "CAST(? AS DOUBLE) AS champion_value")
        values = [decision.serves, decision.champion, decision.value, decision.champion_value]
    session.sql(
        "SELECT model, version, task, algorithm, rows, "
        "CASE WHEN task = 'regression' THEN 'r2' ELSE 'accuracy' END AS metric, "
        "CAST(CASE WHEN task = 'regression' THEN metrics->>'r2' ELSE metrics->>'accuracy' END AS DOUBLE) AS value, "
        f"round(train_seconds, 3) AS seconds{extra} FROM mldb.model_versions WHERE model = ? AND version = ?",
        [*values, name, version])
    return Result.from_duckdb(session.con, status)


# -- the definition ----------------------------------------------------------------------
def _query_sql(source: exp.Expression) -> str:
    if isinstance(source, exp.Subquery):  # (stored: a later bare TRAIN, or a monitor's, reads it again)
        return reads_only(source.this, "the training query").sql(dialect=MLDB)
    return f"SELECT * FROM {source.sql(dialect=MLDB)}"


def _stored_query(text: str) -> str:
    """The stored training query, parsed again as one query that only reads (a monitor's THEN TRAIN runs
    it unattended; see :func:`mldb.frontend.reads.one_query`)."""
    return one_query(text, "the stored training query")


def _name(node) -> str | None:
    return node.name.lower() if node is not None else None


def options_of(node) -> dict:
    options = node.args.get("options")
    if options is None:
        return {}
    result = {}
    for item in options.expressions:
        if not isinstance(item, exp.EQ):
            raise errors.ProgrammingError(f"WITH options are key = value pairs; found {item.sql(dialect=MLDB)}",
                                          sqlstate="42601")
        key = item.this.name.lower()
        if key in result:
            raise errors.ProgrammingError(f"option {key} given twice in WITH (...); give each option once",
                                          sqlstate="42710")
        result[key] = value_of(item.expression, "WITH option values")
    return result


def source_tables(query: str) -> list[str]:
    """The tables and views a training query reads (CTE names left out)."""
    try:
        tree = sqlglot.parse_one(query, dialect=MLDB)
    except Exception:  # noqa: BLE001 - lineage is best effort; the query itself already ran
        return []
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    names = {table.sql(dialect=MLDB) for table in tree.find_all(exp.Table)
             if isinstance(table.this, exp.Identifier) and table.name not in ctes}
    return sorted(names)


class _Hasher:
    def __init__(self):
        self.digest = hashlib.sha256()
        self.closed = False

    def write(self, data) -> int:
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        pass


def fingerprint(table: pa.Table) -> str:
    """sha256 of the training rows in Arrow IPC form (same rows, same order -> same fingerprint)."""
    hasher = _Hasher()
    with pa.ipc.new_stream(hasher, table.schema) as writer:
        writer.write_table(table)
    return hasher.digest.hexdigest()[:32]


# -- SHOW / DESCRIBE / DEPLOY / DROP -----------------------------------------------------
def show_models(session, node, params) -> Result:
    session.sql(
        "SELECT m.name, m.deployed_version AS version, v.task, v.algorithm, m.target, "
        "CASE WHEN m.deployed_version = m.latest_version THEN 'deployed' "
        "ELSE 'deployed (newest: ' || m.latest_version || ')' END AS status, "
        "CAST(CASE WHEN v.task = 'regression' THEN v.metrics->>'r2' ELSE v.metrics->>'accuracy' END AS DOUBLE) "
        "AS metric, v.created_at, m.shadow_version FROM mldb.models m JOIN mldb.model_versions v "
        "ON v.model = m.name AND v.version = m.deployed_version ORDER BY m.name")
    return Result.from_duckdb(session.con, "SHOW MODELS")


def describe_model(session, node, params) -> Result:
    model = registry.load_model(session, node.this)
    shape = '[{"name": "VARCHAR", "type": "VARCHAR", "encoding": "VARCHAR", "width": "INTEGER"}]'
    session.sql(
        "SELECT u.f.name AS feature, u.f.type, u.f.encoding, u.f.width, v.model, v.version, v.task, v.algorithm, "
        "v.target, v.target_type, coalesce(?::VARCHAR[], v.source_tables) AS sources, fi.importance, "
        "coalesce((SELECT list(name ORDER BY name) FROM mldb.monitors WHERE model = v.model), []::VARCHAR[]) "
        "AS monitors FROM (SELECT *, from_json(features, ?) AS parsed FROM mldb.model_versions "
        "WHERE model = ? AND version = ?) v, (SELECT unnest(v.parsed) AS f, generate_subscripts(v.parsed, 1) AS i) u "
        "LEFT JOIN mldb.feature_importance fi ON fi.model = v.model AND fi.version = v.version "
        "AND fi.feature = u.f.name ORDER BY u.i", [_sources(session, model), shape, model.name, model.version])
    return Result.from_duckdb(session.con, "DESCRIBE MODEL")


def _sources(session, model) -> list[str] | None:
    """Where the version's data came from, through views (``'c (via v)'``), from the lineage."""
    return features.fact("sources", session, model.name, model.version) or None


def show_versions(session, node, params) -> Result:
    name = registry.model_name(node.this, "SHOW VERSIONS")
    if registry.model_row(session, name) is None:
        raise registry.unknown_model(session, name)
    changed = _data_changed(session, name)
    extra, values = ("", "")
    if changed is not None:
        rows = ", ".join(f"({version}, {'NULL' if flag is None else bool(flag)})" for version, flag in changed)
        extra = ", c.data_changed"
        values = f" LEFT JOIN (VALUES {rows}) AS c(version, data_changed) ON c.version = v.version"
    session.sql(
        f"SELECT v.version, v.created_at, v.rows, v.algorithm, v.metrics, v.version = m.deployed_version AS "
        f"deployed, v.fingerprint{extra} FROM mldb.model_versions v JOIN mldb.models m ON m.name = v.model"
        f"{values} WHERE v.model = ? ORDER BY v.version", [name])
    return Result.from_duckdb(session.con, "SHOW VERSIONS")


def _data_changed(session, name: str) -> list[tuple] | None:
    return [(version, features.fact("source_changed", session, name, version))
            for version in registry.versions(session, name)]


def deploy_model(session, node, params) -> Result:
    """DEPLOY MODEL m VERSION n serves version n (and clears m's shadow); ... AS SHADOW scores n beside it."""
    name = registry.model_name(node.this, "DEPLOY MODEL")
    version = _version_number(node.args["version"], f"DEPLOY MODEL {name} VERSION")
    model = registry.load_model(session, f"{name}@{version}")  # raises for a missing model or version
    if node.args.get("shadow"):
        return _deploy_shadow(session, model)
    deployments.serve(session, name, version, "deploy", f"DEPLOY MODEL {name} VERSION {version}")
    return Result.done("DEPLOY MODEL")


def _deploy_shadow(session, shadow) -> Result:
    """Make ``shadow`` the version PREDICT of the model's name also scores (mldb.models.shadow). It must be
    another version than the deployed one, of the same kind (labels or values), so the two can be compared;
    its features may differ (a batch it cannot score is counted as a shadow error, not raised)."""
    name, doing = shadow.name, f"DEPLOY MODEL {shadow.name} VERSION {shadow.version} AS SHADOW"
    with session.database.lock, session.transaction():
        deployed = deployments.deployed(session, name)
        if deployed is None:
            raise registry.unknown_model(session, name)
        if deployed == shadow.version:
            raise errors.ProgrammingError(f"{doing}: version {deployed} is the deployed version; a shadow is "
                                          "another version, scored beside it", sqlstate="22023")
        served = registry.load_model(session, f"{name}@{deployed}")
        if (served.task == "regression") != (shadow.task == "regression"):
            raise errors.ProgrammingError(
                f"{doing}: version {shadow.version} is a {shadow.task} model and the deployed version {deployed} "
                f"a {served.task} one; a shadow's outputs must be comparable with the deployed version's",
                sqlstate="22023")
        session.sql("UPDATE mldb.models SET shadow_version = ?, updated_at = current_localtimestamp() "
                    "WHERE name = ?", [shadow.version, name])
    registry.invalidate(session, name)
    return Result.done("DEPLOY MODEL")


def _version_number(node, where: str) -> int:
    """A version is a positive integer (22023 otherwise, rather than Python's int() message)."""
    text = node.name
    if not text.isdigit():
        raise errors.ProgrammingError(f"{where}: a version is a positive integer (as SHOW VERSIONS lists); "
                                      f"found {text}", sqlstate="22023")
    return int(text)


def drop_model(session, node, params) -> Result:
    """DROP MODEL [IF EXISTS] m [CASCADE | RESTRICT]: as PostgreSQL drops a table, a model that a
    view calls is kept (2BP01) unless CASCADE drops those views with it."""
    name = registry.model_name(node.this, "DROP MODEL")
    if registry.model_row(session, name) is None:
        if node.args.get("exists"):
            return Result.done("DROP MODEL")
        raise registry.unknown_model(session, name)
    with session.database.lock, session.transaction():
        views = registry.views_using(session, name)
        if views and not node.args.get("cascade"):
            shown = ", ".join(view for view, _ in views)
            many = len(views) > 1
            raise errors.ProgrammingError(
                f"cannot drop model '{name}' because view{'s' if many else ''} {shown} depend{'' if many else 's'} "
                f"on it; drop {'them' if many else 'it'} first, or use DROP MODEL {name} CASCADE to drop "
                f"{'them' if many else 'it'} too", sqlstate="2BP01")
        for _, path in views:
            session.sql(f"DROP VIEW {path}")
        _delete(session, name)
    registry.invalidate(session, name)
    return Result.done("DROP MODEL")
