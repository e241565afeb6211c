"""How fast the console's pages, JSON twins and charts answer on a big catalog: 50 models x 20
versions and a 1M-row prediction log (the issue's target: every page under 200 ms).

    .venv/bin/python tests/bench/bench_console.py [requests] [database]

Builds the tests' database (tests/console_db.py: real models trained by mldb, monitors with runs and
alerts, a view, a table written with predictions), then grows its catalog in plain SQL: 47 more
models copied from churn's rows, every model given 20 versions (each version's training log,
feature statistics and importance, trials, snapshots, lineage and deployment copied from a real
version), two monitors per model with 200 runs each, alerts, and a 1M-row prediction_log over 30
days (with 100,000 prediction samples) generated with ``range()``. That takes well under a minute.
A database already grown this way can be passed to skip the build (it is kept then).

Then a real console (uvicorn, the file opened read-only as ``mldb ui`` does) answers each page, its
``/api`` twin, and every chart the pages show (``<img src="/charts/...">``): one warm-up request,
then ``requests`` (default 10) timed over HTTP on loopback. The table shows the first request (cold:
DuckDB's caches, a chart not drawn yet), the median and the 90th percentile of the rest in
milliseconds, and whether the median meets the 200 ms target.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.console_db import build  # noqa: E402
from tests.console_http import console  # noqa: E402

MODELS = 50
VERSIONS = 20
LOG_ROWS = 1_000_000
SAMPLES = 100_000
RUNS_PER_MONITOR = 200
TARGET_MS = 200.0


def grow(path: str) -> None:
    """The tests' database grown to MODELS models x VERSIONS versions and a LOG_ROWS-row log (plain DuckDB)."""
    con = duckdb.connect(path)
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("BEGIN")
        for statement in GROW:
            con.execute(statement)
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()


# the new models m03..m49 are copies of churn; every model's versions 1..20 copy one of its real versions
# (``template``: the real version a new version copies; odd and even versions alternate for churn's copies)
GROW = [
    f"""CREATE TEMP TABLE copies AS SELECT printf('m%02d', i) AS name FROM range(3, {MODELS}) t(i)""",
    """INSERT INTO mldb.models SELECT * REPLACE (c.name AS name) FROM mldb.models m, copies c WHERE m.name = 'churn'""",
    f"""CREATE TEMP TABLE grown AS
        SELECT m.name AS model, v.i::INTEGER AS version,
               CASE WHEN m.name IN (SELECT name FROM copies) THEN 'churn' ELSE m.name END AS template_model,
               CASE WHEN m.name IN (SELECT name FROM copies) THEN 1 + v.i % 2 ELSE least(v.i, r.latest) END AS template
        FROM mldb.models m, range(1, {VERSIONS} + 1) v(i),
             (SELECT model, max(version) AS latest FROM mldb.model_versions GROUP BY model) r
        WHERE r.model = CASE WHEN m.name IN (SELECT name FROM copies) THEN 'churn' ELSE m.name END
          AND NOT EXISTS (SELECT 1 FROM mldb.model_versions o WHERE o.model = m.name AND o.version = v.i)""",
    *[f"""INSERT INTO mldb.{table} SELECT t.* REPLACE (g.model AS model, g.version AS version
            {', t.created_at - INTERVAL 1 DAY * (' + str(VERSIONS) + ' - g.version) AS created_at' if dated else ''})
        FROM mldb.{table} t JOIN grown g ON t.model = g.template_model AND t.version = g.template"""
      for table, dated in [("model_versions", True), ("training_log", True), ("trials", True),
                           ("feature_importance", False), ("explain_baselines", False), ("feature_stats", False),
                           ("snapshots", True)]],
    f"UPDATE mldb.models SET latest_version = {VERSIONS}, deployed_version = {VERSIONS - 1}, shadow_version = NULL",
    """INSERT INTO mldb.lineage SELECT l.* REPLACE (g.model AS target, g.version AS target_version)
        FROM mldb.lineage l JOIN grown g ON l.target = g.template_model AND l.target_version = g.template
        WHERE l.kind = 'training'""",
    f"""INSERT INTO mldb.lineage SELECT name, {VERSIONS - 1}, 'scored', NULL, 'prediction', NULL,
        'CREATE TABLE scored AS SELECT PREDICT(' || name || ') FROM customers', now() FROM copies""",
    f"""INSERT INTO mldb.deployments SELECT g.model, g.version, nullif(g.version - 1, 0), 'train',
        now() - INTERVAL 1 DAY * ({VERSIONS} - g.version) FROM grown g""",
    """INSERT INTO mldb.monitors SELECT m.* REPLACE (c.name || substr(m.name, 6) AS name, c.name AS model,
        replace(m.statement, 'churn', c.name) AS statement) FROM mldb.monitors m, copies c WHERE m.model = 'churn'""",
    f"""INSERT INTO mldb.monitor_runs
        SELECT 1000000 + row_number() OVER () AS id, m.name, m.model, now() - INTERVAL 1 HOUR * r.i,
               0.03, '{{"drifted_features": 0, "max_psi": 0.05, "rows": 400}}', r.i % 50 = 0,
               CASE WHEN r.i % 50 = 0 THEN m.action END, 'ok', NULL, {VERSIONS - 1}, {VERSIONS - 1}, true
        FROM mldb.monitors m, range({RUNS_PER_MONITOR}) r(i) WHERE m.model IN (SELECT name FROM copies)""",
    """INSERT INTO mldb.alerts SELECT 1000000 + row_number() OVER () AS id, monitor, model, started_at,
        'monitor ' || monitor || ' on model ' || model || ': drifted_features >= 1', values, false, NULL
        FROM mldb.monitor_runs WHERE triggered AND id >= 1000000""",
    f"""CREATE TEMP TABLE names AS SELECT name, row_number() OVER (ORDER BY name) - 1 AS k FROM mldb.models""",
    f"""INSERT INTO mldb.prediction_log (model, version, rows, calls, seconds, started_at, logged_at,
            query_fingerprint, statement, summary)
        SELECT n.name, CASE WHEN i % 10 = 0 THEN {VERSIONS} ELSE {VERSIONS - 1} END, 1 + i % 5000, 1 + i % 3,
               0.001 * (1 + i % 97), now() - INTERVAL 1 SECOND * (i * 30 * 86400 // {LOG_ROWS}),
               now() - INTERVAL 1 SECOND * (i * 30 * 86400 // {LOG_ROWS}) + INTERVAL 10 MILLISECOND,
               substr(md5((i % 20000)::VARCHAR), 1, 16),
               'SELECT id, PREDICT(' || n.name || ') FROM customers WHERE day = ' || (i % 20000)::VARCHAR,
               '{{"counts": {{"true": 3, "false": 7}}}}'
        FROM range({LOG_ROWS}) t(i) JOIN names n ON n.k = i % {MODELS}""",
    f"""INSERT INTO mldb.prediction_samples
        SELECT model, version, logged_at, query_fingerprint,
               '{{"age": 41, "plan": "pro", "spend": 12.5}}', '{{"prediction": true}}'
        FROM mldb.prediction_log USING SAMPLE {SAMPLES} ROWS""",
]


