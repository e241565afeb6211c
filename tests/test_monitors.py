"""Monitors (SPEC section 11): checks that retrain, roll back or alert, on simulated schedules.

Real database files and real (tiny, fast) models trained on generated customers whose ages drift
from day 3 on; simulated days pass through ``runner.run_due(session, now=...)`` with explicit times,
never by sleeping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import mldb
from mldb.frontend import MLDB, parse, split_statements
from mldb.monitors import actions, runner, store

ROWS = 400
DAY = timedelta(days=1)
TODAY = "SELECT age, plan, spend, churned FROM customers WHERE day = (SELECT max(day) FROM customers)"


def generated(seed: int, day: int, rows: int = ROWS, shift: float = 0.0, flip: bool = False) -> pa.Table:
    rng = np.random.default_rng(seed)
    age = rng.normal(40 + shift, 10, rows)
    churned = (age > 45) ^ (rng.random(rows) < 0.05)
    return pa.table({"day": np.full(rows, day, dtype=np.int32), "age": age,
                     "plan": rng.choice(["basic", "plus", "pro"], rows, p=(0.5, 0.3, 0.2)),
                     "spend": rng.gamma(2.0, 20.0, rows), "churned": ~churned if flip else churned})


def add_day(con, day: int, shift: float = 0.0, flip: bool = False) -> None:
    con.register("new_rows", generated(100 + day, day, shift=shift, flip=flip))
    con.execute("INSERT INTO customers SELECT * FROM new_rows")
    con.unregister("new_rows")


@pytest.fixture
def shop(tmp_path):
    """A database with day 0's customers and model churn (version 1) trained on them."""
    con = mldb.connect(str(tmp_path / "shop.db"))
    con.register("day0", generated(0, 0))
    con.execute("CREATE TABLE customers AS SELECT * FROM day0")
    con.unregister("day0")
    con.execute("CREATE MODEL churn PREDICT churned FROM (SELECT age, plan, spend, churned FROM customers) "
                "USING logistic WITH (epochs = 20, seed = 1)")
    yield con
    con.close()


def rows(con, sql: str, params=None) -> list[tuple]:
    return con.execute(sql, params).fetchall()


def value(con, sql: str, params=None):
    return rows(con, sql, params)[0][0]


def created(con, name: str):
    return value(con, "SELECT created_at FROM mldb.monitors WHERE name = ?", [name])


def state_of(con) -> dict:
    """Everything a monitor's action may change (versions, deployments, lineage, alerts)."""
    return {table: rows(con, f"SELECT * EXCLUDE ({skip}) FROM mldb.{table} ORDER BY ALL" if skip else
                             f"SELECT * FROM mldb.{table} ORDER BY ALL")
            for table, skip in (("models", ""), ("model_versions", "weights"), ("deployments", ""),
                                ("lineage", ""), ("alerts", ""), ("training_log", ""))}


def shown(con, column: str) -> list:
    """One column of SHOW MONITORS, in name order (an mldb statement is no subquery)."""
    cursor = con.execute("SHOW MONITORS")
    names = [d[0] for d in cursor.description]
    return [row[names.index(column)] for row in cursor.fetchall()]


def error_of(con, sql: str) -> mldb.Error:
    with pytest.raises(mldb.Error) as caught:
        con.execute(sql).fetchall()
    return caught.value


# -- drift -> TRAIN ------------------------------------------------------------------------------
def test_drift_monitor_retrains_on_the_day_drift_arrives(shop):
    shop.execute(f"CREATE MONITOR churn_drift ON MODEL churn CHECK DRIFT ({TODAY}) EVERY INTERVAL 1 DAY "
                 "THEN TRAIN FROM (SELECT age, plan, spend, churned FROM customers)")
    start = created(shop, "churn_drift")
    outcomes = []
    for day in range(1, 5):
        add_day(shop, day, shift=15.0 if day >= 3 else 0.0)
        ran = runner.run_due(shop.session, now=start + day * DAY)
        assert len(ran) == 1 and ran[0]["scheduled"] and ran[0]["started_at"] == start + day * DAY
        outcomes.append((ran[0]["triggered"], ran[0]["action"], ran[0]["outcome"],
                         ran[0]["model_version_before"], ran[0]["model_version_after"]))
    assert outcomes[:3] == [(False, None, "ok", 1, 1), (False, None, "ok", 1, 1), (True, "train", "ok", 1, 2)]
    assert outcomes[3][0] is True and outcomes[3][3:] == (2, 3)  # (still drifted against version 2's day-0 data)
    values = json.loads(value(shop, "SELECT values FROM mldb.monitor_runs WHERE triggered ORDER BY id LIMIT 1"))
    assert values["drifted_features"] >= 1 and values["max_psi"] > 0.2 and values["rows"] == ROWS
    quiet = json.loads(value(shop, "SELECT values FROM mldb.monitor_runs ORDER BY id LIMIT 1"))
    assert quiet["drifted_features"] == 0 and quiet["max_psi"] < 0.2
    assert value(shop, "SELECT deployed_version FROM mldb.models WHERE name = 'churn'") == 3
    assert value(shop, "SELECT rows FROM mldb.model_versions WHERE model = 'churn' AND version = 2") == 4 * ROWS
    assert rows(shop, "SELECT source FROM mldb.lineage WHERE target = 'churn' AND target_version = 2 "
                      "AND kind = 'training'") == [("customers",)]


