"""Cost of the prediction log on a 1M-row PREDICT, of a shadow deployment, and of DRIFT.

    .venv/bin/python tests/bench/bench_lifecycle.py [rows]

Runs ``SELECT count(p) FROM (SELECT PREDICT(churn) AS p FROM customers)`` with the
prediction log on (what every user gets) and off (the lifecycle feature's
``on_prediction`` listener removed, so no batch is counted and no log row is written),
alternating, and prints medians and the ratio. Also times ``record_prediction`` per
batch on its own, writing one log row when a statement finishes, and DRIFT over the
same rows. The shadow's cost: the same PREDICT with version 2 of churn (same algorithm,
another seed) deployed AS SHADOW and without it (plain DEPLOY), alternating.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa

import mldb
from mldb import features
from mldb.lifecycle import tracking

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


@contextlib.contextmanager
def lifecycle_listener(event: str, listener):
    """Within the block, the lifecycle feature listens to ``event`` with ``listener`` (``None``: not at all).

    The core finds listeners through ``mldb.features.each``, which reads
    ``mldb.features.FEATURES`` on every call, so swapping in a modified copy of the
    lifecycle ``Feature`` is all it takes.
    """
    real = features.FEATURES
    features.FEATURES = tuple(dataclasses.replace(feature, **{event: listener}) if feature.name == "lifecycle"
                              else feature for feature in real)
    try:
        yield
    finally:
        features.FEATURES = real


MODEL = SimpleNamespace(name="churn", version=1)  # what record_prediction reads of a loaded model


def record_cost(con, batches: int = 2000, size: int = 2048) -> float:
    """Microseconds per ``record_prediction`` call (one per 2048-row batch a PREDICT runs)."""
    labels = pa.array(np.random.default_rng(0).random(size) > 0.5)
    execution = con.database.start(con.session, QUERY)
    started = time.perf_counter()
    for _ in range(batches):
        tracking.record_prediction(execution, MODEL, size, 0.001, labels, lambda: None)
    spent = time.perf_counter() - started
    execution.finish(success=False)  # let it go without writing a log row
    return spent / batches * 1e6


def flush_cost(con, repeats: int = 20) -> float:
    """Milliseconds to write one prediction_log row (what each predicting statement adds at its end)."""
    labels = pa.array(np.random.default_rng(0).random(2048) > 0.5)
    spent = []
    for _ in range(repeats):
        execution = con.database.start(con.session, QUERY)
        tracking.record_prediction(execution, MODEL, 2048, 0.001, labels, lambda: None)
        started = time.perf_counter()
        execution.finish()  # runs flush_predictions
        spent.append(time.perf_counter() - started)
    return statistics.median(spent) * 1e3


def shadow_cost(con) -> tuple[list[float], list[float]]:
    """Seconds of QUERY with churn's deployed version alone and with version 2 as its shadow (alternating)."""
    con.execute("TRAIN churn USING logistic WITH (epochs = 2, seed = 7)")
    con.execute("DEPLOY MODEL churn VERSION 1")
    alone, shadowed = [], []
    for _ in range(REPEATS):
        con.execute("DEPLOY MODEL churn VERSION 1")  # (clears the shadow)
        alone.append(timed(con, QUERY))
        con.execute("DEPLOY MODEL churn VERSION 2 AS SHADOW")
        shadowed.append(timed(con, QUERY))
    return alone, shadowed


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as folder:
        con = setup(Path(folder), rows)
        timed(con, QUERY)  # warm: model loaded, torch initialised
        on, off = [], []
        for _ in range(REPEATS):
            with lifecycle_listener("on_prediction", None):
                off.append(timed(con, QUERY))
            on.append(timed(con, QUERY))
        record = record_cost(con)
        flush = flush_cost(con)
        drift = [timed(con, "SELECT * FROM DRIFT(churn, customers)") for _ in range(3)]
        alone, shadowed = shadow_cost(con)
        logged = con.execute("SELECT count(*) FROM mldb.prediction_log").fetchall()[0][0]
        con.close()
    print(f"{'case':<44}{'median s':>10}")
    print(f"{f'PREDICT {rows:,} rows, log off':<44}{statistics.median(off):>10.3f}")
    print(f"{f'PREDICT {rows:,} rows, log on':<44}{statistics.median(on):>10.3f}")
    print(f"{'ratio on / off':<44}{statistics.median(on) / statistics.median(off):>10.3f}")
    print(f"{'record_prediction per 2048-row batch (us)':<44}{record:>10.1f}")
    print(f"{'flush: one prediction_log row (ms)':<44}{flush:>10.2f}")
    print(f"{f'DRIFT over {rows:,} rows':<44}{statistics.median(drift):>10.3f}")
    print(f"{f'PREDICT {rows:,} rows, no shadow':<44}{statistics.median(alone):>10.3f}")
    print(f"{f'PREDICT {rows:,} rows, with a shadow':<44}{statistics.median(shadowed):>10.3f}")
    print(f"{'ratio shadow / no shadow':<44}{statistics.median(shadowed) / statistics.median(alone):>10.3f}")
    print(f"log rows written: {logged} (one per logged statement)")


if __name__ == "__main__":
    main()
