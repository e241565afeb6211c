"""A scale-out job on a real two-node Ray cluster started with ``ray start`` (issue 17).

Two ``ray start --block`` processes (a head and a second node, one CPU each, their own ports and temp
directory, each in a session of its own) make a cluster like a user's; a driver process with
RAY_ADDRESS and ``SET mldb_executor = 'ray'`` runs a SELECT and a COPY with two workers. One actor
fits per node, so the piece reports must name both nodes, and the rows must be the local ones
exactly once. Teardown stops each ``ray start`` by SIGTERM (its own cleanup), its session by SIGKILL
only as a fallback -- never ``ray stop``, which stops every Ray process of the machine -- and checks
that no process of either session is left.

Ray Client (``'ray://host:port'``) needs the ``ray[client]`` extra, which mldb does not install:
without it the statement is refused with 0A000 saying so, before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import pytest
import ray
import ray_procs

import mldb
from mldb import errors
from mldb.scaleout import executor

pytestmark = pytest.mark.xdist_group("ray")

FILES, ROWS = 4, 50_000
DRIVER = os.path.join(os.path.dirname(__file__), "scaleout_driver.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ports() -> list[str]:
    """Ports of one node, free now (other clusters on this machine keep theirs)."""
    names = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
    return [part for name in names for part in (name, str(_free_port()))]


def _ray_start(arguments: list[str], log: str, env: dict) -> subprocess.Popen:
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    with open(log, "w") as out:
        return subprocess.Popen([ray_cli, "start", *arguments, "--num-cpus", "1", "--block", "--disable-usage-stats",
                                 *_ports()], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM (``ray start --block`` then stops its node's processes), SIGKILL of its session if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    ray_procs.wait_for(lambda: not ray_procs.in_session(process.pid), f"the processes of session {process.pid} to end",
                       deadline_s=120)


@pytest.fixture(scope="module")
def two_nodes():
    """A head and a second node, both ``ray start --block`` with token auth; yields (address, env)."""
    temp = tempfile.mkdtemp(prefix="mldb-ray-", dir="/tmp")  # short: Ray's socket paths live under it
    env = dict(os.environ, RAY_AUTH_MODE="token")
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    started = []
    try:
        started.append(_ray_start(["--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp],
                                  os.path.join(temp, "head.log"), env))
        started.append(_ray_start(["--address", f"127.0.0.1:{port}"], os.path.join(temp, "node.log"), env))
        yield f"127.0.0.1:{port}", dict(env, RAY_ADDRESS=f"127.0.0.1:{port}"), started
    finally:
        for process in reversed(started):
            _stop(process)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """A database file with the model ``churn`` (closed: the driver process opens it) and FILES parquet files."""
    folder = tmp_path_factory.mktemp("cluster")
    path = str(folder / "c.db")
    connection = mldb.connect(path)
    connection.execute("CREATE TABLE t AS SELECT i AS id, (i % 7) * 1.5 AS a, (i % 5) - 2.0 AS b, "
                       "CASE WHEN i % 3 = 0 THEN 'x' ELSE 'y' END AS kind, (i % 7) + (i % 5) > 6 AS churned "
                       "FROM range(400) r(i)")
    connection.execute("CREATE MODEL churn PREDICT churned FROM (SELECT a, b, kind, churned FROM t) USING logistic "
                       "WITH (epochs = 3, seed = 1)")
    (folder / "data").mkdir()
    for index in range(FILES):
        connection.execute(f"COPY (SELECT {index * ROWS} + i AS id, (i % 7) * 1.5 AS a, (i % 5) - 2.0 AS b, "
                           f"CASE WHEN i % 3 = 0 THEN 'x' ELSE 'y' END AS kind FROM range({ROWS}) r(i)) "
                           f"TO '{folder}/data/p{index}.parquet' (FORMAT parquet)")
    connection.close()
    return path, str(folder / "data" / "*.parquet"), folder


def test_ray_client_without_its_package_is_refused_before_writing(database, monkeypatch, tmp_path):
    assert not ray.is_initialized()  # runs before anything in this process connects
    monkeypatch.setitem(sys.modules, "grpc", None)  # as without ray[client], also where it is installed
    _, pattern, _ = database
    connection = mldb.connect(str(tmp_path / "client.db"))
    try:
        connection.execute("SET mldb_executor = 'ray://127.0.0.1:10001'")
        with pytest.raises(errors.NotSupportedError) as raised:
            executor.execute(connection._session, executor.Request(
                fragment="SELECT id FROM __mldb_piece", files=[pattern], mode="copy", target=str(tmp_path / "out")))
        assert raised.value.sqlstate == "0A000"
        assert "'ray://127.0.0.1:10001' needs Ray Client: pip install 'ray[client]'" in str(raised.value)
        assert not ray.is_initialized()
        assert not [name for name in os.listdir(tmp_path) if name.startswith((".out", "out"))]
    finally:
        connection.close()


def _alive_nodes(env: dict) -> int:
    """Alive nodes as the cluster's GCS reports them (``ray list nodes`` needs the dashboard: not started)."""
    check = ("import ray; ray.init(log_to_driver=False, configure_logging=False); "
             "print(sum(1 for node in ray.nodes() if node['Alive']))")
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    return int(done.stdout.strip() or 0)


def test_select_and_copy_run_on_both_nodes(two_nodes, database):
    address, env, started = two_nodes
    path, pattern, folder = database
    ray_procs.wait_for(lambda: _alive_nodes(env) == 2, "two alive nodes", deadline_s=300, every_s=1)
    target = str(folder / "scored")
    driver = subprocess.Popen([sys.executable, DRIVER, path, pattern, target], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    out, err = driver.communicate(timeout=900)
    assert driver.returncode == 0, err[-3000:]
    assert not ray_procs.in_session(driver.pid)  # a driver of a running cluster leaves no process behind
    outcome = json.loads(out.strip().splitlines()[-1])
    assert outcome["address"] == address
    assert outcome["described"] == f"ray (at '{address}', 2 CPUs on 2 nodes)"
    assert (outcome["ids"], outcome["distinct"]) == (FILES * ROWS, FILES * ROWS)
    assert outcome["copied"] == FILES * ROWS and outcome["written"] == [FILES * ROWS, FILES * ROWS]
    for reports in (outcome["select_reports"], outcome["copy_reports"]):
        assert sorted(report["piece"] for report in reports) == list(range(FILES))
        assert len({report["node"] for report in reports}) == 2  # one actor per one-CPU node
        assert {report["mldb_threads"] for report in reports} == {1}
    assert sorted(os.listdir(target)) == [f"data_{piece:05d}.parquet" for piece in range(FILES)]
    assert not [name for name in os.listdir(folder) if ".mldb-" in name]
    assert all(process.poll() is None for process in started)  # the cluster outlives its driver
