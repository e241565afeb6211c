"""Explanations: why a model predicts what it does (EXPLAIN_PREDICT) and which features matter (FEATURE_IMPORTANCE).

Per row, :func:`contributions` splits the model's raw output into a ``baseline`` (the output for the
average training row) and one contribution per original feature (a one-hot feature's columns folded
back into one), with ``baseline + sum(contributions) == raw``:

- the raw output is the log-odds for a binary classifier (``z1 - z0`` of its two logits), the logit of
  the predicted class for a multiclass one, and the value, in the target's units, for a regression;
- ``linear`` / ``logistic``: exact, ``w_j * (x_j - mean_j)`` summed over a feature's encoded columns;
- ``mlp``: integrated gradients from the same baseline input along the straight path (midpoint rule,
  every row and step in one autograd pass; rows whose sum misses by more than 1% get more steps);
- ``lightgbm``: exact TreeSHAP, from :mod:`mldb.models.boosting`.

The baseline input is the mean of the encoded training rows (0 for a standardised column, the
category frequencies for a one-hot one). It is measured when the version is trained (:func:`record`,
the models feature's ``on_trained`` listener) and kept in ``mldb.explain_baselines``, one row per
feature, beside the importances in ``mldb.feature_importance``. Separate tables, not a column of
``mldb.model_versions``: a database file written before them gets them from ``CREATE TABLE IF NOT
EXISTS``, and a version trained before has no rows (its baseline input is then all zeros: the
standardised means, no category; its contributions are exact all the same).

Importances, normalised to sum 1: ``weight`` (|w| times the encoded column's spread, summed per
feature) for linear models, ``permutation`` (how much the validation loss grows when one feature's
columns are shuffled) for an MLP, ``gain`` for LightGBM.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mldb import errors, threads
from mldb.models import features, registry

TORCH_ALGORITHMS = ("linear", "logistic", "mlp")
SAMPLE_ROWS = 20_000  # training / validation rows measured at most (seeded sample above that)
EMBED_SAMPLE_ROWS = 2_000  # ... for a model with a text feature, whose rows are embedded again to be measured
PERMUTATION_REPEATS = 3
IG_STEPS = (32, 128, 512, 2048)  # integrated gradients: steps tried in turn for the rows not yet within tolerance
IG_TOLERANCE = 0.01  # of |raw - baseline|: the SPEC's bound for neural models is 5%
IG_BUDGET = 1 << 22  # values (rows x steps x widest layer) per autograd pass


# -- contributions ------------------------------------------------------------------------
def contributions(source, model: registry.ModelVersion, arrays: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw (n,), baseline (n,), contributions (n, features)) float64 for a batch of feature arrays."""
    if model.algorithm == "lightgbm":
        from mldb.models import boosting

        return boosting.contributions(model, arrays)
    if model.algorithm not in TORCH_ALGORITHMS:
        raise errors.NotSupportedError(f"EXPLAIN_PREDICT: model '{model.name}' uses {model.algorithm}, "
                                       "which mldb cannot explain")
    x = np.array(model.encoder(list(arrays)), dtype=np.float64)  # (a copy: the encoder's buffer is reused)
    means = baseline_input(source, model)
    explain = _integrated_gradients if model.algorithm == "mlp" else _linear
    raw, baseline, columns = explain(model, x, means)
    return raw, baseline, fold(model, columns)


def _linear(model, x: np.ndarray, means: np.ndarray):
    """Exact: the output is ``w . x + b`` with ``w`` the row's output direction (see :func:`_direction`)."""
    weight = model.module.weight.detach().double().numpy()
    bias = model.module.bias.detach().double().numpy()
    w, b = _direction(model, weight, bias, x)
    return (x * w).sum(axis=1) + b, (means * w).sum(axis=1) + b, w * (x - means)


def _direction(model, weight: np.ndarray, bias: np.ndarray, x: np.ndarray):
    """The weights (n, d) and bias (n,) whose dot product with a row is its raw output."""
    n = len(x)
    if model.task == "regression":
        scale = model.target_encoder["std"]
        return np.broadcast_to(weight[0] * scale, x.shape), np.full(n, bias[0] * scale + model.target_encoder["mean"])
    if model.task == "binary":
        return np.broadcast_to(weight[1] - weight[0], x.shape), np.full(n, bias[1] - bias[0])
    best = (x @ weight.T + bias).argmax(axis=1)
    return weight[best], bias[best]


