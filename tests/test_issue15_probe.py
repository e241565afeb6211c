"""Issue 15 as an attacker and a new user would try it: hostile WHEN conditions, queries that write,
parameters, absurd intervals, the clock's far end, a model replaced under its monitors.

Every refusal is a typed mldb error with its SQLSTATE and writes nothing: the mldb.* row counts (and the
user's own tables, and DuckDB's sequences) are compared before and after. Real database files, real tiny
models; schedules move through ``runner.run_due(session, now=...)``, never by sleeping.
"""

from __future__ import annotations

import datetime

import pytest

import mldb
from mldb import errors
from mldb.monitors import runner

CHECK = "SELECT age, churned FROM customers"
CATALOG = ("monitors", "monitor_runs", "alerts", "model_versions", "deployments", "deploy_decisions", "lineage",
           "training_log")


@pytest.fixture
def shop(tmp_path):
    """Customers, model churn (version 1, deployed) and a user table ``t`` of 4 rows."""
    con = mldb.connect(str(tmp_path / "shop.db"))
    con.execute("CREATE TABLE customers AS SELECT range AS id, (range % 60)::DOUBLE AS age, "
                "range % 3 = 0 OR range % 60 < 10 AS churned FROM range(300)")
    con.execute("CREATE MODEL churn PREDICT churned FROM (SELECT age, churned FROM customers) "
                "USING logistic WITH (epochs = 3, seed = 1)")
    con.execute("CREATE TABLE t AS SELECT range AS x FROM range(4)")
    yield con
    con.close()


def written(con) -> dict:
    """What a refused statement must leave as it was: mldb's rows, the user's table, the sequences."""
    counts = {table: con.execute(f"SELECT count(*) FROM mldb.{table}").fetchall()[0][0] for table in CATALOG}
    counts["t"] = con.execute("SELECT count(*) FROM t").fetchall()[0][0]
    counts["sequences"] = con.execute("SELECT sequence_name, last_value FROM duckdb_sequences() "
                                      "ORDER BY ALL").fetchall()
    return counts


def refused(con, sql: str, sqlstate: str, match: str, params=None) -> str:
    before = written(con)
    with pytest.raises(errors.Error, match=match) as caught:
        con.execute(sql, params).fetchall()
    assert caught.value.sqlstate == sqlstate
    assert written(con) == before
    return str(caught.value)


# -- WHEN is an expression over the check's values, nothing else ------------------------------------------
@pytest.mark.parametrize("condition, match", [
    ("(SELECT count(*) FROM t) > 0", "cannot hold \\(SELECT"),
    ("(SELECT count(*) FROM read_text('/etc/hostname')) > 0", "cannot hold"),
    ("EXISTS (SELECT 1)", "cannot hold EXISTS"),
    ("accuracy < (SELECT max(x) FROM t)", "cannot hold"),
    ("accuracy < 0.9 OR random() > 2", "same verdict .* calls random"),
    ("nextval('mldb.alert_ids') > 0", "calls nextval"),
])
def test_a_when_condition_that_reads_tables_or_files_or_changes_something_is_refused(shop, condition, match):
    refused(shop, f"CREATE MONITOR m ON MODEL churn CHECK EVALUATE ({CHECK}) WHEN {condition} THEN ALERT",
            "42601", match)


def test_a_stored_condition_that_reads_a_table_is_a_failed_run_not_a_read(shop):
    """A row written by an older mldb (or by hand) is checked again when it runs: an error run, nothing read."""
    shop.execute(f"CREATE MONITOR m ON MODEL churn CHECK EVALUATE ({CHECK}) WHEN accuracy > 0 THEN ALERT")
    shop.execute("UPDATE mldb.monitors SET condition = '(SELECT count(*) FROM t) > 0' WHERE name = 'm'")
    run = shop.execute("RUN MONITOR m").fetchall()
    row = shop.execute("SELECT outcome, triggered, message FROM mldb.monitor_runs").fetchall()
    assert len(run) == 1 and row[0][0] == "error" and row[0][1] is None
    assert "cannot hold (SELECT COUNT(*) FROM t)" in row[0][2]
    assert shop.execute("SELECT count(*) FROM mldb.alerts").fetchall() == [(0,)]


