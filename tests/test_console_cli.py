"""``mldb ui DB`` and ``mldb serve DB --ui-port P`` as real processes: the password, a file another process
holds, a busy port, a PostgreSQL client and the console at once on one database, and a clean stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psycopg
import pytest

import mldb
from conftest_server import ROOT, start_server
from console_http import Site

PASSWORD = "console-secret-1"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mldb_command(*args: str, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mldb.cli", *args], cwd=ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)


def answering(site: Site, process: subprocess.Popen, deadline: float = 60) -> None:
    """Poll until the console answers HTTP (any status) or its process ends."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert process.poll() is None, process.communicate()
        try:
            urllib.request.urlopen(site.base + "/api/tables", timeout=5)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("the console did not answer")


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return str(path)


@pytest.fixture
def small_db(tmp_path):
    path = str(tmp_path / "small.db")
    con = mldb.connect(path)
    con.execute("CREATE TABLE readings AS SELECT i AS id, i * 2.0 AS value FROM range(5) t(i)").fetchall()
    con.close()
    return path


def test_ui_answers_only_with_the_password_of_its_file(small_db, password_file):
    port = free_port()
    process = mldb_command("ui", small_db, "--port", str(port), "--password-file", password_file)
    try:
        site = Site(port, PASSWORD)
        answering(site, process)
        assert site.get("/api/tables", password="")[0] == 401
        status, headers, _ = Site(port, None).get("/api/tables")
        assert status == 401 and headers["www-authenticate"].startswith("Basic")
        assert site.get("/api/tables", password="wrong")[0] == 401
        tables = site.json("/api/tables")["tables"]
        assert [(t["name"], t["rows"]) for t in tables] == [("readings", 5)]
        assert site.json("/api/tables/readings")["sample"]["rows"][1] == ["1", "2.0"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert f"at http://127.0.0.1:{port}/" in stderr and "(read-only)" in stderr and "password" in stderr


def test_ui_refuses_a_file_that_mldb_serve_holds_open(tmp_path):
    served = start_server(tmp_path, database="held.db")
    try:
        process = mldb_command("ui", str(served.database), "--port", str(free_port()))
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 1
        assert "cannot open" in stderr and "read-only" in stderr and "mldb serve DB --ui-port" in stderr
    finally:
        assert served.stop() == 0


def test_serve_refuses_a_busy_console_port_with_status_1(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = mldb_command("serve", str(tmp_path / "shop.db"), "--port", "0", "--ui-port", str(port))
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert f"the console could not listen on 127.0.0.1:{port}" in stderr and "in use" in stderr


def test_serve_with_a_console_beside_it_on_the_same_database(tmp_path, password_file):
    served = start_server(tmp_path, "--ui-port", "0", "--password-file", password_file)
    found = re.search(r"console at http://127\.0\.0\.1:(\d+)/", served.log)
    assert found, served.log
    port = int(found.group(1))
    site = Site(port, PASSWORD)
    assert site.get("/api/tables", password="")[0] == 401
    with psycopg.connect(served.dsn(password=PASSWORD), autocommit=True) as con:
        con.execute("CREATE TABLE readings AS SELECT i AS x, i * 3.0 + 1 AS y FROM range(40) t(i)")
        assert [t["name"] for t in site.json("/api/tables")["tables"]] == ["readings"]  # while the client is in
        con.execute("CREATE MODEL trend PREDICT y FROM readings USING linear WITH (epochs = 2, seed = 1)")
        assert con.execute("SELECT count(PREDICT(trend)) FROM readings").fetchone() == (40,)
        (listed,) = site.json("/api/tables")["tables"]
        assert listed["trained"] == [{"model": "trend", "versions": [1]}]
        log = site.json("/api/predictions")
        assert [(r["model"], r["version"], r["rows"]) for r in log["log"]] == [("trend", 1, 40)]
        trace = site.json(f"/api/predictions/{log['log'][0]['query_fingerprint']}")
        assert trace["statement"] == "SELECT count(PREDICT(trend)) FROM readings"
        assert con.execute("SELECT 1").fetchone() == (1,)  # the wire server still answers
    assert served.stop() == 0
    assert "mldb serve: stopped" in served.log and refused(port)
