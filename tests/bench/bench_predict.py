"""PREDICT and TRAIN against what a user would write by hand (issue 13's PREDICT rows).

    .venv/bin/python tests/bench/bench_predict.py                 # 1M rows x 16 features, MLP [64, 32]
    .venv/bin/python tests/bench/bench_predict.py --quick         # 100k rows, for a fast look
    .venv/bin/python tests/bench/bench_predict.py --stream-rows 10000000   # + RSS of a 10M-row PREDICT stream

PREDICT: ``SELECT PREDICT(bench) FROM t`` fetched as Arrow, side by side (interleaved,
medians of repeats) with

- the hand pipeline: DuckDB fetch of the same 16 columns into numpy, standardise, the
  same torch module in 8192-row batches;
- the torch forward alone on the standardised float32 array already in memory;
- a row-at-a-time DuckDB Python UDF running the same module (timed on a sample, extrapolated).

With ``--stream-rows``: the RSS growth of ``SELECT PREDICT(bench), f0 FROM big`` read
through batch by batch (the result must stream, not materialise). TRAIN (``--train``):
``CREATE MODEL ... USING mlp`` vs a hand torch loop with the same epochs, batch size and
optimiser. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import os

import numpy as np
import torch
from tabulate import tabulate

import mldb
from mldb import features as mldb_features
from mldb.models.registry import load_model

WIDTH = 16
FEATURES = [f"f{i}" for i in range(WIDTH)]
EPOCHS, BATCH, HIDDEN, HAND_BATCH = 3, 1024, [64, 32], 8192


def make_table(con, name: str, rows: int) -> None:
    columns = ", ".join(f"random() * {i + 1} AS f{i}" for i in range(WIDTH))
    target = " + ".join(f"sin(f{i}) * {i % 3}" for i in range(WIDTH))
    con.execute(f"CREATE TABLE {name} AS SELECT *, {target} AS y FROM (SELECT {columns} FROM range({rows}))")


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
def mldb_predict(con, duckdb_threads: int | None = None):
    if duckdb_threads is None:
        return con.execute("SELECT PREDICT(bench) AS p FROM t").arrow()
    con.execute(f"SET threads = {duckdb_threads}")
    try:
        return con.execute("SELECT PREDICT(bench) AS p FROM t").arrow()
    finally:
        con.execute("RESET threads")


def hand_fetch(root, scale) -> np.ndarray:
    """DuckDB -> Arrow -> numpy, standardised as float32 (what the hand pipeline feeds torch)."""
    mean, std = scale
    x = root.sql(f"SELECT {', '.join(FEATURES)} FROM t").to_arrow_table()
    x = np.stack([x[name].to_numpy() for name in FEATURES], axis=1)
    return ((x - mean) / std).astype(np.float32)


def forward(module, x: np.ndarray) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), HAND_BATCH):
            out.append(module(torch.from_numpy(x[start : start + HAND_BATCH]))[:, 0].numpy())
    return np.concatenate(out)


def threads(count: int, function):
    """``function`` run with ``count`` torch intra-op threads."""
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            return function()
        finally:
            torch.set_num_threads(before)
    return run


def row_udf_seconds(root, module, scale, sample: int, rows: int) -> float:
    mean, std = scale

    def one(f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15):
        values = (f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15)
        x = torch.tensor([[(v - m) / s for v, m, s in zip(values, mean, std)]], dtype=torch.float32)
        with torch.inference_mode():
            return float(module(x)[0, 0])

    root.create_function("row_predict", one, ["DOUBLE"] * WIDTH, "DOUBLE", type="native")
    started = time.perf_counter()
    root.execute(f"SELECT row_predict({', '.join(FEATURES)}) FROM (SELECT * FROM t LIMIT {sample})").fetchall()
    return (time.perf_counter() - started) * rows / sample


def rss() -> int:
    """This process's resident memory in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def stream_rss_growth(con, rows: int) -> tuple[float, float, int]:
    """(seconds, MB of RSS growth, rows read) of a ``rows``-row PREDICT read through batch by batch."""
    make_table(con, "big", rows)
    before, peak, seen = rss(), 0, 0
    started = time.perf_counter()
    reader = con.execute("SELECT PREDICT(bench) AS p, f0 FROM big").arrow_reader(100_000)
    for batch in reader:
        seen += batch.num_rows
        peak = max(peak, rss())
    seconds = time.perf_counter() - started
    con.execute("DROP TABLE big")
    return seconds, (peak - before) / 2**20, seen