def pages(path: str) -> list[str]:
    """Every page the bench times (its /api twin is timed too): the lists, one model of each kind, a
    table, the log filtered, and one logged statement's trace (a fingerprint from the log)."""
    con = duckdb.connect(path, read_only=True)
    try:
        fingerprint = con.execute("SELECT query_fingerprint FROM mldb.prediction_log WHERE model = 'churn' "
                                  "ORDER BY started_at DESC LIMIT 1").fetchall()[0][0]
    finally:
        con.close()
    return ["/models", "/models/churn", "/models/m07", "/models/spend_model", "/models/plan_model",
            "/lineage", "/lineage?node=scored", "/lineage?node=customers", "/tables", "/tables/customers",
            "/tables/scored", "/predictions", "/predictions?model=churn", "/predictions?model=m07&version=19",
            f"/predictions/{urllib.parse.quote(fingerprint)}"]


def timed(site, path: str, requests: int) -> tuple[int, float, list[float]]:
    """(status, the first request's ms, the next ``requests``' ms each)."""
    started = time.perf_counter()
    status, _, _ = site.get(path)  # the first: cold caches (DuckDB's, a chart's)
    first = (time.perf_counter() - started) * 1e3
    spent = []
    for _ in range(requests):
        started = time.perf_counter()
        status, _, _ = site.get(path)
        spent.append((time.perf_counter() - started) * 1e3)
    return status, first, spent


def charts(site, paths: list[str]) -> list[str]:
    """The chart URLs the pages show (``<img src="/charts/...">``), each once, and the lineage graph's SVG."""
    found = ["/charts/lineage.svg", "/charts/lineage/churn.svg", "/charts/lineage/customers.svg"]
    for path in paths:
        _, _, body = site.get(path)
        for src in re.findall(r'<img[^>]*\bsrc="(/charts/[^"]+)"', body):
            src = src.replace("&amp;", "&")
            if src not in found:
                found.append(src)
    return found


def measure(path: str, requests: int) -> list[tuple[str, int, float, float, float]]:
    """(url, status, first ms, median ms, p90 ms) for each page, its twin and each chart."""
    rows = []
    with console(path) as site:
        paths = pages(path)
        urls = [url for page in paths for url in (page, "/api" + page)] + charts(site, paths)
        for url in urls:
            status, first, spent = timed(site, url, requests)
            rows.append((url, status, first, statistics.median(spent), _p90(spent)))
    return rows


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def report(rows, built_seconds: float | None, path: str) -> None:
    con = duckdb.connect(path, read_only=True)
    counts = con.execute("SELECT (SELECT count(*) FROM mldb.models), (SELECT count(*) FROM mldb.model_versions), "
                         "(SELECT count(*) FROM mldb.prediction_log)").fetchall()[0]
    con.close()
    built = f", built in {built_seconds:.0f} s" if built_seconds is not None else ""
    print(f"catalog: {counts[0]} models, {counts[1]} versions, {counts[2]:,} prediction_log rows{built}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    width = max(len(row[0]) for row in rows) + 2
    print(f"{'page':<{width}}{'status':>7}{'first ms':>10}{'median ms':>11}{'p90 ms':>9}{'target':>8}  result")
    for url, status, first, median, p90 in rows:
        result = "pass" if status == 200 and median <= TARGET_MS else "FAIL"
        print(f"{url:<{width}}{status:>7}{first:>10.1f}{median:>11.1f}{p90:>9.1f}{TARGET_MS:>8.0f}  {result}")
    passed = sum(1 for _, status, _, median, _ in rows if status == 200 and median <= TARGET_MS)
    slowest = max(rows, key=lambda row: row[3])
    print(f"{passed} of {len(rows)} under {TARGET_MS:.0f} ms (median); slowest: {slowest[0]} {slowest[3]:.1f} ms")


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    if len(sys.argv) > 2:
        report(measure(sys.argv[2], requests), None, sys.argv[2])
        return
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "console_bench.db")
        started = time.perf_counter()
        build(path)
        grow(path)
        built = time.perf_counter() - started
        report(measure(path, requests), built, path)


if __name__ == "__main__":
    main()
