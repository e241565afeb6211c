"""A model's charts as SVG: training curves, prediction volume, drift history and feature importance.

    /charts/models/<name>/training.svg     the deployed version's loss per epoch (as mldb.plot.training_curves)
    /charts/models/<name>/volume.svg       rows predicted per period and version (mldb.plot.prediction_volume)
    /charts/models/<name>/drift.svg        each drift monitor's runs over time (mldb.plot.monitor_history)
    /charts/models/<name>/importance.svg   the deployed version's feature importance (mldb.feature_importance)

The pictures are mldb's own plots (``mldb.plot``), which read the catalog with plain SQL, drawn on
a ``matplotlib.figure.Figure`` of its own (never pyplot's global figures, which threads would share)
and written as SVG with text as ``<text>`` (searchable, escaped by matplotlib, small). Matplotlib's
settings are process-wide, so drawing holds a lock and sets them only for its own figure. Drawing costs
matplotlib 50-300 ms, so each SVG is kept, keyed by the data it shows (or a cheap stamp of it: the log's
count and newest time, the runs' count and last id), and drawn again only when that changes. A chart
with nothing to draw yet is a small SVG saying so; an unknown model is a 404.
"""

from __future__ import annotations

import io
import threading
import warnings
from xml.sax.saxutils import escape

from mldb import errors
from mldb.console.graph import printable
from mldb.console.pages import chart

MODEL_CHARTS = ("training", "volume", "drift", "importance")
SIZE = (6.4, 3.6)  # inches; the page shows them at 640 x 360 pixels
DRIFT_PANELS = 3  # at most this many drift monitors, one panel each
IMPORTANCE_SHOWN = 20
FEATURE_LABEL = 24  # characters of a feature's name the importance chart has room for

CACHE_SIZE = 200  # SVGs a console keeps (10-60 kB each)

_LOCK = threading.Lock()
# names and values are user text: never parsed as mathtext ("$x$" typeset, "$\frac$" an error)
_SETTINGS = {"svg.fonttype": "none", "svg.hashsalt": "mldb-console", "font.size": 9, "text.parse_math": False}


# -- the charts ---------------------------------------------------------------------------------
@chart("/charts/models/{name:path}/training.svg")
def training(reader, name: str) -> str:
    """As ``mldb.plot.training_curves`` draws them (which needs an mldb cursor: it reads with polars)."""
    name, version = _shown_version(reader, name)
    log = reader.rows("SELECT epoch, train_loss, valid_loss, valid_metric, metric_name FROM mldb.training_log "
                      "WHERE model = ? AND version = ? ORDER BY epoch", [name, version]) \
        if version is not None and reader.has_table("training_log") else []
    if not log:
        return no_data(f"{name}: no training log yet")

    def curves(ax):
        epochs = [row["epoch"] for row in log]
        ax.plot(epochs, [row["train_loss"] for row in log], marker=".", label="train loss")
        ax.plot(epochs, [row["valid_loss"] for row in log], marker=".", label="validation loss")
        scored = [row for row in log if row["valid_loss"] is not None]
        if scored:
            best = min(scored, key=lambda row: row["valid_loss"])
            metric = (f": validation {best['metric_name']} {best['valid_metric']:.3g}"
                      if best["valid_metric"] is not None and best["metric_name"] else "")
            ax.axvline(best["epoch"], color="grey", linestyle=":", label=f"best epoch {best['epoch']}{metric}")
        ax.set(xlabel="epoch", ylabel="loss", title=f"{name}@{version}: loss per epoch")
        ax.legend()
    return _cached(reader, ("training", name, version, _frozen(log)), lambda: _drawn(curves, ""))


@chart("/charts/models/{name:path}/volume.svg")
def volume(reader, name: str) -> str:
    from mldb import plot

    name = _model(reader, name)["name"]
    if not reader.has_table("prediction_log"):
        return no_data(f"{name}: no predictions logged yet")
    stamp = reader.row("SELECT count(*) AS statements, sum(rows) AS rows, max(logged_at) AS last "
                       "FROM mldb.prediction_log WHERE model = ?", [name])
    if not stamp["statements"]:
        return no_data(f"{name}: no predictions logged yet")
    return _cached(reader, ("volume", name, _frozen([stamp])), lambda: _drawn(
        lambda ax: plot.prediction_volume(reader.cursor(), name, ax=ax), f"{name}: no predictions logged yet"))


@chart("/charts/models/{name:path}/drift.svg")
def drift(reader, name: str) -> str:
    from mldb import plot

    name = _model(reader, name)["name"]
    monitors = drift_monitors(reader, name)
    if not monitors:
        return no_data(f"{name}: no drift monitor has run yet")
    return _cached(reader, ("drift", name, _frozen(monitors)), lambda: _drawn(
        lambda *axes: [plot.monitor_history(reader.cursor(), monitor["name"], ax=ax)
                       for monitor, ax in zip(monitors, axes)],
        f"{name}: no drift runs yet", panels=len(monitors)))


