"""``executemany`` of 2,000 rows: mldb's DB-API vs DuckDB's own Python API, same data.

    .venv/bin/python tests/bench/bench_dbapi.py [rows] [rounds]

Both insert the same rows (BIGINT, VARCHAR, DOUBLE, DATE or NULL) with
``INSERT INTO t VALUES (?, ?, ?, ?)`` into a fresh table, in memory and in a database
file (where DuckDB commits each row); rounds
alternate between the two and the table shows the median seconds and mldb / DuckDB.
"""

from __future__ import annotations

import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

import mldb

DDL = "CREATE OR REPLACE TABLE t (id BIGINT, name VARCHAR, v DOUBLE, d DATE)"
INSERT = "INSERT INTO t VALUES (?, ?, ?, ?)"


def rows(count: int) -> list[tuple]:
    return [(i, f"name{i}", i * 0.5, None if i % 3 else datetime.date(2024, 1, 1 + i % 28)) for i in range(count)]


def timed(connection, data) -> float:
    connection.execute(DDL)
    start = time.perf_counter()
    connection.executemany(INSERT, data)
    elapsed = time.perf_counter() - start
    assert connection.execute("SELECT count(*) FROM t").fetchone()[0] == len(data)
    return elapsed


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    data = rows(count)
    print(f"executemany of {count:,} rows, median of {rounds} rounds")
    with tempfile.TemporaryDirectory() as folder:
        for where, ref_path, mldb_path in (("in memory", ":memory:", ":memory:"),
                                           ("database file", str(Path(folder) / "ref.duckdb"), Path(folder) / "m.db")):
            ref, con = duckdb.connect(ref_path), mldb.connect(mldb_path)
            times: dict[str, list[float]] = {"duckdb": [], "mldb": []}
            for _ in range(rounds):
                times["duckdb"].append(timed(ref, data))
                times["mldb"].append(timed(con, data))
            con.close()
            ref.close()
            duck, ours = statistics.median(times["duckdb"]), statistics.median(times["mldb"])
            print(f"  {where:14} DuckDB {duck * 1000:9.1f} ms   mldb {ours * 1000:7.1f} ms   "
                  f"mldb / DuckDB = {ours / duck:.3f}x")

if __name__ == "__main__":
    main()