def test_drift_monitor_deploys_the_challenger_only_if_it_beats_the_champion(shop):
    """DEPLOY IF BETTER ON (holdout): TRAIN's deploy policy judges the new version against the serving one."""
    add_day(shop, 1, shift=15.0)  # drift with the same rule: labelled data a good model gets right
    add_day(shop, 2, shift=15.0, flip=True)  # the same customers with wrong labels: a model trained on them is bad
    holdout = "SELECT age, plan, spend, churned FROM customers WHERE day = 1"
    shop.execute(f"CREATE MONITOR loses ON MODEL churn CHECK DRIFT ({holdout}) THEN TRAIN FROM "
                 f"(SELECT age, plan, spend, churned FROM customers WHERE day = 2) DEPLOY IF BETTER ON ({holdout})")
    run = runner.run(shop.session, "loses")
    assert (run["triggered"], run["outcome"], run["model_version_before"], run["model_version_after"]) == (
        True, "ok", 1, 1)
    assert "trained version 2" in run["message"] and "version 1 stays deployed" in run["message"]
    assert rows(shop, "SELECT version, champion_version FROM mldb.deploy_decisions") == [(2, 1)]
    shop.execute("DEPLOY MODEL churn VERSION 2")  # the bad version serves (by hand): a good challenger wins
    shop.execute(f"CREATE MONITOR wins ON MODEL churn CHECK EVALUATE ({holdout}) WHEN accuracy < 0.8 THEN TRAIN FROM "
                 f"(SELECT age, plan, spend, churned FROM customers WHERE day <= 1) DEPLOY IF BETTER ON ({holdout})")
    run = runner.run(shop.session, "wins")
    assert (run["outcome"], run["model_version_before"], run["model_version_after"]) == ("ok", 2, 3)
    assert rows(shop, "SELECT version, champion_version FROM mldb.deploy_decisions ORDER BY version") == [
        (2, 1), (3, 2)]


def test_train_action_is_the_train_statement():
    monitor = store.Monitor(name="m", model="churn", check_kind="drift", check_query="SELECT 1", every=None,
                            condition="true", action="train", train_query="SELECT * FROM c WHERE plan = 'pro'",
                            holdout_query="SELECT * FROM h WHERE plan = 'pro'", paused=False, disabled=False,
                            disabled_reason=None, next_run_at=None, created_at=None)
    assert actions.train_sql(monitor) == (
        "TRAIN \"churn\" FROM (SELECT * FROM c WHERE plan = 'pro') "
        "WITH (deploy = 'if_better', holdout = 'SELECT * FROM h WHERE plan = ''pro''')")


# -- quality -> ROLLBACK ---------------------------------------------------------------------------
def test_quality_monitor_rolls_back_a_bad_deploy(shop):
    add_day(shop, 1, flip=True)  # labels that say the opposite: a model trained on them is bad
    shop.execute("TRAIN churn FROM (SELECT age, plan, spend, churned FROM customers WHERE day = 1)")
    assert value(shop, "SELECT deployed_version FROM mldb.models WHERE name = 'churn'") == 2
    shop.execute("CREATE MONITOR churn_quality ON MODEL churn "
                 "CHECK EVALUATE (SELECT age, plan, spend, churned FROM customers WHERE day = 0) "
                 "WHEN accuracy < 0.8 THEN ROLLBACK")
    run = rows(shop, "RUN MONITOR churn_quality")
    assert len(run) == 1
    first = dict(zip([d[0] for d in shop.execute("SELECT * FROM mldb.monitor_runs").description], run[0]))
    assert (first["triggered"], first["action"], first["outcome"]) == (True, "rollback", "ok")
    assert (first["model_version_before"], first["model_version_after"], first["scheduled"]) == (2, 1, False)
    assert json.loads(first["values"])["accuracy"] < 0.8
    assert value(shop, "SELECT deployed_version FROM mldb.models WHERE name = 'churn'") == 1
    assert rows(shop, "SELECT version, previous_version, reason FROM mldb.deployments ORDER BY rowid DESC "
                      "LIMIT 1") == [(1, 2, "rollback")]
    again = runner.run(shop.session, "churn_quality")  # version 1 is good: nothing to do
    assert again["triggered"] is False and again["outcome"] == "ok" and again["model_version_after"] == 1
    assert json.loads(again["values"])["accuracy"] > 0.8


