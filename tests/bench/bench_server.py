"""Small-query throughput and latency: psycopg against ``mldb serve`` vs a real PostgreSQL 15;
and a 1M-row psql ``\\copy`` in and out (text and CSV).

    .venv/bin/python tests/bench/bench_server.py [clients] [seconds]
    .venv/bin/python tests/bench/bench_server.py copy [rows]     # only the \\copy lines

Starts ``mldb serve`` on a fresh database file and a PostgreSQL server from the
machine's packages (``initdb`` in a temporary directory, loopback only, run as the
``postgres`` user when we are root), loads the same 10,000-row table into both, then
runs the same queries with the same number of client processes (psycopg 3, one
connection each, autocommit, server-side parameter binding) for a fixed time per
round. Rounds alternate between the servers; the table shows medians over rounds
and mldb's share of PostgreSQL's queries/s.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
QUERIES = {
    "SELECT 1": ("SELECT 1", lambda i: None),
    "point query": ("SELECT v FROM kv WHERE k = %s", lambda i: [i % 10_000]),
}
ROUNDS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_mldb(folder: Path) -> tuple[subprocess.Popen, str]:
    with open(folder / "mldb.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "mldb.server", "serve", str(folder / "bench.db"),
                                    "--port", "0"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    for _ in range(600):
        found = re.search(r" on [\d.]+:(\d+), ", (folder / "mldb.log").read_text())
        if found:
            return process, f"host=127.0.0.1 port={found.group(1)} user=bench dbname=bench"
        time.sleep(0.1)
    raise RuntimeError("mldb serve did not start")


def start_postgres(folder: Path) -> tuple[list[str], str]:
    """initdb + pg_ctl start on a free loopback port; returns (stop command, dsn)."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not binaries:
        raise SystemExit("PostgreSQL is not installed: run .ci/setup_server.sh")
    bin_dir, data, port = binaries[-1].parent, folder / "pgdata", free_port()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    subprocess.run(as_user + [str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "bench"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(as_user + [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "pg.log"),
                              "-w", "start"], check=True, capture_output=True)
    stop = as_user + [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
    return stop, f"host=127.0.0.1 port={port} user=bench dbname=postgres"


def load(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("CREATE TABLE kv(k INTEGER PRIMARY KEY, v VARCHAR)")
        con.execute("INSERT INTO kv SELECT i, md5(i::VARCHAR) FROM generate_series(0, 9999) t(i)")


def client(args) -> list[float]:
    """One client process: run ``sql`` until ``seconds`` pass; the latency of each query."""
    dsn, name, seconds = args
    sql, params = QUERIES[name]
    latencies = []
    with psycopg.connect(dsn, autocommit=True) as con:
        for i in range(50):  # warm-up (and psycopg prepares after 5 uses)
            con.execute(sql, params(i)).fetchall()
        end = time.perf_counter() + seconds
        i = 0
        while (start := time.perf_counter()) < end:
            con.execute(sql, params(i)).fetchall()
            latencies.append(time.perf_counter() - start)
            i += 1
    return latencies


BULK = "SELECT i, i::VARCHAR AS s, (i * 0.5)::DOUBLE PRECISION AS f FROM generate_series(1, 300000) t(i)"


def bulk(dsn: str, binary: bool) -> float:
    """Seconds to fetch 300,000 rows of (integer, text, double) with one client."""
    with psycopg.connect(dsn, autocommit=True) as con:
        start = time.perf_counter()
        rows = con.cursor(binary=binary).execute(BULK).fetchall()
        assert len(rows) == 300_000
        return time.perf_counter() - start


COPY_TABLE = "CREATE TABLE copied(id INTEGER, name VARCHAR, price DOUBLE PRECISION, ts TIMESTAMP)"


def copy_data(folder: Path, rows: int) -> Path:
    """The rows both servers load: (integer, text, double, timestamp), written as CSV by DuckDB."""
    import duckdb

    path = folder / "copy.csv"
    duckdb.sql(f"COPY (SELECT i AS id, 'customer ' || i || ' ' || md5(i::VARCHAR)[:8] AS name, "
               f"round(i * 0.37 % 1000, 2)::DOUBLE AS price, TIMESTAMP '2024-01-01' + to_seconds(i * 7) AS ts "
               f"FROM range({rows}) t(i)) TO '{path}' (HEADER false)")
    os.chmod(path, 0o644)
    return path


def psql_copy(dsn: str, command: str) -> float:
    """Seconds psql takes to run one ``\\copy`` (its start-up included, a few ms)."""
    psql = shutil.which("psql")
    if psql is None:
        raise SystemExit("psql is not installed: run .ci/setup_server.sh")
    start = time.perf_counter()
    subprocess.run([psql, dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command], check=True, capture_output=True)
    return time.perf_counter() - start


def copy_round(dsn: str, data: Path, folder: Path, fmt: str) -> tuple[float, float]:
    """(seconds to \\copy the rows in, seconds to \\copy them out) in ``fmt`` ('text' or 'csv')."""
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("DROP TABLE IF EXISTS copied")
        con.execute(COPY_TABLE)
    source = data if fmt == "csv" else folder / "copy.txt"
    seconds_in = psql_copy(dsn, f"\\copy copied FROM '{source}' (FORMAT {fmt})")
    out = folder / f"out.{fmt}"
    seconds_out = psql_copy(dsn, f"\\copy copied TO '{out}' (FORMAT {fmt})")
    out.unlink()
    return seconds_in, seconds_out


def copy_bench(mldb_dsn: str, pg_dsn: str, folder: Path, rows: int) -> None:
    data = copy_data(folder, rows)
    with psycopg.connect(pg_dsn, autocommit=True) as con:  # the text-format file, as PostgreSQL writes it
        con.execute("DROP TABLE IF EXISTS copied")
        con.execute(COPY_TABLE)
    psql_copy(pg_dsn, f"\\copy copied FROM '{data}' (FORMAT csv)")
    psql_copy(pg_dsn, f"\\copy copied TO '{folder / 'copy.txt'}'")
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(ROUNDS):
        for fmt in ("text", "csv"):
            for server, dsn in (("mldb", mldb_dsn), ("postgres", pg_dsn)):
                figures.setdefault((fmt, server), []).append(copy_round(dsn, data, folder, fmt))
    print(f"\npsql \\copy of {rows:,} rows (integer, text, double, timestamp): seconds, medians of {ROUNDS} "
          "alternating rounds")
    for fmt in ("text", "csv"):
        for index, direction in ((0, "in"), (1, "out")):
            ours, theirs = (statistics.median(f[index] for f in figures[(fmt, server)]) for server in ("mldb", "postgres"))
            print(f"{fmt:<4} {direction:<3} mldb {ours:6.2f} s  postgres {theirs:6.2f} s  mldb/postgres {ours / theirs:.2f}")


def measure(pool, dsn: str, name: str, clients: int, seconds: float) -> tuple[float, float]:
    """(queries/s over all clients, median latency in ms)."""
    results = pool.map(client, [(dsn, name, seconds)] * clients)
    latencies = [value for result in results for value in result]
    return len(latencies) / seconds, statistics.median(latencies) * 1000


def main() -> None:
    if sys.argv[1:2] == ["copy"]:
        return copy_main(int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000)
    clients = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    folder = Path(tempfile.mkdtemp(prefix="mldb-bench-server-"))
    os.chmod(folder, 0o777)
    mldb_process, mldb_dsn = start_mldb(folder)
    stop_postgres, pg_dsn = start_postgres(folder)
    try:
        load(mldb_dsn)
        load(pg_dsn)
        figures: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
        with multiprocessing.get_context("spawn").Pool(clients) as pool:
            for _ in range(ROUNDS):
                for name in QUERIES:
                    for count in sorted({1, clients}):
                        for server, dsn in (("mldb", mldb_dsn), ("postgres", pg_dsn)):
                            figures.setdefault((name, server, count), []).append(
                                measure(pool, dsn, name, count, seconds))
                for binary in (False, True):
                    for server, dsn in (("mldb", mldb_dsn), ("postgres", pg_dsn)):
                        figures.setdefault(("bulk", server, binary), []).append(bulk(dsn, binary))
        report(figures, clients)
        copy_bench(mldb_dsn, pg_dsn, folder, 1_000_000)
    finally:
        mldb_process.send_signal(signal.SIGTERM)
        mldb_process.wait(timeout=60)
        subprocess.run(stop_postgres, check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def copy_main(rows: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="mldb-bench-copy-"))
    os.chmod(folder, 0o777)
    mldb_process, mldb_dsn = start_mldb(folder)
    stop_postgres, pg_dsn = start_postgres(folder)
    try:
        copy_bench(mldb_dsn, pg_dsn, folder, rows)
    finally:
        mldb_process.send_signal(signal.SIGTERM)
        mldb_process.wait(timeout=60)
        subprocess.run(stop_postgres, check=False, capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def report(figures, clients: int) -> None:
    print(f"psycopg 3, autocommit, server-side binding; medians of {ROUNDS} rounds")
    print(f"{'query':<12} {'clients':>7} {'mldb q/s':>9} {'pg q/s':>9} {'ratio':>6} {'mldb ms':>8} {'pg ms':>7}")
    for name in QUERIES:
        for count in sorted({1, clients}):
            ours = [figure for figure in figures[(name, "mldb", count)]]
            theirs = [figure for figure in figures[(name, "postgres", count)]]
            qps, pg_qps = statistics.median(f[0] for f in ours), statistics.median(f[0] for f in theirs)
            ms, pg_ms = statistics.median(f[1] for f in ours), statistics.median(f[1] for f in theirs)
            print(f"{name:<12} {count:>7} {qps:>9.0f} {pg_qps:>9.0f} {qps / pg_qps:>6.2f} {ms:>8.3f} {pg_ms:>7.3f}")
    print("\n300,000 rows (integer, text, double), one client: seconds")
    for binary in (False, True):
        ours, theirs = (statistics.median(figures[("bulk", server, binary)]) for server in ("mldb", "postgres"))
        print(f"{'binary' if binary else 'text':<6} mldb {ours:.2f} s  postgres {theirs:.2f} s  ratio {theirs / ours:.2f}")


if __name__ == "__main__":
    main()