def _integrated_gradients(model, x: np.ndarray, means: np.ndarray):
    """Integrated gradients of the raw output from the baseline input, each row refined until its
    contributions add up to ``raw - baseline`` within :data:`IG_TOLERANCE` (or the last step count)."""
    import torch

    network = _double_network(model)
    weights = sum(parameter.numel() for parameter in network.parameters())
    with threads.torch_threads(threads.for_work(len(x) * IG_STEPS[0] * weights)):
        with torch.no_grad():
            out = network(torch.from_numpy(x))
            target = _predicted_class(model, out)
            raw = _select(model, out[:, None, :], target)[:, 0].numpy()
            baseline = _select(model, network(torch.from_numpy(means)[None]).expand(len(x), -1)[:, None, :],
                               target)[:, 0].numpy()
        columns = np.zeros_like(x)
        todo = np.arange(len(x))
        for steps in IG_STEPS:
            if not len(todo):
                break
            columns[todo] = _path_integral(model, network, x[todo], means, target[todo], steps)
            gap = np.abs(baseline[todo] + columns[todo].sum(axis=1) - raw[todo])
            todo = todo[gap > IG_TOLERANCE * np.maximum(np.abs(raw[todo] - baseline[todo]), 1e-6)]
    return raw, baseline, columns


def _path_integral(model, network, x: np.ndarray, means: np.ndarray, target, steps: int) -> np.ndarray:
    """(x - x0) times the mean gradient at the midpoints of ``steps`` equal segments of the path,
    for as many rows at once as :data:`IG_BUDGET` allows."""
    import torch

    widest = max([x.shape[1]] + [layer.out_features for layer in network if isinstance(layer, torch.nn.Linear)])
    chunk = max(1, IG_BUDGET // (steps * widest))
    alphas = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
    origin = torch.from_numpy(means)
    result = np.empty_like(x)
    for start in range(0, len(x), chunk):
        rows = torch.from_numpy(x[start : start + chunk])
        delta = rows - origin
        path = (origin + alphas[None, :, None] * delta[:, None, :]).requires_grad_(True)  # (rows, steps, d)
        out = network(path)
        (gradient,) = torch.autograd.grad(_select(model, out, target[start : start + chunk]).sum(), path)
        result[start : start + chunk] = (delta * gradient.mean(dim=1)).numpy()
    return result


def _predicted_class(model, out):
    import torch

    if model.task == "multiclass":
        return out.argmax(dim=1)
    return torch.zeros(len(out), dtype=torch.long)


def _select(model, out, target):
    """The raw output from the network's outputs (rows, steps, k): log-odds, the predicted class's
    logit, or the value in the target's units."""
    if model.task == "regression":
        return out[..., 0] * model.target_encoder["std"] + model.target_encoder["mean"]
    if model.task == "binary":
        return out[..., 1] - out[..., 0]
    return out.gather(2, target[:, None, None].expand(-1, out.shape[1], 1))[..., 0]


def _double_network(model):
    """A float64 copy of the version's module (kept with the cached version), for gradients as exact as
    the completeness check needs."""
    import copy

    kept = model.__dict__.setdefault("_explain", {})  # (dies with the registry's cached ModelVersion)
    if "network" not in kept:
        network = copy.deepcopy(model.module).double().eval()
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        kept["network"] = network
    return kept["network"]


def fold(model, columns: np.ndarray) -> np.ndarray:
    """Per encoded column -> per original feature (a one-hot feature's columns summed)."""
    return np.add.reduceat(columns, np.asarray(model.encoder.starts, dtype=np.intp), axis=1)


# -- the baseline input -------------------------------------------------------------------
def baseline_input(source, model: registry.ModelVersion) -> np.ndarray:
    """The encoded training mean (width,) of a version, from ``mldb.explain_baselines`` (zeros for a
    version trained before it was recorded); kept with the cached version."""
    kept = model.__dict__.setdefault("_explain", {})
    if "means" not in kept:
        rows = registry._query(source, "SELECT feature, mean FROM mldb.explain_baselines "
                                       "WHERE model = ? AND version = ?", [model.name, model.version])
        stored = {feature: mean for feature, mean in rows}
        parts = [np.asarray(stored.get(f["name"]) or np.zeros(f["width"]), dtype=np.float64)
                 for f in model.features]
        if any(len(part) != f["width"] for part, f in zip(parts, model.features)):
            parts = [np.zeros(f["width"]) for f in model.features]
        kept["means"] = np.concatenate(parts) if parts else np.zeros(0)
    return kept["means"]


# -- EXPLAIN_PREDICT's rows ---------------------------------------------------------------
def explain_rows(source, model: registry.ModelVersion, arrays: list, top_k: int | None) -> pa.StructArray:
    """``{prediction, baseline, contributions}`` per row; with ``top_k``, the map keeps the ``top_k``
    largest |contributions| (always ordered by |contribution|, largest first)."""
    prediction = model.predict(list(arrays))
    _, baseline, values = contributions(source, model, arrays)
    return pa.StructArray.from_arrays([prediction, pa.array(baseline, pa.float64()), _map(model, values, top_k)],
                                      ["prediction", "baseline", "contributions"])


def _map(model, values: np.ndarray, top_k: int | None) -> pa.MapArray:
    rows, count = values.shape
    keep = count if not top_k else min(int(top_k), count)
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :keep]
    names = np.asarray(model.feature_names, dtype=object)
    offsets = pa.array(np.arange(0, rows * keep + 1, keep, dtype=np.int32))
    keys = pa.array(names[order].reshape(-1), pa.string())
    items = pa.array(np.take_along_axis(values, order, axis=1).reshape(-1), pa.float64())
    return pa.MapArray.from_arrays(offsets, keys, items)


