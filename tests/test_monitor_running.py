"""Running monitors: ``mldb monitor DB`` over simulated days (``--now``), its exit codes and its
loop, ``mldb serve``'s monitor thread with real clients, and kill -9 in the middle of a
monitor's TRAIN. Real database files, real trained models, real subprocesses.

Schedules are tested with the controllable clock (``--now``), never by sleeping; subprocesses
are watched (their output, the epochs they train) with generous timeouts and no bound on speed.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys

import psycopg
import pytest

import mldb
from mldb.cli import main
from conftest_server import ROOT, start_server
from test_cancel import Probe, wait_until

LIMIT = 180  # seconds a subprocess may take to reach a point the test waits for (a failure after that)
LATER = "2030-01-01 12:00"  # a simulated time long after the monitors were created (every one is due)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def build_shop(path, rows: int = 300) -> None:
    """Customers, model churn trained on them (version 1, deployed)."""
    with mldb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE customers AS SELECT range AS id, (range % 60)::DOUBLE AS age, "
                    f"range % 3 = 0 OR range % 60 < 10 AS churned FROM range({rows})")
        con.execute("CREATE MODEL churn PREDICT churned FROM (SELECT age, churned FROM customers) "
                    "USING logistic WITH (epochs = 3, seed = 1)")


@pytest.fixture
def shop(tmp_path):
    path = tmp_path / "shop.db"
    build_shop(path)
    return path


def run_monitor(capsys, path, *args: str) -> tuple[int, list[str]]:
    """``mldb monitor PATH ARGS`` in this process: its exit status and the lines it printed."""
    capsys.readouterr()
    code = main(["monitor", str(path), *args])
    return code, capsys.readouterr().out.splitlines()


def runs(path, monitor: str) -> list[tuple]:
    with mldb.connect(str(path)) as con:
        return con.execute("SELECT started_at, scheduled, triggered, action, outcome FROM mldb.monitor_runs "
                           "WHERE monitor = ? ORDER BY id", [monitor]).fetchall()


def committed_state(path) -> dict:
    """What a killed or interrupted run must leave exactly as it was."""
    with mldb.connect(str(path)) as con:
        def rows(sql):
            return con.execute(sql).fetchall()
        return {"versions": rows("SELECT model, version, rows, fingerprint FROM mldb.model_versions ORDER BY ALL"),
                "deployed": rows("SELECT name, deployed_version, latest_version FROM mldb.models ORDER BY name"),
                "deployments": rows("SELECT model, version, previous_version, reason FROM mldb.deployments "
                                    "ORDER BY ALL"),
                "runs": rows("SELECT id, monitor, started_at, triggered, action, outcome, model_version_before, "
                             "model_version_after FROM mldb.monitor_runs ORDER BY id"),
                "monitors": rows("SELECT name, next_run_at, paused, disabled FROM mldb.monitors ORDER BY name"),
                "alerts": rows("SELECT id, monitor, message FROM mldb.alerts ORDER BY id")}


def monitor_process(path, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mldb.cli", "monitor", str(path), *args], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


# -- mldb monitor --once over simulated days -----------------------------------------------------

def schedule_start(path) -> datetime.datetime:
    """The first time every monitor of the file is due (created_at + every), to the next whole second."""
    with mldb.connect(str(path)) as con:
        first = con.execute("SELECT max(created_at + every) FROM mldb.monitors").fetchall()[0][0]
    return first.replace(microsecond=0) + datetime.timedelta(seconds=1)


def when(moment: datetime.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}"


def test_a_daily_monitor_fires_once_a_day_at_the_simulated_times(shop, capsys):
    with mldb.connect(str(shop)) as con:
        con.execute("CREATE MONITOR quality ON MODEL churn CHECK EVALUATE (SELECT age, churned FROM customers) "
                    "EVERY INTERVAL 1 DAY WHEN accuracy <= 1 THEN ALERT")
    start, day, hour, minute = schedule_start(shop), *(datetime.timedelta(**{unit: 1}) for unit in
                                                       ("days", "hours", "minutes"))
    assert run_monitor(capsys, shop, "--once", "--now", when(start - minute)) == (0, [])  # not due yet
    code, lines = run_monitor(capsys, shop, "--once", "--now", when(start))
    assert code == 0 and len(lines) == 1, lines
    assert lines[0].startswith(f"{when(start)} quality on churn: ok, action alert, version 1")
    for now in (start, start + 30 * minute, start + day - minute):  # not due again within the day
        assert run_monitor(capsys, shop, "--once", "--now", when(now)) == (0, [])
    fired = [start]
    for now, runs_now in [(start + day + minute, 1), (start + day + 6 * hour, 0),
                          (start + 5 * day + 3 * hour, 1),  # days missed: one run, not one per missed day
                          (start + 5 * day + 23 * hour, 0), (start + 6 * day, 1)]:
        code, lines = run_monitor(capsys, shop, "--once", "--now", when(now))
        assert code == 0 and [line[:30] for line in lines] == [f"{when(now)} quality on"] * runs_now, (now, lines)
        fired += [now] * runs_now
    assert runs(shop, "quality") == [(moment, True, True, "alert", "ok") for moment in fired]
    with mldb.connect(str(shop)) as con:
        assert con.execute("SELECT count(*) FROM mldb.alerts WHERE monitor = 'quality'").fetchall() == [(4,)]


def test_monitors_run_in_turn_and_a_failing_one_is_a_recorded_run_not_a_failed_command(shop, capsys):
    with mldb.connect(str(shop)) as con:
        con.execute("CREATE TABLE recent AS SELECT age, churned FROM customers")
        con.execute("CREATE MONITOR fine ON MODEL churn CHECK EVALUATE (SELECT * FROM customers) "
                    "EVERY INTERVAL 1 HOUR WHEN accuracy < 0 THEN ALERT")
        con.execute("CREATE MONITOR broken ON MODEL churn CHECK EVALUATE (SELECT * FROM recent) "
                    "EVERY INTERVAL 1 HOUR WHEN accuracy < 0 THEN ALERT")
        con.execute("DROP TABLE recent")
    start, minute = schedule_start(shop), datetime.timedelta(minutes=1)
    code, lines = run_monitor(capsys, shop, "--once", "--now", when(start))
    assert code == 0
    described = {line.split()[2]: line for line in lines}
    assert list(described) == ["broken", "fine"]  # in name order
    assert "fine on churn: ok, not triggered, version 1" in described["fine"]
    assert "broken on churn: error, version 1, Catalog Error: Table with name recent does not exist!" in \
        described["broken"]
    assert [row[-1] for row in runs(shop, "broken")] == ["error"]
    assert run_monitor(capsys, shop, "--once", "--now", when(start + 58 * minute)) == (0, [])
    code, lines = run_monitor(capsys, shop, "--once", "--now", when(start + 60 * minute))
    assert code == 0 and len(lines) == 2


# -- exit codes, bad arguments ---------------------------------------------------------------------

def test_the_command_fails_only_when_the_database_cannot_be_opened(tmp_path, shop):
    missing = tmp_path / "missing.db"
    process = monitor_process(missing, "--once")
    out, err = process.communicate(timeout=LIMIT)
    assert process.returncode == 1 and out == ""
    assert "cannot open" in err and "no such database file" in err and not missing.exists()
    text = tmp_path / "notes.txt"
    text.write_text("SELECT 1;\n")
    process = monitor_process(text, "--once")
    out, err = process.communicate(timeout=LIMIT)
    assert process.returncode == 1 and "is not a DuckDB database" in err
    with mldb.connect(str(shop)):  # this process holds the file: another cannot open it (as with mldb serve)
        process = monitor_process(shop, "--once")
        out, err = process.communicate(timeout=LIMIT)
    assert process.returncode == 1 and f"cannot open {shop}" in err
    process = monitor_process(shop, "--once")  # nothing due in the real present: quiet success
    out, err = process.communicate(timeout=LIMIT)
    assert (process.returncode, out) == (0, ""), err


@pytest.mark.parametrize("args, message", [
    (["--now", "2027-01-01 12:00"], "--now needs --once"),
    (["--once", "--now", "tomorrow"], "a local time as 'YYYY-MM-DD HH:MM[:SS]'"),
    (["--once", "--now", "2027-01-01T12:00+02:00"], "without a time zone"),
    (["--interval", "0"], "a positive number of seconds"),
])
def test_bad_arguments_are_refused_before_the_database_is_opened(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit:
        main(["monitor", str(tmp_path / "never.db"), *args])
    assert exit.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "never.db").exists()


# -- the loop: every --interval seconds until SIGINT / SIGTERM ----------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_loop_runs_what_is_due_and_a_signal_ends_it_cleanly(shop, tmp_path, signum):
    with mldb.connect(str(shop)) as con:  # due a second after it was created, then every second
        con.execute("CREATE MONITOR quality ON MODEL churn CHECK EVALUATE (SELECT age, churned FROM customers) "
                    "EVERY INTERVAL 1 SECOND WHEN accuracy <= 1 THEN ALERT")
    output = tmp_path / "out.txt"
    with open(output, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "mldb.cli", "monitor", str(shop), "--interval", "0.2"],
                                   cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: "quality on churn: ok, action alert" in output.read_text(), "the first run", LIMIT)
        process.send_signal(signum)
        assert process.wait(timeout=LIMIT) == 0, output.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    printed = output.read_text()
    assert "Traceback" not in printed
    recorded = runs(shop, "quality")  # each run printed once, as it was recorded
    done = [row for row in recorded if row[-1] == "ok"]
    assert printed.count("quality on churn: ok, action alert") == len(done) >= 1
    assert {row[1:] for row in done} == {(True, True, "alert", "ok")}
    interrupted = recorded[len(done):]  # the signal may come during a run: it is cancelled, recorded, logged
    assert recorded[:len(done)] == done and len(interrupted) <= 1
    assert all(row[-1] == "error" for row in interrupted)
    assert ("the run in progress was interrupted" in printed) == bool(interrupted)
    assert printed.count("quality on churn: error") == len(interrupted)  # the interrupted run is reported too


# -- mldb serve: the monitor thread ----------------------------------------------------------------

def test_serve_runs_a_due_monitor_while_a_client_is_connected_and_stops_cleanly(tmp_path):
    build_shop(tmp_path / "shop.db")
    with mldb.connect(str(tmp_path / "shop.db")) as con:  # due a second after it was created, then every second
        con.execute("CREATE MONITOR quality ON MODEL churn CHECK EVALUATE (SELECT age, churned FROM customers) "
                    "EVERY INTERVAL 1 SECOND WHEN accuracy <= 1 THEN ALERT")
    served = start_server(tmp_path, "--monitor-interval", "0.2")
    try:
        with psycopg.connect(served.dsn(), autocommit=True) as client:
            def ran():
                return client.execute("SELECT monitor, scheduled, action, outcome FROM mldb.monitor_runs").fetchall()
            wait_until(ran, "the monitor's run", LIMIT)
            assert ran()[0] == ("quality", True, "alert", "ok")
            assert client.execute("SELECT count(*) >= 1 FROM mldb.alerts").fetchall() == [(True,)]
        assert served.stop() == 0
    finally:
        if served.process.poll() is None:
            served.process.kill()
    assert "mldb serve: stopped" in served.log and "Traceback" not in served.log
    assert "monitor run: " in served.log and "quality on churn: ok, action alert" in served.log


SLOW = {"rows": 200_000, "epochs": 20}  # a TRAIN of a minute (seconds an epoch): any early end is the test's doing


def build_slow(path, monitor_rows: int) -> None:
    """Model slow: version 1 trained on 30 rows with many epochs (fast), then pts grows to
    ``monitor_rows`` rows: the monitor's TRAIN (every run: its condition always holds) trains on those."""
    with mldb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE pts AS SELECT i::DOUBLE AS x, (i % 7)::DOUBLE AS y, i % 2 = 0 AS up "
                    f"FROM range({monitor_rows}) t(i)")
        con.execute(f"CREATE MODEL slow PREDICT up FROM (SELECT * FROM pts WHERE x < 30) USING mlp "
                    f"WITH (epochs = {SLOW['epochs']}, patience = {SLOW['epochs']}, seed = 1)")
        con.execute("CREATE MONITOR retrain ON MODEL slow CHECK EVALUATE (SELECT * FROM pts LIMIT 100) "
                    "EVERY INTERVAL 1 SECOND WHEN accuracy <= 1 THEN TRAIN FROM (SELECT * FROM pts)")


