"""Scale-out on Ray against the local executor, on the same machine (issue 17's benchmark).

    .venv/bin/python tests/bench/bench_scaleout.py                # 20M rows in 40 parquet files, 200k texts in 8
    .venv/bin/python tests/bench/bench_scaleout.py --quick        # 2M rows, 20k texts
    .venv/bin/python tests/bench/bench_scaleout.py --rows 400000 --files 8 --texts 2000 --repeat 1   # a smoke run
    options: --workers 1,2  --repeat 3  --embed-repeat 1  --no-embed  --json out.json  --dir DIR (kept; default a temp dir)

Data is generated with DuckDB into Parquet files (an id, 8 DOUBLE features, a kind), the model
``bench`` is bench_predict's MLP ([64, 32], one epoch) trained on 100k rows of the same
distribution, and the texts are bench_vectors' generated sentences. Free disk is checked first;
when it is short the row count is scaled down, with a message.

Each case runs under the local executor and under Ray with 1 and 2 workers (``SET
mldb_ray_workers``), interleaved, medians over ``--repeat``:

- ``SELECT id, PREDICT(bench)`` read through ``arrow_reader`` and discarded (the ``rows`` shape);
- ``SELECT count(*), avg(PREDICT(bench)::INT)`` (the ``partials`` shape);
- ``COPY (SELECT id, PREDICT(bench) ...) TO dir`` (the ``copy`` shape);
- ``SELECT id, EMBED(body)`` over the texts, read and discarded (EMBED shipped to the workers);
- a 1-file, 1000-row ``SELECT id, PREDICT(bench)``: the fixed cost of one statement.

``ray.init`` runs once (a private local cluster of this process, 2 CPUs) and its time is printed
apart. Whether a statement went out is read from the run itself (``Result.scaleout``, the Ray
job's record, is None for a statement that ran here) and from EXPLAIN's executor line; a case
that does not go out in this build is reported as such, with the reason, not timed as Ray.
Per-piece seconds come from the job's piece reports (a report's ``seconds`` when the worker
sends one, else the gaps between one worker's reports as they reach the driver, its first
piece left out as it includes the actor's start). The last table extrapolates
``T(n) = fixed + ceil(pieces / n) * c`` (one file per piece) to more workers, with c the measured
seconds per piece beyond the fixed cost: ``(T - fixed) * workers / pieces``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
from tabulate import tabulate

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from bench_predict import BATCH, HIDDEN
from bench_vectors import sentences

import mldb

WIDTH = 8
FEATURES = [f"f{i}" for i in range(WIDTH)]
TRAIN_ROWS = 100_000
BYTES_PER_ROW = 80  # an id, 8 random DOUBLEs (incompressible) and a short string, in Parquet
BYTES_PER_TEXT = 60
TINY_ROWS = 1000
BATCH_ROWS = 65_536


# -- data ----------------------------------------------------------------------------------------
def feature_sql() -> str:
    return ", ".join(f"random() * {i + 1} AS f{i}" for i in range(WIDTH))


def target_sql() -> str:
    return " + ".join(f"sin(f{i}) * {i % 3}" for i in range(WIDTH))


def fitting_rows(folder: Path, rows: int, texts: int) -> int:
    """``rows``, or fewer when the disk cannot hold the inputs plus a COPY output (a message says so)."""
    free = shutil.disk_usage(folder).free
    needed = rows * (BYTES_PER_ROW + 24) + texts * BYTES_PER_TEXT  # + one COPY output (id, p) at a time
    if needed * 2 <= free:
        return rows
    fitted = max(TINY_ROWS * 10, int((free // 2 - texts * BYTES_PER_TEXT) / (BYTES_PER_ROW + 24)))
    print(f"only {free / 2**30:.1f} GiB free in {folder}: {fitted:,} rows instead of {rows:,}")
    return fitted


def write_events(folder: Path, rows: int, files: int) -> str:
    """``files`` parquet files of ``rows`` rows in all; the glob that reads them."""
    events = folder / "events"
    events.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SELECT setseed(0.5)")
    bounds = [rows * k // files for k in range(files + 1)]
    for k in range(files):
        con.execute(f"COPY (SELECT i AS id, {feature_sql()}, ['a', 'b', 'c', 'd'][i % 4 + 1] AS kind "
                    f"FROM range({bounds[k]}, {bounds[k + 1]}) r(i)) TO '{events}/part-{k:03d}.parquet' "
                    "(FORMAT parquet)")
    con.close()
    return f"{events}/*.parquet"


def write_texts(folder: Path, count: int, files: int) -> str:
    texts = folder / "texts"
    texts.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.register("incoming", pa.table({"id": pa.array(range(count), pa.int64()), "body": sentences(count)}))
    bounds = [count * k // files for k in range(files + 1)]
    for k in range(files):
        con.execute(f"COPY (SELECT * FROM incoming WHERE id >= {bounds[k]} AND id < {bounds[k + 1]}) "
                    f"TO '{texts}/part-{k:03d}.parquet' (FORMAT parquet)")
    con.close()
    return f"{texts}/*.parquet"


def write_tiny(folder: Path) -> str:
    tiny = folder / "tiny"
    tiny.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"COPY (SELECT i AS id, {feature_sql()}, 'a' AS kind FROM range({TINY_ROWS}) r(i)) "
                f"TO '{tiny}/part-000.parquet' (FORMAT parquet)")
    con.close()
    return f"{tiny}/*.parquet"


def train(con) -> int:
    """The model ``bench`` (bench_predict's MLP, one epoch) on 100k rows; its weights' size in bytes."""
    con.execute(f"CREATE TABLE train AS SELECT *, {target_sql()} AS y FROM (SELECT {feature_sql()} "
                f"FROM range({TRAIN_ROWS}))")
    con.execute(f"CREATE MODEL bench PREDICT y FROM train USING mlp WITH (hidden = {HIDDEN}, epochs = 1, "
                f"batch_size = {BATCH}, lr = 0.001, device = 'cpu')")
    return con.execute("SELECT octet_length(weights) FROM mldb.model_versions WHERE model = 'bench'").fetchall()[0][0]


# -- cases ---------------------------------------------------------------------------------------
@dataclass
class Case:
    name: str
    sql: str  # {glob} and, for COPY, {target}
    glob: str
    rows: int  # input rows (for rows/s)
    files: int
    read: str  # 'stream' (arrow_reader, discarded) | 'fetch' | 'copy'
    embed: bool = False


@dataclass
class Run:
    seconds: float
    went_out: bool
    reports: list = field(default_factory=list)
    stamps: dict = field(default_factory=dict)  # piece -> seconds after the start when its report arrived
    rows: int = 0


def cases(globs: dict, sizes: dict, embed: bool) -> list[Case]:
    events, rows, files = globs["events"], sizes["rows"], sizes["files"]
    found = [
        Case("SELECT id, PREDICT (rows, streamed)", "SELECT id, PREDICT(bench) AS p FROM read_parquet('{glob}')",
             events, rows, files, "stream"),
        Case("count(*), avg(PREDICT::INT) (partials)",
             "SELECT count(*) AS n, avg(PREDICT(bench)::INT) AS a FROM read_parquet('{glob}')",
             events, rows, files, "fetch"),
        Case("COPY (SELECT id, PREDICT) TO dir (copy)",
             "COPY (SELECT id, PREDICT(bench) AS p FROM read_parquet('{glob}')) TO '{target}' (FORMAT parquet)",
             events, rows, files, "copy"),
    ]
    if embed:
        found.append(Case("SELECT id, EMBED(body) (rows, streamed)",
                          "SELECT id, EMBED(body) AS v FROM read_parquet('{glob}')",
                          globs["texts"], sizes["texts"], sizes["text_files"], "stream", embed=True))
    return found


def tiny_case(glob: str) -> Case:
    return Case(f"fixed cost: 1 file, {TINY_ROWS:,} rows", "SELECT id, PREDICT(bench) AS p FROM read_parquet('{glob}')",
                glob, TINY_ROWS, 1, "stream")


def use(con, executor: str, workers: int | None) -> None:
    con.execute(f"SET mldb_executor = '{executor}'")
    if workers is None:
        con.execute("RESET mldb_ray_workers")
    else:
        con.execute(f"SET mldb_ray_workers = {workers}")


def run_once(con, case: Case, executor: str, workers: int | None, scratch: Path) -> Run:
    """One timed run of ``case``; COPY output removed afterwards."""
    from mldb.vectors import embedding

    use(con, executor, workers)
    target = scratch / f"copy-{executor}-{workers}"
    if case.embed:
        embedding.clear_cache()  # the local run starts cold, as each Ray actor does
    sql = case.sql.format(glob=case.glob, target=target)
    started = time.perf_counter()
    result = con._session.execute(sql)
    stamps, rows = {}, 0
    if case.read == "stream":
        for batch in result.arrow_reader(BATCH_ROWS):
            rows += batch.num_rows
            _stamp(result, stamps, started)
    else:
        rows = len(result.fetchall())
    seconds = time.perf_counter() - started
    outcome = getattr(result, "scaleout", None)
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    return Run(seconds, outcome is not None, list(getattr(outcome, "reports", None) or []), stamps, rows)


def _stamp(result, stamps: dict, started: float) -> None:
    outcome = getattr(result, "scaleout", None)
    now = time.perf_counter() - started
    for report in getattr(outcome, "reports", None) or []:
        stamps.setdefault(report["piece"], now)


def explained(con, case: Case, scratch: Path) -> str:
    """EXPLAIN's executor line under Ray: 'goes out' or why it stays here."""
    use(con, "ray", None)
    sql = case.sql.format(glob=case.glob, target=scratch / "explained")
    try:
        lines = [str(value) for row in con.execute("EXPLAIN " + sql).fetchall() for value in row]
    except mldb.Error as error:
        return f"EXPLAIN failed: {error}"
    for line in lines:
        for text in line.splitlines():
            if "executor: local" in text:
                return "stays local: " + text.split("but ", 1)[-1].strip()
            if "scale-out:" in text:
                return "goes out"
    return "no executor line"


def piece_seconds(run: Run) -> list[float]:
    """Seconds of each piece: the reports' own, else the gaps between one worker's reports as they arrived."""
    own = [report["seconds"] for report in run.reports if isinstance(report.get("seconds"), (int, float))]
    if own:
        return own
    by_pid: dict = {}
    for report in run.reports:
        if report["piece"] in run.stamps:
            by_pid.setdefault(report.get("pid"), []).append(run.stamps[report["piece"]])
    gaps = []
    for times in by_pid.values():
        times.sort()
        gaps += [later - earlier for earlier, later in itertools.pairwise(times)]
    return gaps


def workers_used(run: Run) -> int:
    return len({report.get("pid") for report in run.reports}) or 1


# -- measuring -----------------------------------------------------------------------------------
@dataclass
class Measured:
    case: Case
    label: str
    workers: int | None
    runs: list

    @property
    def seconds(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def went_out(self) -> bool:
        return all(run.went_out for run in self.runs)


def measure(con, case: Case, worker_counts: list[int], repeat: int, scratch: Path) -> list[Measured]:
    """Local and Ray at each worker count, interleaved ``repeat`` times."""
    plans = [("local", "local", None)] + [(f"ray, {n} worker{'s' * (n != 1)}", "ray", n) for n in worker_counts]
    measured = [Measured(case, label, workers, []) for label, _, workers in plans]
    for _ in range(repeat):
        for (label, executor, workers), into in zip(plans, measured):
            into.runs.append(run_once(con, case, executor, workers, scratch))
    print(f"{case.name}: " + ", ".join(f"{entry.label} {entry.seconds:.2f} s" + ("" if entry.went_out or entry.workers
                                       is None else " (ran here)") for entry in measured), flush=True)
    return measured


def table_rows(measured: list[Measured], status: str) -> list[list]:
    """One printed row per executor of a case: seconds, ray/local, rows/s per worker, piece seconds, a note."""
    local = measured[0]
    rows = []
    for entry in measured:
        run = entry.runs[len(entry.runs) // 2]
        if entry.workers is None:
            rows.append([entry.case.name, entry.label, _f(entry.seconds), "1.00", _n(entry.case.rows / entry.seconds),
                         "", "", "one process, all cores"])
            continue
        if not entry.went_out:
            note = status if status != "goes out" else "EXPLAIN says it goes out, but it ran here (not wired yet)"
            rows.append([entry.case.name, entry.label, "TBD", "TBD", "TBD", "", "", note])
            continue
        used = workers_used(run)
        pieces = piece_seconds(run)
        note = f"{len(run.reports)} pieces on {used} worker{'s' * (used != 1)}"
        if used != entry.workers:
            note += f" ({entry.workers} asked)"
        rows.append([entry.case.name, entry.label, _f(entry.seconds), _f(entry.seconds / local.seconds, 2),
                     _n(entry.case.rows / entry.seconds / used), _f(statistics.median(pieces)) if pieces else "",
                     str(len(pieces)) if pieces else "", note])
    return rows


def _f(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def _n(value: float) -> str:
    return f"{value:,.0f}"


def extrapolated(measured: list[Measured], fixed: float | None) -> list[list]:
    """T(n) = fixed + ceil(pieces / n) * piece cost, for each case that went out; the piece cost is
    what the job spent beyond the fixed cost, per piece per worker: (T - fixed) * workers / pieces."""
    rows = []
    for entry in measured:
        if entry.workers is None or not entry.went_out or fixed is None:
            continue
        run = entry.runs[len(entry.runs) // 2]
        count = len(run.reports) or entry.case.files
        cost = max(entry.seconds - fixed, 0.0) * workers_used(run) / count
        row = [entry.case.name, entry.label, cost]
        row += [fixed + math.ceil(count / n) * cost for n in (1, 2, 4, 8, 16, 100)]
        rows.append(row)
    return rows


def ray_init_seconds(cpus: int) -> float:
    """Start the private local cluster the executor would start, once; its seconds."""
    import ray

    started = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=2 * 2**30)
    seconds = time.perf_counter() - started
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    for name in ("ray", "ray.data"):  # (several INFO lines per job otherwise)
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*ray_remote_args.*")  # (Ray 2.60's deprecation note, once per job)
    return seconds


class _Nothing:
    """An actor that does nothing: what a Ray Data actor pool costs before mldb."""

    def __call__(self, batch):
        return batch


class _OpenMldb:
    """An actor that imports mldb and opens an in-memory database, as a PieceWorker does; it
    returns the seconds that took inside the actor."""

    def __init__(self):
        started = time.perf_counter()
        from mldb.database import Database

        Database(":memory:")
        self.seconds = time.perf_counter() - started

    def __call__(self, batch):
        return pa.table({"seconds": [self.seconds]})


def fixed_parts() -> dict:
    """Seconds of a one-item Ray Data job on a 1-actor pool: an empty actor, and one opening mldb
    (and, inside the latter, the import + open alone)."""
    import ray

    def job(actor):
        items = ray.data.from_items([{"x": 1}])
        return items.map_batches(actor, batch_size=1, batch_format="pyarrow",
                                 compute=ray.data.ActorPoolStrategy(size=1)).take_all()

    started = time.perf_counter()
    job(_Nothing)
    empty = time.perf_counter() - started
    started = time.perf_counter()
    inside = job(_OpenMldb)[0]["seconds"]
    return {"empty actor pool job": empty, "actor pool job opening mldb": time.perf_counter() - started,
            "import mldb + open a database, inside the actor": inside}


def load() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def as_json(measured: list[Measured], statuses: dict, extra: dict) -> dict:
    out = dict(extra, cases=[])
    for entry in measured:
        out["cases"].append({
            "case": entry.case.name, "executor": entry.label, "workers": entry.workers, "rows": entry.case.rows,
            "files": entry.case.files, "explain": statuses.get(entry.case.name), "went_out": entry.went_out,
            "seconds": [run.seconds for run in entry.runs], "median": entry.seconds,
            "pieces": [{"piece": r["piece"], "rows": r.get("rows"), "pid": r.get("pid"), "seconds": r.get("seconds")}
                       for r in (entry.runs[len(entry.runs) // 2].reports if entry.runs else [])],
            "piece_seconds": piece_seconds(entry.runs[len(entry.runs) // 2]) if entry.runs else [],
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="PREDICT input rows (default 20,000,000; --quick 2,000,000)")
    parser.add_argument("--files", type=int, help="parquet files of the PREDICT input (default 40; --quick 20)")
    parser.add_argument("--texts", type=int, help="EMBED input texts (default 200,000; --quick 20,000)")
    parser.add_argument("--text-files", type=int, default=8)
    parser.add_argument("--workers", default="1,2", help="Ray worker counts, comma separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each PREDICT case (the median is shown)")
    parser.add_argument("--embed-repeat", type=int, default=1, help="runs of the EMBED case (slow on CPU)")
    parser.add_argument("--no-embed", action="store_true", help="skip the EMBED case")
    parser.add_argument("--quick", action="store_true", help="2M rows in 20 files, 20k texts")
    parser.add_argument("--json", help="also write every timing and piece report to this file")
    parser.add_argument("--dir", help="where the data goes (kept); default a temporary directory")
    args = parser.parse_args()
    rows = args.rows or (2_000_000 if args.quick else 20_000_000)
    files = args.files or (20 if args.quick else 40)
    texts = 0 if args.no_embed else (args.texts or (20_000 if args.quick else 200_000))
    worker_counts = [int(n) for n in args.workers.split(",") if n.strip()]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(args.dir or temporary)
        folder.mkdir(parents=True, exist_ok=True)
        rows = fitting_rows(folder, rows, texts)
        report = bench(folder, args, rows, files, texts, worker_counts)
    report["wall_seconds"] = time.perf_counter() - started
    print(f"whole benchmark: {report['wall_seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))


def prepare(folder: Path, args, rows: int, files: int, texts: int):
    """The inputs, the database with the model, and the Ray runtime; (con, globs, facts)."""
    made = time.perf_counter()
    globs = {"events": write_events(folder, rows, files), "tiny": write_tiny(folder)}
    if texts:
        globs["texts"] = write_texts(folder, texts, args.text_files)
    con = mldb.connect(str(folder / "bench.db"))
    weights = train(con)
    print(f"data: {rows:,} rows in {files} files, {texts:,} texts in {args.text_files} files, model {weights:,} "
          f"bytes; made in {time.perf_counter() - made:.0f} s")
    init = ray_init_seconds(2)
    print(f"ray.init (private local cluster, 2 CPUs): {init:.1f} s, paid once per process")
    parts = fixed_parts()
    print("fixed cost parts: " + "; ".join(f"{name} {seconds:.1f} s" for name, seconds in parts.items()))
    facts = {"ray_init_seconds": init, "rows": rows, "files": files, "texts": texts, "model_bytes": weights,
             "cores": os.cpu_count(), "fixed_parts": parts}
    return con, globs, facts


def bench(folder: Path, args, rows: int, files: int, texts: int, worker_counts: list[int]) -> dict:
    load_before = load()
    con, globs, facts = prepare(folder, args, rows, files, texts)
    scratch = folder / "out"
    scratch.mkdir(exist_ok=True)
    sizes = {"rows": rows, "files": files, "texts": texts, "text_files": args.text_files}
    tiny = tiny_case(globs["tiny"])
    statuses = {tiny.name: explained(con, tiny, scratch)}
    fixed_runs = measure(con, tiny, [1], args.repeat, scratch)
    fixed = fixed_runs[1].seconds if fixed_runs[1].went_out else None
    measured, table = list(fixed_runs), table_rows(fixed_runs, statuses[tiny.name])
    for case in cases(globs, sizes, bool(texts)):
        statuses[case.name] = explained(con, case, scratch)
        found = measure(con, case, worker_counts, args.embed_repeat if case.embed else args.repeat, scratch)
        measured += found
        table += table_rows(found, statuses[case.name])
    con.execute("SET mldb_executor = 'local'")
    con.close()
    loads = (load_before, load())
    print_report(args, table, statuses, extrapolated(measured[len(fixed_runs):], fixed), fixed, loads)
    return as_json(measured, statuses, dict(facts, fixed_seconds=fixed, load_average=loads))


def print_report(args, table: list, statuses: dict, projected: list, fixed: float | None, loads: tuple) -> None:
    print(f"\nload average (1/5/15 min) before: {loads[0]}, after: {loads[1]}")
    print(f"local executor vs Ray on this machine ({os.cpu_count()} cores), median of {args.repeat} interleaved "
          f"runs (EMBED: {args.embed_repeat}); target: ray/local <= 1.3 at 2 workers")
    print(tabulate(table, headers=["case", "executor", "seconds", "ray/local", "rows/s per worker",
                                   "s per piece", "pieces timed", "note"],
                   colalign=("left", "left", "right", "right", "right", "right", "right", "left")))
    print("\nEXPLAIN under Ray:")
    for name, status in statuses.items():
        print(f"  {name}: {status}")
    if projected:
        print(f"\nT(n) = fixed ({fixed:.2f} s, the 1-file job) + ceil(pieces / n) x s per piece, where s per piece = "
              "(T - fixed) x workers / pieces as measured (one file per piece; the driver's own limits not in it)")
        print(tabulate(projected, headers=["case", "measured at", "s per piece", "n=1", "n=2", "n=4", "n=8",
                                           "n=16", "n=100"], floatfmt=".2f"))


if __name__ == "__main__":
    main()
