"""Pictures of a model's life, drawn with matplotlib (``mldb.plot`` forwards here).

    drift_plot(con, "churn", "SELECT * FROM new_customers")   # train vs new distribution per feature
    prediction_volume_plot(con, "churn")                       # rows predicted over time, per version

``con`` is an mldb connection or cursor. Each returns the Axes it drew the summary on.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np

from mldb import errors
from mldb.lifecycle import drift

_PANEL_COLUMNS = 3


def drift_plot(con, model: str, query: str, ax=None):
    """PSI per feature (red: drifted) and, without ``ax``, one panel per feature with the
    training and new distributions over the training bins."""
    name, version = _version(con, model)
    rows = con.execute(f"SELECT * FROM DRIFT({_quote(f'{name}@{version}')}, ({query}))").fetchall()
    psi_rows = [row for row in rows if row[1] == "psi"]
    saved = [row for row in drift.saved_stats(_root(con), name, version) if row["role"] == "feature"]
    if ax is None:
        axes = _figure(1 + len(saved))
        ax = axes[0]
        table = con.execute(query).arrow()
        names = {column.lower(): column for column in table.column_names}
        for panel, stats_row in zip(axes[1:], saved):
            _distribution(panel, stats_row, table.column(names[stats_row["feature"].lower()]))
    colors = ["tab:red" if row[3] else "tab:blue" for row in psi_rows]
    ax.bar([row[0] for row in psi_rows], [row[2] for row in psi_rows], color=colors)
    if psi_rows:
        ax.axhline(psi_rows[0][4], color="grey", linestyle=":", label=f"threshold {psi_rows[0][4]:g}")
        ax.legend()
    ax.set(title=f"{name}@{version}: drift (PSI)", ylabel="PSI")
    ax.tick_params(axis="x", labelrotation=45)
    return ax


def _distribution(ax, saved: dict, column) -> None:
    labels, expected, actual, _ = drift.histograms(saved, column)
    keep = (expected > 0) | (actual > 0)
    positions = np.arange(keep.sum())
    ax.bar(positions - 0.2, expected[keep] / max(expected.sum(), 1), width=0.4, label="training")
    ax.bar(positions + 0.2, actual[keep] / max(actual.sum(), 1), width=0.4, label="new")
    ax.set_xticks(positions, [label for label, k in zip(labels, keep) if k], rotation=45, fontsize=7)
    ax.set(title=saved["feature"], ylabel="fraction")
    ax.legend(fontsize=7)


def prediction_volume_plot(con, model: str, ax=None):
    """Rows predicted per minute, hour or day (whichever fits the span), one line per version."""
    name = model.partition("@")[0].lower()
    rows = con.execute(_VOLUME, [name, name]).fetchall()
    if not rows:
        raise errors.ProgrammingError(f"model '{name}' has no predictions in mldb.prediction_log")
    if ax is None:
        ax = _figure(1)[0]
    for version in sorted({row[0] for row in rows}):
        points = [(row[1], row[2]) for row in rows if row[0] == version]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"version {version}")
    periods = sorted({row[1] for row in rows})
    if len(periods) == 1:  # one point: a window of a few periods around it, not matplotlib's default years
        unit = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}[rows[0][3]]
        ax.set_xlim(periods[0] - 3 * unit, periods[0] + 3 * unit)
    ax.set(title=f"{name}: predictions per {rows[0][3]}", ylabel="rows predicted")
    ax.legend()
    ax.tick_params(axis="x", labelrotation=45)
    return ax


_VOLUME = """
WITH span AS (
  SELECT CASE WHEN max(started_at) - min(started_at) > INTERVAL 3 DAY THEN 'day'
              WHEN max(started_at) - min(started_at) > INTERVAL 3 HOUR THEN 'hour' ELSE 'minute' END AS unit
  FROM mldb.prediction_log WHERE model = ?)
SELECT version, date_trunc(unit, started_at) AS period, sum(rows) AS rows, unit
FROM mldb.prediction_log, span WHERE model = ? AND shadow_of IS NULL GROUP BY ALL ORDER BY version, period
"""


def _version(con, model: str) -> tuple[str, int]:
    name, _, version = model.lower().partition("@")
    if version:
        return name, int(version)
    rows = con.execute("SELECT max(version) FROM mldb.feature_stats WHERE model = ?", [name]).fetchall()
    deployed = con.execute("SELECT deployed_version FROM mldb.models WHERE name = ?", [name]).fetchall()
    found = deployed[0][0] if deployed else rows[0][0]
    if found is None:
        raise errors.ProgrammingError(f"model '{name}' does not exist or has no training statistics")
    return name, found


def _root(con):
    """A plain DuckDB cursor of the database behind an mldb connection or cursor."""
    connection = getattr(con, "connection", con)
    return connection.database.root.cursor()


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _figure(panels: int):
    import matplotlib.pyplot as plt

    columns = min(panels, _PANEL_COLUMNS)
    rows = math.ceil(panels / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.5 * rows), squeeze=False)
    for extra in axes.flat[panels:]:
        extra.set_visible(False)
    figure.tight_layout()
    return list(axes.flat)