def test_a_condition_naming_a_metric_the_replaced_model_no_longer_has_fails_with_a_clear_message(shop):
    shop.execute("CREATE MONITOR quality ON MODEL churn CHECK EVALUATE (SELECT age, churned FROM customers) "
                 "WHEN accuracy < 2 THEN ALERT")
    shop.execute("CREATE OR REPLACE MODEL churn PREDICT churned FROM (SELECT age, churned::INT::DOUBLE AS churned "
                 "FROM customers) USING linear")  # (now a regression: EVALUATE measures mae ... r2)
    shop.execute("RUN MONITOR quality").fetchall()
    outcome, message = shop.execute("SELECT outcome, message FROM mldb.monitor_runs").fetchall()[0]
    assert outcome == "error"
    assert message.startswith("WHEN names accuracy; a CHECK EVALUATE has the values mae, mse, rmse, r2, rows")
    assert shop.execute("SELECT count(*) FROM mldb.alerts").fetchall() == [(0,)]


# -- queries that mldb keeps must only read ---------------------------------------------------------------
DELETING = "WITH gone AS (DELETE FROM t RETURNING *) SELECT age, churned FROM customers"


def test_a_holdout_that_deletes_rows_is_refused_before_it_runs(shop):
    holdout = DELETING.replace("'", "''")
    refused(shop, f"TRAIN churn WITH (deploy = 'if_better', holdout = '{holdout}')", "42601",
            "the holdout: a query here only reads, and it holds a DELETE")


def test_a_training_query_that_writes_is_refused_so_no_later_train_runs_it_again(shop):
    refused(shop, f"TRAIN churn FROM ({DELETING})", "42601", "the training query: a query here only reads")
    refused(shop, "CREATE MODEL other PREDICT churned FROM (WITH added AS (INSERT INTO t VALUES (9) RETURNING *) "
                  "SELECT age, churned FROM customers)", "42601", "holds a INSERT")


@pytest.mark.parametrize("clauses, where", [
    (f"CHECK DRIFT ({DELETING}) THEN ALERT", "CHECK DRIFT"),
    (f"CHECK DRIFT ({CHECK}) THEN TRAIN FROM ({DELETING})", "THEN TRAIN FROM"),
    (f"CHECK DRIFT ({CHECK}) THEN TRAIN DEPLOY IF BETTER ON ({DELETING})", "DEPLOY IF BETTER ON"),
])
def test_a_monitor_query_that_writes_is_refused_naming_its_clause(shop, clauses, where):
    refused(shop, f"CREATE MONITOR m ON MODEL churn {clauses}", "42601", f"{where}: a query here only reads")


# -- a monitor is kept: no parameters, a constant and sensible interval -----------------------------------
@pytest.mark.parametrize("statement, params", [
    (f"CREATE MONITOR m ON MODEL churn CHECK EVALUATE ({CHECK}) WHEN accuracy < ? THEN ALERT", [0.9]),
    ("CREATE MONITOR m ON MODEL churn CHECK EVALUATE (SELECT age, churned FROM customers WHERE age > ?) "
     "WHEN accuracy < 0.9 THEN ALERT", [10]),
    (f"CREATE MONITOR m ON MODEL churn CHECK EVALUATE ({CHECK}) EVERY INTERVAL ? DAY WHEN accuracy < 0.9 "
     f"THEN ALERT", [1]),
])
def test_a_monitor_with_parameters_is_refused_it_runs_later_without_them(shop, statement, params):
    refused(shop, statement, "42601", "runs later, when no parameters are given", params)


@pytest.mark.parametrize("every, match", [
    ("INTERVAL (SELECT max(x) FROM t) DAY", "a constant interval"),
    ("INTERVAL (nextval('mldb.alert_ids')) DAY", "a constant interval"),
    ("INTERVAL 1000 YEARS", "at most INTERVAL 100 YEAR"),
    ("INTERVAL 100000000 YEARS", "at most INTERVAL 100 YEAR"),
    ("INTERVAL 0 SECOND", "a positive interval"),
    ("INTERVAL '1 month -40 days'", "a positive interval"),
])
def test_every_needs_a_constant_positive_interval_of_at_most_a_century(shop, every, match):
    refused(shop, f"CREATE MONITOR m ON MODEL churn CHECK EVALUATE ({CHECK}) EVERY {every} "
                  f"WHEN accuracy < 0.9 THEN ALERT", "22023", match)