@chart("/charts/models/{name:path}/importance.svg")
def importance(reader, name: str) -> str:
    name, version = _shown_version(reader, name)
    rows = []
    if version is not None and reader.has_table("feature_importance"):
        rows = reader.rows("SELECT feature, importance, method FROM mldb.feature_importance WHERE model = ? "
                           f"AND version = ? ORDER BY importance DESC LIMIT {IMPORTANCE_SHOWN}", [name, version])
    if not rows:
        return no_data(f"{name}: no feature importance recorded")

    def bars(ax):
        shown = rows[::-1]  # (the most important on top; by position: two names may shorten alike)
        ax.barh(range(len(shown)), [row["importance"] for row in shown])
        ax.set_yticks(range(len(shown)), [_label(row["feature"]) for row in shown])
        ax.figure.subplots_adjust(left=0.3)  # (room for FEATURE_LABEL characters)
        ax.set(xlabel=f"importance ({rows[0]['method']})", title=f"{name}@{version}: feature importance")
    return _cached(reader, ("importance", name, version, _frozen(rows)), lambda: _drawn(bars, ""))


def _label(text: str) -> str:
    return text if len(text) <= FEATURE_LABEL else text[:FEATURE_LABEL - 1] + "…"


# -- reading ------------------------------------------------------------------------------------
def _model(reader, name: str) -> dict:
    from mldb.console.models import find_model  # (models imports this module to register the charts)

    return find_model(reader, name)


def _shown_version(reader, name: str) -> tuple[str, int | None]:
    """The model's stored name and the version its page describes: the deployed one, else the newest."""
    found = _model(reader, name)
    return found["name"], found["deployed_version"] or found["latest_version"]


def drift_monitors(reader, name: str) -> list[dict]:
    """The model's drift monitors that have run (the first DRIFT_PANELS by name), with what stamps their history."""
    if not (reader.has_table("monitors") and reader.has_table("monitor_runs")):
        return []
    return reader.rows(
        "SELECT m.name, m.condition, count(*) AS runs, max(r.id) AS last_run FROM mldb.monitors m "
        "JOIN mldb.monitor_runs r ON r.monitor = m.name WHERE m.model = ? AND lower(m.check_kind) = 'drift' "
        f"GROUP BY m.name, m.condition ORDER BY m.name LIMIT {DRIFT_PANELS}", [name])


# -- caching ---------------------------------------------------------------------------------------
def _cached(reader, key: tuple, draw) -> str:
    """The SVG drawn for ``key`` (the chart's data, or a stamp of it), kept by the console's reader, or ``draw()``.

    Drawing takes matplotlib 50-300 ms; the key changes whenever what the chart shows does."""
    return reader.kept(("chart",) + key, draw, CACHE_SIZE)


def _frozen(rows: list[dict]) -> tuple:
    """Rows as a hashable key."""
    return tuple(tuple(row.values()) for row in rows)


# -- drawing ------------------------------------------------------------------------------------
def _drawn(draw, empty: str, panels: int = 1) -> str:
    """``draw(*axes)`` on a new figure of ``panels`` stacked axes, as SVG text; ``empty`` when mldb's
    plot says there is nothing to draw (a ProgrammingError: no log, no runs). The figure belongs to no
    pyplot state: nothing to close, it goes with its last reference."""
    import matplotlib
    from matplotlib.figure import Figure

    with _LOCK, matplotlib.rc_context(_SETTINGS):
        figure = Figure(figsize=(SIZE[0], SIZE[1] * panels))
        figure.subplots_adjust(**_margins(panels))  # (fixed: constrained layout would double the time)
        axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
        try:
            draw(*axes)
        except errors.ProgrammingError:
            return no_data(empty)
        out = io.StringIO()
        with warnings.catch_warnings():  # (a name's control character has no glyph: it becomes U+FFFD below)
            warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
            figure.savefig(out, format="svg", metadata={"Date": None})
        return printable(out.getvalue())  # (matplotlib writes a name's control characters as they are)


def _margins(panels: int) -> dict:
    """Room for titles, rotated date labels and a right-hand axis, in figure fractions."""
    height = SIZE[1] * panels
    return {"left": 0.1, "right": 0.88, "top": 1 - 0.3 / height, "bottom": 0.95 / height, "hspace": 1.4 / SIZE[1]}


def no_data(message: str) -> str:
    """A small SVG that says there is nothing to draw yet."""
    width, height = int(SIZE[0] * 100), int(SIZE[1] * 100)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="#fff"/>'
            f'<text x="50%" y="45%" text-anchor="middle" font-family="sans-serif" font-size="18" fill="#6b7385">'
            f'no data yet</text><text x="50%" y="58%" text-anchor="middle" font-family="sans-serif" '
            f'font-size="13" fill="#6b7385">{escape(printable(message))}</text></svg>')
