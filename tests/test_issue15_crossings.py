"""Issue 15's parts crossing each other and the rest of mldb: monitors, deploy policies and shadows together,
through views, the wire server (psycopg), DB-API and the %%mldb magic, LightGBM and USING auto, EXPLAIN, DROP MODEL.

Real database files, real (tiny) models; monitors run through ``RUN MONITOR`` or the runner, never a sleep.
Customers come from the worked example's generator (``examples/monitors.py``): day 0 is clean, day 1's labels
are inverted (an upstream bug), so a version trained on day 1 is bad and one trained on day 0 is good.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import timedelta

import psycopg
import pytest
from IPython.core.interactiveshell import InteractiveShell

import mldb
from conftest_server import ROOT, start_server
from mldb.magic import MldbMagic, ResultTable
from mldb.monitors import runner

_spec = importlib.util.spec_from_file_location("monitors_example", ROOT / "examples" / "monitors.py")
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)

F = "SELECT age, plan, spend, churned FROM customers"
CLEAN, FLIPPED = f"{F} WHERE day = 0", f"{F} WHERE day = 1"


def rows(con, sql: str, params=None) -> list[tuple]:
    return con.execute(sql, params).fetchall()


def serving(con, name: str = "churn") -> tuple:
    return rows(con, "SELECT deployed_version, shadow_version FROM mldb.models WHERE name = ?", [name])[0]


def state_of(con) -> dict:
    """What a monitor's action may change."""
    return {table: rows(con, f"SELECT * {skip} FROM mldb.{table} ORDER BY ALL")
            for table, skip in (("models", ""), ("model_versions", "EXCLUDE (weights)"), ("deployments", ""),
                                ("deploy_decisions", ""), ("alerts", ""))}


def customers_db(path, rows_: int = 300):
    """customers: day 0 clean, day 1 the same kind of customers with every label inverted."""
    con = mldb.connect(str(path))
    con.register("b", example.customers(0, rows=rows_))
    con.execute("CREATE TABLE customers AS SELECT * FROM b")
    con.unregister("b")
    example.arrive(con, "customers", example.customers(1, rows=rows_, flipped=1.0))
    return con


@pytest.fixture
def shop(tmp_path):
    """churn: version 1 (clean, deployed) and version 2 (flipped, kept aside)."""
    con = customers_db(tmp_path / "shop.db")
    con.execute(f"CREATE MODEL churn PREDICT churned FROM ({CLEAN}) USING logistic WITH (epochs = 5, seed = 1)")
    con.execute(f"TRAIN churn FROM ({FLIPPED}) WITH (deploy = 'never')")
    yield con
    con.close()


def if_better_monitor(con, name: str, train_from: str) -> None:
    con.execute(f"CREATE MONITOR {name} ON MODEL churn CHECK EVALUATE ({CLEAN}) WHEN accuracy <= 1 "
                f"THEN TRAIN FROM ({train_from}) DEPLOY IF BETTER ON ({CLEAN})")


# -- policies x shadows ------------------------------------------------------------------------------
def test_a_monitors_deploy_if_better_keeps_the_shadow_either_way(shop):
    """A challenger that loses changes nothing that serves; one that wins is deployed and the shadow stays,
    now scored beside the new champion (only DEPLOY MODEL and ROLLBACK clear a shadow)."""
    shop.execute("DEPLOY MODEL churn VERSION 2 AS SHADOW")
    if_better_monitor(shop, "loses", FLIPPED)
    run = runner.run(shop.session, "loses")
    assert (run["outcome"], run["model_version_before"], run["model_version_after"]) == ("ok", 1, 1)
    assert serving(shop) == (1, 2)
    shop.execute("DROP MONITOR loses")
    shop.execute("DEPLOY MODEL churn VERSION 2")  # the bad one serves (clears the shadow) ...
    shop.execute("DEPLOY MODEL churn VERSION 1 AS SHADOW")  # ... and the good one shadows it
    if_better_monitor(shop, "wins", CLEAN)
    run = runner.run(shop.session, "wins")
    assert (run["outcome"], run["model_version_before"], run["model_version_after"]) == ("ok", 2, 4)
    assert serving(shop) == (4, 1)
    assert rows(shop, "SELECT version, champion_version, deployed FROM mldb.deploy_decisions ORDER BY version") == [
        (3, 1, False), (4, 2, True)]
    rows(shop, "SELECT PREDICT(churn) FROM customers")
    assert rows(shop, "SELECT version, shadow_of, rows FROM mldb.prediction_log WHERE shadow_of IS NOT NULL") == [
        (1, 4, 600)]
    shop.execute(f"TRAIN churn FROM ({CLEAN})")  # no policy: the newest served, so the new one does; shadow kept
    assert serving(shop) == (5, 1)
    assert rows(shop, "SELECT version, previous_version, reason FROM mldb.deployments ORDER BY deployed_at, rowid"
                ) == [(1, None, "train"), (2, 1, "deploy"), (4, 2, "if_better"), (5, 4, "train")]


