"""Cost of the prediction log on a 1M-row PREDICT, and of DRIFT.

    .venv/bin/python tests/bench/bench_lifecycle.py [rows]

Runs ``SELECT count(p) FROM (SELECT PREDICT(churn) AS p FROM customers)`` with the
lifecycle hooks on (what every user gets) and off (the hooks replaced by no-ops),
alternating, and prints medians and the ratio. Also times ``record_prediction`` per
batch on its own, and DRIFT over the same rows.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

import mldb
from mldb.lifecycle import tracking as hooks
from mldb.plan.rules import _load

REPEATS = 9
QUERY = "SELECT count(p) FROM (SELECT PREDICT(churn) AS p FROM customers)"


def setup(folder: Path, rows: int):
    con = mldb.connect(str(folder / "bench.db"))
    con.execute(f"""CREATE TABLE customers AS SELECT (i % 80)::DOUBLE + random() AS age,
        ['basic', 'plus', 'pro'][i % 3 + 1] AS plan, random() * 100 AS spend, i % 80 > 40 AS churned
        FROM range({rows}) t(i)""")
    con.execute("CREATE MODEL churn PREDICT churned FROM (SELECT * FROM customers LIMIT 20000) "
                "USING logistic WITH (epochs = 2)")
    return con


def timed(con, query: str) -> float:
    started = time.perf_counter()
    con.execute(query).fetchall()
    return time.perf_counter() - started


def hooks_on(on: bool) -> None:
    """Point the models feature's hook lookups at the real hooks or at no-ops."""
    if not _REAL:
        _REAL.update(record_prediction=hooks.record_prediction, flush_predictions=hooks.flush_predictions)
    for name, real in _REAL.items():
        setattr(hooks, name, real if on else _noop)
    _load.cache_clear()  # the UDFs look hooks up through this cache


def _noop(*args, **kwargs) -> None:
    return None


_REAL: dict = {}


def record_cost(batches: int = 2000, size: int = 2048) -> float:
    labels = pa.array(np.random.default_rng(0).random(size) > 0.5)
    started = time.perf_counter()
    for _ in range(batches):
        hooks.record_prediction("bench", 1, size, 0.001, labels)
    hooks.take_pending()
    return (time.perf_counter() - started) / batches * 1e6


def flush_cost(con, repeats: int = 20) -> float:
    """Milliseconds to write one prediction_log row (what each predicting statement adds at its end)."""
    session = con.cursor()._session
    labels = pa.array(np.random.default_rng(0).random(2048) > 0.5)
    spent = []
    for _ in range(repeats):
        hooks.record_prediction("churn", 1, 2048, 0.001, labels)
        started = time.perf_counter()
        hooks.flush_predictions(session, QUERY)
        spent.append(time.perf_counter() - started)
    return statistics.median(spent) * 1e3


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as folder:
        con = setup(Path(folder), rows)
        timed(con, QUERY)  # warm: model loaded, torch initialised
        on, off = [], []
        for _ in range(REPEATS):
            hooks_on(False)
            off.append(timed(con, QUERY))
            hooks_on(True)
            on.append(timed(con, QUERY))
        flush = flush_cost(con)
        drift = [timed(con, "SELECT * FROM DRIFT(churn, customers)") for _ in range(3)]
        logged = con.execute("SELECT count(*) FROM mldb.prediction_log").fetchall()[0][0]
        con.close()
    print(f"{'case':<44}{'median s':>10}")
    print(f"{f'PREDICT {rows:,} rows, log off':<44}{statistics.median(off):>10.3f}")
    print(f"{f'PREDICT {rows:,} rows, log on':<44}{statistics.median(on):>10.3f}")
    print(f"{'ratio on / off':<44}{statistics.median(on) / statistics.median(off):>10.3f}")
    print(f"{'record_prediction per 2048-row batch (us)':<44}{record_cost():>10.1f}")
    print(f"{'flush: one prediction_log row (ms)':<44}{flush:>10.2f}")
    print(f"{f'DRIFT over {rows:,} rows':<44}{statistics.median(drift):>10.3f}")
    print(f"log rows written: {logged} (one per logged statement)")


if __name__ == "__main__":
    main()