def test_a_check_after_a_rollback_in_the_same_session_sees_the_version_put_back(shop):
    """mldb serve / mldb monitor call the runner directly, not through RUN MONITOR: a rollback still moves the
    catalog, so the next monitor's EVALUATE (the same query text, a cached plan) scores the version put back."""
    add_day(shop, 1, flip=True)
    shop.execute("TRAIN churn FROM (SELECT age, plan, spend, churned FROM customers WHERE day = 1)")
    check = "CHECK EVALUATE (SELECT age, plan, spend, churned FROM customers WHERE day = 0)"
    shop.execute(f"CREATE MONITOR back ON MODEL churn {check} WHEN accuracy < 0.8 THEN ROLLBACK")
    shop.execute(f"CREATE MONITOR quality ON MODEL churn {check} WHEN accuracy < 0.8 THEN ALERT")
    bad = json.loads(runner.run(shop.session, "back")["values"])["accuracy"]
    after = runner.run(shop.session, "quality")
    good = value(shop, "SELECT accuracy FROM EVALUATE('churn@1', (SELECT age, plan, spend, churned FROM customers "
                       "WHERE day = 0))")
    assert (after["model_version_before"], after["triggered"]) == (1, False)
    assert json.loads(after["values"])["accuracy"] == pytest.approx(good) and good > 0.8 > bad


def test_rollback_with_nothing_to_roll_back_to_is_skipped(shop):
    shop.execute("CREATE MONITOR q ON MODEL churn CHECK EVALUATE (SELECT age, plan, spend, churned FROM customers) "
                 "WHEN accuracy < 1.01 THEN ROLLBACK")
    before = state_of(shop)
    run = runner.run(shop.session, "q")
    assert (run["triggered"], run["outcome"]) == (True, "skipped")
    assert "nothing to roll back to" in run["message"]
    assert state_of(shop) == before


# -- ALERT --------------------------------------------------------------------------------------------
def test_alert_monitor_writes_alerts_until_acknowledged(shop):
    shop.execute(f"CREATE MONITOR churn_alert ON MODEL churn CHECK DRIFT ({TODAY}) WHEN max_psi > 0.2 THEN ALERT")
    add_day(shop, 1, shift=20.0)
    run = runner.run(shop.session, "churn_alert")
    assert (run["triggered"], run["action"], run["outcome"]) == (True, "alert", "ok")
    (alert_id, monitor, model, message, values, acknowledged), = rows(
        shop, "SELECT id, monitor, model, message, values, acknowledged FROM mldb.alerts")
    assert (monitor, model, acknowledged) == ("churn_alert", "churn", False)
    assert "max_psi > 0.2" in message and json.loads(values)["max_psi"] > 0.2
    assert f"alert {alert_id}" in run["message"]
    assert shown(shop, "open_alerts") == [1]
    shop.execute(f"ACKNOWLEDGE ALERT {alert_id}")
    assert rows(shop, "SELECT acknowledged, acknowledged_at IS NOT NULL FROM mldb.alerts") == [(True, True)]
    assert shown(shop, "open_alerts") == [0]
    assert error_of(shop, f"ACKNOWLEDGE ALERT {alert_id + 10}").sqlstate == "42704"


