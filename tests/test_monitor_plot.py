"""Showing monitors: ``mldb.plot.monitor_history`` (and ``%mldb --plot monitor``) over the real
history of monitors run by ``mldb monitor --once --now`` on simulated days, and DESCRIBE MODEL's
``monitors`` column."""

from __future__ import annotations

import datetime
import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402

import mldb  # noqa: E402
from mldb import plot  # noqa: E402
from mldb.cli import main  # noqa: E402
from mldb.magic import MldbMagic  # noqa: E402
from mldb.monitors.plots import condition_thresholds  # noqa: E402

DAYS = [datetime.datetime(2027, 1, day, 12) for day in (1, 2, 3)]


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    """Three simulated days: day 1 calm, day 2 drift (retrain, then the rollback monitor rolls it
    back), day 3 the drift monitor's data is gone (error). Quality alerts every day."""
    path = str(tmp_path_factory.mktemp("monitor_plot") / "shop.db")
    connection = mldb.connect(path)
    connection.execute("CREATE TABLE customers AS SELECT (range % 60)::DOUBLE AS age, "
                       "range % 3 = 0 OR range % 60 < 10 AS churned FROM range(300)")
    connection.execute("CREATE TABLE fresh AS SELECT * FROM customers")
    connection.execute("CREATE MODEL churn PREDICT churned FROM customers USING logistic WITH (epochs = 3, seed = 1)")
    connection.execute("CREATE MODEL idle PREDICT churned FROM customers USING logistic WITH (epochs = 1, seed = 1)")
    connection.execute("CREATE MONITOR quality ON MODEL churn CHECK EVALUATE (SELECT * FROM customers) "
                       "EVERY INTERVAL 1 DAY WHEN accuracy < 0.99 THEN ALERT")
    connection.execute("CREATE MONITOR drifty ON MODEL churn CHECK DRIFT (SELECT * FROM fresh) "
                       "EVERY INTERVAL 1 DAY WHEN max_psi > 0.5 THEN TRAIN FROM (SELECT * FROM fresh)")
    for day, change in zip(DAYS, ["", "UPDATE fresh SET age = age + 200", "DROP TABLE fresh"]):
        if change:
            connection.execute(change)
        assert main(["monitor", path, "--once", "--now", f"{day:%Y-%m-%d %H:%M}"]) == 0
        if day == DAYS[1]:
            connection.execute("CREATE MONITOR back ON MODEL churn CHECK EVALUATE (SELECT * FROM customers) "
                               "EVERY INTERVAL 1 DAY WHEN accuracy <= 1 THEN ROLLBACK")
    yield connection
    connection.close()
    plt.close("all")


def history(con, monitor: str) -> list[dict]:
    rows = con.execute('SELECT started_at, "values", triggered, action, outcome FROM mldb.monitor_runs '
                       "WHERE monitor = ? ORDER BY id", [monitor]).fetchall()
    return [{"at": row[0], "values": json.loads(row[1]) if row[1] else {}, "triggered": row[2], "action": row[3],
             "outcome": row[4]} for row in rows]


def lines(ax) -> dict:
    """Every line drawn, on the axes and on its right-hand twin (rows)."""
    return {line.get_label(): line for axes in ax.figure.axes for line in axes.get_lines()}


def test_the_history_is_what_the_monitors_did(con):
    assert [(run["triggered"], run["outcome"]) for run in history(con, "drifty")] == \
        [(False, "ok"), (True, "ok"), (None, "error")]  # (the failed check decided nothing)
    assert [run["action"] for run in history(con, "quality")] == ["alert"] * 3
    assert [(run["triggered"], run["action"], run["outcome"]) for run in history(con, "back")] == \
        [(True, "rollback", "ok")]


def test_a_quality_monitor_draws_its_metrics_threshold_and_alerts(con):
    ax = plot.monitor_history(con, "quality")
    runs, drawn = history(con, "quality"), lines(ax)
    assert list(drawn)[0] == "accuracy"  # the condition's value first, then the other metrics
    assert {"f1", "rows"} <= set(drawn)
    accuracy = drawn["accuracy"]
    assert list(accuracy.get_xdata()) == DAYS
    assert list(accuracy.get_ydata()) == pytest.approx([run["values"]["accuracy"] for run in runs])
    threshold = drawn["accuracy < 0.99"]
    assert list(threshold.get_ydata()) == [0.99, 0.99] and threshold.get_linestyle() == "--"
    assert threshold.get_color() == accuracy.get_color()
    alerts = drawn["alert"]
    assert list(alerts.get_xdata()) == DAYS and list(alerts.get_ydata()) == list(accuracy.get_ydata())
    assert ax.get_title() == "quality on churn: WHEN accuracy < 0.99"
    plt.close("all")


