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
