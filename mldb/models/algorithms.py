"""The algorithms: the PyTorch modules behind ``USING linear | logistic | mlp | auto`` and their
(de)serialisation; ``USING lightgbm`` is trained and served by :mod:`mldb.models.boosting`.

A module is rebuilt from its hyperparameters (plain JSON) and its ``state_dict``; the
weights are stored with ``torch.save`` and read back with ``torch.load(weights_only=True)``,
so opening a database never unpickles code.
"""

from __future__ import annotations

import io

from mldb import errors

ALGORITHMS = ("linear", "logistic", "mlp", "lightgbm", "auto")


def check(model: str, algorithm: str | None) -> str:
    algorithm = (algorithm or "auto").lower()
    if algorithm not in ALGORITHMS:
        raise errors.ProgrammingError(f"model '{model}': unknown algorithm '{algorithm}'; "
                                      f"use one of {', '.join(ALGORITHMS)}")
    return algorithm


def resolve(model: str, algorithm: str | None, task: str, rows: int) -> str:
    """The algorithm one fit trains. Given 'auto' it is auto's first candidate, the linear model for
    the task (USING auto itself tries more candidates: :mod:`mldb.models.search`)."""
    algorithm = check(model, algorithm)
    if algorithm == "auto":
        return "linear" if task == "regression" else "logistic"
    if algorithm == "logistic" and task == "regression":
        raise errors.ProgrammingError(f"model '{model}': logistic regression needs a classification target; "
                                      "use linear or mlp for a numeric target", sqlstate="22023")
    if algorithm == "linear" and task != "regression":
        raise errors.ProgrammingError(f"model '{model}': USING linear is linear regression, for a numeric "
                                      f"target; this is a {task} target: use logistic (or mlp, or auto)",
                                      sqlstate="22023")
    return algorithm


MLP_ONLY = ("hidden", "dropout")


def check_options(model: str, algorithm: str | None, options: dict) -> None:
    """Options of the MLP given with USING linear or logistic are refused (22023), not ignored."""
    algorithm = check(model, algorithm)
    given = [name for name in MLP_ONLY if name in options]
    if algorithm in ("linear", "logistic") and given:
        raise errors.ProgrammingError(
            f"model '{model}': option{'s' if len(given) > 1 else ''} {', '.join(given)} appl"
            f"{'y' if len(given) > 1 else 'ies'} only to USING mlp (or auto when it picks an MLP); "
            f"USING {algorithm} has no hidden layers; leave {'them' if len(given) > 1 else 'it'} out",
            sqlstate="22023")


def build(hyper: dict):
    """An ``nn.Module`` mapping ``inputs`` features to ``outputs`` logits / values."""
    import torch.nn as nn

    inputs, outputs = hyper["inputs"], hyper["outputs"]
    if hyper["algorithm"] != "mlp":
        return nn.Linear(inputs, outputs)
    layers, width = [], inputs
    for hidden in hyper["hidden"]:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if hyper.get("dropout"):
            layers.append(nn.Dropout(hyper["dropout"]))
        width = hidden
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


def parameters(hyper: dict) -> int:
    """How many weights ``build(hyper)`` would allocate (each layer's matrix and bias)."""
    hidden = list(hyper["hidden"]) if hyper["algorithm"] == "mlp" else []
    widths = [hyper["inputs"], *hidden, hyper["outputs"]]
    return sum((width + 1) * after for width, after in zip(widths, widths[1:]))


def dump(module) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({key: value.detach().cpu() for key, value in module.state_dict().items()}, buffer)
    return buffer.getvalue()


def load(hyper: dict, weights: bytes):
    import torch

    module = build(hyper)
    module.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True, map_location="cpu"))
    module.eval()
    return module
