"""USING lightgbm against raw LightGBM: training time and PREDICT time (issue 14's speed targets).

    .venv/bin/python tests/bench/bench_boosting.py                 # 200k rows; PREDICT on 200k and 1M rows
    .venv/bin/python tests/bench/bench_boosting.py --quick         # 200k rows, PREDICT on 200k only, fewer repeats

The table is ``bench_quality``'s generated ``mixed`` one (numbers with NULLs, a 6-valued and a
5000-valued VARCHAR category, a BOOLEAN, a BOOLEAN target) in a DuckDB file opened with
``mldb.connect``.

TRAIN: ``CREATE OR REPLACE MODEL gbm PREDICT y FROM mixed USING lightgbm WITH (<PARAMS>)``
against what a user writes by hand with the same parameters (and what mldb's lightgbm sets
itself, ``FIXED``) and threads (``mldb.threads.fixed``): fetch the table from DuckDB as Arrow,
turn it into pandas (VARCHAR columns dictionary-encoded into ``category``), hold out mldb's seeded
20% for validation and ``lightgbm.train`` with early stopping on it. The hand pipeline's steps
are shown apart (the Arrow to numpy step must not dominate).
PREDICT: ``SELECT PREDICT(gbm) FROM t`` fetched as Arrow against the same rows fetched from
DuckDB, encoded by hand (category codes) and run through mldb's own booster with
``Booster.predict`` + the labels (fetch included): the same trees, so the ratio is mldb's
overhead. Also shown: the hand-trained booster on pandas ``category`` columns (a user's own
model; its trees differ, and so may its cost).
Timings are interleaved medians (``bench_predict.timed``). Where this build has no ``USING
lightgbm`` (CREATE MODEL says 'unknown algorithm') the mldb rows read ``n/a (not available)``
and only the hand pipeline is timed.
"""

from __future__ import annotations

import argparse
import json
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

# The parameters both sides train with: given to mldb in WITH (...) and to lightgbm.train (mldb's defaults).
PARAMS = {"num_leaves": 31, "learning_rate": 0.05, "num_iterations": 500, "min_data_in_leaf": 20,
          "early_stopping_rounds": 30}
# What mldb's USING lightgbm sets itself (mldb/models/boosting.py ``_params``): the hand pipeline sets it too.
FIXED = {"min_data_per_group": 100, "deterministic": True, "force_row_wise": True, "seed": 42}
VALID_FRACTION, SEED = 0.2, 42  # mldb's default validation split
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
    return PARAMS | FIXED | {"objective": "binary", "metric": "binary_logloss", "num_threads": num_threads,
                             "verbosity": -1}


def hand_train(frame, num_threads: int):
    """The split, the Datasets (LightGBM's own pandas -> numpy step) and the boosting."""
    import lightgbm

    order = np.random.default_rng(SEED).permutation(len(frame))
    cut = int(len(frame) * VALID_FRACTION)
    valid, train = np.sort(order[:cut]), np.sort(order[cut:])
    x, y = frame[FEATURES], frame["y"].to_numpy().astype(np.int32)
    train_set = lightgbm.Dataset(x.iloc[train], y[train])
    valid_set = lightgbm.Dataset(x.iloc[valid], y[valid], reference=train_set)
    return lightgbm.train(hand_params(num_threads), train_set, valid_sets=[valid_set])  # (early stopping: PARAMS)


def hand_predict(root, table: str, booster, num_threads: int) -> np.ndarray:
    """Fetch + Booster.predict + the labels (what PREDICT returns)."""
    probability = booster.predict(to_frame(fetch(root, table, FEATURES)), num_threads=num_threads)
    return probability > 0.5


# -- mldb --------------------------------------------------------------------------------------
def mldb_train(con) -> None:
    options = ", ".join(f"{name} = {value}" for name, value in PARAMS.items())
    con.execute(f"CREATE OR REPLACE MODEL gbm PREDICT y FROM mixed USING lightgbm WITH ({options})")


def has_lightgbm(con) -> bool:
    """Whether this build has ``USING lightgbm`` (a 2000-row model, which also pays the one-time
    costs, LightGBM's import and the lifecycle's, before any timing)."""
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
    """TRAIN's rows, and a hand-trained booster for PREDICT's baseline. The hand pipeline's boosting is
    its total less the fetch and the conversion (each timed alone: they are cheap, a training is not)."""
    columns = FEATURES + ["y"]
    booster = hand_train(to_frame(fetch(root, "mixed", columns)), args.threads)  # (and LightGBM's first Dataset)
    contenders = [lambda: hand_train(to_frame(fetch(root, "mixed", columns)), args.threads),
                  lambda: fetch(root, "mixed", columns), lambda: to_frame(fetch(root, "mixed", columns))]
    if available:
        contenders.append(lambda: mldb_train(con))
    hand_s, fetch_s, fetch_frame_s, *ours = timed(contenders, args.train_repeat)
    convert_s, boost_s = max(fetch_frame_s - fetch_s, 0.0), max(hand_s - fetch_frame_s, 0.0)
    rounds = f"{booster.current_iteration()} rounds, best {booster.best_iteration}"
    rows = [["CREATE MODEL ... USING lightgbm (mldb)", *_vs(ours[0] if ours else None, hand_s)],
            ["hand: DuckDB fetch + Arrow -> pandas + lightgbm.train", *_vs(hand_s, hand_s)],
            ["... of which DuckDB -> Arrow", *_vs(fetch_s, hand_s)],
            ["... of which Arrow -> pandas (VARCHAR -> category)", *_vs(convert_s, hand_s)],
            [f"... of which lightgbm.train, Datasets included ({rounds})", *_vs(boost_s, hand_s)]]
    if ours:
        fit, hyper = con.execute("SELECT train_seconds, hyperparameters FROM mldb.model_versions WHERE model = 'gbm' "
                                 "ORDER BY version DESC LIMIT 1").fetchone()
        rows.insert(1, ["... of which mldb's fit (train_seconds of the last run)", *_vs(fit, hand_s)])
        rows[0][0] += f" ({_rounds_of(hyper)})"
    return rows, booster