def test_a_rollback_onto_the_shadows_version_leaves_nothing_shadowed(shop):
    shop.execute("DEPLOY MODEL churn VERSION 2")  # bad, by hand; version 1 served before it
    shop.execute("DEPLOY MODEL churn VERSION 1 AS SHADOW")
    shop.execute(f"CREATE MONITOR q ON MODEL churn CHECK EVALUATE ({CLEAN}) WHEN accuracy < 0.8 THEN ROLLBACK")
    (run,) = rows(shop, "RUN MONITOR q")
    assert run[6:12] == (True, "rollback", "ok", "rolled churn back from version 2 to version 1", 2, 1)
    assert serving(shop) == (1, None)
    rows(shop, "SELECT PREDICT(churn) FROM customers")
    assert rows(shop, "SELECT count(*) FROM mldb.prediction_log WHERE shadow_of IS NOT NULL") == [(0,)]


def test_explain_of_a_predict_names_the_shadow(shop):
    shop.execute("DEPLOY MODEL churn VERSION 2 AS SHADOW")
    plan = "\n".join(row[1] for row in rows(shop, "EXPLAIN SELECT PREDICT(churn) FROM customers"))
    assert "model churn@1" in plan and "shadow churn@2 scores the same batches" in plan
    pinned = "\n".join(row[1] for row in rows(shop, "EXPLAIN SELECT PREDICT('churn@1') FROM customers"))
    assert "model churn@1" in pinned and "shadow" not in pinned


# -- monitors x views --------------------------------------------------------------------------------
def test_a_rollback_a_view_cannot_take_is_an_error_that_changes_nothing(tmp_path):
    """Version 2 has fewer features; a view made while it serves passes only those: the rollback to version 1
    (which needs plan too) is refused with 2BP01, recorded as the run's error, and nothing else moves."""
    con = customers_db(tmp_path / "views.db")
    con.execute(f"CREATE MODEL churn PREDICT churned FROM ({CLEAN}) USING logistic WITH (epochs = 5, seed = 1)")
    con.execute("TRAIN churn FROM (SELECT age, spend, churned FROM customers WHERE day = 1)")  # serves at once
    con.execute("CREATE VIEW scored AS SELECT age, PREDICT(churn) AS p FROM customers")
    con.execute(f"CREATE MONITOR q ON MODEL churn CHECK EVALUATE ({CLEAN}) WHEN accuracy < 0.8 THEN ROLLBACK")
    before, served = state_of(con), rows(con, "SELECT p FROM scored ORDER BY age")
    run = runner.run(con.session, "q")
    assert (run["triggered"], run["action"], run["outcome"]) == (True, "rollback", "error")
    assert run["message"].startswith("cannot ROLLBACK of churn to version 1: view scored calls model 'churn'")
    assert (run["model_version_before"], run["model_version_after"]) == (2, 2)
    assert state_of(con) == before and serving(con) == (2, None)
    assert rows(con, "SELECT p FROM scored ORDER BY age") == served
    with pytest.raises(mldb.Error) as caught:  # the same refusal by hand: its SQLSTATE
        con.execute("DEPLOY MODEL churn VERSION 1")
    assert caught.value.sqlstate == "2BP01" and "view scored calls model 'churn'" in str(caught.value)
    con.close()


