"""Training: read the query as Arrow batches, fit encoders on the training split, run mini-batch SGD.

``fit(...)`` is pure Python over an Arrow table and returns a ``Trained`` (encoders,
hyperparameters, weights, metrics and the per-epoch log); ``mldb.models.statements``
writes it to the catalog in one transaction.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from mldb import errors
from mldb.models import algorithms, evaluate, features

DEFAULTS = {"epochs": 50, "batch_size": 256, "lr": 0.01, "seed": 42, "valid_fraction": 0.2,
            "patience": 5, "weight_decay": 0.0, "hidden": [64, 64], "dropout": 0.0}
OPTIONS = set(DEFAULTS) | {"device", "task", "snapshot", "log_sample", "embed_model"}


@dataclass
class Trained:
    task: str
    algorithm: str
    features: list[dict]
    target_encoder: dict
    hyper: dict
    weights: bytes
    metrics: dict
    log: list[dict] = field(default_factory=list)
    rows: int = 0
    train_rows: int = 0
    valid_rows: int = 0
    device: str = "cpu"
    seconds: float = 0.0


def check_options(model: str, options: dict) -> None:
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise errors.ProgrammingError(f"model '{model}': unknown option(s) {', '.join(unknown)}; "
                                      f"known: {', '.join(sorted(OPTIONS))}")
    for name, check, wanted in _CHECKS:
        if name in options and not _passes(check, options[name]):
            raise errors.ProgrammingError(f"model '{model}': option {name} must be {wanted}; found {options[name]!r}")


def _passes(check, value) -> bool:
    try:
        return bool(check(value))
    except (TypeError, ValueError):
        return False


_INT32_MAX, _INT64 = 2**31 - 1, (-(2**63), 2**63 - 1)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _INT32_MAX


_CHECKS = (
    ("epochs", _positive_int, f"an integer from 1 to {_INT32_MAX}"),
    ("batch_size", _positive_int, f"an integer from 1 to {_INT32_MAX}"),
    ("patience", _positive_int, f"an integer from 1 to {_INT32_MAX}"),
    ("seed", lambda v: isinstance(v, int) and not isinstance(v, bool) and _INT64[0] <= v <= _INT64[1],
     "a 64-bit integer"),
    ("lr", lambda v: float(v) > 0, "a number > 0"),
    ("weight_decay", lambda v: float(v) >= 0, "a number >= 0"),
    ("dropout", lambda v: 0 <= float(v) < 1, "a number in [0, 1)"),
    ("valid_fraction", lambda v: 0 <= float(v) < 1, "a number in [0, 1)"),
    ("device", lambda v: str(v).lower() in ("auto", "cpu", "cuda") or str(v).lower().startswith("cuda:"),
     "'cpu', 'cuda', 'cuda:N' or 'auto'"),
    ("hidden", lambda v: isinstance(v, list) and v and all(map(_positive_int, v)), "a list of sizes, e.g. [64, 32]"),
)


def fit(model: str, table: pa.Table, target: str, types: dict[str, str], algorithm: str | None,
        options: dict, check_cancel=lambda: None) -> Trained:
    """Train on ``table`` (feature columns + ``target``); ``types`` are the columns' SQL types.

    ``check_cancel()`` is called between batches and raises to stop the training."""
    started = time.perf_counter()
    check_options(model, options)
    hyper = DEFAULTS | {k: v for k, v in options.items() if k in DEFAULTS}
    table = _drop_null_targets(model, table, target)
    task = features.infer_task(model, target, table[target], options.get("task"))
    train_idx, valid_idx = _split(len(table), hyper["valid_fraction"], hyper["seed"])
    if "batch_size" not in options:  # small tables: at least ~16 steps an epoch, or a few epochs barely move
        hyper["batch_size"] = min(DEFAULTS["batch_size"], max(16, len(train_idx) // 16))
    names = [name for name in table.column_names if name != target]
    if not names:
        raise errors.DataError(f"model '{model}': the training query has no feature columns besides '{target}'")
    rows = pa.array(train_idx)  # encoders see the training rows only, one column copied at a time
    fitted = [features.fit_feature(model, n, types.get(n, str(table.schema.field(n).type)), table[n].take(rows),
                                   options.get("embed_model")) for n in names]
    target_encoder = features.fit_target(task, table[target].take(rows))
    x = features.transform(model, fitted, [table[n] for n in names])
    y = features.encode_target(task, target_encoder, table[target])
    outputs = 1 if task == "regression" else len(target_encoder["classes"])
    hyper |= {"algorithm": algorithms.resolve(model, algorithm, task, len(table)),
              "inputs": x.shape[1], "outputs": outputs}
    device = _device(options)
    try:
        module, log, metrics = _train_loop(x, y, task, train_idx, valid_idx, hyper, device, target_encoder,
                                            check_cancel)
    except errors.DataError as error:
        raise errors.DataError(f"model '{model}': {error}") from None
    return Trained(task, hyper["algorithm"], fitted, target_encoder, hyper, algorithms.dump(module), metrics,
                   log, len(table), len(train_idx), len(valid_idx), device, time.perf_counter() - started)


def _drop_null_targets(model: str, table: pa.Table, target: str) -> pa.Table:
    if target not in table.column_names:
        raise errors.ProgrammingError(f"model '{model}': target column '{target}' is not in the training query; "
                                      f"it has: {', '.join(table.column_names)}")
    column = table[target]
    if column.null_count:
        import pyarrow.compute as pc

        table = table.filter(pc.is_valid(column))
    if len(table) == 0:
        raise errors.DataError(f"model '{model}': the training query returned no rows with a non-NULL "
                               f"'{target}'; nothing to train on")
    return table


def _split(rows: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(rows)
    valid = int(round(rows * float(valid_fraction))) if rows >= 10 else 0
    return np.sort(order[valid:]), np.sort(order[:valid])


def _device(options: dict) -> str:
    import torch

    wanted = str(options.get("device", "auto")).lower()
    if wanted == "cpu":
        return "cpu"
    if wanted.startswith("cuda") or wanted == "auto":
        return ("cuda" if wanted == "auto" else wanted) if torch.cuda.is_available() else "cpu"
    raise errors.ProgrammingError(f"unknown device '{wanted}': use 'cpu', 'cuda' or 'auto'")


def _train_loop(x, y, task, train_idx, valid_idx, hyper, device, target_encoder,
                                            check_cancel):
    import torch

    torch.manual_seed(int(hyper["seed"]))
    generator = torch.Generator().manual_seed(int(hyper["seed"]))
    module = algorithms.build(hyper).to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=float(hyper["lr"]),
                                 weight_decay=float(hyper["weight_decay"]))
    loss_fn = torch.nn.MSELoss() if task == "regression" else torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    if task == "regression":
        yt = yt[:, None]
    train_i = torch.from_numpy(train_idx).to(device)
    valid_i = torch.from_numpy(valid_idx).to(device) if len(valid_idx) else train_i
    best, best_loss, stale, log, valid_loss = None, float("inf"), 0, [], None
    for epoch in _progress(int(hyper["epochs"])):
        train_loss = _epoch(module, optimizer, loss_fn, xt, yt, train_i, int(hyper["batch_size"]), generator,
                            check_cancel)
        valid_loss, metric = _validate(module, loss_fn, xt, yt, valid_i, task)
        log.append({"epoch": epoch + 1, "train_loss": train_loss, "valid_loss": valid_loss,
                    "valid_metric": metric, "metric_name": evaluate.PRIMARY[task]})
        if valid_loss < best_loss - 1e-6:
            best_loss, stale = valid_loss, 0
            best = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            stale += 1
            if stale >= int(hyper["patience"]):
                break
    if best is None:
        raise errors.DataError(f"training diverged (validation loss {valid_loss}); try a lower lr or more epochs"
                               if log else "epochs must be at least 1")
    module.load_state_dict(best)
    module.eval()
    hyper["epochs_run"] = len(log)
    module = module.cpu()
    index = valid_idx if len(valid_idx) else train_idx
    return module, log, _metrics(module, torch.from_numpy(x[index]), y[index], task, target_encoder)


def _epoch(module, optimizer, loss_fn, xt, yt, train_i, batch_size, generator, check_cancel) -> float:
    import torch

    module.train()
    order = train_i[torch.randperm(len(train_i), generator=generator).to(train_i.device)]
    total = torch.zeros((), device=xt.device)
    for start in range(0, len(order), batch_size):
        check_cancel()
        batch = order[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(module(xt[batch]), yt[batch])
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(batch)
    return float(total) / max(len(order), 1)


def _validate(module, loss_fn, xt, yt, index, task) -> tuple[float, float]:
    import torch

    module.eval()
    with torch.no_grad():
        out = module(xt[index])
        loss = float(loss_fn(out, yt[index]))
        if task == "regression":
            target = yt[index]
            total = float(((target - target.mean()) ** 2).sum())
            metric = 1.0 - float(((out - target) ** 2).sum()) / total if total > 0 else 0.0
        else:
            metric = float((out.argmax(dim=1) == yt[index]).float().mean())
    return loss, metric


def _metrics(module, x, y, task, target_encoder) -> dict:
    """The final metrics on the validation rows, in the target's own units."""
    import torch

    with torch.no_grad():
        out = module(x)
    if task == "regression":
        mean, std = target_encoder["mean"], target_encoder["std"]
        return evaluate.regression(y.astype(np.float64) * std + mean, out[:, 0].double().numpy() * std + mean)
    return evaluate.classification(y, torch.softmax(out, dim=1).double().numpy())


def _progress(epochs: int):
    """Epochs with a bar on a terminal or in Jupyter (nothing elsewhere)."""
    from mldb.progress import bar

    return bar(range(epochs), desc="TRAIN", unit="epoch")