# -- schedules ------------------------------------------------------------------------------------------
def test_schedules_fire_at_the_simulated_times_and_not_twice(shop):
    check, act = "CHECK EVALUATE (SELECT age, plan, spend, churned FROM customers)", "WHEN rows > 0 THEN ALERT"
    shop.execute(f"CREATE MONITOR hourly ON MODEL churn {check} EVERY INTERVAL 1 HOUR {act}")
    shop.execute(f"CREATE MONITOR b_daily ON MODEL churn {check} EVERY INTERVAL '1 day' {act}")
    shop.execute(f"CREATE MONITOR by_hand ON MODEL churn {check} {act}")
    start = created(shop, "hourly")
    session = shop.session
    hour = timedelta(hours=1)
    assert value(shop, "SELECT next_run_at FROM mldb.monitors WHERE name = 'hourly'") == start + hour
    assert runner.run_due(session, now=start + hour - timedelta(seconds=1)) == []
    assert [r["monitor"] for r in runner.run_due(session, now=start + hour)] == ["hourly"]
    assert runner.run_due(session, now=start + hour + timedelta(minutes=1)) == []  # not twice
    assert value(shop, "SELECT next_run_at FROM mldb.monitors WHERE name = 'hourly'") == start + 2 * hour
    # 23 hourly slots and the daily one were missed: each monitor runs once
    late = created(shop, "b_daily") + timedelta(hours=25, minutes=30)
    assert [r["monitor"] for r in runner.run_due(session, now=late)] == ["b_daily", "hourly"]
    assert value(shop, "SELECT next_run_at FROM mldb.monitors WHERE name = 'hourly'") == start + 26 * hour
    b_daily_next = value(shop, "SELECT next_run_at FROM mldb.monitors WHERE name = 'b_daily'")
    assert b_daily_next == created(shop, "b_daily") + 2 * DAY
    assert runner.run_due(session, now=late) == []
    assert value(shop, "SELECT count(*) FROM mldb.monitor_runs WHERE monitor = 'by_hand'") == 0
    assert rows(shop, "SELECT monitor, count(*) FROM mldb.monitor_runs GROUP BY ALL ORDER BY ALL") == [
        ("b_daily", 1), ("hourly", 2)]


def test_pause_stops_scheduled_runs_and_resume_restarts_them(shop):
    shop.execute("CREATE MONITOR m ON MODEL churn CHECK EVALUATE (SELECT age, plan, spend, churned FROM customers) "
                 "EVERY INTERVAL 1 HOUR WHEN accuracy < 0 THEN ALERT")
    start, hour = created(shop, "m"), timedelta(hours=1)
    shop.execute("ALTER MONITOR m PAUSE")
    assert shown(shop, "status") == ["paused"]
    assert runner.run_due(shop.session, now=start + 3 * hour) == []
    by_hand = runner.run(shop.session, "m")  # RUN MONITOR still runs a paused monitor
    assert by_hand["outcome"] == "ok" and by_hand["triggered"] is False and by_hand["scheduled"] is False
    shop.execute("ALTER MONITOR m RESUME")
    assert shown(shop, "status") == ["active"]
    resumed = runner.run_due(shop.session, now=start + 4 * hour + timedelta(minutes=5))
    assert len(resumed) == 1 and resumed[0]["scheduled"]
    assert value(shop, "SELECT next_run_at FROM mldb.monitors") == start + 5 * hour


# -- safety ----------------------------------------------------------------------------------------------
def test_failing_action_records_an_error_and_changes_nothing(shop):
    shop.execute("CREATE TABLE extra AS SELECT age, plan, spend, churned FROM customers")
    shop.execute(f"CREATE MONITOR m ON MODEL churn CHECK DRIFT ({TODAY}) EVERY INTERVAL 1 DAY "
                 "THEN TRAIN FROM (SELECT * FROM extra)")
    shop.execute("DROP TABLE extra")
    add_day(shop, 1, shift=20.0)
    before = state_of(shop)
    start = created(shop, "m")
    run, = runner.run_due(shop.session, now=start + DAY)
    assert (run["triggered"], run["action"], run["outcome"]) == (True, "train", "error")
    assert "extra" in run["message"] and json.loads(run["values"])["drifted_features"] >= 1
    assert (run["model_version_before"], run["model_version_after"]) == (1, 1)
    assert state_of(shop) == before
    assert value(shop, "SELECT next_run_at FROM mldb.monitors") == start + 2 * DAY  # an error is no crash loop
    assert runner.run_due(shop.session, now=start + DAY) == []


def test_failing_check_records_an_error_and_changes_nothing(shop):
    shop.execute("CREATE TABLE recent AS SELECT age, plan, spend, churned FROM customers")
    shop.execute("CREATE MONITOR m ON MODEL churn CHECK EVALUATE (SELECT * FROM recent) WHEN accuracy < 2 "
                 "THEN ALERT")
    shop.execute("DROP TABLE recent")
    before = state_of(shop)
    run = rows(shop, "RUN MONITOR m")[0]
    columns = [d[0] for d in shop.execute("SELECT * FROM mldb.monitor_runs").description]
    run = dict(zip(columns, run))
    assert run["outcome"] == "error" and "recent" in run["message"] and run["values"] is None
    assert state_of(shop) == before


