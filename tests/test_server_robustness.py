"""``mldb serve`` under bad input, wrong passwords, dying clients and shutdown signals."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap

import pg8000.native
import psycopg
import pytest
from conftest_server import (  # noqa: F401 - server: the fixture
    ROOT, error_fields, raw_connect, raw_session, read_message, read_until, send, server, start_server)

import mldb


def _startup_reply(port: int, packet: bytes) -> dict[str, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(packet)
        kind, body = read_message(sock)
        assert kind == b"E"
        assert sock.recv(1) == b""  # and the server closed the connection
        return error_fields(body)


def _still_serving(server) -> None:  # noqa: F811
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        assert con.execute("SELECT 'serving'").fetchone() == ("serving",)


@pytest.mark.parametrize("packet, sqlstate", [
    (struct.pack("!i", 4), "08P01"),  # a length shorter than the packet header
    (struct.pack("!ii", 20_000, 196608), "08P01"),  # longer than any startup packet may be
    (struct.pack("!ii", 12, 131072) + b"x\0\0\0", "0A000"),  # protocol 2.0
    (struct.pack("!ii", 13, 196608) + b"user\0", "08P01"),  # a name without a value
    (struct.pack("!ii", 20, 196608) + b"database\0x\0\0", "28000"),  # no user name
], ids=["short", "huge", "protocol-2", "unpaired", "no-user"])
def test_malformed_startup_gets_fatal_error(server, packet, sqlstate):  # noqa: F811
    fields = _startup_reply(server.port, packet)
    assert fields["S"] == "FATAL" and fields["C"] == sqlstate
    _still_serving(server)


@pytest.mark.parametrize("request_code", [80877103, 80877104], ids=["SSLRequest", "GSSENCRequest"])
def test_encryption_request_is_declined_then_startup_proceeds(server, request_code):  # noqa: F811
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(struct.pack("!ii", 8, request_code))
        assert sock.recv(1) == b"N"
        params = b"user\0tester\0\0"
        sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        kinds = [kind for kind, _ in read_until(sock, b"Z")]
        assert kinds[0] == b"R" and b"K" in kinds and b"S" in kinds


def test_extended_protocol_misuse(server):  # noqa: F811
    with raw_connect(server.port) as sock:
        send(sock, b"E", b"nope\0" + struct.pack("!i", 0))  # Execute an unknown portal
        send(sock, b"S")
        (kind, body), (_, status) = read_until(sock, b"Z")
        assert kind == b"E" and error_fields(body)["C"] == "34000" and status == b"I"

        send(sock, b"B", b"\0nope\0" + struct.pack("!hhh", 0, 0, 0))  # Bind an unknown statement
        send(sock, b"S")
        (kind, body), _ = read_until(sock, b"Z")
        assert error_fields(body)["C"] == "26000"

        send(sock, b"P", b"two\0SELECT $1::INTEGER + $2::INTEGER\0" + struct.pack("!h", 0))
        send(sock, b"S")
        assert [kind for kind, _ in read_until(sock, b"Z")] == [b"1", b"Z"]
        send(sock, b"P", b"two\0SELECT 1\0" + struct.pack("!h", 0))  # the name is taken
        send(sock, b"S")
        (kind, body), _ = read_until(sock, b"Z")
        assert error_fields(body)["C"] == "42P05"

        send(sock, b"B", b"\0two\0" + struct.pack("!hh", 0, 1) + struct.pack("!i", 1) + b"1" + struct.pack("!h", 0))
        send(sock, b"E", b"\0" + struct.pack("!i", 0))  # skipped: an error came before Sync
        send(sock, b"S")
        messages = read_until(sock, b"Z")
        assert [kind for kind, _ in messages] == [b"E", b"Z"]
        assert error_fields(messages[0][1])["C"] == "08P01"
        assert "supplies 1 parameters" in error_fields(messages[0][1])["M"]

        send(sock, b"Q", b"SELECT 40 + 2\0")  # the connection still works
        messages = read_until(sock, b"Z")
        assert [kind for kind, _ in messages] == [b"T", b"D", b"C", b"Z"]
        assert messages[1][1].endswith(b"42")


@pytest.mark.parametrize("message", [b"~\0\0\0\4", b"Q" + struct.pack("!i", 1 << 30)], ids=["unknown-type", "huge"])
def test_garbage_message_closes_only_that_connection(server, message):  # noqa: F811
    with raw_connect(server.port) as sock:
        sock.sendall(message)
        kind, body = read_message(sock)
        assert kind == b"E" and error_fields(body)["C"] == "08P01"
        assert sock.recv(1) == b""
    _still_serving(server)


def test_client_killed_mid_query_is_interrupted(server):  # noqa: F811
    script = textwrap.dedent(f"""
        import psycopg, time
        con = psycopg.connect("{server.dsn()}", autocommit=True)
        con.pgconn.send_query(b"SELECT count(*) FROM range(100000000000) a, range(1000) b WHERE a.range + b.range < 0")
        while con.pgconn.flush():
            pass
        print(con.info.backend_pid, flush=True)
        time.sleep(600)
    """)
    client = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid = int(client.stdout.readline())  # the query is on its way: now the client dies
    client.kill()
    client.wait()
    server.wait_for_log(rf"client of connection {pid} hung up during a statement: interrupting it")
    server.wait_for_log(rf"connection {pid} from .* client disconnected during a statement")
    _still_serving(server)


# A probe for the server: a connection's thread, once it has sent a query's answer (ReadyForQuery) but
# before it leaves the handler, waits until its client has closed the socket and the watchdog has made
# a whole pass since. A client that leaves once it has its answer, at that moment, was once logged as
# "client disconnected during a statement" (and the watchdog interrupted its session): another test's
# wait for that line then ended early.
_HELD_AFTER_ANSWER = textwrap.dedent("""
    import threading
    from mldb.server import app, client
    passes, watched = [0], threading.Condition()
    expire = app.Server._expire
    def counted(self):  # a watchdog pass begins (then it looks at the running statements)
        with watched:
            passes[0] += 1
            watched.notify_all()
        expire(self)
    app.Server._expire = counted
    query = client.Client._query
    def held(self, body):
        query(self, body)
        with watched:
            assert watched.wait_for(lambda: app._hung_up(self.sock), timeout=60), "the client did not close"
            seen = passes[0]
            assert watched.wait_for(lambda: passes[0] >= seen + 2, timeout=60), "the watchdog stopped"
    client.Client._query = held
