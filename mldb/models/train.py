"""Training: read the query as Arrow batches, fit encoders on the training split, run mini-batch SGD.

``fit(...)`` is pure Python over an Arrow table and returns a ``Trained`` (encoders,
hyperparameters, weights, metrics and the per-epoch log); ``mldb.models.statements``
writes it to the catalog in one transaction.
"""

from __future__ import annotations

import threading

import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from mldb import errors, threads
from mldb.models import algorithms, evaluate, features
from mldb.options import Option, Schema

_INT32_MAX = 2**31 - 1
MAX_PARAMETERS = 50_000_000  # the default memory guard: about 200 MB of float32 weights (x4 with Adam's state)

SHARED = (  # the options of every algorithm
    Option("seed", "int", 42, low=0, high=2**63 - 1),  # (numpy refuses a negative seed)
    Option("valid_fraction", "number", 0.2, low=0, high=1, open_high=True),
    Option("task", "text", "auto", choices=("auto", "classification", "binary", "multiclass", "regression")),
    Option("snapshot", "bool", False),
    Option("log_sample", "number", low=0, high=1),
    Option("embed_model", "text"),
)
OPTIONS = Schema(  # USING linear | logistic | mlp | auto
    "CREATE MODEL / TRAIN",
    Option("epochs", "int", 50, low=1, high=_INT32_MAX),
    Option("batch_size", "int", 256, low=1, high=_INT32_MAX),
    Option("lr", "number", 0.01, low=0, high=10, open_low=True),  # (a float32 overflows well before 1e308)
    Option("patience", "int", 5, low=1, high=_INT32_MAX),
    Option("weight_decay", "number", 0.0, low=0, high=10),
    Option("hidden", "sizes", [64, 64], most=16),
    Option("dropout", "number", 0.0, low=0, high=1, open_high=True),
    Option("device", "text", "auto", pattern=r"auto|cpu|cuda(:\d+)?", hint="'cpu', 'cuda', 'cuda:N' or 'auto'"),
    Option("max_parameters", "int", MAX_PARAMETERS, low=1),
    *SHARED,
)
HYPER = ("epochs", "batch_size", "lr", "seed", "valid_fraction", "patience", "weight_decay", "hidden", "dropout")


def linear_for(model: str, table: pa.Table, target: str, types: dict[str, str], task: str | None) -> str:
    """'linear' for a regression target, 'logistic' for a classification one (USING auto's first
    candidate); a target fit would refuse raises as fit does."""
    column = _drop_null_targets(model, table, target)[target]
    return "linear" if features.infer_task(model, target, column, task, types.get(target)) == "regression" \
        else "logistic"


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


def options_schema(algorithm: str | None) -> Schema:
    """The ``WITH (...)`` options ``USING algorithm`` takes: LightGBM's for lightgbm, the torch models'
    (:data:`OPTIONS`) for linear, logistic, mlp and auto."""
    if (algorithm or "auto").lower() == "lightgbm":
        from mldb.models import boosting

        return boosting.OPTIONS
    return OPTIONS


def check_options(model: str, algorithm: str | None, options: dict) -> dict:
    """``options`` checked against ``options_schema(algorithm)`` and normalised. An option only the other
    family takes (epochs with lightgbm, num_leaves with mlp) is refused (22023) naming who takes it."""
    refuse_foreign(model, algorithm, options)
    return options_schema(algorithm).check(options, f"model '{model}'")


def refuse_foreign(model: str, algorithm: str | None, options: dict) -> None:
    """An option only the other family takes (epochs with lightgbm, num_leaves with mlp) is refused
    (22023) naming who takes it."""
    from mldb.models import boosting

    schema = options_schema(algorithm)
    other = OPTIONS if schema is boosting.OPTIONS else boosting.OPTIONS
    foreign = sorted(name for name in options if name not in schema.options and name in other.options)
    if foreign:
        takers = ("lightgbm" if other is boosting.OPTIONS else "mlp and auto"
                  if set(foreign) <= set(algorithms.MLP_ONLY) else "linear, logistic, mlp and auto")
        pairs = boosting.ALIASES if schema is boosting.OPTIONS else {v: k for k, v in boosting.ALIASES.items()}
        instead = [f"{pairs[n]} for {n}" for n in foreign if n in pairs]
        raise errors.ProgrammingError(
            f"model '{model}': option{'s' if len(foreign) > 1 else ''} {', '.join(foreign)} appl"
            f"{'y' if len(foreign) > 1 else 'ies'} only to USING {takers}, not USING {(algorithm or 'auto').lower()}"
            + (f"; use {', '.join(instead)}" if instead else "")
            + f"; its options: {', '.join(sorted(schema.options))}",
            sqlstate="22023")


