"""Metrics for EVALUATE and for the validation split, vectorized in numpy.

Definitions follow scikit-learn: precision / recall / f1 of the positive (second)
class for binary tasks and macro averages for multiclass; ROC AUC from ranks (ties
averaged), one-vs-rest macro for multiclass; log loss with probabilities clipped.
"""

from __future__ import annotations

import numpy as np

CLASSIFICATION = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "rows")
REGRESSION = ("mae", "mse", "rmse", "r2", "rows")
PRIMARY = {"binary": "accuracy", "multiclass": "accuracy", "regression": "r2"}


def classification(y: np.ndarray, proba: np.ndarray) -> dict:
    """``y``: class indices (n,), ``proba``: (n, k) probabilities in class order."""
    n, k = proba.shape
    if n == 0:
        return {name: None for name in CLASSIFICATION} | {"rows": 0}
    predicted = proba.argmax(axis=1)
    precision, recall, f1 = _precision_recall_f1(y, predicted, k)
    return {
        "accuracy": float(np.mean(predicted == y)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "roc_auc": _roc_auc(y, proba),
        "log_loss": _log_loss(y, proba),
        "rows": int(n),
    }


def regression(y: np.ndarray, predicted: np.ndarray) -> dict:
    n = len(y)
    if n == 0:
        return {name: None for name in REGRESSION} | {"rows": 0}
    error = predicted - y
    mse = float(np.mean(error**2))
    total = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(error**2)) / total if total > 0 else (1.0 if mse == 0 else 0.0)
    return {"mae": float(np.mean(np.abs(error))), "mse": mse, "rmse": mse**0.5, "r2": r2, "rows": int(n)}


def _precision_recall_f1(y: np.ndarray, predicted: np.ndarray, k: int) -> tuple[float, float, float]:
    confusion = np.bincount(y * k + predicted, minlength=k * k).reshape(k, k)
    true_positive = np.diag(confusion).astype(np.float64)
    predicted_count = confusion.sum(axis=0)
    actual_count = confusion.sum(axis=1)
    precision = np.divide(true_positive, predicted_count, out=np.zeros(k), where=predicted_count > 0)
    recall = np.divide(true_positive, actual_count, out=np.zeros(k), where=actual_count > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(k), where=total > 0)
    if k == 2:
        return float(precision[1]), float(recall[1]), float(f1[1])
    return float(precision.mean()), float(recall.mean()), float(f1.mean())


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Mann-Whitney U with average ranks for ties."""
    count_pos = int(positive.sum())
    count_neg = len(positive) - count_pos
    if count_pos == 0 or count_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    sorted_score = score[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_score)) + 1]
    ends = np.r_[starts[1:], len(score)]
    average = (starts + ends + 1) / 2.0  # 1-based average rank of each tie group
    ranks = np.empty(len(score))
    ranks[order] = np.repeat(average, ends - starts)
    return float((ranks[positive].sum() - count_pos * (count_pos + 1) / 2) / (count_pos * count_neg))


def _roc_auc(y: np.ndarray, proba: np.ndarray) -> float | None:
    k = proba.shape[1]
    if k == 2:
        return _binary_auc(y == 1, proba[:, 1])
    scores = [_binary_auc(y == c, proba[:, c]) for c in range(k)]
    scores = [s for s in scores if s is not None]
    return float(np.mean(scores)) if scores else None


def _log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    eps = np.finfo(np.float64).eps
    p = np.clip(proba.astype(np.float64), eps, 1 - eps)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))
