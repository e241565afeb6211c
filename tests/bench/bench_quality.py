"""Holdout quality and training time: mldb's algorithms against scikit-learn and raw LightGBM (issue 14).

    .venv/bin/python tests/bench/bench_quality.py                          # every dataset, 200k generated rows
    .venv/bin/python tests/bench/bench_quality.py --quick                  # 20k generated rows, auto's budget 20 s
    .venv/bin/python tests/bench/bench_quality.py --datasets wine,penguins --time-budget 30

Datasets: breast_cancer, wine, digits (accuracy) and diabetes (r2) from scikit-learn's bundled
files, penguins from ``palmerpenguins`` (species; its NULLs and its VARCHAR island / sex kept as
they are), and ``mixed``: a generated, seeded table (``--rows``, 200k by default) of numbers with
NULLs (one of them missing for a reason), a 6-valued and a 5000-valued category, a boolean and a
binary target driven by step functions: an XOR of two thresholds, a boolean-switched threshold,
the missingness of x3, and the categories' own effects: what trees find and a linear model
cannot (the generator's own probabilities reach about 0.756 accuracy).

One seeded 80/20 split per dataset (stratified for classes) is written to a DuckDB file through
``mldb.connect``; each mldb algorithm is trained by ``CREATE MODEL m PREDICT y FROM train USING
...`` (default options; ``auto`` with ``time_budget``) and scored by ``SELECT * FROM EVALUATE(m,
(SELECT * FROM test))``. The baselines fit the same training rows in memory: LogisticRegression
(mean imputation + StandardScaler, one-hot categories) or Ridge, HistGradientBoosting (native
categories; one with more than 255 values goes in as its ordinal codes, HGB's limit) and raw
LightGBM (``lightgbm.train``, pandas category dtype) with the defaults of mldb's ``USING
lightgbm``: learning_rate 0.05, up to 500 rounds, early stopping after 30 on a seeded 20% of
the training rows (mldb's split), ``min_data_in_leaf`` adapted to the table's size. An algorithm mldb does
not have (CREATE MODEL says 'unknown algorithm', or ``auto`` refuses ``time_budget``) is reported
``n/a (not available)``. Seconds are one training's wall clock (the whole statement for mldb).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
from tabulate import tabulate

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import mldb  # noqa: E402
from mldb.threads import free_cores  # noqa: E402

SEED = 0
TEST_FRACTION = 0.2
TARGET_GAP = 0.01  # the target: lightgbm and auto within 0.01 of the best baseline
HGB_MAX_CATEGORIES = 255  # HistGradientBoosting's native categories: at most max_bins values
NOT_AVAILABLE = "n/a (not available)"
MLDB_METHODS = ("mldb linear/logistic", "mldb mlp", "mldb lightgbm", "mldb auto")
BASELINES = ("sklearn Ridge/LogisticRegression", "sklearn HistGradientBoosting", "raw LightGBM")
ALL_DATASETS = ("breast_cancer", "wine", "digits", "diabetes", "penguins", "mixed")


@dataclass
class Dataset:
    name: str
    task: str  # 'classification' | 'regression'
    frame: pd.DataFrame  # features + target; categories as str (None = NULL), NaN = NULL
    target: str = "y"
    categorical: list[str] = field(default_factory=list)

    @property
    def metric(self) -> str:
        return "accuracy" if self.task == "classification" else "r2"

    @property
    def features(self) -> list[str]:
        return [name for name in self.frame.columns if name != self.target]


@dataclass
class Split:
    train: pd.DataFrame
    test: pd.DataFrame


# -- datasets --------------------------------------------------------------------------------
def _sql_name(name: str) -> str:
    """'mean radius' -> 'mean_radius': plain identifiers, so no SQL needs quoting."""
    return re.sub(r"\W+", "_", name.strip()).strip("_").lower()


def sklearn_dataset(name: str) -> Dataset:
    from sklearn import datasets

    loaded = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = loaded.frame.rename(columns=_sql_name).rename(columns={"target": "y"})
    task = "regression" if name == "diabetes" else "classification"
    if task == "classification":
        frame["y"] = frame["y"].astype(np.int32)  # an INTEGER target with few values: classes
    return Dataset(name, task, frame)


def penguins() -> Dataset:
    from palmerpenguins import load_penguins

    frame = load_penguins()
    for name in ("species", "island", "sex"):
        frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return Dataset("penguins", "classification", frame, target="species", categorical=["island", "sex"])


def make_mixed(rows: int, seed: int = SEED) -> pd.DataFrame:
    """The generated table: x0..x5 DOUBLE (x3 15% NULL, and NULL means something; x4 10% NULL at
    random), n_items INTEGER, segment (6 values), merchant (5000 values, 'm0000'..; a Zipf head and a
    uniform tail), promo BOOLEAN and the BOOLEAN target y drawn from a logistic of step functions."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6))
    n_items = rng.poisson(3, rows).astype(np.int32)
    segment = rng.integers(0, 6, rows)
    merchant = np.minimum(rng.zipf(1.3, rows) - 1, 4999)  # a long tail: a few big merchants, thousands small
    merchant = np.where(rng.random(rows) < 0.5, rng.integers(0, 5000, rows), merchant)
    promo = rng.random(rows) < 0.3
    x3_missing, x4_missing = rng.random(rows) < 0.15, rng.random(rows) < 0.10
    segment_effect = np.array([-1.0, -0.4, 0.0, 0.3, 0.8, 1.2])
    merchant_effect = rng.normal(0, 0.7, 5000)
    logit = (2.0 * ((x[:, 0] > 0) ^ (x[:, 1] > 0.5)) - 1.0  # an XOR of thresholds: no linear model finds it
             + 1.5 * ((x[:, 2] > 1) & promo) - 1.0 * ((x[:, 2] < -1) & ~promo)
             + np.where(x3_missing, 1.0, -0.8 * (x[:, 3] > 0.3))
             + 0.8 * (n_items >= 4) + 0.3 * x[:, 5] + segment_effect[segment] + merchant_effect[merchant])
    y = rng.random(rows) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame({f"x{i}": x[:, i] for i in range(6)})
    frame.loc[x3_missing, "x3"] = np.nan
    frame.loc[x4_missing, "x4"] = np.nan
    frame["n_items"] = n_items
    frame["segment"] = np.array([f"s{i}" for i in range(6)], dtype=object)[segment]
    frame["merchant"] = np.array([f"m{i:04d}" for i in range(5000)], dtype=object)[merchant]
    frame["promo"] = promo
    frame["y"] = y
    return frame