def fit(model: str, table: pa.Table, target: str, types: dict[str, str], algorithm: str | None,
        options: dict, check_cancel=lambda: None) -> Trained:
    """Train on ``table`` (feature columns + ``target``); ``types`` are the columns' SQL types.

    ``options`` are checked against :func:`options_schema`. A NaN counts as NULL (a NaN target drops the
    row, a NaN feature is imputed as NULL is, or left missing for trees); an infinite value in a feature
    or a numeric target is refused (``DataError`` 22003, naming the column). ``check_cancel()`` is called
    between batches (boosting rounds) and raises to stop the training. The resolved algorithm picks the
    trainer: LightGBM (:func:`mldb.models.boosting.fit`) or the torch loop here."""
    started = time.perf_counter()
    given = check_options(model, algorithm, options)
    options = options_schema(algorithm).defaults | given
    device = "cpu" if algorithms.check(model, algorithm) == "lightgbm" else device_for(model, options["device"])
    table = _drop_null_targets(model, table, target)
    task = features.infer_task(model, target, table[target], options["task"], types.get(target))
    split = _split(model, len(table), options["valid_fraction"], options["seed"])
    names = _feature_names(model, table, target, task)
    resolved = algorithms.resolve(model, algorithm, task, len(table))
    if resolved == "lightgbm":
        from mldb.models import boosting

        trained = boosting.fit(model, table, names, target, types, task, split, given, check_cancel)
    else:
        trained = _fit_network(model, table, names, target, types, task, split, resolved, options, given, device,
                               check_cancel)
    trained.seconds = time.perf_counter() - started
    return trained