def test_a_served_run_survives_its_client_crashing_and_shutdown_interrupts_a_run(tmp_path):
    path = tmp_path / "served.db"
    build_slow(path, monitor_rows=20_000)
    probe = Probe(tmp_path)
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([*probe.command, "serve", str(path), "--port", "0", "--monitor-interval", "0.2"],
                                  stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=probe.env)
    try:
        wait_until(lambda: " on 127.0.0.1:" in log_path.read_text(), "the server to start", LIMIT)
        port = int(log_path.read_text().split(" on 127.0.0.1:")[1].split(",")[0])
        dsn = f"host=127.0.0.1 port={port} user=tester dbname=shop"
        client = subprocess.Popen([sys.executable, "-c", "import psycopg, sys, time\n"
                                   f"c = psycopg.connect({dsn!r}, autocommit=True)\n"
                                   "c.execute('SELECT 1'); print('connected', flush=True); time.sleep(600)"],
                                  stdout=subprocess.PIPE, text=True, env=ENV)
        assert client.stdout.readline().strip() == "connected"
        wait_until(lambda: probe.epochs > 0, "the monitor's TRAIN", LIMIT)
        client.kill()  # kill -9 of a connected client while the monitor trains
        client.wait(timeout=LIMIT)
        with psycopg.connect(dsn, autocommit=True) as con:
            def ran():
                return con.execute("SELECT outcome, action, model_version_before, model_version_after "
                                   "FROM mldb.monitor_runs ORDER BY id").fetchall()
            wait_until(ran, "the monitor's run", LIMIT)
            assert ran()[0] == ("ok", "train", 1, 2)  # (then it is due again each second: more may follow)
        assert probe.epochs >= SLOW["epochs"]
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=LIMIT) == 0
    finally:
        for process in (server, client):
            if process.poll() is None:
                process.kill()
    assert "mldb serve: stopped" in log_path.read_text()