def empty_rows(prediction_type: pa.DataType) -> pa.StructArray:
    return pa.StructArray.from_arrays(
        [pa.array([], prediction_type), pa.array([], pa.float64()), pa.array([], pa.map_(pa.string(), pa.float64()))],
        ["prediction", "baseline", "contributions"])


# -- measured at TRAIN --------------------------------------------------------------------
def record(session, name: str, version: int, table: pa.Table, fitted, sources, options) -> None:
    """The ``on_trained`` listener: the version's importances and baseline input, written in TRAIN's
    transaction. The rows are those ``train.fit`` used: NULL targets dropped, the same seeded split."""
    model = registry.load_model(session, f"{name}@{version}")
    if model.algorithm == "lightgbm":
        from mldb.models import boosting

        _write_importance(session, model, np.asarray(boosting.importance(model), dtype=np.float64), "gain")
        return
    if model.algorithm not in TORCH_ALGORITHMS:
        return
    seed = int(model.hyperparameters.get("seed", 42))
    table, (train_idx, valid_idx) = _split(model, table, seed)
    train_x = _encoded(model, table, train_idx)
    _write_baselines(session, model, train_x.mean(axis=0))
    if model.algorithm == "mlp":
        valid_y = features.encode_target(model.task, model.target_encoder, table[model.target].take(valid_idx))
        importance = _permutation_importance(model, _encoded(model, table, valid_idx), valid_y, seed)
        _write_importance(session, model, importance, "permutation")
    else:
        _write_importance(session, model, _weight_importance(model, train_x.std(axis=0)), "weight")


def _split(model, table: pa.Table, seed: int) -> tuple[pa.Table, tuple[pa.Array, pa.Array]]:
    """The rows with a known target and train.fit's split of them: training and validation row numbers,
    each a seeded sample of at most :data:`SAMPLE_ROWS` (:data:`EMBED_SAMPLE_ROWS` for a model that embeds
    text). Without validation rows (a tiny table) the training rows stand in, as in training."""
    from mldb.models import train

    table = train._drop_null_targets(model.name, table, model.target)
    train_idx, valid_idx = train._split(model.name, len(table), model.hyperparameters.get("valid_fraction", 0.2),
                                        seed)
    if not len(valid_idx):
        valid_idx = train_idx
    rng = np.random.default_rng(seed)
    embeds = any(feature["encoding"] == "embed" for feature in model.features)
    limit = EMBED_SAMPLE_ROWS if embeds else SAMPLE_ROWS
    return table, (pa.array(_sample(train_idx, rng, limit)), pa.array(_sample(valid_idx, rng, limit)))