def test_monitor_of_a_dropped_model_is_disabled_with_an_alert(shop):
    shop.execute(f"CREATE MONITOR m ON MODEL churn CHECK DRIFT ({TODAY}) EVERY INTERVAL 1 DAY THEN ALERT")
    start = created(shop, "m")
    shop.execute("DROP MODEL churn")
    assert shown(shop, "status") == ["model missing"]  # (disabled when it next runs)
    run, = runner.run_due(shop.session, now=start + DAY)
    assert (run["outcome"], run["action"]) == ("skipped", "disable") and "no longer exists" in run["message"]
    assert value(shop, "SELECT disabled FROM mldb.monitors") is True and shown(shop, "status") == ["disabled"]
    assert rows(shop, "SELECT monitor, acknowledged FROM mldb.alerts") == [("m", False)]
    assert runner.run_due(shop.session, now=start + 5 * DAY) == []  # disabled: no run, no new alert
    assert runner.run(shop.session, "m")["outcome"] == "skipped"
    assert value(shop, "SELECT count(*) FROM mldb.alerts") == 1
    assert error_of(shop, "ALTER MONITOR m RESUME").sqlstate == "42704"  # the model is still gone
    shop.execute("CREATE MODEL churn PREDICT churned FROM (SELECT age, plan, spend, churned FROM customers) "
                 "USING logistic WITH (epochs = 5)")
    shop.execute("ALTER MONITOR m RESUME")
    assert shown(shop, "status") == ["active"]
    assert runner.run(shop.session, "m")["outcome"] == "ok"


class Gate:
    """Holds the first TRAIN epoch of this process until released: a monitor's TRAIN that is surely
    under way while the test does something else (the epoch itself is the real one)."""

    def __init__(self, monkeypatch):
        from mldb.models import train

        self.started, self.release = threading.Event(), threading.Event()
        epoch = train._epoch

        def gated(*args, **kwargs):
            self.started.set()
            if not self.release.wait(120):
                raise RuntimeError("test safety stop: the gate was never released")
            return epoch(*args, **kwargs)

        monkeypatch.setattr(train, "_epoch", gated)


def in_thread(run) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = run()
        except BaseException as error:  # noqa: BLE001 - the test looks at it
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_concurrent_run_monitor_runs_it_once(shop, tmp_path, monkeypatch):
    shop.execute("CREATE MONITOR m ON MODEL churn CHECK EVALUATE (SELECT age, plan, spend, churned FROM customers) "
                 "EVERY INTERVAL 1 HOUR WHEN rows > 0 THEN TRAIN")
    shop.execute("CREATE MONITOR same_model ON MODEL churn CHECK EVALUATE customers WHEN rows > 0 THEN ALERT")
    gate = Gate(monkeypatch)
    first_con, second_con = mldb.connect(str(tmp_path / "shop.db")), mldb.connect(str(tmp_path / "shop.db"))
    try:
        thread, first = in_thread(lambda: first_con.execute("RUN MONITOR m").fetchall())
        assert gate.started.wait(120), "the first run's TRAIN never started"
        second = second_con.execute("RUN MONITOR m").fetchall()
        other = runner.run(second_con.session, "same_model")  # one run per model at a time
        due = runner.run_due(second_con.session, now=created(second_con, "m") + timedelta(hours=2))
        gate.release.set()
        thread.join(120)
    finally:
        gate.release.set()
        first_con.close()
        second_con.close()
    assert "error" not in first, first.get("error")
    outcome = 8  # (column of outcome in mldb.monitor_runs)
    assert first["value"][0][outcome] == "ok" and second[0][outcome] == "skipped"
    assert "already running" in second[0][9]
    assert other["outcome"] == "skipped" and other["message"] == "monitor m of model churn is running"
    assert due == []  # passed over while it runs: still due
    next_run = value(shop, "SELECT next_run_at FROM mldb.monitors WHERE name = 'm'")
    assert next_run == created(shop, "m") + timedelta(hours=1)
    assert rows(shop, "SELECT outcome, count(*) FROM mldb.monitor_runs GROUP BY ALL ORDER BY ALL") == [
        ("ok", 1), ("skipped", 2)]
    assert value(shop, "SELECT count(*) FROM mldb.alerts") == 0
    assert value(shop, "SELECT latest_version FROM mldb.models") == 2  # trained once