def test_a_drift_monitor_marks_its_retrain_and_its_error(con):
    ax = plot.monitor_history(con, "drifty")
    runs, drawn = history(con, "drifty"), lines(ax)
    psi = drawn["max_psi"]
    assert list(drawn)[0] == "max_psi" and "drifted_features" in drawn
    assert list(psi.get_ydata())[:2] == pytest.approx([run["values"]["max_psi"] for run in runs[:2]])
    assert list(drawn["max_psi > 0.5"].get_ydata()) == [0.5, 0.5]
    retrained = drawn["retrain: new version deployed"]
    assert list(retrained.get_xdata()) == [DAYS[1]]
    assert list(retrained.get_ydata()) == pytest.approx([runs[1]["values"]["max_psi"]])
    failed = drawn["error"]
    assert list(failed.get_xdata()) == [DAYS[2]] and failed.get_marker() == "x"
    assert "alert" not in drawn and "rollback" not in drawn
    rolled = lines(plot.monitor_history(con, "back"))["rollback"]
    assert list(rolled.get_xdata()) == [DAYS[2]] and rolled.get_marker() == "v"
    plt.close("all")


def test_a_given_axes_is_drawn_on(con):
    _, ax = plt.subplots()
    assert plot.monitor_history(con.cursor(), "quality", ax=ax) is ax and "accuracy" in lines(ax)
    plt.close("all")


@pytest.mark.parametrize("monitor, error, message", [
    ("nope", mldb.ProgrammingError, "monitor 'nope' does not exist"),
])
def test_a_missing_monitor_is_a_clear_error(con, monitor, error, message):
    with pytest.raises(error, match=message) as raised:
        plot.monitor_history(con, monitor)
    assert raised.value.sqlstate == "42704"


def test_a_monitor_that_never_ran_is_a_clear_error(con):
    con.execute("CREATE MONITOR later ON MODEL idle CHECK EVALUATE (SELECT * FROM customers) "
                "EVERY INTERVAL 1 DAY WHEN accuracy < 0.5 THEN ALERT")
    with pytest.raises(mldb.ProgrammingError, match="monitor 'later' has not run yet"):
        plot.monitor_history(con, "later")
    con.execute("DROP MONITOR later")


@pytest.mark.parametrize("condition, expected", [
    ("accuracy < 0.9", [("accuracy", "<", 0.9)]),
    ("2 <= drifted_features OR max_psi > 0.25", [("drifted_features", ">=", 2.0), ("max_psi", ">", 0.25)]),
    ("mae > -1.5 AND rows >= 100", [("mae", ">", -1.5), ("rows", ">=", 100.0)]),
    ("accuracy < f1", []),
    ("(", []),
    (None, []),
])
def test_thresholds_are_read_from_the_condition(condition, expected):
    assert condition_thresholds(condition) == expected


def test_plot_magic_draws_a_monitor(con):
    shell = InteractiveShell.instance()
    shell.register_magics(MldbMagic(shell=shell))
    shell.user_ns["monitor_con"] = con
    shell.run_cell("%mldb --connect monitor_con SELECT 1")
    with capture_output() as captured:
        result = shell.run_cell("%mldb --plot monitor quality")
    assert result.success and result.result is None
    assert [output.data["text/plain"] for output in captured.outputs] == ["<Figure size 720x360 with 2 Axes>"]  # (rows: a twin)
    assert plt.get_fignums() == []
    with capture_output() as captured:
        result = shell.run_cell("%mldb --plot monitor quality SELECT 1")
    assert isinstance(result.error_in_exec, mldb.ProgrammingError) and "monitor's name only" in captured.stdout
    shell.user_ns.pop("monitor_con")


def test_describe_model_lists_its_monitors(con):
    cursor = con.execute("DESCRIBE MODEL churn")
    names = [column[0] for column in cursor.description]
    described = cursor.fetchall()
    assert names[-1] == "monitors"
    assert described and all(row[-1] == ["back", "drifty", "quality"] for row in described)  # every feature row
    assert con.execute("DESCRIBE MODEL idle").fetchall()[0][-1] == []


def test_rows_go_on_a_right_hand_axis_so_the_measures_keep_their_scale(con):
    ax = plot.monitor_history(con, "quality")
    assert "rows" not in {line.get_label() for line in ax.get_lines()}
    twin, = [axes for axes in ax.figure.axes if axes is not ax]
    assert [line.get_label() for line in twin.get_lines()] == ["rows"]
    counted = min(twin.get_lines()[0].get_ydata())
    assert ax.get_ylim()[1] < counted  # accuracy, f1, log_loss keep their scale, not flattened under the rows
    assert "rows" in [text.get_text() for text in ax.get_legend().get_texts()]