def test_a_run_at_the_clocks_far_end_is_recorded_and_leaves_no_next_run(shop):
    """No next slot can be written down after 9999-12-31: the run is kept and the monitor is due no more."""
    shop.execute(f"CREATE MONITOR m ON MODEL churn CHECK EVALUATE ({CHECK}) EVERY INTERVAL 1 DAY "
                 f"WHEN accuracy < 2 THEN ALERT")
    session = shop.session
    end = datetime.datetime(9999, 12, 31, 23, 59, 59)
    assert [(run["monitor"], run["outcome"]) for run in runner.run_due(session, now=end)] == [("m", "ok")]
    assert shop.execute("SELECT next_run_at FROM mldb.monitors").fetchall() == [(None,)]
    assert runner.run_due(session, now=end) == []
    assert shop.execute("SELECT count(*) FROM mldb.alerts").fetchall() == [(1,)]


# -- ROLLBACK goes back, never forward ------------------------------------------------------------------
def test_rollback_never_brings_back_a_newer_version_a_person_replaced_by_hand(shop):
    """Version 2 deployed by its TRAIN, then DEPLOY of version 1 by hand (a rollback by hand): a quality
    monitor that fires must not put version 2 back."""
    shop.execute("TRAIN churn WITH (epochs = 1, seed = 2)")
    shop.execute("DEPLOY MODEL churn VERSION 1")
    shop.execute(f"CREATE MONITOR back ON MODEL churn CHECK EVALUATE ({CHECK}) WHEN accuracy < 2 THEN ROLLBACK")
    before = written(shop)
    run = runner.run(shop.session, "back")
    assert (run["triggered"], run["outcome"], run["model_version_after"]) == (True, "skipped", 1)
    assert "deployed over the newer version 2" in run["message"]
    assert shop.execute("SELECT deployed_version FROM mldb.models").fetchall() == [(1,)]
    after = written(shop)
    for moved in ("monitor_runs", "sequences"):  # (the run row, and its id)
        after.pop(moved), before.pop(moved)
    assert after == before


# -- one broken monitor never keeps the others from running -------------------------------------------------
@pytest.mark.parametrize("check", [
    "CHECK DRIFT (SELECT [age] AS age FROM customers)",
    "CHECK DRIFT (SELECT 'x' || age AS age FROM customers)",
    "CHECK EVALUATE (SELECT age, 'maybe' AS churned FROM customers) WHEN accuracy < 2",
])
def test_a_check_whose_columns_the_model_cannot_read_is_refused_when_created(shop, check):
    refused(shop, f"CREATE MONITOR m ON MODEL churn {check} THEN ALERT", "42804", "model 'churn'")


def test_an_unforeseen_failure_of_one_monitor_is_its_run_and_the_next_monitors_still_run(shop):
    """A struct where the model reads a number fails inside pyarrow (no mldb error): that run is recorded as
    an error and the monitors due after it, in name order, run in the same pass."""
    shop.execute("CREATE MODEL plans PREDICT churned FROM (SELECT (id % 3)::VARCHAR AS plan, churned FROM customers) "
                 "USING logistic WITH (epochs = 1)")
    shop.execute("CREATE MONITOR a_broken ON MODEL plans CHECK DRIFT (SELECT {'a': 1} AS plan FROM customers) "
                 "EVERY INTERVAL 1 HOUR THEN ALERT")
    shop.execute(f"CREATE MONITOR b_fine ON MODEL churn CHECK EVALUATE ({CHECK}) EVERY INTERVAL 1 HOUR "
                 f"WHEN accuracy < 2 THEN ALERT")
    later = datetime.datetime.now() + datetime.timedelta(hours=2)
    runs = runner.run_due(shop.session, now=later)
    assert [(run["monitor"], run["outcome"]) for run in runs] == [("a_broken", "error"), ("b_fine", "ok")]
    assert shop.execute("SELECT monitor, outcome, triggered FROM mldb.monitor_runs ORDER BY id").fetchall() == [
        ("a_broken", "error", None), ("b_fine", "ok", True)]
    assert shop.execute("SELECT monitor FROM mldb.alerts").fetchall() == [("b_fine",)]  # the broken one wrote none
    assert runner.run_due(shop.session, now=later) == []  # (both moved on to their next slot)