def mixed(rows: int) -> Dataset:
    return Dataset("mixed", "classification", make_mixed(rows), categorical=["segment", "merchant"])


def load(name: str, rows: int) -> Dataset:
    if name == "penguins":
        return penguins()
    if name == "mixed":
        return mixed(rows)
    return sklearn_dataset(name)


def split(dataset: Dataset) -> Split:
    from sklearn.model_selection import train_test_split

    target = dataset.frame[dataset.target]
    stratify = target if dataset.task == "classification" else None
    train, test = train_test_split(dataset.frame, test_size=TEST_FRACTION, random_state=SEED, stratify=stratify)
    return Split(train.reset_index(drop=True), test.reset_index(drop=True))


def write_table(con, name: str, frame: pd.DataFrame) -> None:
    """DuckDB reads the frame as Arrow: NaN -> NULL, Python str -> VARCHAR, bool -> BOOLEAN."""
    con.register("bench_source", pa.Table.from_pandas(frame, preserve_index=False))
    try:
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM bench_source")
    finally:
        con.unregister("bench_source")


# -- mldb --------------------------------------------------------------------------------------
def _using(dataset: Dataset, method: str, time_budget: float) -> str:
    algorithm = method.removeprefix("mldb ")
    if algorithm == "linear/logistic":
        return "linear" if dataset.task == "regression" else "logistic"
    if algorithm == "auto":
        return f"auto WITH (time_budget = {time_budget:g})"
    return algorithm


