"""A scale-out job survives a worker killed mid-job, on this process's own Ray cluster (issue 17).

Ray restarts a dead actor (``max_restarts``) and re-runs its task (``max_task_retries``), both
``mldb_ray_retries``; a piece is one whole task, so its rows (or its file) and its in-band report
come again together and the driver must see each piece exactly once. The test kills, with SIGKILL,
one actor of a 2-actor pool while it is running a piece (its process title says ``.submit``), over
six files big enough that a piece takes a while, and checks that COPY writes and SELECT returns the
local rows exactly once, with no staging or temporary file left.

The same module checks what connecting does to the process: ``executor.connect`` starts the
private cluster (no RAY_ADDRESS) and leaves the process's own SIGTERM/SIGINT handlers in place; a
session asking for another address is refused with 0A000 naming both; each actor runs with
``MLDB_THREADS`` = its CPUs.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest
import ray
import ray_procs
from scaleout_data import churn_database

from mldb import errors
from mldb.scaleout import cluster, executor

pytestmark = pytest.mark.xdist_group("ray")

FILES, ROWS = 6, 150_000
SCORED = "SELECT id, PREDICT(churn) AS p FROM __mldb_piece"


def _own_handler(signum, frame):  # the process's own handler, as `mldb serve` sets one
    raise AssertionError("never called")


@pytest.fixture(scope="module")
def connected():
    """This process connected by ``executor.connect`` to a private cluster, with a handler of its own set
    for SIGTERM and SIGINT first; yields the handlers found right after connecting."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    if ray.is_initialized():  # (the runtime the other Ray modules share: connect must make its own here)
        ray.shutdown()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_ADDRESS", raising=False)
        for signum in before:
            signal.signal(signum, _own_handler)
        try:
            address = executor.connect("ray")
            after = {signum: signal.getsignal(signum) for signum in before}
            yield address, after
        finally:
            ray.shutdown()
            for signum, handler in before.items():
                signal.signal(signum, handler)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A database with the model ``churn`` and six parquet files of ROWS rows each (ids unique)."""
    folder = tmp_path_factory.mktemp("failure")
    connection = churn_database(folder / "f.db")
    data = folder / "data"
    data.mkdir()
    for index in range(FILES):
        connection.execute(f"COPY (SELECT {index * ROWS} + i AS id, (i % 7) * 1.5 AS a, (i % 5) - 2.0 AS b, "
                           f"CASE WHEN i % 3 = 0 THEN 'x' ELSE 'y' END AS kind FROM range({ROWS}) r(i)) "
                           f"TO '{data}/p{index}.parquet' (FORMAT parquet)")
    files = sorted(str(path) for path in data.glob("*.parquet"))
    yield connection, files, str(data / "*.parquet"), folder
    connection.close()


def test_connect_starts_a_private_cluster_and_keeps_the_process_signal_handlers(connected):
    address, after = connected
    assert address == cluster.LOCAL
    assert after == {signal.SIGTERM: _own_handler, signal.SIGINT: _own_handler}
    assert ray.cluster_resources()["CPU"] == len(os.sched_getaffinity(0))


def test_a_session_asking_for_another_address_is_refused_naming_both(connected, big, monkeypatch):
    connection, files, pattern, folder = big
    connection.execute("SET mldb_executor = 'ray://127.0.0.1:1'")
    try:
        with pytest.raises(errors.NotSupportedError) as raised:
            connection.execute(f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{pattern}')").fetchall()
        assert raised.value.sqlstate == "0A000"
        assert "connected to Ray at its own local cluster; mldb_executor asks for 'ray://127.0.0.1:1'" in str(
            raised.value)
        connection.execute("SET mldb_executor = 'ray'")  # with RAY_ADDRESS: that address
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
        target = folder / "refused"
        with pytest.raises(errors.NotSupportedError) as raised:
            executor.execute(connection._session, executor.Request(fragment=SCORED, files=files, mode="copy",
                                                                   target=str(target)))
        assert "mldb_executor asks for '127.0.0.1:1'" in str(raised.value)
        assert not target.exists() and not [name for name in os.listdir(folder) if ".refused.mldb-" in name]
    finally:
        connection.execute("RESET mldb_executor")


@pytest.mark.parametrize("cpus", [1, 2])
def test_each_actor_runs_with_mldb_threads_equal_to_its_cpus(connected, big, cpus):
    connection, files, _, _ = big
    outcome = executor.execute(connection._session, executor.Request(
        fragment=SCORED + " LIMIT 10", files=files[:2], models=["churn"], cpus_per_worker=cpus))
    assert sum(table.num_rows for table in outcome.tables) == 20
    assert {report["mldb_threads"] for report in outcome.reports} == {cpus}
    assert all(report["torch_threads"] in (None, *range(1, cpus + 1)) for report in outcome.reports)


class _Killer:
    """Kills, once, the first actor of this process's cluster seen running a piece; in a thread."""

    def __init__(self):
        self.killed: int | None = None
        self.seen: set[int] = set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _running(self):
        actors = [pid for pid in ray_procs.descendants(os.getpid()) if "PieceWorker" in ray_procs.title(pid)]
        self.seen.update(actors)
        return next((pid for pid in actors if ".submit" in ray_procs.title(pid)), None)

    def _run(self):
        pid = ray_procs.wait_for(self._running, "a PieceWorker actor running a piece")
        os.kill(pid, signal.SIGKILL)
        self.killed = pid

    def done(self) -> int:
        self.thread.join()
        assert self.killed is not None
        return self.killed


def _staging_left(folder) -> list[str]:
    return [name for name in os.listdir(folder) if ".mldb-" in name]


def test_copy_survives_a_worker_killed_mid_job(connected, big):
    connection, files, _, folder = big
    target = folder / "scored"
    killer = _Killer()
    outcome = executor.execute(connection._session, executor.Request(
        fragment=SCORED, files=files, models=["churn"], mode="copy", target=str(target), workers=2, retries=2))
    killed = killer.done()
    written = connection.execute(f"SELECT count(*), count(DISTINCT id), count(p) FROM read_parquet('{target}/*.parquet')"
                                 ).fetchall()
    assert written == [(FILES * ROWS, FILES * ROWS, FILES * ROWS)]
    assert outcome.rows == FILES * ROWS
    assert sorted(os.listdir(target)) == [f"data_{piece:05d}.parquet" for piece in range(FILES)]  # no temporaries
    assert not _staging_left(folder)
    pids = {report["pid"] for report in outcome.reports}
    assert killed in killer.seen and pids - killer.seen  # a restarted actor (a new process) ran a piece


def test_select_survives_a_worker_killed_mid_job(connected, big):
    connection, _, pattern, _ = big
    local = connection.execute(f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{pattern}')").fetchall()
    connection.execute("SET mldb_executor = 'ray'")
    connection.execute("SET mldb_ray_workers = 2")
    try:
        killer = _Killer()
        cursor = connection.execute(f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{pattern}')")
        outcome = cursor._result.scaleout  # the Ray job's record: it went out, one report per file
        ids = [row[0] for row in cursor.fetchall()]
        killer.done()
    finally:
        connection.execute("RESET mldb_executor")
        connection.execute("RESET mldb_ray_workers")
    assert [(len(ids), len(set(ids)))] == local == [(FILES * ROWS, FILES * ROWS)]
    assert sorted(report["piece"] for report in outcome.reports) == list(range(FILES))
