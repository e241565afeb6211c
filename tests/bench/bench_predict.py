"""PREDICT and TRAIN against what a user would write by hand.

    .venv/bin/python tests/bench/bench_predict.py            # 1M rows x 8 features, MLP [64, 64]
    .venv/bin/python tests/bench/bench_predict.py --quick    # 100k rows, for a fast look

PREDICT: ``SELECT PREDICT(bench) FROM t`` fetched as Arrow, vs the hand-written
pipeline (DuckDB -> Arrow -> numpy -> standardise -> the same torch module in batches
of 65536 -> Arrow), vs a row-at-a-time DuckDB Python UDF running the same module
(timed on a sample, extrapolated). TRAIN: ``CREATE MODEL ... USING mlp`` vs a hand
torch loop with the same epochs, batch size, optimiser and validation pass per epoch.
Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import torch
from tabulate import tabulate

import mldb
from mldb import features as mldb_features
from mldb.models.registry import load_model

FEATURES = [f"f{i}" for i in range(8)]
EPOCHS, BATCH, HIDDEN = 3, 1024, [64, 64]


def make_table(con, rows: int) -> None:
    columns = ", ".join(f"random() * {i + 1} AS f{i}" for i in range(8))
    con.execute(f"CREATE TABLE t AS SELECT {columns} FROM range({rows})")
    con.execute("ALTER TABLE t ADD COLUMN y DOUBLE")
    con.execute("UPDATE t SET y = sin(f0) + f1 * f2 - f3 + f4 * 0.5 + cos(f5 * f6) + f7 * 0.1")


def timed(functions: list, repeat: int) -> list[float]:
    """Median seconds of each function, run in turn (interleaved, so a busy machine slows all alike)."""
    times = [[] for _ in functions]
    for _ in range(repeat):
        for function, spent in zip(functions, times):
            started = time.perf_counter()
            function()
            spent.append(time.perf_counter() - started)
    return [statistics.median(spent) for spent in times]


# -- PREDICT -------------------------------------------------------------------------------
def mldb_predict(con):
    return con.execute("SELECT PREDICT(bench) AS p FROM t").arrow()


def hand_predict(root, module, scale):
    mean, std = scale
    x = root.sql(f"SELECT {', '.join(FEATURES)} FROM t").to_arrow_table()
    x = np.stack([x[name].to_numpy() for name in FEATURES], axis=1)
    x = ((x - mean) / std).astype(np.float32)
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), 65536):
            out.append(module(torch.from_numpy(x[start : start + 65536]))[:, 0].numpy())
    return np.concatenate(out)


def row_udf_seconds(root, module, scale, sample: int, rows: int) -> float:
    mean, std = scale

    def one(f0, f1, f2, f3, f4, f5, f6, f7):
        values = (f0, f1, f2, f3, f4, f5, f6, f7)
        x = torch.tensor([[(v - m) / s for v, m, s in zip(values, mean, std)]], dtype=torch.float32)
        with torch.inference_mode():
            return float(module(x)[0, 0])

    root.create_function("row_predict", one, ["DOUBLE"] * 8, "DOUBLE", type="native")
    started = time.perf_counter()
    root.execute(f"SELECT row_predict({', '.join(FEATURES)}) FROM (SELECT * FROM t LIMIT {sample})").fetchall()
    return (time.perf_counter() - started) * rows / sample


# -- TRAIN ---------------------------------------------------------------------------------
def mldb_train(con):
    con.execute(f"CREATE OR REPLACE MODEL bench PREDICT y FROM t USING mlp WITH (hidden = {HIDDEN}, "
                f"epochs = {EPOCHS}, batch_size = {BATCH}, patience = {EPOCHS}, lr = 0.001, device = 'cpu')")


def warm_up(con) -> None:
    """Pay the one-time costs (torch's first kernels, the lifecycle's imports) before timing."""
    con.execute("CREATE OR REPLACE TABLE warm AS SELECT * FROM t LIMIT 2000")
    con.execute("CREATE OR REPLACE MODEL warm PREDICT y FROM warm USING mlp WITH (epochs = 1, device = 'cpu')")
    con.execute("SELECT count(PREDICT(warm)) FROM warm").fetchall()
    con.execute("DROP MODEL warm; DROP TABLE warm")


def without_after_train(function):
    """Run ``function`` with the lifecycle's ``on_trained`` listener (training statistics,
    lineage, fingerprint) switched off: a copy of the lifecycle ``Feature`` without it
    stands in ``mldb.features.FEATURES``, where the core looks listeners up on each call."""
    real = mldb_features.FEATURES
    mldb_features.FEATURES = tuple(dataclasses.replace(feature, on_trained=None) if feature.name == "lifecycle"
                                   else feature for feature in real)
    try:
        return function()
    finally:
        mldb_features.FEATURES = real


def hand_train(root):
    table = root.sql("SELECT * FROM t").to_arrow_table()
    x = np.stack([table[name].to_numpy() for name in FEATURES], axis=1)
    y = table["y"].to_numpy()
    order = np.random.default_rng(0).permutation(len(x))
    valid, train = order[: len(x) // 5], order[len(x) // 5 :]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    xt = torch.from_numpy(((x - mean) / std).astype(np.float32))
    yt = torch.from_numpy(((y - y[train].mean()) / y[train].std()).astype(np.float32))[:, None]
    layers, width = [], 8
    for hidden in HIDDEN:
        layers += [torch.nn.Linear(width, hidden), torch.nn.ReLU()]
        width = hidden
    module = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
    optimizer = torch.optim.Adam(module.parameters(), lr=0.001)
    train_i, valid_i = torch.from_numpy(train), torch.from_numpy(valid)
    for _ in range(EPOCHS):
        perm = train_i[torch.randperm(len(train_i))]
        for start in range(0, len(perm), BATCH):
            batch = perm[start : start + BATCH]
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(module(xt[batch]), yt[batch])
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            torch.nn.functional.mse_loss(module(xt[valid_i]), yt[valid_i])
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--train-repeat", type=int, default=1, help="TRAIN timings (each a full training run)")
    parser.add_argument("--sample", type=int, default=5000, help="rows timed for the row-at-a-time UDF")
    parser.add_argument("--quick", action="store_true", help="100k rows, 2000-row UDF sample")
    parser.add_argument("--skip-train", action="store_true", help="train one quick model, time PREDICT only")
    args = parser.parse_args()
    rows, sample = (100_000, 2000) if args.quick else (args.rows, args.sample)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        con = mldb.connect(str(Path(folder) / "bench.db"))
        make_table(con, rows)
        root = con.database.root
        warm_up(con)
        if args.skip_train:
            mldb_train(con)
            train_mldb = train_core = train_hand = float("nan")
        else:
            train_mldb, train_core, train_hand = timed(
                [lambda: mldb_train(con), lambda: without_after_train(lambda: mldb_train(con)),
                 lambda: hand_train(root)], args.train_repeat)
        model = load_model(con, "bench")
        feature_scale = (np.array([f["mean"] for f in model.features]), np.array([f["std"] for f in model.features]))
        target = model.target_encoder
        module = model.module

        def hand():
            return hand_predict(root, module, feature_scale) * target["std"] + target["mean"]

        ours, theirs = mldb_predict(con)["p"].to_numpy(), hand()
        assert np.allclose(ours, theirs, atol=1e-4), "mldb and the hand pipeline disagree"
        predict_mldb, predict_hand = timed([lambda: mldb_predict(con), hand], args.repeat)
        predict_row = row_udf_seconds(root, module, feature_scale, sample, rows)
        con.close()
    table = [
        ["PREDICT (mldb, SQL)", predict_mldb, predict_mldb / predict_hand],
        ["predict: hand pipeline", predict_hand, 1.0],
        [f"predict: row-at-a-time UDF (from {sample} rows)", predict_row, predict_row / predict_hand],
        ["TRAIN (mldb, CREATE MODEL)", train_mldb, train_mldb / train_hand],
        ["TRAIN without the lifecycle's training statistics", train_core, train_core / train_hand],
        ["train: hand torch loop", train_hand, 1.0],
    ]
    print(f"{rows:,} rows x 8 features, MLP {HIDDEN}, {EPOCHS} epochs, batch {BATCH}, "
          f"median of {args.repeat} (TRAIN: {args.train_repeat}), torch threads {torch.get_num_threads()}")
    print(tabulate(table, headers=["", "seconds", "x hand-written"], floatfmt=".3f"))
    print(f"PREDICT vs row UDF: {predict_row / predict_mldb:.0f}x faster")


if __name__ == "__main__":
    main()