def missing_algorithm(error: Exception) -> bool:
    """CREATE MODEL's refusal of an algorithm (or of auto's ``time_budget``) this build lacks."""
    text = str(error)
    return "unknown algorithm" in text or "unknown option time_budget" in text


def mldb_run(con, dataset: Dataset, method: str, time_budget: float) -> tuple[float | None, float | None]:
    """(holdout metric, seconds of CREATE MODEL), or (None, None) where the algorithm is missing."""
    model = f"{dataset.name}_{method.removeprefix('mldb ').replace('/', '_')}"
    started = time.perf_counter()
    try:
        con.execute(f"CREATE OR REPLACE MODEL {model} PREDICT {dataset.target} FROM {dataset.name}_train "
                    f"USING {_using(dataset, method, time_budget)}")
    except mldb.ProgrammingError as error:
        if missing_algorithm(error):
            return None, None
        raise
    seconds = time.perf_counter() - started
    scored = con.execute(f"SELECT {dataset.metric} FROM EVALUATE({model}, "
                         f"(SELECT * FROM {dataset.name}_test))").fetchone()[0]
    return float(scored), seconds


# -- baselines ---------------------------------------------------------------------------------
def _xy(dataset: Dataset, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    x = frame[dataset.features].copy()
    for name in x.columns:
        if x[name].dtype == bool:
            x[name] = x[name].astype(np.float64)
    return x, frame[dataset.target].to_numpy()


def _categories(dataset: Dataset, data: Split, x: pd.DataFrame, ordinal_above: int | None) -> pd.DataFrame:
    """Categorical columns as pandas ``category`` with the training rows' values (NULL stays
    missing); a column with more than ``ordinal_above`` values becomes its float codes instead."""
    x = x.copy()
    for name in dataset.categorical:
        values = sorted(data.train[name].dropna().unique())
        column = pd.Categorical(x[name], categories=values)
        if ordinal_above is not None and len(values) > ordinal_above:
            x[name] = np.where(column.codes < 0, np.nan, column.codes).astype(np.float64)
        else:
            x[name] = column
    return x


def linear_baseline(dataset: Dataset, data: Split):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [name for name in dataset.features if name not in dataset.categorical]
    prepare = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
        ("categories", make_pipeline(SimpleImputer(strategy="constant", fill_value="(null)"),
                                     OneHotEncoder(handle_unknown="ignore")), dataset.categorical),
    ])
    estimator = Ridge() if dataset.task == "regression" else LogisticRegression(max_iter=5000)
    pipeline = make_pipeline(prepare, estimator)
    x, y = _xy(dataset, data.train)
    test_x, _ = _xy(dataset, data.test)
    for frame in (x, test_x):  # (SimpleImputer's constant fill wants object columns with NaN for NULL)
        for name in dataset.categorical:
            frame[name] = frame[name].astype(object).where(frame[name].notna(), np.nan)
    return _fit_score(dataset, data, lambda: pipeline.fit(x, y), lambda: pipeline.predict(test_x))


def hgb_baseline(dataset: Dataset, data: Split):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    estimator = (HistGradientBoostingRegressor if dataset.task == "regression" else HistGradientBoostingClassifier)(
        categorical_features="from_dtype", random_state=SEED)
    x, y = _xy(dataset, data.train)
    test_x, _ = _xy(dataset, data.test)
    x, test_x = (_categories(dataset, data, frame, HGB_MAX_CATEGORIES) for frame in (x, test_x))
    return _fit_score(dataset, data, lambda: estimator.fit(x, y), lambda: estimator.predict(test_x))


# mldb's USING lightgbm defaults (mldb/models/boosting.py, OPTIONS and _params): the raw baseline gets them too
LIGHTGBM_ROUNDS, LIGHTGBM_EARLY_STOPPING, MLDB_VALID_FRACTION, MLDB_SEED = 500, 30, 0.2, 42