# -- monitors through the wire server ------------------------------------------------------------------
def test_monitors_through_the_wire_server(tmp_path):
    customers_db(tmp_path / "shop.db").close()
    with mldb.connect(str(tmp_path / "shop.db")) as con:
        con.execute(f"CREATE MODEL churn PREDICT churned FROM ({CLEAN}) USING logistic WITH (epochs = 5, seed = 1)")
    served = start_server(tmp_path, "--monitor-interval", "0")
    try:
        with psycopg.connect(served.dsn(), autocommit=True) as client:
            created = client.execute(f"CREATE MONITOR flipped ON MODEL churn CHECK EVALUATE ({FLIPPED}) "
                                     "EVERY INTERVAL 1 DAY WHEN accuracy < 0.5 THEN ALERT")
            assert created.statusmessage == "CREATE MONITOR"
            cursor = client.execute("RUN MONITOR flipped")
            names = [column.name for column in cursor.description]
            (run,) = cursor.fetchall()
            run = dict(zip(names, run))
            assert (run["monitor"], run["triggered"], run["action"], run["outcome"]) == (
                "flipped", True, "alert", "ok")
            assert run["values"]["accuracy"] < 0.5  # (JSON: psycopg decodes it) and run["model_version_after"] == 1
            cursor = client.execute("SHOW MONITORS")
            shown = dict(zip([column.name for column in cursor.description], cursor.fetchall()[0]))
            assert (shown["name"], shown["status"], shown["last_outcome"], shown["open_alerts"]) == (
                "flipped", "active", "ok", 1)
            assert shown["every"] == timedelta(days=1)  # (an interval on the wire)
            (alert_id,), = client.execute("SELECT id FROM mldb.alerts").fetchall()
            assert client.execute(f"ACKNOWLEDGE ALERT {alert_id}").statusmessage == "ACKNOWLEDGE ALERT"
            assert client.execute("SELECT acknowledged FROM mldb.alerts").fetchall() == [(True,)]
            with pytest.raises(psycopg.Error) as caught:
                client.execute("RUN MONITOR nothing")
            assert caught.value.sqlstate == "42704"
            assert client.execute("SELECT count(*) FROM mldb.monitor_runs").fetchall() == [(1,)]
        assert served.stop() == 0
    finally:
        if served.process.poll() is None:
            served.process.kill()
    assert "Traceback" not in served.log


# -- DB-API and the magic ------------------------------------------------------------------------------
def test_dbapi_cursor_reads_run_monitor_and_show_monitors(shop):
    shop.execute(f"CREATE MONITOR q ON MODEL churn CHECK EVALUATE ({CLEAN}) WHEN accuracy < 0.5 THEN ALERT")
    cursor = shop.cursor()
    cursor.execute("RUN MONITOR q")
    assert [d[0] for d in cursor.description] == [d[0] for d in shop.execute("SELECT * FROM mldb.monitor_runs")
                                                 .description]
    (run,) = cursor.fetchall()
    assert run[1] == "q" and run[6:9] == (False, None, "ok")
    cursor.execute("SHOW MONITORS")
    assert cursor.rowcount in (-1, 1) and [row[0] for row in cursor.fetchall()] == ["q"]
    cursor.execute("ALTER MONITOR q PAUSE")
    assert cursor.description is None
    assert rows(shop, "SELECT paused FROM mldb.monitors") == [(True,)]


def test_the_magic_runs_monitor_statements(shop):
    shell = InteractiveShell.instance()
    shell.register_magics(MldbMagic(shell=shell))
    shell.user_ns["shop_con"] = shop
    try:
        result = shell.run_cell("%mldb --connect shop_con SELECT 1", store_history=False)
        assert result.success
        cell = (f"%%mldb\nCREATE MONITOR q ON MODEL churn CHECK EVALUATE ({FLIPPED}) EVERY INTERVAL 1 DAY "
                "WHEN accuracy < 0.5 "
                "THEN ALERT;\nRUN MONITOR q")
        result = shell.run_cell(cell, store_history=False)
        assert result.success, result.error_in_exec
        table = result.result
        assert isinstance(table, ResultTable) and table.total == 1
        assert table.frame["monitor"].to_list() == ["q"] and table.frame["action"].to_list() == ["alert"]
        shown = shell.run_cell("%mldb SHOW MONITORS", store_history=False).result
        assert shown.frame["open_alerts"].to_list() == [1]
        assert shown.frame["every"].to_list() == [timedelta(days=1)]  # (an INTERVAL: see the next test)
    finally:
        shell.user_ns.pop("shop_con", None)


