"""A monitor's history, drawn with matplotlib from ``mldb.monitor_runs`` (``mldb.plot`` forwards here).

    monitor_history_plot(con, "churn_drift")

One line per value the check measured (``max_psi``, ``drifted_features``, ``accuracy``, ...)
over the runs' start times (``rows``, a count on another scale, on a right-hand axis of its own);
each threshold of the monitor's ``WHEN`` condition as a dashed line in its value's colour
(``accuracy < 0.9`` draws 0.9 on the accuracy line's axis); the runs whose condition held, marked on the condition's value by what they did (retrain, with
the new version deployed or the champion kept; rollback; alert); and the runs that failed as
crosses along the bottom (their check may have measured nothing). ``con`` is an mldb
connection or cursor; the function returns the Axes it drew on.
"""

from __future__ import annotations

import json
import math

import sqlglot
from sqlglot import exp

from mldb import errors

_RUNS = """
SELECT started_at, "values", triggered, action, outcome, model_version_before, model_version_after
FROM mldb.monitor_runs WHERE monitor = ? ORDER BY started_at, id
"""
# What a triggered run did -> (label, marker, colour)
_EVENTS = {"deployed": ("retrain: new version deployed", "^", "tab:green"),
           "kept": ("retrain: champion kept", "^", "tab:olive"),
           "rollback": ("rollback", "v", "tab:orange"),
           "alert": ("alert", "D", "tab:red")}
_ERROR = ("error", "x", "black")
# Values that count rows, not measure them: on a right-hand axis of their own unless the condition reads them first
_COUNTS = ("rows",)
_COMPARISONS = {exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=", exp.EQ: "=", exp.NEQ: "<>"}
_MIRRORED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "=": "=", "<>": "<>"}


def monitor_history_plot(con, monitor: str, ax=None):
    """The values of ``monitor``'s runs over time, its thresholds, actions and errors marked."""
    model, condition = _monitor(con, monitor)
    runs = [_run(row) for row in con.execute(_RUNS, [monitor]).fetchall()]
    if not runs:
        raise errors.ProgrammingError(f"monitor '{monitor}' has not run yet: RUN MONITOR {monitor}, or let "
                                      "mldb serve or mldb monitor run it when it is due")
    thresholds = condition_thresholds(condition)
    keys = _value_keys(runs, [key for key, _, _ in thresholds])
    ax = ax if ax is not None else _new_axes()
    counts = [key for key in keys[1:] if key in _COUNTS]  # (a count of rows would flatten every measure)
    twin = ax.twinx() if counts else None
    times = [run["started_at"] for run in runs]
    colours, axes = {}, {key: twin if key in counts else ax for key in keys}
    for key in keys:
        style = {"color": "grey", "drawstyle": "steps-post", "alpha": 0.6} if key in counts else {}
        (line,) = axes[key].plot(times, [run["values"].get(key, math.nan) for run in runs], marker=".", label=key,
                                 **style)
        colours[key] = line.get_color()
    for key, op, value in thresholds:
        axes.get(key, ax).axhline(value, color=colours.get(key, "grey"), linestyle="--", linewidth=1,
                                  label=f"{key} {op} {value:g}")
    _mark_events(ax, runs, keys[0] if keys else None)
    ax.set(title=f"{monitor} on {model}" + (f": WHEN {condition}" if condition else ""), xlabel="run started",
           ylabel="value")
    handles, labels = ax.get_legend_handles_labels()
    if twin is not None:
        twin.set_ylabel(", ".join(counts) + " (right axis)")
        more = twin.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, fontsize=8)
    ax.tick_params(axis="x", labelrotation=45)
    return ax


def condition_thresholds(condition: str | None) -> list[tuple[str, str, float]]:
    """``(value, operator, threshold)`` for each comparison of a value with a number in the
    condition, as written from the value's side: ``'accuracy < 0.9 OR 2 <= drifted_features'`` ->
    ``[('accuracy', '<', 0.9), ('drifted_features', '>=', 2.0)]``. A condition it cannot read has none."""
    if not condition:
        return []
    try:
        tree = sqlglot.parse_one(condition, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return []
    found = []
    for node in tree.find_all(*_COMPARISONS):
        op = _COMPARISONS[type(node)]
        left, right = node.this, node.expression
        if isinstance(right, exp.Column) and _number(left) is not None:
            left, right, op = right, left, _MIRRORED[op]
        if isinstance(left, exp.Column) and (value := _number(right)) is not None:
            found.append((left.name.lower(), op, value))
    return found


def _number(node) -> float | None:
    negative = isinstance(node, exp.Neg)
    node = node.this if negative else node
    if isinstance(node, exp.Literal) and not node.is_string:
        return -float(node.this) if negative else float(node.this)
    return None


def _monitor(con, monitor: str) -> tuple[str, str | None]:
    rows = con.execute("SELECT model, condition FROM mldb.monitors WHERE name = ?", [monitor]).fetchall()
    if not rows:
        raise errors.ProgrammingError(f"monitor '{monitor}' does not exist (SHOW MONITORS lists them)",
                                      sqlstate="42704")
    return rows[0]


def _run(row: tuple) -> dict:
    started_at, values, triggered, action, outcome, before, after = row
    parsed = json.loads(values) if isinstance(values, str) else (values or {})
    numbers = {str(key).lower(): float(value) for key, value in parsed.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    return {"started_at": started_at, "values": numbers, "triggered": bool(triggered), "action": action or "",
            "outcome": outcome, "before": before, "after": after}


def _value_keys(runs: list[dict], first: list[str]) -> list[str]:
    """The values measured, those the condition reads first, the others in the order they appeared."""
    seen = dict.fromkeys(key for key in first if any(key in run["values"] for run in runs))
    for run in runs:
        seen.update(dict.fromkeys(run["values"]))
    return list(seen)


def _event(run: dict) -> str | None:
    if run["outcome"] == "error":
        return "error"
    if not run["triggered"] or run["outcome"] != "ok":
        return None
    action = run["action"].lower()
    if "train" in action:
        return "deployed" if run["after"] != run["before"] else "kept"
    return next((kind for kind in ("rollback", "alert") if kind in action), None)


def _mark_events(ax, runs: list[dict], key: str | None) -> None:
    """Triggered runs on the line of the condition's value; failed runs as crosses along the bottom."""
    events = [_event(run) for run in runs]
    for kind, (label, marker, colour) in _EVENTS.items():
        marked = [run for run, event in zip(runs, events) if event == kind]
        if marked:
            ax.plot([run["started_at"] for run in marked], [run["values"].get(key, math.nan) for run in marked],
                    linestyle="none", marker=marker, markersize=9, color=colour, label=label)
    failed = [run["started_at"] for run, event in zip(runs, events) if event == "error"]
    if failed:
        label, marker, colour = _ERROR
        ax.plot(failed, [0.03] * len(failed), linestyle="none", marker=marker, markersize=9, color=colour,
                label=label, transform=ax.get_xaxis_transform())


def _new_axes():
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(7.2, 3.6), layout="constrained")
    return ax