def test_cancel_reaches_a_monitors_train(shop, monkeypatch):
    shop.execute("CREATE MONITOR m ON MODEL churn CHECK EVALUATE (SELECT age, plan, spend, churned FROM customers) "
                 "WHEN rows > 0 THEN TRAIN")
    before = state_of(shop)
    gate = Gate(monkeypatch)
    thread, outcome = in_thread(lambda: shop.execute("RUN MONITOR m").fetchall())
    assert gate.started.wait(120), "the monitor's TRAIN never started"
    shop.interrupt()
    gate.release.set()
    thread.join(120)
    assert isinstance(outcome.get("error"), mldb.OperationalError) and outcome["error"].sqlstate == "57014"
    assert rows(shop, "SELECT outcome, triggered, action, message FROM mldb.monitor_runs") == [
        ("error", True, "train", "canceling statement due to user request")]
    assert state_of(shop) == before


KILLED_MID_TRAIN = """
import sys, threading
import mldb
from mldb.models import train

def stuck(*args, **kwargs):  # the monitor's TRAIN is under way: say so, then wait for the kill
    open(sys.argv[2], "w").close()
    threading.Event().wait()

train._epoch = stuck
mldb.connect(sys.argv[1]).execute("RUN MONITOR m").fetchall()
"""


def test_kill_9_in_a_monitors_train_leaves_the_last_committed_state(shop, tmp_path):
    shop.execute("CREATE MONITOR m ON MODEL churn CHECK EVALUATE (SELECT age, plan, spend, churned FROM customers) "
                 "WHEN rows > 0 THEN TRAIN")
    before = state_of(shop)
    shop.close()  # (one process writes a DuckDB file at a time)
    marker, path = tmp_path / "training", str(tmp_path / "shop.db")
    env = {**os.environ, "PYTHONPATH": str(Path(mldb.__file__).resolve().parent.parent)}
    child = subprocess.Popen([sys.executable, "-c", KILLED_MID_TRAIN, path, str(marker)], env=env)
    try:
        for _ in range(1200):  # (at most 2 minutes for the child to import mldb and start training)
            if marker.exists():
                break
            try:
                child.wait(timeout=0.1)
                break  # it ended by itself: failed below
            except subprocess.TimeoutExpired:
                pass
        assert marker.exists(), f"the monitor's TRAIN never started (exit code {child.poll()})"
    finally:
        child.kill()  # SIGKILL: no cleanup of any kind
        child.wait()
    con = mldb.connect(path)
    try:
        assert state_of(con) == before
        assert rows(con, "SELECT count(*) FROM mldb.monitor_runs") == [(0,)]
        assert rows(con, "SELECT name FROM mldb.monitors") == [("m",)]
        assert runner.run(con.session, "m")["outcome"] == "ok"  # no lock or claim survived the kill
    finally:
        con.close()


def test_run_monitor_is_refused_inside_a_transaction(shop):
    shop.execute("CREATE MONITOR m ON MODEL churn CHECK DRIFT (SELECT * FROM customers) THEN ALERT")
    shop.execute("BEGIN")
    assert error_of(shop, "RUN MONITOR m").sqlstate == "25001"
    shop.execute("ROLLBACK")
    assert value(shop, "SELECT count(*) FROM mldb.monitor_runs") == 0


