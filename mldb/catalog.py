"""mldb's catalog: plain DuckDB tables and views in schema ``mldb`` that any SQL can read.

Each feature adds its tables to ``DDL`` (idempotent ``CREATE ... IF NOT EXISTS``);
``ensure`` runs them in one transaction when a database is opened for writing.
"""

from __future__ import annotations

import duckdb

INDEXES_VIEW = """CREATE VIEW mldb.indexes AS
SELECT d.name, d.schema_name, d.table_name, d.column_name, d.key_column, d.metric, d.kind, d.options, d.dimension,
       CASE WHEN c.version > d.version THEN c.row_count ELSE d.row_count END AS row_count, d.build_id,
       greatest(d.version, coalesce(c.version, 0)) AS version,
       d.stale OR coalesce(c.version > d.version, false) AS stale,
       d.created_at, CASE WHEN c.version > d.version THEN c.changed_at ELSE d.updated_at END AS updated_at
FROM mldb.index_definitions d
LEFT JOIN (SELECT build_id, max(version) AS version, arg_max(row_count, version) AS row_count,
                  max(changed_at) AS changed_at
           FROM mldb.index_changes GROUP BY build_id) c USING (build_id)"""

DDL: list[str] = [
    "CREATE SCHEMA IF NOT EXISTS mldb",
    # -- models (issue: models) ---------------------------------------------------------
    "CREATE TABLE IF NOT EXISTS mldb.models (name VARCHAR PRIMARY KEY, target VARCHAR, task VARCHAR, "
    "algorithm VARCHAR, deployed_version INTEGER, latest_version INTEGER, training_query VARCHAR, "
    "options JSON, created_at TIMESTAMP, updated_at TIMESTAMP)",
    "CREATE TABLE IF NOT EXISTS mldb.model_versions (model VARCHAR, version INTEGER, algorithm VARCHAR, "
    "task VARCHAR, target VARCHAR, target_type VARCHAR, classes JSON, hyperparameters JSON, features JSON, "
    "target_encoder JSON, metrics JSON, training_query VARCHAR, source_tables VARCHAR[], rows BIGINT, "
    "train_rows BIGINT, valid_rows BIGINT, fingerprint VARCHAR, device VARCHAR, train_seconds DOUBLE, "
    "created_at TIMESTAMP, weights BLOB, PRIMARY KEY (model, version))",
    "CREATE TABLE IF NOT EXISTS mldb.training_log (model VARCHAR, version INTEGER, epoch INTEGER, "
    "train_loss DOUBLE, valid_loss DOUBLE, valid_metric DOUBLE, metric_name VARCHAR, created_at TIMESTAMP)",
    # one row per candidate a TRAIN tried (a search's trials, USING auto's algorithms; a plain TRAIN's one)
    "CREATE TABLE IF NOT EXISTS mldb.trials (model VARCHAR, version INTEGER, trial INTEGER, algorithm VARCHAR, "
    "params JSON, valid_metric DOUBLE, metric_name VARCHAR, seconds DOUBLE, chosen BOOLEAN, status VARCHAR, "
    "error VARCHAR, created_at TIMESTAMP)",
    # explanations (mldb/models/explain.py): per version, each feature's importance and the mean of its
    # encoded training columns (EXPLAIN_PREDICT's baseline input)
    "CREATE TABLE IF NOT EXISTS mldb.feature_importance (model VARCHAR, version INTEGER, feature VARCHAR, "
    "importance DOUBLE, method VARCHAR)",
    "CREATE TABLE IF NOT EXISTS mldb.explain_baselines (model VARCHAR, version INTEGER, feature VARCHAR, "
    "mean DOUBLE[])",
    # every change of a model's deployed version (mldb/models/deployments.py): what served before, and why
    "CREATE TABLE IF NOT EXISTS mldb.deployments (model VARCHAR, version INTEGER, previous_version INTEGER, "
    "reason VARCHAR, deployed_at TIMESTAMP)",
    # every decision of TRAIN ... WITH (deploy = 'if_better') (mldb/models/policies.py): both versions' metric
    # on the same holdout rows, and whether the new version serves
    "CREATE TABLE IF NOT EXISTS mldb.deploy_decisions (model VARCHAR, version INTEGER, champion_version INTEGER, "
    "metric VARCHAR, value DOUBLE, champion_value DOUBLE, holdout VARCHAR, holdout_rows BIGINT, deployed BOOLEAN, "
    "decided_at TIMESTAMP)",
    # -- vectors (issue: embed / faiss) ---------------------------------------------------
    "CREATE TABLE IF NOT EXISTS mldb.embedding_models (name VARCHAR NOT NULL, path VARCHAR NOT NULL, "
    "created_at TIMESTAMP DEFAULT current_timestamp)",
    # FAISS indexes (see mldb/vectors/store.py): definitions (version/row_count of the stored
    # bytes), the bytes, one row per committed change (inserts: no shared row to update), and
    # mldb.indexes, the view users read (current version and row count)
    "CREATE TABLE IF NOT EXISTS mldb.index_definitions (name VARCHAR NOT NULL, schema_name VARCHAR, "
    "table_name VARCHAR, column_name VARCHAR, key_column VARCHAR, metric VARCHAR, kind VARCHAR, options JSON, "
    "dimension INTEGER, row_count BIGINT, build_id VARCHAR, version BIGINT, stale BOOLEAN, "
    "created_at TIMESTAMP DEFAULT current_timestamp, updated_at TIMESTAMP DEFAULT current_timestamp)",
    "CREATE TABLE IF NOT EXISTS mldb.index_data (build_id VARCHAR NOT NULL, data BLOB)",
    "CREATE TABLE IF NOT EXISTS mldb.index_changes (build_id VARCHAR NOT NULL, version BIGINT, row_count BIGINT, "
    "changed_at TIMESTAMP)",
    INDEXES_VIEW.replace("CREATE VIEW", "CREATE VIEW IF NOT EXISTS"),  # (an older file's table: see store._migrate)
    # -- lifecycle (issue: lifecycle) -----------------------------------------------------
    """CREATE TABLE IF NOT EXISTS mldb.prediction_log (
        model VARCHAR, version INTEGER, rows BIGINT, calls INTEGER, seconds DOUBLE,
        started_at TIMESTAMP, logged_at TIMESTAMP, query_fingerprint VARCHAR, statement VARCHAR,
        summary JSON)""",
    """CREATE TABLE IF NOT EXISTS mldb.prediction_samples (
        model VARCHAR, version INTEGER, logged_at TIMESTAMP, query_fingerprint VARCHAR,
        input JSON, output JSON)""",
    """CREATE TABLE IF NOT EXISTS mldb.feature_stats (
        model VARCHAR, version INTEGER, feature VARCHAR, role VARCHAR, kind VARCHAR, type VARCHAR,
        count BIGINT, nulls BIGINT, mean DOUBLE, std DOUBLE, min DOUBLE, max DOUBLE,
        quantiles DOUBLE[], bin_edges DOUBLE[], bin_counts BIGINT[],
        top_values VARCHAR[], top_counts BIGINT[], other_count BIGINT)""",
    """CREATE TABLE IF NOT EXISTS mldb.lineage (
        source VARCHAR, source_version INTEGER, target VARCHAR, target_version INTEGER,
        kind VARCHAR, via VARCHAR, statement VARCHAR, created_at TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS mldb.snapshots (
        model VARCHAR, version INTEGER, rows BIGINT, fingerprint VARCHAR, columns VARCHAR[],
        stored BOOLEAN, table_name VARCHAR, log_sample DOUBLE, created_at TIMESTAMP)""",
    # -- monitors (issue 15: mldb/monitors/) -------------------------------------------------
    # a monitor's definition and schedule (``every`` NULL: it runs only by RUN MONITOR)
    """CREATE TABLE IF NOT EXISTS mldb.monitors (
        name VARCHAR PRIMARY KEY, model VARCHAR, check_kind VARCHAR, check_query VARCHAR, every INTERVAL,
        condition VARCHAR, action VARCHAR, train_query VARCHAR, holdout_query VARCHAR, paused BOOLEAN,
        disabled BOOLEAN, disabled_reason VARCHAR, next_run_at TIMESTAMP, created_at TIMESTAMP, statement VARCHAR)""",
    "CREATE SEQUENCE IF NOT EXISTS mldb.monitor_run_ids",
    # every run of a monitor (kept when the monitor is dropped: its history, as the prediction log)
    """CREATE TABLE IF NOT EXISTS mldb.monitor_runs (
        id BIGINT PRIMARY KEY, monitor VARCHAR, model VARCHAR, started_at TIMESTAMP, seconds DOUBLE,
        values JSON, triggered BOOLEAN, action VARCHAR, outcome VARCHAR, message VARCHAR,
        model_version_before INTEGER, model_version_after INTEGER, scheduled BOOLEAN)""",
    "CREATE SEQUENCE IF NOT EXISTS mldb.alert_ids",
    """CREATE TABLE IF NOT EXISTS mldb.alerts (
        id BIGINT PRIMARY KEY, monitor VARCHAR, model VARCHAR, raised_at TIMESTAMP, message VARCHAR,
        values JSON, acknowledged BOOLEAN, acknowledged_at TIMESTAMP)""",
]


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in DDL:
            con.execute(statement)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