# -- policies and monitors on LightGBM and USING auto ----------------------------------------------------
def test_if_better_on_a_lightgbm_model(tmp_path):
    con = customers_db(tmp_path / "gbm.db")
    con.execute(f"CREATE MODEL churn PREDICT churned FROM ({CLEAN}) USING lightgbm WITH (num_iterations = 20)")
    lost = rows(con, f"TRAIN churn FROM ({FLIPPED}) WITH (deploy = 'if_better', holdout = '{CLEAN}')")
    assert lost[0][1] == 2 and serving(con) == (1, None)
    con.execute("DEPLOY MODEL churn VERSION 2")
    rows(con, f"TRAIN churn FROM ({CLEAN}) WITH (deploy = 'if_better', holdout = '{CLEAN}', metric = 'roc_auc')")
    assert serving(con) == (3, None)
    assert rows(con, "SELECT version, champion_version, metric, deployed FROM mldb.deploy_decisions "
                     "ORDER BY version") == [(2, 1, "accuracy", False), (3, 2, "roc_auc", True)]
    assert rows(con, "SELECT DISTINCT algorithm FROM mldb.model_versions") == [("lightgbm",)]
    con.close()


def test_if_better_on_an_auto_model(tmp_path):
    con = customers_db(tmp_path / "auto.db", rows_=200)
    con.execute(f"CREATE MODEL churn PREDICT churned FROM ({CLEAN}) USING auto WITH (time_budget = 10)")
    chosen = rows(con, "SELECT algorithm FROM mldb.model_versions WHERE version = 1")[0][0]
    rows(con, f"TRAIN churn FROM ({FLIPPED}) WITH (deploy = 'if_better', holdout = '{CLEAN}')")
    assert serving(con) == (1, None)
    ((version, champion, value, champion_value, deployed),) = rows(
        con, "SELECT version, champion_version, value, champion_value, deployed FROM mldb.deploy_decisions")
    assert (version, champion, deployed) == (2, 1, False) and value < 0.5 < champion_value
    assert chosen in ("logistic", "mlp", "lightgbm")
    con.close()


def test_a_drift_monitor_on_a_lightgbm_model_retrains_it_with_lightgbm(tmp_path):
    con = customers_db(tmp_path / "gbm_drift.db")
    con.execute(f"CREATE MODEL churn PREDICT churned FROM ({CLEAN}) USING lightgbm WITH (num_iterations = 20)")
    example.arrive(con, "customers", example.customers(2, rows=300, shift=15))
    latest = f"{F} WHERE day = 2"
    con.execute(f"CREATE MONITOR d ON MODEL churn CHECK DRIFT ({latest}) EVERY INTERVAL 1 DAY "
                f"THEN TRAIN FROM ({latest}) DEPLOY IF BETTER ON ({latest})")
    start = rows(con, "SELECT created_at FROM mldb.monitors")[0][0]
    (run,) = runner.run_due(con.session, now=start + timedelta(days=1))
    assert (run["triggered"], run["action"], run["outcome"]) == (True, "train", "ok")
    assert json.loads(run["values"])["drifted_features"] >= 1
    assert rows(con, "SELECT version, algorithm FROM mldb.model_versions ORDER BY version") == [
        (1, "lightgbm"), (2, "lightgbm")]
    assert rows(con, "SELECT count(*) FROM mldb.deploy_decisions WHERE version = 2") == [(1,)]
    con.close()


# -- DROP MODEL ------------------------------------------------------------------------------------------
def test_drop_model_with_monitors_and_a_shadow(shop):
    shop.execute("DEPLOY MODEL churn VERSION 2 AS SHADOW")
    shop.execute(f"CREATE MONITOR q ON MODEL churn CHECK EVALUATE ({CLEAN}) EVERY INTERVAL 1 DAY "
                 "WHEN accuracy < 0.8 THEN ROLLBACK")
    start = rows(shop, "SELECT created_at FROM mldb.monitors")[0][0]
    shop.execute("DROP MODEL churn")
    assert rows(shop, "SELECT count(*) FROM mldb.models") == [(0,)]
    assert [row[6] for row in shop.execute("SHOW MONITORS").fetchall()] == ["model missing"]
    (run,) = runner.run_due(shop.session, now=start + timedelta(days=1))
    assert (run["outcome"], run["action"]) == ("skipped", "disable")
    assert run["message"].startswith("model 'churn' no longer exists: monitor disabled")
    assert [row[6] for row in shop.execute("SHOW MONITORS").fetchall()] == ["disabled"]
    assert rows(shop, "SELECT monitor, acknowledged FROM mldb.alerts") == [("q", False)]
    assert runner.run_due(shop.session, now=start + timedelta(days=2)) == []
    # the model comes back, without a shadow; RESUME re-enables the monitor
    shop.execute(f"CREATE MODEL churn PREDICT churned FROM ({CLEAN}) USING logistic WITH (epochs = 5, seed = 1)")
    assert serving(shop) == (1, None)
    shop.execute("ALTER MONITOR q RESUME")
    (run,) = rows(shop, "RUN MONITOR q")
    assert run[8] == "ok" and run[6] is False


