"""Cheap statements over the wire: ``mldb serve`` against in-process DuckDB and mldb (issue 13).

    .venv/bin/python tests/bench/bench_statements.py [seconds] [rounds] [rows]

Serves a fresh database file with mldb's own ``Server`` (what ``mldb serve`` runs) on a
thread of this process and measures, in alternating rounds (the table shows medians):

- ``SELECT $1::int + 1`` queries/s: an in-process DuckDB ``execute(sql, [i]).fetchall()``
  loop; mldb in-process (DB-API); psycopg 3 clients (autocommit, server-side binding,
  each in its own process) against the server, 1 and 4 at once.
- fetching ``SELECT id, PREDICT(m) FROM t`` (``rows`` rows, a model trained here) as
  Python tuples: in-process through mldb's DB-API ``fetchall`` and over the wire with a
  psycopg binary cursor.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import psycopg

import mldb
from mldb.server.app import Server

QUERY = "SELECT $1::int + 1"
PREDICT = "SELECT id, PREDICT(m) AS p FROM t"


def duckdb_loop(seconds: float) -> float:
    con = duckdb.connect()
    return _rate(lambda i: con.execute(QUERY, [i]).fetchall(), seconds)


def mldb_loop(con, seconds: float) -> float:
    cursor = con.cursor()
    return _rate(lambda i: cursor.execute(QUERY, [i]).fetchall(), seconds)


def _rate(run, seconds: float) -> float:
    for i in range(50):
        run(i)
    count, end = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        run(count)
        count += 1
    return count / (time.perf_counter() - start)


def wire_client(args) -> tuple[int, float]:
    """One psycopg client process: (queries, seconds) of a ``QUERY`` loop."""
    dsn, seconds, start_at = args
    with psycopg.connect(dsn, autocommit=True) as con:
        for i in range(50):  # warm-up (psycopg prepares a statement after 5 uses)
            con.execute(QUERY.replace("$1", "%s"), [i]).fetchall()
        time.sleep(max(0.0, start_at - time.time()))  # every client starts together
        count, start = 0, time.perf_counter()
        end = start + seconds
        while time.perf_counter() < end:
            con.execute(QUERY.replace("$1", "%s"), [count]).fetchall()
            count += 1
        return count, time.perf_counter() - start


def wire_rate(pool, dsn: str, clients: int, seconds: float) -> float:
    start_at = time.time() + 1.0
    results = pool.map(wire_client, [(dsn, seconds, start_at)] * clients)
    return sum(count / elapsed for count, elapsed in results)


def wire_fetch(dsn: str) -> float:
    with psycopg.connect(dsn, autocommit=True) as con:
        start = time.perf_counter()
        rows = con.cursor(binary=True).execute(PREDICT).fetchall()
        elapsed = time.perf_counter() - start
    assert len(rows) and rows[0][1] is not None
    return elapsed


def local_fetch(con) -> float:
    start = time.perf_counter()
    rows = con.cursor().execute(PREDICT).fetchall()
    elapsed = time.perf_counter() - start
    assert len(rows) and rows[0][1] is not None
    return elapsed


def prepare(con, rows: int) -> None:
    con.execute(f"CREATE TABLE t AS SELECT i AS id, (i % 97) / 97.0 AS a, (i % 13)::DOUBLE AS b, "
                f"(i % 7 = 0)::INTEGER AS c, ((i % 97) / 97.0 * 2 + (i % 13)) AS y FROM range({rows}) r(i)")
    con.execute("CREATE MODEL m PREDICT y FROM (SELECT a, b, c, y FROM t LIMIT 20000) USING linear "
                "WITH (epochs = 2)")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
    folder = Path(tempfile.mkdtemp(prefix="mldb-bench-statements-"))
    con = mldb.connect(str(folder / "bench.db"))
    prepare(con, rows)
    server = Server(con._session.database, "127.0.0.1", 0)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    dsn = f"host=127.0.0.1 port={server.address[1]} user=bench dbname=bench"
    figures: dict[str, list[float]] = {}
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        for _ in range(rounds):
            for name, measure in (("duckdb", lambda: duckdb_loop(seconds)),
                                  ("mldb in-process", lambda: mldb_loop(con, seconds)),
                                  ("wire 1 client", lambda: wire_rate(pool, dsn, 1, seconds)),
                                  ("wire 4 clients", lambda: wire_rate(pool, dsn, 4, seconds)),
                                  ("fetch in-process", lambda: local_fetch(con)),
                                  ("fetch wire binary", lambda: wire_fetch(dsn))):
                figures.setdefault(name, []).append(measure())
    server.stop()
    serving.join()
    report({name: statistics.median(values) for name, values in figures.items()}, rounds, rows)


def report(medians: dict[str, float], rounds: int, rows: int) -> None:
    print(f"medians of {rounds} alternating rounds")
    for name in ("duckdb", "mldb in-process", "wire 1 client", "wire 4 clients"):
        print(f"  {QUERY:<22} {name:<17} {medians[name]:8.0f} q/s")
    for name in ("fetch in-process", "fetch wire binary"):
        print(f"  {rows:,}-row PREDICT   {name:<17} {medians[name]:8.2f} s  ({rows / medians[name]:,.0f} rows/s)")
    print("\n| workload | ratio | target |\n|---|---|---|")
    print(f"| mldb serve q/s, 1 psycopg client / in-process DuckDB execute loop | "
          f"{medians['wire 1 client'] / medians['duckdb']:.2f}x | >= 0.75x |")
    print(f"| same with 4 clients / 1 client | {medians['wire 4 clients'] / medians['wire 1 client']:.2f}x | >= 1.3x |")
    print(f"| in-process mldb / in-process DuckDB (q/s) | {medians['mldb in-process'] / medians['duckdb']:.2f}x | |")
    print(f"| {rows:,}-row PREDICT over the wire (binary) / in-process (rows/s) | "
          f"{medians['fetch in-process'] / medians['fetch wire binary']:.2f}x | >= 0.8x |")


if __name__ == "__main__":
    main()