def lightgbm_params(dataset: Dataset, classes: int, threads: int, train_rows: int) -> dict:
    """The parameters mldb's ``USING lightgbm`` trains with when given none: learning_rate 0.05,
    31 leaves, ``min_data_in_leaf`` / ``min_data_per_group`` shrunk on a small table, deterministic,
    row-wise histograms."""
    leaf = int(min(20, max(2, train_rows // 10)))
    params = {"learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": leaf,
              "min_data_per_group": int(min(100, max(leaf, train_rows // 20))), "seed": MLDB_SEED,
              "deterministic": True, "force_row_wise": True, "num_threads": threads, "verbosity": -1}
    if dataset.task == "regression":
        return params | {"objective": "regression"}
    if classes == 2:
        return params | {"objective": "binary"}
    return params | {"objective": "multiclass", "num_class": classes}


def mldb_like_split(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) rows as mldb's ``train._split`` draws them: a seeded 20% for validation."""
    order = np.random.default_rng(MLDB_SEED).permutation(rows)
    valid = int(round(rows * MLDB_VALID_FRACTION))
    return np.sort(order[valid:]), np.sort(order[:valid])


def lightgbm_baseline(dataset: Dataset, data: Split, threads: int):
    """``lightgbm.train`` as mldb trains: the same defaults, up to 500 rounds with early stopping
    (30 rounds) on a seeded 20% of the training rows, categories as pandas ``category``."""
    import lightgbm

    x, y = _xy(dataset, data.train)
    test_x, _ = _xy(dataset, data.test)
    x, test_x = (_categories(dataset, data, frame, None) for frame in (x, test_x))
    classes = np.unique(y) if dataset.task == "classification" else None
    labels = np.searchsorted(classes, y) if classes is not None else y
    train, valid = mldb_like_split(len(x))
    params = lightgbm_params(dataset, len(classes) if classes is not None else 0, threads, len(train))
    booster = []

    def fit():
        train_set = lightgbm.Dataset(x.iloc[train], labels[train])
        valid_set = lightgbm.Dataset(x.iloc[valid], labels[valid], reference=train_set)
        booster.append(lightgbm.train(params, train_set, num_boost_round=LIGHTGBM_ROUNDS, valid_sets=[valid_set],
                                      callbacks=[lightgbm.early_stopping(LIGHTGBM_EARLY_STOPPING, verbose=False)]))

    def predict():
        raw = booster[0].predict(test_x, num_iteration=booster[0].best_iteration)
        if classes is None:
            return raw
        return classes[raw.argmax(axis=1)] if raw.ndim == 2 else classes[(raw > 0.5).astype(int)]

    return _fit_score(dataset, data, fit, predict)


def _fit_score(dataset: Dataset, data: Split, fit, predict) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, r2_score

    started = time.perf_counter()
    fit()
    seconds = time.perf_counter() - started
    truth = data.test[dataset.target].to_numpy()
    score = r2_score if dataset.task == "regression" else accuracy_score
    return float(score(truth, predict())), seconds


def baselines(dataset: Dataset, data: Split, threads: int) -> dict[str, tuple[float, float]]:
    return {"sklearn Ridge/LogisticRegression": linear_baseline(dataset, data),
            "sklearn HistGradientBoosting": hgb_baseline(dataset, data),
            "raw LightGBM": lightgbm_baseline(dataset, data, threads)}


# -- the report --------------------------------------------------------------------------------
def warm_up(con) -> None:
    """Pay the one-time costs (torch's first kernels, the lifecycle's imports) before any timing."""
    con.execute("CREATE OR REPLACE TABLE bench_warm AS SELECT range::DOUBLE AS x, range % 2 = 0 AS y FROM range(200)")
    con.execute("CREATE OR REPLACE MODEL bench_warm PREDICT y FROM bench_warm USING mlp WITH (epochs = 1)")
    con.execute("SELECT * FROM EVALUATE(bench_warm, (SELECT * FROM bench_warm))").fetchall()
    con.execute("DROP MODEL bench_warm; DROP TABLE bench_warm")


def run_dataset(con, dataset: Dataset, time_budget: float, threads: int) -> dict[str, tuple]:
    data = split(dataset)
    write_table(con, f"{dataset.name}_train", data.train)
    write_table(con, f"{dataset.name}_test", data.test)
    found = {method: mldb_run(con, dataset, method, time_budget) for method in MLDB_METHODS}
    return found | baselines(dataset, data, threads)


def table_rows(dataset: Dataset, found: dict) -> list[list]:
    rows = []
    for method, (score, seconds) in found.items():
        shown = NOT_AVAILABLE if score is None else f"{score:.4f}"
        rows.append([dataset.name, method, f"{dataset.metric} {shown}", "" if seconds is None else f"{seconds:.2f}"])
    return rows


def summary(dataset: Dataset, found: dict) -> tuple[str, bool | None]:
    """One line: the best baseline, lightgbm's and auto's gaps to it, lightgbm against HGB."""
    best = max(BASELINES, key=lambda method: found[method][0])
    best_score = found[best][0]
    parts = [f"{dataset.name}: best baseline {best} {best_score:.4f}"]
    for method in ("mldb lightgbm", "mldb auto"):
        score = found[method][0]
        if score is None:
            parts.append(f"{method} - best: n/a")
            continue
        gap = score - best_score
        parts.append(f"{method} - best: {gap:+.4f} ({'met' if gap >= -TARGET_GAP else 'MISSED'})")
    lightgbm, hgb = found["mldb lightgbm"][0], found["sklearn HistGradientBoosting"][0]
    beats = None if lightgbm is None else lightgbm > hgb
    parts.append("lightgbm > HGB: " + ("n/a" if beats is None else ("yes" if beats else "no")))
    return "; ".join(parts), beats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(ALL_DATASETS),
                        help=f"comma-separated: {', '.join(ALL_DATASETS)}")
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the generated 'mixed' dataset")
    parser.add_argument("--time-budget", type=float, default=60.0, help="seconds for USING auto")
    parser.add_argument("--threads", type=int, default=free_cores(),
                        help="raw LightGBM's num_threads (default: the cores no other process is running on)")
    parser.add_argument("--db", help="keep the DuckDB file here (a temporary one otherwise)")
    parser.add_argument("--quick", action="store_true", help="20k generated rows, auto's budget 20 s")
    args = parser.parse_args()
    names = [name.strip() for name in args.datasets.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ALL_DATASETS))
    if unknown:
        parser.error(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(ALL_DATASETS)}")
    rows, budget = (20_000, 20.0) if args.quick else (args.rows, args.time_budget)
    path = args.db or os.path.join(tempfile.mkdtemp(), "bench_quality.db")
    table, lines, wins = [], [], []
    with mldb.connect(path) as con:
        warm_up(con)
        for name in names:
            dataset = load(name, rows)
            found = run_dataset(con, dataset, budget, args.threads)
            table += table_rows(dataset, found)
            line, beats = summary(dataset, found)
            lines.append(line)
            wins.append(beats)
            print(f"[{name}: {len(dataset.frame):,} rows x {len(dataset.features)} features done]", flush=True)
    print(tabulate(table, headers=["dataset", "method", "holdout metric", "train seconds"], disable_numparse=True))
    print()
    print("\n".join(lines))
    known = [beats for beats in wins if beats is not None]
    print("\nlightgbm beats HistGradientBoosting on "
          + (f"{sum(known)} of {len(known)} datasets (target: at least 2)" if known else "n/a (no mldb lightgbm)"))
    print(f"{os.cpu_count()} cores, raw LightGBM on {args.threads} thread(s); generated rows {rows:,}; "
          f"auto's time_budget {budget:g} s; split {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} seeded ({SEED})")


if __name__ == "__main__":
    main()