def test_the_magic_shows_intervals_as_durations(shop):
    """SHOW MONITORS' ``every`` is an INTERVAL, which polars cannot import from Arrow: the magic shows it as a
    duration (a month as 30 days, as DuckDB's .df()), nulls kept."""
    shell = InteractiveShell.instance()
    shell.register_magics(MldbMagic(shell=shell))
    shell.user_ns["shop_con"] = shop
    try:
        shell.run_cell("%mldb --connect shop_con SELECT 1", store_history=False)
        result = shell.run_cell("%mldb SELECT * FROM (VALUES (INTERVAL 1 DAY), (INTERVAL '2 months 3 hours'), "
                                "(NULL), (INTERVAL '-90 minutes 500 microseconds')) t(every)", store_history=False)
        assert result.success, result.error_in_exec
        assert result.result.frame["every"].to_list() == [
            timedelta(days=1), timedelta(days=60, hours=3), None, timedelta(minutes=-90, microseconds=500)]
    finally:
        shell.user_ns.pop("shop_con", None)


def test_show_monitors_into_polars(shop):
    """cursor.pl() (and the magic's ``NAME <<``) of an INTERVAL column: a polars duration."""
    shop.execute(f"CREATE MONITOR q ON MODEL churn CHECK EVALUATE ({CLEAN}) EVERY INTERVAL 2 HOURS "
                 "WHEN accuracy < 0.5 THEN ALERT")
    shop.execute(f"CREATE MONITOR r ON MODEL churn CHECK EVALUATE ({CLEAN}) WHEN accuracy < 0.5 THEN ALERT")
    frame = shop.execute("SHOW MONITORS").pl()
    assert frame["every"].to_list() == [timedelta(hours=2), None]
    frame = shop.execute("SELECT * FROM mldb.monitors ORDER BY name").pl()
    assert str(frame["every"].dtype) == "Duration(time_unit='us')" and frame["name"].to_list() == ["q", "r"]


# -- the worked example, continued by `mldb monitor --once` (cron) ------------------------------------------
def test_the_worked_example_continues_under_mldb_monitor(tmp_path, capsys):
    """After examples/monitors.py's five days, day 6 comes from the command cron runs: the paused drift
    monitor stays quiet, the other two run once, and again at the same time nothing runs."""
    from mldb.cli import main

    path = tmp_path / "example.db"
    with mldb.connect(str(path)) as con:
        example.story(con)
        start = rows(con, "SELECT max(created_at) FROM mldb.monitors")[0][0]
    moment = (start + timedelta(days=6, seconds=1)).replace(microsecond=0)  # (--now takes whole seconds)
    day6 = f"{moment:%Y-%m-%d %H:%M:%S}"
    capsys.readouterr()
    assert main(["monitor", str(path), "--once", "--now", day6]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" on churn")[0] for line in lines] == [f"{day6} churn_predictions", f"{day6} churn_quality"]
    assert "ok, action alert, version 1" in lines[0] and "ok, not triggered, version 1" in lines[1]
    assert main(["monitor", str(path), "--once", "--now", day6]) == 0
    assert capsys.readouterr().out == ""  # nothing due twice
    with mldb.connect(str(path)) as con:
        assert rows(con, "SELECT count(*), count(*) FILTER (WHERE scheduled) FROM mldb.monitor_runs "
                         "WHERE started_at = ?", [moment]) == [(2, 2)]
        assert serving(con) == (1, None)
