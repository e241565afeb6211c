"""USING lightgbm against raw LightGBM: training time and PREDICT time (issue 14's speed targets).

    .venv/bin/python tests/bench/bench_boosting.py                 # 200k rows; PREDICT on 200k and 1M rows
    .venv/bin/python tests/bench/bench_boosting.py --quick         # 200k rows, PREDICT on 200k only, fewer repeats

The table is ``bench_quality``'s generated ``mixed`` one (numbers with NULLs, a 6-valued and a
5000-valued VARCHAR category, a BOOLEAN, a BOOLEAN target) in a DuckDB file opened with
``mldb.connect``.

TRAIN: ``CREATE OR REPLACE MODEL gbm PREDICT y FROM mixed USING lightgbm WITH (<PARAMS>)``
against what a user writes by hand with the same parameters and threads: fetch the table from
DuckDB as Arrow, turn it into pandas (VARCHAR columns dictionary-encoded into ``category``), hold
out the same fraction for validation and ``lightgbm.train`` with early stopping on it. The hand
pipeline's steps are shown apart (the Arrow to numpy step must not dominate).
PREDICT: ``SELECT PREDICT(gbm) FROM t`` fetched as Arrow against the DuckDB fetch of the same
rows + ``Booster.predict`` + the labels (fetch included).
Timings are interleaved medians (``bench_predict.timed``). Where this build has no ``USING
lightgbm`` (CREATE MODEL says 'unknown algorithm') the mldb rows read ``n/a (not available)``
and only the hand pipeline is timed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
from tabulate import tabulate

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import mldb  # noqa: E402
from mldb import threads  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from bench_predict import timed  # noqa: E402  (interleaved medians, as every benchmark here)
from bench_quality import NOT_AVAILABLE, make_mixed, missing_algorithm, write_table  # noqa: E402

# The parameters both sides train with: given to mldb in WITH (...) and to lightgbm.train.
PARAMS = {"num_leaves": 31, "learning_rate": 0.1, "num_iterations": 200, "min_data_in_leaf": 20}
VALID_FRACTION, EARLY_STOPPING, SEED = 0.2, 10, 42  # the hand pipeline's validation split (mldb's default fraction)
FEATURES = ["x0", "x1", "x2", "x3", "x4", "x5", "n_items", "segment", "merchant", "promo"]


# -- the hand pipeline -----------------------------------------------------------------------
def fetch(root, table: str, columns: list[str]) -> pa.Table:
    """DuckDB -> Arrow."""
    return root.sql(f"SELECT {', '.join(columns)} FROM {table}").to_arrow_table()


def to_frame(table: pa.Table):
    """Arrow -> pandas for LightGBM: VARCHAR columns dictionary-encoded (pandas ``category``, which
    LightGBM splits on natively), NULL -> NaN."""
    columns = [column.dictionary_encode() if pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
               or pa.types.is_string_view(column.type) else column for column in table.columns]
    return pa.table(columns, names=table.column_names).to_pandas()


def hand_params(num_threads: int) -> dict:
    return PARAMS | {"objective": "binary", "num_threads": num_threads, "seed": SEED, "verbosity": -1}


def hand_train(frame, num_threads: int):
    """The split, the Datasets (LightGBM's own pandas -> numpy step) and the boosting."""
    import lightgbm

    order = np.random.default_rng(SEED).permutation(len(frame))
    cut = int(len(frame) * VALID_FRACTION)
    valid, train = np.sort(order[:cut]), np.sort(order[cut:])
    x, y = frame[FEATURES], frame["y"].to_numpy().astype(np.int32)
    train_set = lightgbm.Dataset(x.iloc[train], y[train])
    valid_set = lightgbm.Dataset(x.iloc[valid], y[valid], reference=train_set)
    return lightgbm.train(hand_params(num_threads), train_set, valid_sets=[valid_set],
                          callbacks=[lightgbm.early_stopping(EARLY_STOPPING, verbose=False)])


def hand_predict(root, table: str, booster) -> np.ndarray:
    """Fetch + Booster.predict + the labels (what PREDICT returns)."""
    probability = booster.predict(to_frame(fetch(root, table, FEATURES)))
    return probability > 0.5


# -- mldb --------------------------------------------------------------------------------------
def mldb_train(con) -> None:
    options = ", ".join(f"{name} = {value}" for name, value in PARAMS.items())
    con.execute(f"CREATE OR REPLACE MODEL gbm PREDICT y FROM mixed USING lightgbm WITH ({options})")


def has_lightgbm(con) -> bool:
    try:
        con.execute("CREATE OR REPLACE MODEL gbm PREDICT y FROM (SELECT * FROM mixed LIMIT 2000) USING lightgbm")
    except mldb.ProgrammingError as error:
        if missing_algorithm(error):
            return False
        raise
    return True


def mldb_predict(con, table: str) -> np.ndarray:
    return con.execute(f"SELECT PREDICT(gbm) AS p FROM {table}").arrow()["p"].to_numpy(zero_copy_only=False)


# -- the tables --------------------------------------------------------------------------------
def train_rows(con, root, args, available: bool) -> tuple[list, object]:
    """TRAIN's rows, and a hand-trained booster for PREDICT's baseline."""
    frame = to_frame(fetch(root, "mixed", FEATURES + ["y"]))
    booster = hand_train(frame, args.threads)  # (warm: LightGBM's first Dataset)

    def hand():
        hand_train(to_frame(fetch(root, "mixed", FEATURES + ["y"])), args.threads)

    contenders = [hand, lambda: fetch(root, "mixed", FEATURES + ["y"]),
                  lambda: to_frame(fetch(root, "mixed", FEATURES + ["y"])), lambda: hand_train(frame, args.threads)]
    if available:
        mldb_train(con)  # warm
        contenders.append(lambda: mldb_train(con))
    hand_s, fetch_s, fetch_frame_s, boost_s, *ours = timed(contenders, args.train_repeat)
    convert_s = max(fetch_frame_s - fetch_s, 0.0)
    rounds = f"{booster.current_iteration()} rounds (best {booster.best_iteration})"
    rows = [["CREATE MODEL ... USING lightgbm (mldb)", *(_vs(ours[0], hand_s) if ours else (NOT_AVAILABLE, None))],
            ["hand: DuckDB fetch + Arrow -> pandas + lightgbm.train", hand_s, 1.0],
            ["  of which DuckDB -> Arrow", fetch_s, fetch_s / hand_s],
            ["  of which Arrow -> pandas (category) ", convert_s, convert_s / hand_s],
            [f"  of which lightgbm.train, Datasets included ({rounds})", boost_s, boost_s / hand_s]]
    if ours:
        fit = con.execute("SELECT train_seconds FROM mldb.model_versions WHERE model = 'gbm' "
                          "ORDER BY version DESC LIMIT 1").fetchone()[0]
        rows.insert(1, ["  of which mldb's fit (model_versions.train_seconds, last run)", fit, fit / hand_s])
    return rows, booster


def predict_rows(con, root, args, booster, available: bool) -> list:
    rows = []
    for count in args.predict_rows:
        table = "mixed" if count == args.rows else f"mixed_{count}"
        if table != "mixed":
            write_table(con, table, make_mixed(count, seed=1))
        contenders = [lambda: hand_predict(root, table, booster), lambda: fetch(root, table, FEATURES),
                      lambda: booster.predict(to_frame(fetch(root, table, FEATURES)))]
        agree = ""
        if available:
            ours, theirs = mldb_predict(con, table), hand_predict(root, table, booster)
            agree = f", labels agree with the hand booster on {np.mean(ours == theirs):.1%} of rows"
            contenders.append(lambda: mldb_predict(con, table))
        hand_s, fetch_s, proba_s, *ours_s = timed(contenders, args.repeat)
        rows += [[f"PREDICT {count:,} rows (mldb, SQL){agree}",
                  *(_vs(ours_s[0], hand_s) if ours_s else (NOT_AVAILABLE, None))],
                 [f"hand {count:,} rows: DuckDB fetch + Booster.predict + labels", hand_s, 1.0],
                 ["  of which DuckDB -> Arrow", fetch_s, fetch_s / hand_s],
                 ["  fetch + Booster.predict (probabilities)", proba_s, proba_s / hand_s]]
        if table != "mixed":
            con.execute(f"DROP TABLE {table}")
    return rows


def _vs(seconds: float, baseline: float) -> tuple[float, float]:
    return seconds, seconds / baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the training table")
    parser.add_argument("--predict-rows", default="200000,1000000", help="comma-separated PREDICT table sizes")
    parser.add_argument("--threads", type=int, default=threads.free_cores(),
                        help="num_threads of both sides (default: the cores no other process is running on)")
    parser.add_argument("--repeat", type=int, default=5, help="PREDICT timings")
    parser.add_argument("--train-repeat", type=int, default=3, help="TRAIN timings (each a full training)")
    parser.add_argument("--quick", action="store_true", help="PREDICT on the training rows only; 1 / 3 repeats")
    args = parser.parse_args()
    args.predict_rows = [int(count) for count in args.predict_rows.split(",")]
    if args.quick:
        args.predict_rows, args.repeat, args.train_repeat = [args.rows], 3, 1
    path = os.path.join(tempfile.mkdtemp(), "bench_boosting.db")
    started = time.perf_counter()
    with mldb.connect(path) as con, threads.fixed(args.threads):  # mldb's thread policy gives what the hand gets
        root = con.database.root
        write_table(con, "mixed", make_mixed(args.rows))
        available = has_lightgbm(con)
        table, booster = train_rows(con, root, args, available)
        table += predict_rows(con, root, args, booster, available)
    print(tabulate(table, headers=["", "seconds", "x hand"], floatfmt=".3f"))
    print(f"\n{args.rows:,} training rows x {len(FEATURES)} features; params {PARAMS}; {args.threads} "
          f"thread(s) both sides, {os.cpu_count()} cores; medians of {args.train_repeat} (TRAIN) / {args.repeat} "
          f"(PREDICT) interleaved; targets: CREATE MODEL <= 1.2x hand, PREDICT <= 1.2x hand; "
          f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