def _encoded(model, table: pa.Table, rows: pa.Array) -> np.ndarray:
    return np.array(model.encoder([table[n].take(rows) for n in model.feature_names]), dtype=np.float64)


def _sample(index: np.ndarray, rng, limit: int) -> np.ndarray:
    return index if len(index) <= limit else np.sort(rng.choice(index, limit, replace=False))


def _weight_importance(model, stds: np.ndarray) -> np.ndarray:
    """|w| x the column's standard deviation, summed per feature. A classifier's class weights are
    centred first (softmax ignores what all classes share), so a binary model's is |w1 - w0| / 2."""
    weight = model.module.weight.detach().double().numpy()
    if model.task != "regression":
        weight = weight - weight.mean(axis=0)
    return shares(fold(model, (np.abs(weight).mean(axis=0) * stds)[None])[0])


def _permutation_importance(model, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """How much the validation loss grows (clipped at 0) when one feature's encoded columns are shuffled
    together, averaged over :data:`PERMUTATION_REPEATS` seeded shuffles. The loss (cross-entropy, or the
    squared error of the standardised target), not accuracy: accuracy moves in steps of one row, and on a
    small validation split most shuffles change no prediction at all."""
    import torch

    module = model.module
    loss = (torch.nn.functional.mse_loss if model.task == "regression" else torch.nn.functional.cross_entropy)
    truth = torch.from_numpy(y)[:, None] if model.task == "regression" else torch.from_numpy(y)
    shuffled = x.astype(np.float32)
    original = shuffled.copy()

    def measured() -> float:
        return float(loss(module(torch.from_numpy(shuffled)), truth))

    rng = np.random.default_rng(seed)
    drops = np.zeros(len(model.features))
    work = len(x) * sum(parameter.numel() for parameter in module.parameters())
    with torch.no_grad(), threads.torch_threads(threads.for_work(work)):
        base = measured()
        for index, (start, feature) in enumerate(zip(model.encoder.starts, model.features)):
            columns = slice(start, start + feature["width"])
            for _ in range(PERMUTATION_REPEATS):
                shuffled[:, columns] = original[rng.permutation(len(x)), columns]
                drops[index] += measured() - base
            shuffled[:, columns] = original[:, columns]
    return shares(np.maximum(drops / PERMUTATION_REPEATS, 0.0))


def shares(values: np.ndarray) -> np.ndarray:
    """Shares summing to 1; equal shares when nothing measured any effect."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64))
    total = values.sum()
    return values / total if total > 0 else np.full(len(values), 1.0 / max(len(values), 1))


def _write_importance(session, model, importance: np.ndarray, method: str) -> None:
    rows = pa.table({"feature": model.feature_names, "importance": pa.array(importance, pa.float64())})
    session.sql_over("INSERT INTO mldb.feature_importance SELECT ?, ?, feature, importance, ? FROM __mldb_rows",
                     rows, [model.name, model.version, method])


def _write_baselines(session, model, means: np.ndarray) -> None:
    starts = model.encoder.starts
    parts = [means[start : start + f["width"]].tolist() for start, f in zip(starts, model.features)]
    rows = pa.table({"feature": model.feature_names, "mean": pa.array(parts, pa.list_(pa.float64()))})
    session.sql_over("INSERT INTO mldb.explain_baselines SELECT ?, ?, feature, mean FROM __mldb_rows",
                     rows, [model.name, model.version])


# -- FEATURE_IMPORTANCE -------------------------------------------------------------------
def check_recorded(session, model: registry.ModelVersion) -> None:
    """A version trained before importances were recorded has none to show: say so, not an empty table."""
    rows = registry._query(session, "SELECT count(*) FROM mldb.feature_importance WHERE model = ? AND version = ?",
                           [model.name, model.version])
    if not rows[0][0]:
        raise errors.ProgrammingError(
            f"FEATURE_IMPORTANCE: version {model.version} of model '{model.name}' has no recorded importances "
            f"(it was trained before mldb recorded them); TRAIN {model.name} for a version that has them",
            sqlstate="55000")