def _rounds_of(hyper: str) -> str:
    found = json.loads(hyper) if isinstance(hyper, str) else hyper
    return f"{found.get('rounds_run', '?')} rounds, best {found.get('best_iteration', '?')}"


def mldb_booster(con):
    """mldb's own ``lightgbm.Booster`` for ``gbm`` and its fitted features (the registry's model)."""
    from mldb.models.registry import load_model

    model = load_model(con, "gbm")
    return model.booster, model.features


def same_model_predict(root, table: str, booster, fitted: list[dict], num_threads: int) -> np.ndarray:
    """What a user writes by hand around mldb's booster: fetch, each category's code among the
    training's values (another value: one past them; NULL: NaN), numbers as they are, then
    ``Booster.predict`` and the labels."""
    import pyarrow.compute as pc

    fetched, columns = fetch(root, table, [feature["name"] for feature in fitted]), []
    for feature in fitted:
        column = fetched[feature["name"]].combine_chunks()
        if feature["encoding"] == "category":
            categories = pa.array(feature["categories"], pa.string())
            codes = pc.if_else(pc.is_valid(column), pc.fill_null(pc.index_in(column, value_set=categories),
                                                                  len(categories)), None)
            column = codes
        columns.append(pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False))
    return booster.predict(np.column_stack(columns), num_threads=num_threads) > 0.5


def predict_rows(con, root, args, booster, available: bool) -> list:
    """PREDICT's rows per table size. The yardstick is mldb's own booster run by hand on the fetched
    rows (the same trees); without mldb's lightgbm, the hand-trained booster on pandas."""
    rows = []
    theirs = mldb_booster(con) if available else None
    for count in args.predict_rows:
        table = "mixed" if count == args.rows else f"mixed_{count}"
        if table != "mixed":
            write_table(con, table, make_mixed(count, seed=1))
        contenders = [lambda: hand_predict(root, table, booster, args.threads), lambda: fetch(root, table, FEATURES)]
        agree = ""
        if available:
            ours, same = mldb_predict(con, table), same_model_predict(root, table, *theirs, args.threads)
            agree = f" (labels agree with the hand run on {np.mean(ours == same):.2%} of rows)"
            contenders += [lambda: same_model_predict(root, table, *theirs, args.threads),
                           lambda: mldb_predict(con, table)]
        own_s, fetch_s, *found = timed(contenders, args.repeat)
        same_s, ours_s = found if found else (own_s, None)
        if available:
            rows.append([f"PREDICT {count:,} rows (mldb, SQL){agree}", *_vs(ours_s, same_s)])
            rows.append([f"hand {count:,} rows, mldb's booster: DuckDB fetch + codes + Booster.predict + labels",
                         *_vs(same_s, same_s)])
        else:
            rows.append([f"PREDICT {count:,} rows (mldb, SQL)", *_vs(None, own_s)])
        rows += [[f"hand {count:,} rows, own booster: DuckDB fetch + pandas category + Booster.predict + labels",
                  *_vs(own_s, same_s)],
                 ["... of which DuckDB -> Arrow", *_vs(fetch_s, same_s)]]
        if table != "mixed":
            con.execute(f"DROP TABLE {table}")
    return rows


def _vs(seconds: float | None, baseline: float) -> list[str]:
    """The seconds and the ratio to the hand pipeline as table cells (``n/a`` where mldb lacks lightgbm)."""
    if seconds is None:
        return [NOT_AVAILABLE, ""]
    return [f"{seconds:.3f}", f"{seconds / baseline:.2f}x"]


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
    print(tabulate(table, headers=["", "seconds", "x hand"], disable_numparse=True))
    print(f"\n{args.rows:,} training rows x {len(FEATURES)} features; params {PARAMS}; {args.threads} "
          f"thread(s) both sides, {os.cpu_count()} cores; medians of {args.train_repeat} (TRAIN) / {args.repeat} "
          f"(PREDICT) interleaved; targets: CREATE MODEL <= 1.2x hand, PREDICT <= 1.2x hand; "
          f"{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
