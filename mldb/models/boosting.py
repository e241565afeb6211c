"""``USING lightgbm``: gradient-boosted trees, trained and served by the LightGBM package.

Features take the tree form (:class:`mldb.models.features.TreeEncoder`): numbers unscaled, text as
category codes passed as ``categorical_feature`` (no one-hot), and NULL / NaN left missing (NaN), which
LightGBM sends down the branch it learnt for missing values. Training holds out the same seeded
validation rows as the torch models (``train._split``) and stops early on their loss; each boosting
round is a row of ``mldb.training_log`` (its training loss measured on at most ``LOSS_SAMPLE`` training
rows). The model is stored as LightGBM's own text model (``Booster.model_to_string``) and read back
with ``lightgbm.Booster(model_str=...)``: no pickle.

``predict`` runs ``Booster.predict`` on a whole encoded batch; ``contributions`` (exact TreeSHAP) and
``importance`` (gain) are the explanations' hooks.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mldb import errors, threads
from mldb.models import evaluate, features, train
from mldb.models.explain import fold, shares
from mldb.options import Option, Schema

_INT32_MAX = 2**31 - 1
OPTIONS = Schema(
    "CREATE MODEL / TRAIN ... USING lightgbm",
    Option("num_leaves", "int", 31, low=2, high=131_072),  # (LightGBM's own bounds)
    Option("learning_rate", "number", 0.05, low=0, high=10, open_low=True),
    Option("num_iterations", "int", 500, low=1, high=1_000_000),
    Option("min_data_in_leaf", "int", low=1, high=_INT32_MAX),  # (not given: adapted to the table's size)
    Option("feature_fraction", "number", 1.0, low=0, high=1, open_low=True),
    Option("bagging_fraction", "number", 1.0, low=0, high=1, open_low=True),
    Option("bagging_freq", "int", 0, low=0, high=_INT32_MAX),
    Option("lambda_l1", "number", 0.0, low=0, high=1e12),
    Option("lambda_l2", "number", 0.0, low=0, high=1e12),
    Option("max_depth", "int", -1, low=-1, high=_INT32_MAX, hint="an integer >= 1, or -1 (or 0) for no limit"),
    Option("min_gain_to_split", "number", 0.0, low=0, high=1e12),
    Option("max_bin", "int", 255, low=2, high=65_535),
    Option("early_stopping_rounds", "int", 30, low=0, high=_INT32_MAX,
           hint="an integer >= 1, or 0 to run every iteration"),
    Option("device", "text", "auto", choices=("auto", "cpu")),  # (mldb's LightGBM trains on the CPU)
    *train.SHARED,
)
ALIASES = {"epochs": "num_iterations", "lr": "learning_rate", "patience": "early_stopping_rounds",
           "weight_decay": "lambda_l2"}  # a torch option -> LightGBM's nearest (for error messages)
_PARAMS = ("num_leaves", "learning_rate", "feature_fraction", "bagging_fraction", "bagging_freq", "lambda_l1",
           "lambda_l2", "max_depth", "min_gain_to_split", "max_bin")
_OBJECTIVES = {"binary": ("binary", "binary_logloss"), "multiclass": ("multiclass", "multi_logloss"),
               "regression": ("regression", "l2")}
LOSS_SAMPLE = 10_000  # training rows the per-round training loss is measured on (see _loss_sample)
ROWS_PER_THREAD = 20_000  # training rows that make one more OpenMP thread pay for its barriers
PREDICT_ROWS_PER_THREAD = 20_000  # rows of one Booster.predict call worth one more thread


def _lightgbm():
    import lightgbm

    return lightgbm


# -- training --------------------------------------------------------------------------
def fit(model: str, table: pa.Table, names: list[str], target: str, types: dict[str, str], task: str,
        split: tuple[np.ndarray, np.ndarray], given: dict, check_cancel) -> train.Trained:
    """Train a booster on ``table``: the tree form of ``names`` fitted on the training rows of ``split``,
    early stopping on its validation rows. ``given`` are the checked options (any that LightGBM does not
    take are left out; the rest default as in :data:`OPTIONS`)."""
    options = OPTIONS.defaults | {name: value for name, value in given.items() if name in OPTIONS.options}
    train_idx, valid_idx = split
    rows = pa.array(train_idx)
    fitted = [features.fit_feature(model, n, types.get(n, str(table.schema.field(n).type)), table[n].take(rows),
                                   options.get("embed_model"), trees=True) for n in names]
    target_encoder = features.fit_target(task, table[target] if task != "regression" else table[target].take(rows))
    encoder = features.TreeEncoder(model, fitted)
    x = encoder([table[n] for n in names])
    y = _labels(task, target_encoder, table[target])
    classes = len(target_encoder.get("classes", ()))
    params = _params(options, task, len(train_idx), classes)
    booster, log = _boost(model, x, y, split, params, encoder.categorical, options, task, check_cancel)
    index = valid_idx if len(valid_idx) else train_idx
    metrics = _metrics(task, y[index], _outputs(booster, x[index], task))
    hyper = ({"algorithm": "lightgbm"} | {name: options[name] for name in
                                          ("num_iterations", "early_stopping_rounds", "seed", "valid_fraction")}
             | {key: value for key, value in params.items() if key not in ("num_threads", "verbose")}
             | {"best_iteration": booster.best_iteration or booster.current_iteration(), "rounds_run": len(log),
                "inputs": encoder.width, "outputs": 1 if task == "regression" else classes})
    return train.Trained(task, "lightgbm", fitted, target_encoder, hyper, booster.model_to_string().encode(), metrics,
                         log, len(table), len(train_idx), len(valid_idx), "cpu")


def _labels(task: str, target_encoder: dict, column) -> np.ndarray:
    """Class indices, or a regression target in its own units (trees need no scaling)."""
    if task == "regression":
        return np.asarray(pc.cast(column, pa.float64()).to_numpy(), dtype=np.float64)
    return features.encode_target(task, target_encoder, column)


def _params(options: dict, task: str, train_rows: int, classes: int) -> dict:
    """LightGBM's parameters. Not given, ``min_data_in_leaf`` shrinks on a table of under 200 training rows
    (LightGBM's 20 rows a leaf leave 100 rows five leaves at most), as ``min_data_per_group`` does for
    category splits. (Measured on scikit-learn's small tables, 75/25 holdout: 20 a leaf did better than 5
    from 300 rows up, wine's 106 training rows did best with 10.)"""
    objective, metric = _OBJECTIVES[task]
    leaf = options.get("min_data_in_leaf") or int(min(20, max(2, train_rows // 10)))
    params = {"objective": objective, "metric": metric} | {name: options[name] for name in _PARAMS}
    params |= {"min_data_in_leaf": leaf, "min_data_per_group": int(min(100, max(leaf, train_rows // 20))),
               "seed": int(options["seed"]) % _INT32_MAX, "deterministic": True, "force_row_wise": True,
               "num_threads": train_threads(train_rows),
               "verbose": -1}
    if params["bagging_fraction"] < 1 and not params["bagging_freq"]:
        params["bagging_freq"] = 1  # (LightGBM bags only when bagging_freq > 0: a fraction alone would do nothing)
    if task == "multiclass":
        params["num_class"] = classes
    return params


def train_threads(rows: int) -> int:
    """OpenMP threads for training on ``rows`` rows: one per ``ROWS_PER_THREAD`` (below that a round's
    parallel regions are too short to pay for their barriers), at most the free cores (``mldb.threads``).
    The model does not depend on it: with ``deterministic`` and row-wise histograms, 1 and 2 threads gave
    bit-identical boosters on 50k rows with bagging."""
    return threads.for_work(rows * threads.WORK_PER_THREAD / ROWS_PER_THREAD)


def _boost(model, x, y, split, params, categorical, options, task, check_cancel):
    """(booster, per-round log): ``lightgbm.train`` scoring the validation rows (if any) each round."""
    lgb = _lightgbm()
    train_idx, valid_idx = split
    data = lgb.Dataset(x[train_idx], y[train_idx], categorical_feature=categorical, params=params)
    sets = [_loss_sample(lgb, data, x, y, train_idx, categorical, params, int(options["seed"]))]
    if len(valid_idx):
        sets.append(lgb.Dataset(x[valid_idx], y[valid_idx], reference=data, categorical_feature=categorical,
                                params=params))
    rounds = _Rounds(params["metric"], evaluate.PRIMARY[task], options["early_stopping_rounds"] if len(sets) > 1 else 0)
    try:
        booster = lgb.train(params, data, num_boost_round=options["num_iterations"], valid_sets=sets,
                            valid_names=["train", "valid"][: len(sets)], feval=_metric(task, sets[-1]),
                            callbacks=[_each_round(check_cancel), rounds])
    except lgb.basic.LightGBMError as error:
        raise errors.DataError(f"model '{model}': LightGBM could not train: {error}") from None
    except MemoryError as error:
        raise errors.OperationalError(f"model '{model}': training ran out of memory ({error}); use a smaller "
                                      "max_bin or num_leaves", sqlstate="53200") from None
    return booster, rounds.log


def _loss_sample(lgb, data, x, y, train_idx, categorical, params, seed: int):
    """The rows the training loss is logged on: the training rows, or a fixed seeded sample of
    ``LOSS_SAMPLE`` of them on a bigger table (LightGBM scores a data set each round: on all the training
    rows that cost a tenth of the round)."""
    if len(train_idx) <= LOSS_SAMPLE:
        return data
    sample = np.sort(np.random.default_rng(seed).choice(train_idx, LOSS_SAMPLE, replace=False))
    return lgb.Dataset(x[sample], y[sample], reference=data, categorical_feature=categorical, params=params)


def _each_round(check_cancel):
    """A callback checking for cancellation before each boosting round."""

    def callback(env) -> None:
        check_cancel()

    callback.before_iteration = True
    return callback


class _Rounds:
    """The callback after each round: a log row (training and validation loss, the validation metric),
    and early stopping as the torch loop does: ``stopping`` rounds without a lower validation loss end
    the training, and the booster keeps the rounds up to the best (0: every round is run and kept)."""

    def __init__(self, loss: str, metric: str, stopping: int):
        self.loss, self.metric, self.stopping = loss, metric, stopping
        self.log: list[dict] = []
        self.best, self.best_round, self.best_results = float("inf"), 0, []

    def __call__(self, env) -> None:
        scores = {(data, name): value for data, name, value, *_ in env.evaluation_result_list}
        scored = "valid" if ("valid", self.loss) in scores else "train"
        loss = scores[(scored, self.loss)]
        self.log.append({"epoch": env.iteration + 1, "train_loss": scores[("train", self.loss)], "valid_loss": loss,
                         "valid_metric": scores[(scored, self.metric)], "metric_name": self.metric})
        if loss < self.best:
            self.best, self.best_round, self.best_results = loss, env.iteration, env.evaluation_result_list
        last = env.iteration == env.end_iteration - 1
        if self.stopping and (env.iteration - self.best_round >= self.stopping or last):
            raise _lightgbm().callback.EarlyStopException(self.best_round, self.best_results)


def _metric(task: str, scored):
    """The validation metric (accuracy / r2) as LightGBM's ``feval``, computed on ``scored`` only."""
    name = evaluate.PRIMARY[task]

    def metric(predictions: np.ndarray, data) -> list:
        if data is not scored:
            return []
        label = data.get_label()
        if task == "regression":
            total = float(((label - label.mean()) ** 2).sum())
            return [(name, 1.0 - float(((predictions - label) ** 2).sum()) / total if total > 0 else 0.0, True)]
        predicted = predictions.argmax(axis=1) if predictions.ndim == 2 else predictions > 0.5
        return [(name, float(np.mean(predicted == label)), True)]

    return metric


def _metrics(task: str, y: np.ndarray, outputs: np.ndarray) -> dict:
    """The final metrics on the validation rows, in the target's own units (the same keys as torch's)."""
    if task == "regression":
        return evaluate.regression(y, outputs)
    return evaluate.classification(y, outputs)


# -- serving ---------------------------------------------------------------------------
def load(weights: bytes):
    """The booster stored as LightGBM's text model."""
    return _lightgbm().Booster(model_str=weights.decode())


def predict_threads(rows: int) -> int:
    """OpenMP threads for one ``Booster.predict`` of ``rows``: one for a DuckDB vector (DuckDB already runs
    PREDICT on each of its threads, see ``mldb.models.inference``), more for a big call from Python."""
    return max(1, min(threads.cores(), rows // PREDICT_ROWS_PER_THREAD))


def _outputs(booster, x: np.ndarray, task: str, **kwargs) -> np.ndarray:
    """Class probabilities (n, k) (binary: [1 - p, p]) or values (n,), float64."""
    out = booster.predict(x, num_threads=predict_threads(len(x)), **kwargs)
    if task == "binary":
        return np.column_stack([1.0 - out, out])
    return out


def predict(model, arrays: list) -> np.ndarray:
    """``ModelVersion.forward`` for a lightgbm model: probabilities (n, k) in the order of its classes,
    or values (n,), for the feature arrays in ``model.features`` order."""
    x = model.encoder(arrays)
    if len(x) == 0:
        return np.empty((0, len(model.classes)) if model.task != "regression" else 0)
    return _outputs(model.booster, x, model.task)


# -- explanations ----------------------------------------------------------------------
def contributions(model, arrays: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw, baseline, contributions) for the feature arrays in ``model.features`` order: the model's raw
    output (n,) (log-odds for binary, the value for regression, the predicted class's raw score for
    multiclass), the expected raw output (n,), and each original feature's exact TreeSHAP value
    (n, features): LightGBM's ``pred_contrib``, the columns of one feature summed. ``baseline +
    contributions.sum(1) == raw``."""
    x = model.encoder(arrays)
    booster, rows = model.booster, len(x)
    if rows == 0:
        return np.empty(0), np.empty(0), np.empty((0, len(model.features)))
    threads_ = predict_threads(rows)
    raw = np.asarray(booster.predict(x, raw_score=True, num_threads=threads_), dtype=np.float64)
    shap = np.asarray(booster.predict(x, pred_contrib=True, num_threads=threads_), dtype=np.float64)
    if model.task == "multiclass":
        predicted = raw.argmax(axis=1)
        shap = shap.reshape(rows, raw.shape[1], -1)[np.arange(rows), predicted]
        raw = raw[np.arange(rows), predicted]
    return raw, shap[:, -1].copy(), fold(model, shap[:, :-1])


def importance(model) -> np.ndarray:
    """Each original feature's share of the trees' total split gain (sums to 1; equal shares for a
    model without a split, where no feature counts more than another)."""
    gain = np.asarray(model.booster.feature_importance(importance_type="gain"), dtype=np.float64)
    return shares(fold(model, gain[None, :])[0])