""")


def test_client_that_leaves_once_answered_did_not_hang_up_mid_statement(tmp_path):
    served = start_server(tmp_path, hooks=_HELD_AFTER_ANSWER)
    try:
        sock, pid = raw_session(served.port)
        with sock:
            send(sock, b"Q", b"SELECT 42\0")
            assert [kind for kind, _ in read_until(sock, b"Z")] == [b"T", b"D", b"C", b"Z"]
            send(sock, b"X")
        line = served.wait_for_log(rf"connection {pid} from .*")
    finally:
        served.stop()
    assert line.endswith(" ok"), line
    assert f"client of connection {pid} hung up" not in served.log


def test_connection_limit(tmp_path):
    served = start_server(tmp_path, "--max-connections", "1")
    try:
        with psycopg.connect(served.dsn()) as first:
            with pytest.raises(psycopg.OperationalError, match="too many clients"):
                psycopg.connect(served.dsn())
            assert first.execute("SELECT 1").fetchone() == (1,)
        served.wait_for_log(r"queries=\d+ duration=\S+ ok")  # the first client has gone
        _still_serving(served)  # and its slot is free again
    finally:
        served.stop()


# -- authentication ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["scram-sha-256", "md5", "password"])
def test_password_methods(tmp_path, method):
    password_file = tmp_path / "secret"
    password_file.write_text("s3cret-Pass\n")
    served = start_server(tmp_path, "--password-file", str(password_file), "--auth-method", method)
    try:
        with psycopg.connect(served.dsn(password="s3cret-Pass"), autocommit=True) as con:
            assert con.execute("SELECT 42").fetchone() == (42,)
        con = pg8000.native.Connection("tester", host="127.0.0.1", port=served.port, password="s3cret-Pass")
        assert con.run("SELECT 'pg8000'") == [["pg8000"]]
        con.close()
        with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "tester"'):
            psycopg.connect(served.dsn(password="wrong"))
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(served.dsn())  # no password at all
        served.wait_for_log(r"user=tester .* authentication failed")
    finally:
        assert served.stop() == 0
    assert "s3cret-Pass" not in served.log


def test_psql_with_password(tmp_path):
    served = start_server(tmp_path, "--password", "pw")
    try:
        args = [shutil.which("psql"), "-h", "127.0.0.1", "-p", str(served.port), "-U", "me", "-At", "-c", "SELECT 7"]
        assert subprocess.run(args, check=False, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": "pw"},
                              timeout=60).stdout.strip() == "7"
        bad = subprocess.run(args, check=False, capture_output=True, text=True, env={**os.environ, "PGPASSWORD": "no"}, timeout=60)
        assert bad.returncode != 0 and "password authentication failed" in bad.stderr
    finally:
        served.stop()


def test_non_local_bind_needs_password_or_insecure(tmp_path):
    command = [sys.executable, "-c", "import sys; from mldb.cli import main; sys.exit(main())", "serve",
               str(tmp_path / "open.db"), "--host", "0.0.0.0", "--port", "0"]
    refused = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert refused.returncode == 2 and "refusing to listen on 0.0.0.0 without a password" in refused.stderr
    assert not (tmp_path / "open.db").exists()  # nothing was opened
    served = start_server(tmp_path, "--host", "0.0.0.0", "--insecure", database="open.db")
    served.stop()
    assert "0.0.0.0" in served.log


# -- shutdown ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_shuts_down_cleanly(tmp_path, signum):
    served = start_server(tmp_path)
    with psycopg.connect(served.dsn(), autocommit=True) as setup:
        setup.execute("CREATE TABLE kept(x INTEGER)")
        setup.execute("INSERT INTO kept VALUES (1)")
    pending = psycopg.connect(served.dsn(), autocommit=True)
    pending.execute("BEGIN")
    pending.execute("INSERT INTO kept VALUES (2)")  # never committed
    assert served.stop(signum) == 0
    with pytest.raises(psycopg.OperationalError):
        pending.execute("SELECT 1")
    assert "mldb serve: stopped" in served.log and "server shut down" in served.log
    with mldb.connect(str(served.database)) as con:  # the file was closed: another process can open it
        assert con.execute("SELECT x FROM kept").fetchall() == [(1,)]


def test_shutdown_interrupts_statements_after_the_grace_period(tmp_path):
    served = start_server(tmp_path, "--grace", "0.5")
    busy = psycopg.connect(served.dsn(), autocommit=True)
    busy.pgconn.send_query(b"SELECT count(*) FROM range(100000000000) a, range(1000) b WHERE a.range + b.range < 0")
    while busy.pgconn.flush():
        pass
    assert served.stop() == 0
    assert "mldb serve: stopped" in served.log
    busy.close()
