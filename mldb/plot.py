"""Pictures of models, drawn with matplotlib from the catalog tables.

    from mldb import plot
    plot.training_curves(con, "churn")          # train / validation loss per epoch, latest version
    plot.training_curves(con, "churn@2")        # a pinned version
    plot.drift(con, "churn", "SELECT * FROM new_customers")
    plot.prediction_volume(con, "churn")
    plot.feature_importance(con, "churn")       # FEATURE_IMPORTANCE as bars, the deployed version
    plot.monitor_history(con, "churn_drift")    # a monitor's values over time, thresholds and actions

Each function returns the matplotlib ``Axes`` it drew on (a new figure unless ``ax`` is
given). ``con`` is an mldb connection or cursor. Drift and prediction volume are drawn by
the lifecycle feature (``mldb.lifecycle.plots``), a monitor's history by the monitors feature
(``mldb.monitors.plots``); these functions forward to them. The ``%mldb --plot KIND MODEL
[QUERY]`` magic calls :func:`draw`.
"""

from __future__ import annotations

import importlib

from mldb import errors

_TRAINING_LOG = """
    SELECT epoch, train_loss, valid_loss, valid_metric, metric_name
    FROM mldb.training_log
    WHERE model = ? AND version = coalesce(?, (SELECT max(version) FROM mldb.training_log WHERE model = ?))
    ORDER BY epoch
"""


def training_curves(con, model: str, ax=None):
    """Train and validation loss per epoch from ``mldb.training_log``; the best epoch is marked.

    ``model`` is a name (its latest version) or ``'name@n'`` for version n.
    """
    name, version = _split_version(model)
    log = con.execute(_TRAINING_LOG, [name, version, name]).pl()
    if log.is_empty():
        which = f"version {version} of model {name!r}" if version else f"model {name!r}"
        raise errors.ProgrammingError(f"{which} has no training log: is the name right, and is it trained?")
    ax = ax if ax is not None else _new_axes()
    ax.plot(log["epoch"], log["train_loss"], marker=".", label="train loss")
    ax.plot(log["epoch"], log["valid_loss"], marker=".", label="validation loss")
    best = log.sort("valid_loss", nulls_last=True).row(0, named=True)
    ax.axvline(best["epoch"], color="grey", linestyle=":", label=f"best epoch {best['epoch']}" + _metric(best))
    ax.set(xlabel="epoch", ylabel="loss", title=f"{model}: loss per epoch")
    ax.legend()
    return ax


def drift(con, model: str, query: str, ax=None):
    """Drift per feature of ``query``'s rows against ``model``'s training data (lifecycle feature)."""
    return _lifecycle("drift_plot")(con, model, query, ax=ax)


def prediction_volume(con, model: str, ax=None):
    """Rows predicted per period by ``model``, from ``mldb.prediction_log`` (lifecycle feature)."""
    return _lifecycle("prediction_volume_plot")(con, model, ax=ax)


def monitor_history(con, monitor: str, ax=None):
    """A monitor's checked values over time from ``mldb.monitor_runs``, with the thresholds of its
    condition and its actions (retrain, rollback, alert) and errors marked (monitors feature)."""
    return _feature("mldb.monitors.plots", "monitor_history_plot", "monitors")(con, monitor, ax=ax)


def feature_importance(con, model: str, ax=None):
    """``FEATURE_IMPORTANCE(model)`` as horizontal bars, the most important feature on top.

    ``model`` is a name (its deployed version) or ``'name@n'``."""
    rows = con.execute(f"SELECT feature, importance, method FROM FEATURE_IMPORTANCE({_quoted(model)})").fetchall()
    ax = ax if ax is not None else _new_axes()
    ax.barh([row[0] for row in reversed(rows)], [row[1] for row in reversed(rows)])
    ax.set(xlabel=f"importance ({rows[0][2] if rows else 'none'})", title=f"{model}: feature importance")
    return ax


def draw(con, kind: str, model: str, query: str | None = None):
    """The magic's ``--plot KIND MODEL [QUERY]``: ``training``, ``drift`` (needs QUERY), ``volume``,
    ``importance``, or ``monitor`` (then MODEL names a monitor)."""
    if kind == "training":
        return training_curves(con, model)
    if kind == "volume":
        return prediction_volume(con, model)
    if kind == "importance":
        return feature_importance(con, model)
    if kind == "monitor":
        if query and query.strip():
            raise errors.ProgrammingError("--plot monitor takes the monitor's name only, as in: "
                                          "%mldb --plot monitor churn_drift")
        return monitor_history(con, model)
    if kind == "drift":
        if not query or not query.strip():
            raise errors.ProgrammingError("--plot drift needs a query for the new data, as in: "
                                          "%mldb --plot drift churn SELECT * FROM new_customers")
        return drift(con, model, query)
    raise errors.ProgrammingError(f"unknown plot {kind!r}: use training, drift, volume, importance or monitor")


def _split_version(model: str) -> tuple[str, int | None]:
    name, at, version = model.partition("@")
    if not at:
        return name, None
    if not version.isdigit():
        raise errors.ProgrammingError(f"{model!r}: a version after '@' is a whole number, as in 'churn@2'")
    return name, int(version)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _metric(best: dict) -> str:
    if best.get("valid_metric") is None or not best.get("metric_name"):
        return ""
    return f": validation {best['metric_name']} {best['valid_metric']:.3g}"


def _new_axes():
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    return ax


def _lifecycle(function: str):
    return _feature("mldb.lifecycle.plots", function, "lifecycle")


def _feature(module_name: str, function: str, feature: str):
    """``<module_name>.<function>``, or a clear error while that feature is missing."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        module = None
    if module is None or not hasattr(module, function):
        raise errors.NotSupportedError(f"this plot needs {module_name}.{function} (the {feature} "
                                       "feature), which this installation does not have")
    return getattr(module, function)