# -- SHOW / DROP / CREATE variants --------------------------------------------------------------------
def test_show_monitors_and_drop(shop):
    shop.execute(f"CREATE MONITOR churn_drift ON MODEL churn CHECK DRIFT ({TODAY}) EVERY INTERVAL 2 HOUR "
                 "THEN TRAIN FROM (SELECT age, plan, spend, churned FROM customers) "
                 "DEPLOY IF BETTER ON (SELECT age, plan, spend, churned FROM customers WHERE day = 0)")
    shop.execute("CREATE MONITOR a ON MODEL churn CHECK EVALUATE customers WHEN f1 < 0.5 OR roc_auc < 0.6 "
                 "THEN ALERT")
    cursor = shop.execute("SHOW MONITORS")
    assert [d[0] for d in cursor.description] == ["name", "model", "check", "every", "condition", "action", "status",
                                                  "next_run_at", "last_run_at", "last_outcome", "open_alerts",
                                                  "created_at"]
    listed = cursor.fetchall()
    assert [row[:7] for row in listed] == [
        ("a", "churn", "evaluate", None, "f1 < 0.5 OR roc_auc < 0.6", "alert", "active"),
        ("churn_drift", "churn", "drift", timedelta(hours=2), "drifted_features >= 1", "train", "active")]
    assert listed[0][7] is None and listed[1][7] == listed[1][11] + timedelta(hours=2)
    runner.run(shop.session, "a")
    assert shown(shop, "last_outcome") == ["ok", None]
    assert rows(shop, "SELECT holdout_query, train_query FROM mldb.monitors WHERE name = 'churn_drift'") == [
        ("SELECT age, plan, spend, churned FROM customers WHERE day = 0",
         "SELECT age, plan, spend, churned FROM customers")]
    shop.execute("DROP MONITOR a")
    shop.execute("DROP MONITOR IF EXISTS a")
    assert [row[0] for row in rows(shop, "SHOW MONITORS")] == ["churn_drift"]
    assert value(shop, "SELECT count(*) FROM mldb.monitor_runs WHERE monitor = 'a'") == 1  # history stays


def test_create_or_replace_and_if_not_exists(shop):
    check = "CHECK EVALUATE (SELECT age, plan, spend, churned FROM customers)"
    shop.execute(f"CREATE MONITOR m ON MODEL churn {check} WHEN accuracy < 0.5 THEN ALERT")
    shop.execute(f"CREATE MONITOR IF NOT EXISTS m ON MODEL churn {check} WHEN accuracy < 0.9 THEN ROLLBACK")
    assert rows(shop, "SELECT condition, action FROM mldb.monitors") == [("accuracy < 0.5", "alert")]
    shop.execute(f"CREATE OR REPLACE MONITOR m ON MODEL churn {check} WHEN accuracy < 0.9 THEN ROLLBACK")
    assert rows(shop, "SELECT condition, action FROM mldb.monitors") == [("accuracy < 0.9", "rollback")]


# -- bad input: a typed error, and nothing written --------------------------------------------------------
EVALUATE = "CHECK EVALUATE (SELECT age, plan, spend, churned FROM customers)"
BAD = [
    (f"CREATE MONITOR m ON MODEL nope {EVALUATE} WHEN accuracy < 0.9 THEN ALERT", "42704", "model 'nope' does not"),
    ("CREATE MONITOR m ON MODEL churn CHECK DRIFT (SELECT * FROM missing_table) THEN ALERT", "42P01",
     "missing_table"),
    (f"CREATE MONITOR m ON MODEL churn {EVALUATE} WHEN accurcy < 0.9 THEN ALERT", "42703",
     "accurcy; a CHECK EVALUATE has the values accuracy, precision, recall, f1, roc_auc, log_loss, rows"),
    ("CREATE MONITOR m ON MODEL churn CHECK DRIFT (SELECT * FROM customers) WHEN accuracy < 0.9 THEN ALERT",
     "42703", "drifted_features, max_psi, max_ks, prediction_psi, rows"),
    (f"CREATE MONITOR m ON MODEL churn {EVALUATE} THEN ALERT", "42601", "needs a WHEN condition"),
    (f"CREATE MONITOR m ON MODEL churn {EVALUATE} EVERY INTERVAL 0 HOUR WHEN f1 < 1 THEN ALERT", "22023",
     "positive interval"),
    (f"CREATE MONITOR m ON MODEL churn {EVALUATE} EVERY INTERVAL '-2 hours' WHEN f1 < 1 THEN ALERT", "22023",
     "positive interval"),
    (f"CREATE MONITOR m ON MODEL churn {EVALUATE} WHEN f1 THEN ALERT", "42804", "boolean"),
    (f"CREATE MONITOR m ON MODEL churn {EVALUATE} WHEN f1 < 1 THEN TRAIN FROM (SELECT age FROM customers)", "42703",
     "needs column churned"),
    ("CREATE MONITOR m ON MODEL churn CHECK DRIFT (SELECT plan FROM customers) THEN ALERT", "42703",
     "needs columns age, spend"),
    (f"CREATE MONITOR m ON MODEL churn {EVALUATE} WHEN f1 < 1 THEN TRAIN DEPLOY IF BETTER ON (SELECT age, plan "
     f"FROM customers)", "42703", "DEPLOY IF BETTER ON"),
    ("CREATE MONITOR m ON MODEL churn CHECK EVALUATE (SELECT age, plan FROM customers) WHEN f1 < 1 THEN ALERT",
     "42703", "churned"),
    (f"CREATE MONITOR m ON MODEL churn CHECK FOO (SELECT 1) THEN ALERT", "42601", "DRIFT or EVALUATE"),
    (f"CREATE MONITOR m ON MODEL churn {EVALUATE} WHEN f1 < 1", "42601", "THEN"),
    (f"CREATE MONITOR m ON MODEL churn {EVALUATE} WHEN f1 < 1 THEN EXPLODE", "42601", "TRAIN, ROLLBACK or ALERT"),
    (f"CREATE MONITOR m ON MODEL churn {EVALUATE} EVERY 5 WHEN f1 < 1 THEN ALERT", "42601", "INTERVAL"),
    ("CREATE MONITOR m CHECK DRIFT (SELECT 1) THEN ALERT", "42601", "ON MODEL"),
    ("ALTER MONITOR m STOP", "42601", "PAUSE or RESUME"),
    ("ALTER MONITOR nope PAUSE", "42704", "monitor 'nope' does not exist"),
    ("RUN MONITOR nope", "42704", "monitor 'nope' does not exist"),
    ("DROP MONITOR nope", "42704", "monitor 'nope' does not exist"),
    ("ACKNOWLEDGE ALERT 5", "42704", "alert 5 does not exist"),
    ("ACKNOWLEDGE ALERT x", "42601", "alert id"),
]