def test_acknowledge_alert_takes_the_id_as_a_parameter(shop):
    shop.execute(f"CREATE MONITOR m ON MODEL churn CHECK EVALUATE ({CHECK}) WHEN accuracy < 2 THEN ALERT")
    shop.execute("RUN MONITOR m").fetchall()
    alert_id = shop.execute("SELECT id FROM mldb.alerts").fetchall()[0][0]
    refused(shop, "ACKNOWLEDGE ALERT ?", "42P02", "takes one parameter", [])
    refused(shop, "ACKNOWLEDGE ALERT ?", "22023", "a positive integer", ["1; DROP TABLE t"])
    shop.execute("ACKNOWLEDGE ALERT ?", [alert_id])
    assert shop.execute("SELECT acknowledged FROM mldb.alerts").fetchall() == [(True,)]


# -- a monitor runs in other sessions: nothing only this session sees ---------------------------------------
@pytest.mark.parametrize("source", ["(SELECT age, churned FROM recent)", "recent_view",
                                    "(SELECT age, churned FROM temp.main.recent)",
                                    "(WITH r AS (SELECT * FROM recent) SELECT age, churned FROM r)"])
def test_a_monitor_over_a_temp_table_or_view_is_refused(shop, source):
    shop.execute("CREATE TEMP TABLE recent AS SELECT age, churned FROM customers")
    shop.execute("CREATE TEMP VIEW recent_view AS SELECT age, churned FROM customers")
    refused(shop, f"CREATE MONITOR m ON MODEL churn CHECK EVALUATE {source} WHEN accuracy < 0.9 THEN ALERT",
            "42P01", "only this session's")


def test_a_monitor_over_a_frame_registered_on_the_connection_is_refused_and_one_over_a_table_is_not(shop):
    import pyarrow as pa

    shop.register("landed", pa.table({"age": [1.0, 2.0], "churned": [True, False]}))
    refused(shop, "CREATE MONITOR m ON MODEL churn CHECK EVALUATE (SELECT * FROM landed) WHEN accuracy < 0.9 "
                  "THEN ALERT", "42P01", "landed is only this session's")
    shop.execute("CREATE TABLE landed_rows AS SELECT * FROM landed")  # (a table of the same rows: fine)
    shop.execute("CREATE MONITOR m ON MODEL churn CHECK EVALUATE (SELECT * FROM landed_rows) WHEN accuracy < 0.9 "
                 "THEN ALERT")
    assert shop.execute("SELECT check_query FROM mldb.monitors").fetchall() == [("SELECT * FROM landed_rows",)]


# -- intervals a thread cannot wait for ------------------------------------------------------------------
@pytest.mark.parametrize("command, option", [("monitor", "--interval"), ("serve", "--monitor-interval")])
@pytest.mark.parametrize("seconds", ["inf", "1e300", "86401"])
def test_an_interval_no_thread_can_wait_for_is_refused_before_the_database_is_opened(tmp_path, capsys, command,
                                                                                     option, seconds):
    """``Event.wait(inf)`` raises OverflowError: the loop's thread died after its first pass, exit status 0."""
    from mldb.cli import main

    with pytest.raises(SystemExit) as exit:
        main([command, str(tmp_path / "never.db"), option, seconds])
    assert exit.value.code == 2 and "at most 86400 (a day)" in capsys.readouterr().err
    assert not (tmp_path / "never.db").exists()


def test_a_run_line_keeps_a_hostile_name_on_one_line(shop):
    """A monitor or model name is a client's text: a newline in it must not forge a line of the server's log."""
    from mldb.monitors.background import describe_run

    forged = "m\n2026-11-30 12:00:00,000 mldb.monitors monitor run: forged"
    shop.execute(f"CREATE MONITOR \"{forged}\" ON MODEL churn CHECK EVALUATE ({CHECK}) WHEN accuracy < 2 THEN ALERT")
    line = describe_run(runner.run(shop.session, forged))
    assert "\n" not in line and line.split(" ", 2)[2].startswith("m\\n2026-11-30 12:00:00,000 mldb.monitors")