def _fit_network(model, table, names, target, types, task, split, algorithm, options, given, device,
                 check_cancel) -> Trained:
    """USING linear | logistic | mlp: encoders fitted on the training rows, then the torch loop."""
    hyper = {name: options[name] for name in HYPER}
    train_idx, valid_idx = split
    if "batch_size" not in given:  # small tables: at least ~16 steps an epoch, or a few epochs barely move
        hyper["batch_size"] = min(OPTIONS.defaults["batch_size"], max(16, len(train_idx) // 16))
    rows = pa.array(train_idx)  # encoders see the training rows only, one column copied at a time
    fitted = [features.fit_feature(model, n, types.get(n, str(table.schema.field(n).type)), table[n].take(rows),
                                   options.get("embed_model")) for n in names]
    target_encoder = features.fit_target(task, table[target] if task != "regression" else table[target].take(rows))
    hyper |= {"algorithm": algorithm, "inputs": sum(feature["width"] for feature in fitted),
              "outputs": 1 if task == "regression" else len(target_encoder["classes"])}
    _check_size(model, hyper, options["max_parameters"])
    x = features.transform(model, fitted, [table[n] for n in names])
    y = features.encode_target(task, target_encoder, table[target])
    module, log, metrics = _train(model, x, y, task, split, hyper, device, target_encoder, check_cancel)
    return Trained(task, algorithm, fitted, target_encoder, hyper, algorithms.dump(module), metrics,
                   log, len(table), len(train_idx), len(valid_idx), device)


def _feature_names(model: str, table: pa.Table, target: str, task: str) -> list[str]:
    """The feature columns, each checked (as a numeric target is) for infinite values."""
    names = [name for name in table.column_names if name != target]
    if not names:
        raise errors.DataError(f"model '{model}': the training query has no feature columns besides '{target}'")
    for name in names:
        features.check_finite(model, f"feature column '{name}'", table[name])
    if task == "regression":
        features.check_finite(model, f"target column '{target}'", table[target])
    return names


def _check_size(model: str, hyper: dict, limit: int) -> None:
    """The memory guard: refuse a network with more than ``limit`` weights before torch allocates it."""
    count = algorithms.parameters(hyper)
    if count > limit:
        shape = f"hidden = {hyper['hidden']}, " if hyper["algorithm"] == "mlp" else ""
        raise errors.OperationalError(
            f"model '{model}': {hyper['algorithm']} with {shape}{hyper['inputs']} inputs and {hyper['outputs']} "
            f"outputs would have {count:,} parameters ({_size(count * 4)} of float32 weights), "
            f"more than max_parameters = {limit:,}; use smaller hidden layers, or raise the limit with "
            f"WITH (max_parameters = ...)", sqlstate="54000")


def _size(count: int) -> str:
    """A byte count as people read it: '24 bytes', '3.2 MB', '1.6 GB' (powers of 1000, as DuckDB)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"about {count / scale:.3g} {unit}"
    return f"{count} bytes"


def _train(model, x, y, task, split, hyper, device, target_encoder, check_cancel):
    """The training loop, with its failures said in the model's name: a diverged run, and torch
    running out of memory (OperationalError 53200) rather than torch's own RuntimeError. It runs
    with the threads one step's size is worth (``mldb.threads``: one for small models)."""
    import torch

    work = min(int(hyper["batch_size"]), len(split[0])) * algorithms.parameters(hyper)
    try:
        with threads.torch_threads(threads.for_work(work)):
            return _train_loop(x, y, task, *split, hyper, device, target_encoder, check_cancel)
    except errors.DataError as error:
        raise errors.DataError(f"model '{model}': {error}") from None
    except (torch.OutOfMemoryError, MemoryError) as error:
        raise _out_of_memory(model, error) from None
    except RuntimeError as error:
        if "allocate" not in str(error):  # (torch reports a failed CPU allocation as a RuntimeError)
            raise
        raise _out_of_memory(model, error) from None


def _out_of_memory(model: str, error: Exception) -> errors.OperationalError:
    return errors.OperationalError(f"model '{model}': training ran out of memory ({str(error).splitlines()[0]}); "
                                   "use smaller hidden layers or a smaller batch_size", sqlstate="53200")


def _drop_null_targets(model: str, table: pa.Table, target: str) -> pa.Table:
    """The rows whose target is known (not NULL, not NaN)."""
    if target not in table.column_names:
        raise errors.ProgrammingError(f"model '{model}': target column '{target}' is not in the training query; "
                                      f"it has: {', '.join(table.column_names)}", sqlstate="42703")
    known = features.known(table[target])
    if known is not None:
        table = table.filter(known)
    if len(table) == 0:
        raise errors.DataError(f"model '{model}': the training query returned no rows with a non-NULL "
                               f"'{target}'; nothing to train on")
    return table


def _split(model: str, rows: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(rows)
    valid = int(round(rows * float(valid_fraction))) if rows >= 10 else 0
    if valid >= rows:
        raise errors.DataError(f"model '{model}': valid_fraction = {valid_fraction} leaves none of the {rows} rows "
                               "to train on; use a smaller valid_fraction")
    return np.sort(order[valid:]), np.sort(order[:valid])


def device_for(model: str, wanted: str) -> str:
    """'auto' takes a GPU when torch sees one and the CPU otherwise. 'cuda' or 'cuda:N' asks for a
    GPU: training on the CPU without a word would mislead, so a GPU torch cannot see is an error."""
    import torch

    if wanted in ("cpu", "auto"):
        return "cuda" if wanted == "auto" and torch.cuda.is_available() else "cpu"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(wanted.partition(":")[2] or 0) < count:
        return wanted
    seen = (f"torch sees {count} CUDA GPU{'s' if count > 1 else ''} (cuda:0 to cuda:{count - 1})" if count
            else "torch sees no CUDA GPU on this machine")
    raise errors.ProgrammingError(f"model '{model}': device = '{wanted}' is not available: {seen}; use "
                                  "device = 'cpu', or 'auto' to train on a GPU when there is one", sqlstate="22023")


_SEEDING = threading.Lock()


def _train_loop(x, y, task, train_idx, valid_idx, hyper, device, target_encoder, check_cancel):
    import torch

    with _SEEDING:  # (torch's global generator draws the initial weights: two TRAINs at once must not interleave)
        torch.manual_seed(int(hyper["seed"]))
        module = algorithms.build(hyper).to(device)
    generator = torch.Generator().manual_seed(int(hyper["seed"]))
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
        total.add_(loss.detach(), alpha=len(batch))  # (one op a step: the loop is torch-overhead bound)
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