@pytest.mark.parametrize("sql, sqlstate, message", BAD, ids=[f"{i}-{case[1]}" for i, case in enumerate(BAD)])
def test_bad_input_is_a_typed_error_that_writes_nothing(shop, sql, sqlstate, message):
    before = (state_of(shop), rows(shop, "SELECT * FROM mldb.monitors"), rows(shop, "SELECT * FROM mldb.monitor_runs"))
    error = error_of(shop, sql)
    assert error.sqlstate == sqlstate, error
    assert message in str(error)
    after = (state_of(shop), rows(shop, "SELECT * FROM mldb.monitors"), rows(shop, "SELECT * FROM mldb.monitor_runs"))
    assert after == before


def test_duplicate_monitor_is_refused(shop):
    shop.execute(f"CREATE MONITOR m ON MODEL churn {EVALUATE} WHEN f1 < 0 THEN ALERT")
    error = error_of(shop, f"CREATE MONITOR m ON MODEL churn {EVALUATE} WHEN f1 < 1 THEN ROLLBACK")
    assert error.sqlstate == "42710" and "CREATE OR REPLACE MONITOR" in str(error)
    assert rows(shop, "SELECT condition FROM mldb.monitors") == [("f1 < 0",)]


# -- grammar -----------------------------------------------------------------------------------------------
ROUND_TRIPS = [
    "CREATE MONITOR churn_drift ON MODEL churn CHECK DRIFT (SELECT * FROM customers WHERE seen > NOW() - "
    "INTERVAL '7' DAY) EVERY INTERVAL '1' HOUR WHEN drifted_features >= 1 THEN TRAIN FROM (SELECT * FROM customers) "
    "DEPLOY IF BETTER ON (SELECT * FROM labelled_recent)",
    "CREATE OR REPLACE MONITOR IF NOT EXISTS q ON MODEL churn CHECK EVALUATE (SELECT * FROM l) "
    "EVERY INTERVAL '1 day' WHEN accuracy < 0.9 AND NOT rows < 10 THEN ROLLBACK",
    "CREATE MONITOR a ON MODEL churn CHECK DRIFT new_rows THEN ALERT",
    "RUN MONITOR a", "SHOW MONITORS", "ALTER MONITOR a PAUSE", "ALTER MONITOR a RESUME", "DROP MONITOR a",
    "DROP MONITOR IF EXISTS a", "ACKNOWLEDGE ALERT 3",
]


@pytest.mark.parametrize("sql", ROUND_TRIPS)
def test_grammar_round_trips(sql):
    tree = parse(split_statements(sql)[0])
    written = tree.sql(dialect=MLDB)
    again = parse(split_statements(written)[0])
    assert type(again) is type(tree) and again == tree and again.sql(dialect=MLDB) == written
    assert written.split()[:2] == sql.split()[:2]


def test_words_of_monitors_stay_plain_sql_elsewhere(shop):
    shop.execute("CREATE TABLE monitor (run INTEGER, alert VARCHAR)")
    shop.execute("INSERT INTO monitor VALUES (1, 'x')")
    assert rows(shop, "SELECT run, alert FROM monitor") == [(1, "x")]
