"""mldb's catalog: plain DuckDB tables and views in schema ``mldb`` that any SQL can read.

Each feature adds its tables to ``DDL`` (idempotent ``CREATE ... IF NOT EXISTS``);
``ensure`` runs them in one transaction when a database is opened for writing.
"""

from __future__ import annotations

import duckdb

DDL: list[str] = [
    "CREATE SCHEMA IF NOT EXISTS mldb",
    # -- models (issue: models) ---------------------------------------------------------
    # -- vectors (issue: embed / faiss) ---------------------------------------------------
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