# -- mldb.monitors is a plain table: a text CREATE MONITOR did not write never runs as statements -----------
@pytest.mark.parametrize("column, text", [
    ("train_query", "SELECT age, churned FROM customers); DELETE FROM t; --"),
    ("check_query", "SELECT age, churned FROM customers)); DELETE FROM t; "
                    "SELECT * FROM EVALUATE('churn', (FROM customers"),
    ("check_query", "SELECT age, churned FROM customers; DELETE FROM t"),
    ("check_query", "WITH d AS (DELETE FROM t RETURNING *) SELECT age, churned FROM customers"),
    ("condition", "accuracy < 2; DELETE FROM t"),
])
def test_a_hand_written_monitor_text_that_would_run_statements_is_a_failed_run(shop, column, text):
    shop.execute(f"CREATE MONITOR m ON MODEL churn CHECK EVALUATE ({CHECK}) WHEN accuracy < 2 THEN TRAIN "
                 f"FROM ({CHECK})")
    shop.execute(f"UPDATE mldb.monitors SET {column} = ? WHERE name = 'm'", [text])
    before = written(shop)
    run = runner.run(shop.session, "m")
    assert run["outcome"] == "error" and run["triggered"] is None
    assert "is not one" in run["message"] or "only reads" in run["message"] or "does not parse" in run["message"]
    after = written(shop)
    for moved in ("monitor_runs", "sequences"):  # (the run row, and its id)
        after.pop(moved), before.pop(moved)
    assert after == before  # (t keeps its 4 rows; no version was trained)


def test_a_hand_written_stored_training_query_never_runs_as_statements(shop):
    """A monitor's THEN TRAIN without FROM retrains on mldb.models.training_query, a plain column."""
    shop.execute(f"CREATE MONITOR m ON MODEL churn CHECK EVALUATE ({CHECK}) WHEN accuracy < 2 THEN TRAIN")
    shop.execute("UPDATE mldb.models SET training_query = 'SELECT age, churned FROM customers; DELETE FROM t' "
                 "WHERE name = 'churn'")
    before = written(shop)
    run = runner.run(shop.session, "m")
    assert (run["outcome"], run["triggered"]) == ("error", True)
    assert run["message"].startswith("the stored training query is not one query")
    after = written(shop)
    for moved in ("monitor_runs", "sequences"):
        after.pop(moved), before.pop(moved)
    assert after == before


def test_a_when_condition_calling_a_macro_is_refused_its_body_may_read_tables_and_change(shop):
    shop.execute("CREATE MACRO rows_of_t() AS (SELECT count(*) FROM t)")
    refused(shop, f"CREATE MONITOR m ON MODEL churn CHECK EVALUATE ({CHECK}) WHEN accuracy < rows_of_t() THEN ALERT",
            "42601", "only DuckDB's built-in functions .* calls rows_of_t")
    shop.execute(f"CREATE MONITOR m ON MODEL churn CHECK EVALUATE ({CHECK}) WHEN abs(accuracy - 0.5) > 0.6 "
                 f"OR greatest(log_loss, 0) > 5 THEN ALERT")  # (built-in functions are fine)
    assert shop.execute("SELECT condition FROM mldb.monitors").fetchall()[0][0].startswith("ABS(accuracy - 0.5)")


def test_run_monitor_takes_the_name_as_a_parameter(shop):
    from mldb.frontend import MLDB, parse, split_statements

    shop.execute(f"CREATE MONITOR \"1\" ON MODEL churn CHECK EVALUATE ({CHECK}) WHEN accuracy < 2 THEN ALERT")
    shop.execute(f"CREATE MONITOR quality ON MODEL churn CHECK EVALUATE ({CHECK}) WHEN accuracy < 2 THEN ALERT")
    assert [row[1] for row in shop.execute("RUN MONITOR ?", ["quality"]).fetchall()] == ["quality"]
    assert [row[1] for row in shop.execute("RUN MONITOR $1", ["1"]).fetchall()] == ["1"]
    refused(shop, "RUN MONITOR ?", "42P02", "takes one parameter, the monitor's name", [])
    for text in ("RUN MONITOR ?", "RUN MONITOR $1", 'RUN MONITOR "1"'):
        assert parse(split_statements(text)[0]).sql(dialect=MLDB) == text
