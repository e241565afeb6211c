"""Reproducible training data: a fingerprint of every version's rows, and optional copies.

``mldb.snapshots`` has one row per model version: row count, the fingerprint of the
training rows (order-independent: the sum of DuckDB's row hashes, with the count),
the columns, and, when the model was trained ``WITH (snapshot = true)``, the name of
the table in schema ``mldb`` holding a copy of those rows. ``TRAIN m FROM SNAPSHOT``
reads that table back, and ``SHOW VERSIONS`` compares the fingerprint with one
recomputed from the training query to say whether the source data changed.
"""

from __future__ import annotations

import hashlib
import re

import duckdb
import pyarrow as pa

from mldb import errors

_SCRATCH = "__mldb_lifecycle_rows"


def fingerprint(con, table: pa.Table) -> str:
    """Order-independent fingerprint of an Arrow table's rows (hashing runs inside DuckDB)."""
    with registered(con, table) as name:
        count, total = con.execute(f"SELECT count(*), sum(hash(t)::HUGEINT) FROM {name} t").fetchall()[0]
    return hashlib.md5(f"{count}:{total}".encode()).hexdigest()[:16]


class registered:
    """``with registered(con, arrow_table) as name:`` a temporary view of the table on ``con``."""

    def __init__(self, con, table: pa.Table, name: str = _SCRATCH):
        self.con, self.table, self.name = con, table, name

    def __enter__(self) -> str:
        self.con.register(self.name, self.table)
        return self.name

    def __exit__(self, *exc) -> None:
        self.con.unregister(self.name)


def quoted(name: str) -> str:
    """A table name as a quoted identifier (names come from mldb.snapshots, which a client can write)."""
    return '"' + name.replace('"', '""') + '"'


def table_name(model: str, version: int) -> str:
    return f"snapshot_{re.sub(r'[^0-9a-zA-Z_]', '_', model.lower())}_v{version}"


def save(con, model: str, version: int, table: pa.Table, *, store: bool, log_sample: float | None) -> None:
    """Record the version's fingerprint; with ``store`` also copy its rows to ``mldb.<table_name>``."""
    if store and table.num_rows == 0:
        raise errors.DataError(f"model '{model}': cannot snapshot an empty training set")
    name = table_name(model, version)
    con.execute("DELETE FROM mldb.snapshots WHERE model = ? AND version = ?", [model, version])
    con.execute(f"DROP TABLE IF EXISTS mldb.{quoted(name)}")
    if store:
        with registered(con, table) as rows:
            con.execute(f"CREATE TABLE mldb.{quoted(name)} AS SELECT * FROM {rows}")
    con.execute(
        "INSERT INTO mldb.snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
        [model, version, table.num_rows, fingerprint(con, table), table.column_names, store,
         name if store else None, log_sample],
    )


def saved(con, model: str, version: int) -> dict | None:
    cursor = con.execute("SELECT * FROM mldb.snapshots WHERE model = ? AND version = ?", [model, version])
    rows = cursor.fetchall()
    return dict(zip([d[0] for d in cursor.description], rows[0])) if rows else None


def snapshot_query(con, model: str, version: int) -> str:
    row = saved(con, model, version)
    if row is None or not row["stored"]:
        raise errors.ProgrammingError(
            f"model '{model}' version {version} has no snapshot of its training data; "
            "train it WITH (snapshot = true) to keep one", sqlstate="55000")
    return f"SELECT * FROM mldb.{quoted(row['table_name'])}"


def changed(con, model: str, version: int, query: str | None) -> bool | None:
    """Whether ``query`` now returns other rows than the version was trained on (None: unknown)."""
    row = saved(con, model, version)
    if row is None or not query:
        return None
    columns = ", ".join('"' + c.replace('"', '""') + '"' for c in row["columns"])
    try:
        table = con.sql(f"SELECT {columns} FROM ({query})").to_arrow_table()
    except duckdb.Error:  # a dropped table or column: the source changed
        return True
    return fingerprint(con, table) != row["fingerprint"]
