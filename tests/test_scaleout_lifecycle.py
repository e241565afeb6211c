"""A statement run on Ray keeps mldb's lifecycle (issue 17): its log, its lineage, progress and cancel.

- Prediction log: one ``mldb.prediction_log`` row per (statement, model version), written by the
  driver with the job's totals, equal to the local run's row for the same statement (rows, model,
  version, statement text and fingerprint, output counts); a shadow version gives its two rows as
  locally; sampled rows (``log_sample``) reach ``mldb.prediction_samples`` as locally.
- Lineage: ``COPY (... PREDICT ...) TO 'dir'`` records the edge model -> the absolute path under
  both executors and ``LINEAGE('/abs/dir')`` shows it; CREATE TABLE AS lineage is unchanged.
- Progress: a job on a terminal shows mldb's bar counting the pieces; nothing when not a terminal.
- Cancel: ``connection.interrupt()`` while the reader waits inside a job fails the statement with
  57014, the pool's actors die (the cluster's CPUs come back) and the session goes on; a cancelled
  scale-out COPY leaves neither its target nor its staging directory. A LIMIT reached or a cursor
  closed early stops the job too.

The cancel tests run pieces a loaded UDF holds (tests/data/scaleout_hold.py) until the test creates a
gate file: a piece stays inside its worker for as long as the test needs, so only a working stop
ends the job (the waits are conditions with generous deadlines, never sleeps). The gate is opened
at the end, so nothing waits forever.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time

import pytest
import ray

import mldb
from mldb import errors
from mldb.scaleout import executor

pytestmark = pytest.mark.xdist_group("ray")

DEADLINE = 60.0  # seconds a stop gets to show (a stopped job frees its CPUs in a few)
START = 600.0  # seconds a job gets to be under way (actors import torch and mldb: slow on a busy machine)
HOLD_UDFS = os.path.join(os.path.dirname(__file__), "data", "scaleout_hold.py")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """Models ``churn`` (labels, every prediction sampled) and ``spend`` (values, version 2 its shadow);
    ``data/``: three parquet files (300 rows, none, 50 with NULLs); ``slow/``: one quick file, three held
    (ids from 1000: ``held`` waits for the gate ``folder/gate``)."""
    folder = tmp_path_factory.mktemp("lifecycle")
    connection = mldb.connect(str(folder / "shop.db"))
    connection.execute("CREATE TABLE t AS SELECT i AS id, (i % 7) * 1.5 AS a, (i % 5) - 2.0 AS b, "
                       "CASE WHEN i % 3 = 0 THEN 'x' ELSE 'y' END AS kind, (i % 7) + (i % 5) > 6 AS churned, "
                       "(i % 7) * 2.0 + (i % 5) AS spent FROM range(400) r(i)")
    connection.execute("CREATE MODEL churn PREDICT churned FROM (SELECT a, b, kind, churned FROM t) USING logistic "
                       "WITH (epochs = 3, seed = 1, log_sample = 1.0)")
    connection.execute("CREATE MODEL spend PREDICT spent FROM (SELECT a, b, spent FROM t) USING linear "
                       "WITH (epochs = 3, seed = 1)")
    connection.execute("TRAIN spend WITH (epochs = 5, seed = 2)")
    connection.execute("DEPLOY MODEL spend VERSION 1")
    connection.execute("DEPLOY MODEL spend VERSION 2 AS SHADOW")
    data, slow = folder / "data", folder / "slow"
    data.mkdir()
    slow.mkdir()
    connection.execute(f"COPY (SELECT id, a, b, kind FROM t WHERE id < 300) TO '{data}/p0.parquet' (FORMAT parquet)")
    connection.execute(f"COPY (SELECT id, a, b, kind FROM t WHERE false) TO '{data}/p1.parquet' (FORMAT parquet)")
    connection.execute(f"COPY (SELECT id, CASE WHEN id % 2 = 0 THEN NULL ELSE a END AS a, b, "
                       f"CASE WHEN id % 4 = 0 THEN NULL ELSE kind END AS kind FROM t WHERE id >= 350) "
                       f"TO '{data}/p2.parquet' (FORMAT parquet)")
    connection.execute(f"COPY (SELECT id, a, b, kind FROM t WHERE id < 20) "
                       f"TO '{slow}/a_quick.parquet' (FORMAT parquet)")
    for number in range(3):
        connection.execute(f"COPY (SELECT 1000 + {number} * 10 + i AS id, 1.5 AS a, 0.5 AS b, 'y' AS kind "
                           f"FROM range(10) r(i)) TO '{slow}/b_held{number}.parquet' (FORMAT parquet)")
    connection.execute("LOAD UDFS FROM ?", [HOLD_UDFS])
    yield connection, str(data / "*.parquet"), str(slow / "*.parquet"), folder
    (folder / "gate").touch()  # (a piece still held anywhere goes on and ends)
    connection.close()


def _with_ray(connection):
    """Run the next statements with the Ray executor (RESET by the caller's ``finally``)."""
    connection.execute("SET mldb_executor = 'ray'")


def _log(connection, statement: str) -> list[tuple]:
    return connection.execute(
        "SELECT model, version, rows, statement, query_fingerprint, summary, shadow_of, agreement, mean_abs_diff "
        "FROM mldb.prediction_log WHERE statement = ? ORDER BY rowid", [statement]).fetchall()


def _cpus_back() -> bool:
    cpus = ray.cluster_resources()["CPU"]
    return _eventually(lambda: ray.available_resources().get("CPU", 0) == cpus)


def _eventually(condition, seconds: float = DEADLINE) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        threading.Event().wait(0.05)
    return condition()


# -- the prediction log ------------------------------------------------------------------------------
def test_one_log_row_per_model_version_with_the_local_runs_totals(runtime, shop):
    connection, pattern, _, _ = shop
    statement = f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{pattern}') WHERE b > -2"
    local_rows = connection.execute(statement).fetchall()
    _with_ray(connection)
    try:
        cursor = connection.execute(statement)
        outcome = cursor._result.scaleout
        out = cursor.fetchall()
    finally:
        connection.execute("RESET mldb_executor")
    assert outcome is not None and len(outcome.reports) == 3  # it went out: one report per file
    assert sorted(out, key=repr) == sorted(local_rows, key=repr)
    local, ray_row = _log(connection, statement)  # exactly one row each
    assert ray_row[:5] == local[:5]  # model, version, rows, statement text, fingerprint
    assert local[2] == len(local_rows) > 200
    local_summary, ray_summary = json.loads(local[5]), json.loads(ray_row[5])
    assert ray_summary["counts"] == local_summary["counts"]
    assert {key: ray_summary[key] for key in ("executor", "workers", "pieces")} == \
        {"executor": "ray", "workers": 2, "pieces": 3}
    assert "executor" not in local_summary


def test_sampled_predictions_are_written_by_the_driver_as_locally(runtime, shop):
    connection, pattern, _, _ = shop
    statement = f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{pattern}') WHERE a > 3"
    local = len(connection.execute(statement).fetchall())
    fingerprint = _log(connection, statement)[0][4]
    count = "SELECT count(*) FROM mldb.prediction_samples WHERE query_fingerprint = ?"
    after_local = connection.execute(count, [fingerprint]).fetchall()[0][0]
    _with_ray(connection)
    try:
        assert len(connection.execute(statement).fetchall()) == local
    finally:
        connection.execute("RESET mldb_executor")
    after_ray = connection.execute(count, [fingerprint]).fetchall()[0][0]
    assert after_local == local > 50  # log_sample = 1: every prediction sampled
    assert after_ray - after_local == local


def test_a_shadow_version_gives_its_two_rows_as_locally(runtime, shop):
    connection, pattern, _, _ = shop
    statement = f"SELECT id, PREDICT(spend) AS s FROM read_parquet('{pattern}') WHERE a IS NOT NULL"
    local_rows = connection.execute(statement).fetchall()
    _with_ray(connection)
    try:
        out = connection.execute(statement).fetchall()
    finally:
        connection.execute("RESET mldb_executor")
    assert sorted(out, key=repr) == sorted(local_rows, key=repr)
    rows = _log(connection, statement)
    local = {row[1]: row for row in rows[:2]}
    ran = {row[1]: row for row in rows[2:]}
    assert len(rows) == 4 and set(local) == set(ran) == {1, 2}
    for version in (1, 2):
        assert ran[version][:5] == local[version][:5]
        assert ran[version][6] == local[version][6]  # shadow_of: None for the served version, 1 for the shadow
    assert local[2][6] == 1
    assert ran[2][8] == pytest.approx(local[2][8], rel=1e-9)  # mean_abs_diff over the same rows
    assert json.loads(ran[2][5])["compared"] == json.loads(local[2][5])["compared"] == len(local_rows)
    assert json.loads(ran[1][5])["mean"] == pytest.approx(json.loads(local[1][5])["mean"], rel=1e-9)


# -- lineage ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("executor_name", ["local", "ray"])
def test_copy_of_predictions_records_lineage_to_the_absolute_path(runtime, shop, executor_name, monkeypatch):
    connection, pattern, _, folder = shop
    monkeypatch.chdir(folder)
    written = folder / f"scored_{executor_name}"
    connection.execute(f"SET mldb_executor = '{executor_name}'")
    try:
        connection.execute(f"COPY (SELECT id, PREDICT(churn) AS p FROM read_parquet('{pattern}')) "
                           f"TO 'scored_{executor_name}' (FORMAT parquet)")  # relative to the working directory
    finally:
        connection.execute("RESET mldb_executor")
    assert written.exists()
    edges = connection.execute(f"SELECT direction, source, source_version, target, depth "
                               f"FROM LINEAGE('{written}') WHERE kind = 'prediction'").fetchall()
    assert edges == [("upstream", "churn", 1, str(written), 1)]
    upstream = connection.execute(f"SELECT source, target FROM LINEAGE('scored_{executor_name}/') "
                                  f"ORDER BY depth").fetchall()  # (a relative name: the same absolute path)
    assert upstream == [("churn", str(written)), ("t", "churn")]  # and on to what churn was trained from


def test_create_table_as_lineage_is_unchanged(runtime, shop):
    connection, pattern, _, _ = shop
    connection.execute(f"CREATE TABLE scored AS SELECT id, PREDICT(churn) AS p FROM read_parquet('{pattern}')")
    edges = connection.execute("SELECT direction, source, source_version, target FROM LINEAGE(scored) "
                               "WHERE kind = 'prediction'").fetchall()
    assert edges == [("upstream", "churn", 1, "scored")]
    with pytest.raises(errors.ProgrammingError) as missing:
        connection.execute("SELECT * FROM LINEAGE('/nowhere/at/all')").fetchall()
    assert missing.value.sqlstate == "42P01"


# -- progress ---------------------------------------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_counts_pieces_on_a_terminal_and_is_quiet_elsewhere(runtime, shop, monkeypatch):
    connection, pattern, _, _ = shop
    statement = f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{pattern}')"
    shown = _Terminal()
    _with_ray(connection)
    try:
        monkeypatch.setattr(sys, "stderr", shown)
        connection.execute(statement).fetchall()
        monkeypatch.setattr(sys, "stderr", quiet := io.StringIO())
        connection.execute(statement).fetchall()
    finally:
        monkeypatch.undo()
        connection.execute("RESET mldb_executor")
    assert "scale-out" in shown.getvalue() and "3/3" in shown.getvalue()
    assert "350 rows" in shown.getvalue()
    assert "scale-out" not in quiet.getvalue()


# -- cancel and early ends ------------------------------------------------------------------------------------
def _held_where(folder) -> str:
    return f"held(id, '{folder / 'gate'}') >= 0"


def _slow_statement(folder, pattern: str, tail: str = "") -> str:
    return f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{pattern}') WHERE {_held_where(folder)}{tail}"


def _held_started(folder) -> bool:
    return os.path.exists(folder / "gate.started")


def _no_piece_held_yet(folder) -> None:
    if _held_started(folder):
        os.remove(folder / "gate.started")


def _waiting_in_the_job(thread: threading.Thread) -> bool:
    """Whether ``thread`` is the reader waiting for a batch of a running job."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == "_next" and frame.f_code.co_filename.endswith("lifecycle.py"):
            return True
        frame = frame.f_back
    return False


def test_interrupt_cancels_the_ray_job_with_57014_and_frees_the_cluster(runtime, shop):
    connection, _, _, folder = shop
    statement = _slow_statement(folder, str(folder / "slow" / "b_*.parquet"))  # no quick file: no row ever comes
    _no_piece_held_yet(folder)
    _with_ray(connection)
    try:
        raised: list = []
        reader = threading.Thread(target=lambda: _catch(lambda: connection.execute(statement).fetchall(), raised),
                                  daemon=True)
        reader.start()
        assert _eventually(lambda: _waiting_in_the_job(reader) and _held_started(folder), START)  # a piece is held
        connection.interrupt()
        reader.join(DEADLINE)
        assert not reader.is_alive()  # the slow files alone would take many minutes
        assert len(raised) == 1 and isinstance(raised[0], errors.OperationalError)
        assert raised[0].sqlstate == "57014"
        assert _cpus_back()
        assert connection.execute("SELECT count(*) FROM t").fetchall() == [(400,)]
    finally:
        connection.execute("RESET mldb_executor")
    assert _log(connection, statement) == []  # a cancelled statement logs nothing, as locally


def _catch(call, raised: list) -> None:
    try:
        call()
    except BaseException as error:  # noqa: BLE001 - the test looks at it
        raised.append(error)


def test_a_cancelled_copy_leaves_no_target_and_no_staging(runtime, shop):
    connection, _, _, folder = shop
    session = connection._session
    files = sorted(str(path) for path in (folder / "slow").glob("*.parquet"))
    target = folder / "cancelled"
    _no_piece_held_yet(folder)
    execution = session.database.start(session, "COPY ... TO 'cancelled'")
    request = executor.Request(fragment=f"SELECT id, PREDICT(churn) AS p FROM __mldb_piece WHERE {_held_where(folder)}",
                               files=files, models=["churn"], mode="copy", target=str(target), execution=execution)
    raised: list = []
    writer = threading.Thread(target=lambda: _catch(lambda: executor.execute(session, request), raised), daemon=True)
    writer.start()
    try:
        assert _eventually(lambda: _waiting_in_the_job(writer) and _held_started(folder), START)
        execution.cancel()  # what Session.interrupt does to the running statement
        writer.join(DEADLINE)
        assert not writer.is_alive()
    finally:
        execution.finish(success=False)
    assert len(raised) == 1 and getattr(raised[0], "sqlstate", None) == "57014"
    assert _cpus_back()
    assert not target.exists()
    assert not [name for name in os.listdir(folder) if name.startswith(".cancelled.mldb-")]


def test_a_limit_reached_stops_the_job(runtime, shop):
    """(Over the plain files: a held piece could be given to every actor before the quick one, and
    then no row would ever come, as Ray Data does not promise which piece an actor takes first.)"""
    connection, data, _, _ = shop
    _with_ray(connection)
    try:
        cursor = connection.execute(f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{data}') LIMIT 5")
        went_out = cursor._result.scaleout is not None
        rows = cursor.fetchall()
    finally:
        connection.execute("RESET mldb_executor")
    assert went_out and len(rows) == 5
    assert _cpus_back()


def test_a_cursor_closed_early_stops_the_job(runtime, shop):
    connection, data, _, _ = shop
    _with_ray(connection)
    try:
        cursor = connection.execute(f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{data}')")
        assert cursor._result.scaleout is not None
        assert cursor.fetchone() is not None
        cursor.close()
        assert _cpus_back()
        assert connection.execute("SELECT count(*) FROM t").fetchall() == [(400,)]
    finally:
        connection.execute("RESET mldb_executor")