def test_serve_shutdown_interrupts_a_run_in_progress_and_keeps_the_committed_state(tmp_path):
    path = tmp_path / "served.db"
    build_slow(path, monitor_rows=SLOW["rows"])
    before = committed_state(path)
    probe = Probe(tmp_path)
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([*probe.command, "serve", str(path), "--port", "0", "--monitor-interval", "0.2"],
                                  stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=probe.env)
    try:
        wait_until(lambda: probe.epochs > 0, "the monitor's TRAIN", LIMIT)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=LIMIT) == 0, log_path.read_text()
    finally:
        if server.poll() is None:
            server.kill()
    assert probe.epochs < SLOW["epochs"]
    assert "mldb serve: stopped" in log_path.read_text() and "Traceback" not in log_path.read_text()
    after = committed_state(path)
    kept = ("versions", "deployed", "deployments", "alerts")
    assert {key: after[key] for key in kept} == {key: before[key] for key in kept}
    cancelled = after["runs"][len(before["runs"]):]  # the interrupted run, recorded as an error
    assert after["runs"][:len(before["runs"])] == before["runs"] and len(cancelled) == 1
    assert cancelled[0][4:] == ("train", "error", 1, 1) and cancelled[0][3] is True


# -- kill -9 in the middle of a monitor's TRAIN ------------------------------------------------------

def test_kill_9_in_the_middle_of_a_monitors_train_leaves_the_last_committed_state(tmp_path, capsys):
    path = tmp_path / "slow.db"
    build_slow(path, monitor_rows=SLOW["rows"])
    before = committed_state(path)
    probe = Probe(tmp_path)
    process = subprocess.Popen([*probe.command, "monitor", str(path), "--once", "--now", LATER], cwd=ROOT,
                               env=probe.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: probe.epochs > 0 or process.poll() is not None, "the monitor's TRAIN", LIMIT)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=LIMIT)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL and 0 < probe.epochs < SLOW["epochs"], process.stdout.read()
    assert committed_state(path) == before  # the file opens; nothing of the run is there
    with mldb.connect(str(path)) as con:  # the next run works (on fewer rows, to be quick)
        con.execute("DELETE FROM pts WHERE x >= 300")
    code, lines = run_monitor(capsys, path, "--once", "--now", LATER)
    assert code == 0 and len(lines) == 1 and "retrain on slow: ok, action train, version 1 -> 2" in lines[0]
    assert [row[1:] for row in runs(path, "retrain")] == [(True, True, "train", "ok")]