# -- TRAIN ---------------------------------------------------------------------------------
def mldb_train(con, epochs: int = EPOCHS):
    con.execute(f"CREATE OR REPLACE MODEL bench PREDICT y FROM t USING mlp WITH (hidden = {HIDDEN}, "
                f"epochs = {epochs}, batch_size = {BATCH}, patience = {epochs}, lr = 0.001, device = 'cpu')")


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
    layers, width = [], WIDTH
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


def predict_rows(con, args, rows: int, sample: int) -> list:
    root = con.database.root
    model = load_model(con, "bench")
    scale = (np.array([f["mean"] for f in model.features]), np.array([f["std"] for f in model.features]))
    target, module = model.target_encoder, model.module
    x = hand_fetch(root, scale)

    def hand():
        return forward(module, hand_fetch(root, scale)) * target["std"] + target["mean"]

    ours, theirs = mldb_predict(con)["p"].to_numpy(), hand()
    assert np.allclose(ours, theirs, atol=1e-4 * max(1.0, target["std"])), "mldb and the hand pipeline disagree"
    default = torch.get_num_threads()  # the hand-written code gets the better of one thread and torch's default
    ours_s, ours_1, hand_1, hand_n, forward_1, forward_n = timed(
        [lambda: mldb_predict(con), lambda: mldb_predict(con, duckdb_threads=1),
         threads(1, hand), threads(default, hand),
         threads(1, lambda: forward(module, x)), threads(default, lambda: forward(module, x))], args.repeat)
    hand_s, forward_s = min(hand_1, hand_n), min(forward_1, forward_n)
    print(f"hand pipeline: {hand_1:.3f} s on 1 torch thread, {hand_n:.3f} s on {default}; "
          f"forward alone: {forward_1:.3f} s / {forward_n:.3f} s")
    row_s = row_udf_seconds(root, module, scale, sample, rows)
    table = [
        ["PREDICT (mldb, SQL)", ours_s, ours_s / hand_s, forward_s / ours_s],
        ["PREDICT, DuckDB SET threads = 1", ours_1, ours_1 / hand_s, forward_s / ours_1],
        [f"hand: DuckDB fetch + torch in {HAND_BATCH}-row batches (best threads)", hand_s, 1.0, forward_s / hand_s],
        ["torch forward alone (in-memory float32, best threads)", forward_s, forward_s / hand_s, 1.0],
        [f"row-at-a-time UDF (from {sample} rows)", row_s, row_s / hand_s, forward_s / row_s],
    ]
    if args.stream_rows:
        seconds, growth, seen = stream_rss_growth(con, args.stream_rows)
        table.append([f"PREDICT {seen:,} rows streamed: RSS growth {growth:.0f} MB", seconds, None, None])
    return table


def train_rows(con, args) -> list:
    root = con.database.root
    train_mldb, train_core, train_hand = timed(
        [lambda: mldb_train(con), lambda: without_after_train(lambda: mldb_train(con)),
         lambda: hand_train(root)], args.train_repeat)
    return [
        ["TRAIN (mldb, CREATE MODEL)", train_mldb, train_mldb / train_hand, None],
        ["TRAIN without the lifecycle's training statistics", train_core, train_core / train_hand, None],
        ["train: hand torch loop", train_hand, 1.0, None],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--train", action="store_true", help="also time TRAIN against a hand torch loop")
    parser.add_argument("--train-repeat", type=int, default=1, help="TRAIN timings (each a full training run)")
    parser.add_argument("--sample", type=int, default=5000, help="rows timed for the row-at-a-time UDF")
    parser.add_argument("--stream-rows", type=int, default=0, help="also measure the RSS of a PREDICT this long")
    parser.add_argument("--quick", action="store_true", help="100k rows, 2000-row UDF sample")
    args = parser.parse_args()
    rows, sample = (100_000, 2000) if args.quick else (args.rows, args.sample)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        con = mldb.connect(str(Path(folder) / "bench.db"))
        make_table(con, "t", rows)
        warm_up(con)
        table = train_rows(con, args) if args.train else []
        if not args.train:
            mldb_train(con, epochs=1)
        table = predict_rows(con, args, rows, sample) + table
        con.close()
    print(f"{rows:,} rows x {WIDTH} DOUBLE features, MLP {HIDDEN}, median of {args.repeat} interleaved")
    print(tabulate(table, headers=["", "seconds", "x hand pipeline", "forward-alone / this"], floatfmt=".3f"))


if __name__ == "__main__":
    main()
