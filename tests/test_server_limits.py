"""``mldb serve``'s limits before and after authentication (mldb/server/limits.py), against a real
server with raw sockets and psycopg: message caps, --auth-timeout, --auth-delay,
--max-auth-per-address, --reserved-connections, --max-connections-per-user, and eight clients
of which one misbehaves."""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from conftest_server import ROOT, error_fields, read_message, start_server

PASSWORD = "s3cret-Pass"
CLAIMED = 250_000_000  # bytes a hostile message says it carries
MiB = 1 << 20


def _startup_packet(user: str = "tester") -> bytes:
    params = b"user\0" + user.encode() + b"\0database\0shop\0\0"
    return struct.pack("!ii", 8 + len(params), 196608) + params


def _open(port: int, source: str = "127.0.0.1", startup: bool = True) -> socket.socket:
    """A raw connection from ``source`` (any 127.x.y.z address reaches the server on 127.0.0.1)."""
    sock = socket.socket()
    sock.settimeout(30)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    if startup:
        sock.sendall(_startup_packet())
    return sock


def _closed(sock: socket.socket) -> bool:
    """Whether the server closed the connection (reading what it still sent first)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def _auth_request(sock: socket.socket) -> int:
    kind, body = read_message(sock)
    assert kind == b"R", (kind, body)
    return struct.unpack("!i", body[:4])[0]


def _refusal(port: int, source: str = "127.0.0.1") -> dict[str, str]:
    """The fields of the error a raw connection gets for its startup packet (psycopg's connection
    errors carry no SQLSTATE)."""
    with _open(port, source) as sock:
        kind, body = read_message(sock)
        assert kind == b"E", (kind, body)
        return error_fields(body)


def _rss(pid: int) -> int:
    """The server process's resident memory, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1)) * 1024


def _flood(sock: socket.socket, size: int) -> threading.Thread:
    """Send ``size`` zero bytes in the background, as long as the server reads them."""
    def send():
        try:
            for _ in range(size // MiB):
                sock.sendall(bytes(MiB))
        except OSError:
            pass
    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _dsn(served, **extra) -> str:
    return served.dsn(password=PASSWORD, **extra)


def _serve(tmp_path, *args: str, method: str = "scram-sha-256"):
    return start_server(tmp_path, "--password", PASSWORD, "--auth-method", method, *args)


def _query(served, sql: str = "SELECT 40 + 2", **extra):
    with psycopg.connect(_dsn(served, **extra), autocommit=True) as con:
        return con.execute(sql).fetchone()


# -- message caps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["scram-sha-256", "password"])
def test_oversized_startup_and_password_messages_are_refused_unread(tmp_path, method):
    served = _serve(tmp_path, method=method)
    try:
        assert _query(served) == (42,)
        before = _rss(served.process.pid)
        for _ in range(2):
            with _open(served.port, startup=False) as sock:  # a startup packet claiming 250 MB
                sock.sendall(struct.pack("!ii", CLAIMED, 196608))
                sender = _flood(sock, 100 * MiB)
                kind, body = read_message(sock)
                assert kind == b"E" and error_fields(body)["C"] == "08P01"
                assert "invalid length of startup packet" in error_fields(body)["M"]
                assert _closed(sock)
                sender.join()
            with _open(served.port) as sock:  # a password (or SASL) message claiming 250 MB
                assert _auth_request(sock) in (3, 10)
                sock.sendall(b"p" + struct.pack("!i", CLAIMED))
                sender = _flood(sock, 100 * MiB)
                kind, body = read_message(sock)
                assert kind == b"E" and error_fields(body)["C"] == "08P01", body
                assert "invalid message length" in error_fields(body)["M"]
                assert _closed(sock)
                sender.join()
        assert _rss(served.process.pid) - before < 64 * MiB  # (4 x 100 MB were offered)
        assert _query(served) == (42,)
    finally:
        served.stop()


# -- time limits ----------------------------------------------------------------------------------


def test_auth_timeout_closes_connections_that_do_not_authenticate(tmp_path):
    served = _serve(tmp_path, "--auth-timeout", "1", "--auth-delay", "0.2")
    try:
        silent = _open(served.port, startup=False)  # says nothing at all
        stalled = _open(served.port)  # sends its startup packet, then never answers the password request
        assert _auth_request(stalled) == 10
        trickle = _open(served.port, startup=False)  # sends a byte now and then (a per-read timeout lets it live)
        try:
            for byte in struct.pack("!i", 40)[:3]:
                trickle.sendall(bytes([byte]))
                time.sleep(0.4)
        except OSError:  # (closed already)
            pass
        for sock in (silent, stalled, trickle):
            assert _closed(sock)
            sock.close()
        _eventually(lambda: served.log.count("authentication timeout") >= 3)
        assert _query(served) == (42,)
    finally:
        served.stop()


def test_wrong_passwords_are_answered_after_the_auth_delay(tmp_path):
    served = _serve(tmp_path, "--auth-delay", "0.5")
    try:
        started = time.monotonic()
        for _ in range(3):
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                psycopg.connect(served.dsn(password="wrong"))
        assert time.monotonic() - started >= 1.0  # three guesses cost at least 3 x 0.5 s
        assert _query(served) == (42,)  # the right password is not delayed (no upper bound asserted)
    finally:
        served.stop()


# -- slots ----------------------------------------------------------------------------------------


def test_authenticating_connections_per_address(tmp_path):
    served = _serve(tmp_path, "--max-auth-per-address", "3")
    try:
        held = [_open(served.port) for _ in range(3)]
        for sock in held:
            assert _auth_request(sock) == 10
        with pytest.raises(psycopg.OperationalError,
                           match="too many connections from 127.0.0.1 are authenticating at once"):
            psycopg.connect(_dsn(served))
        assert _refusal(served.port)["C"] == "53300"
        with _open(served.port, source="127.0.0.2") as other:  # another address is not held up
            assert _auth_request(other) == 10
        for sock in held:
            sock.close()
        _eventually(lambda: _query(served) == (42,))
    finally:
        served.stop()


def test_unauthenticated_connections_cannot_take_the_reserved_slots(tmp_path):
    served = _serve(tmp_path, "--max-connections", "6", "--reserved-connections", "2")
    try:
        flood = [_open(served.port, source=f"127.0.0.{2 + n}") for n in range(4)]  # all 4 unreserved slots
        for sock in flood:
            assert _auth_request(sock) == 10
        clients = [psycopg.connect(_dsn(served), autocommit=True) for _ in range(6)]  # each gets in
        assert [con.execute("SELECT 1").fetchone() for con in clients] == [(1,)] * 6
        for sock in flood:  # each newcomer took the place of the oldest unauthenticated connection
            assert _closed(sock)
            sock.close()
        assert "its slot went to a newer connection" in served.log
        with pytest.raises(psycopg.OperationalError, match="sorry, too many clients already"):
            psycopg.connect(_dsn(served))  # six authenticated connections hold all six slots
        assert _refusal(served.port, "127.0.0.9") == {"S": "FATAL", "V": "FATAL", "C": "53300",
                                                      "M": "sorry, too many clients already"}
        for con in clients:
            con.close()
    finally:
        served.stop()


def test_max_connections_per_user(tmp_path):
    served = _serve(tmp_path, "--max-connections-per-user", "2")
    try:
        alice = [psycopg.connect(_dsn(served, user="alice")) for _ in range(2)]
        with pytest.raises(psycopg.OperationalError, match='too many connections for role "alice"'):
            psycopg.connect(_dsn(served, user="alice"))
        served.wait_for_log(r"user=alice .* refused: too many connections for role \"alice\"")
        assert _query(served, user="bob") == (42,)  # another user is not counted with alice
        alice.pop().close()
        _eventually(lambda: _query(served, user="alice") == (42,))  # her slot is free once the server saw her go
        for con in alice:
            con.close()
    finally:
        served.stop()


def _eventually(check, seconds: float = 30) -> None:
    """Retry ``check`` until it passes (the server frees a slot when it reads the client's goodbye)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            assert check()
            return
        except (psycopg.OperationalError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("args, message", [
    (["--max-connections", "5", "--reserved-connections", "5"], "reserved connections must be at least 0 and less "
                                                                 "than max connections (5), found 5"),
    (["--max-connections", "0"], "max connections must be at least 1, found 0"),
    (["--max-auth-per-address", "0"], "max authenticating connections per address must be at least 1"),
    (["--auth-timeout", "0"], "auth timeout must be more than 0 seconds"),
    (["--auth-delay", "20"], "auth delay must be at least 0 and less than the auth timeout (10.0 s), found 20.0"),
], ids=["reserved", "max", "per-address", "timeout", "delay"])
def test_limits_out_of_range_stop_the_server(tmp_path, args, message):
    done = subprocess.run([sys.executable, "-m", "mldb.server", "serve", str(tmp_path / "x.db"), "--port", "0", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and f"mldb serve: {message}" in done.stderr
    assert not (tmp_path / "x.db").exists()


# -- eight clients, one misbehaving -----------------------------------------------------------------


def _login(port: int, password: str = PASSWORD) -> socket.socket:
    """A raw connection past cleartext-password authentication (ReadyForQuery read)."""
    sock = _open(port)
    assert _auth_request(sock) == 3
    sock.sendall(b"p" + struct.pack("!i", 4 + len(password) + 1) + password.encode() + b"\0")
    kind = b""
    while kind not in (b"Z", b"E"):
        kind, body = read_message(sock)
    if kind == b"E":
        raise ConnectionRefusedError(error_fields(body)["M"])
    return sock


def _misbehave(port: int, dsn: str, flooded: threading.Event, seen: list) -> list[socket.socket]:
    """Open 200 connections that never authenticate (from 10 addresses), then send huge messages,
    wrong passwords and a storm of SETs; what the server answered goes to ``seen``."""
    held = []
    for n in range(200):
        try:
            held.append(_open(port, f"127.0.0.{2 + n % 10}"))
        except OSError:
            seen.append("connect failed")
    for sock in held:  # the server has answered each (an authentication request, a refusal or a close)
        try:
            sock.recv(1)
        except OSError:
            pass
    flooded.set()
    for packet in (struct.pack("!ii", CLAIMED, 196608), _startup_packet()):
        with _open(port, "127.0.0.12", startup=False) as sock:
            sock.sendall(packet)
            if packet != _startup_packet():  # a huge startup packet
                seen.append(error_fields(read_message(sock)[1])["C"])
                continue
            _auth_request(sock)  # a huge password message
            sock.sendall(b"p" + struct.pack("!i", CLAIMED))
            seen.append(error_fields(read_message(sock)[1])["C"])
    with _login(port) as sock:  # a huge query after logging in
        sock.sendall(b"Q" + struct.pack("!i", 1 << 30))
        seen.append(error_fields(read_message(sock)[1])["C"])
    for _ in range(3):
        try:
            _login(port, "wrong").close()
        except ConnectionRefusedError as refused:
            seen.append(str(refused))
    with psycopg.connect(dsn, autocommit=True) as con:
        for n in range(300):
            for sql in (f"SET VARIABLE storm = {n}", "SET default_order = 'DESC'", "SET threads = 1",
                        f"SET application_name = 'storm{n}'", "RESET default_order"):
                try:
                    con.execute(sql)
                except psycopg.Error as error:
                    seen.append(error.sqlstate)
    return held


def test_eight_clients_one_misbehaving(tmp_path):
    served = _serve(tmp_path, "--auth-delay", "0.2", method="password")
    with psycopg.connect(_dsn(served), autocommit=True) as setup:
        setup.execute("CREATE TABLE numbers AS SELECT i FROM range(1000) t(i)")
    connected, flooded = threading.Barrier(8), threading.Event()
    checked, failures, seen, held = {}, [], [], []

    def good(n: int) -> None:
        try:
            count = 0
            for round in range(3):  # a connection made before the flood, then two made during it
                with psycopg.connect(_dsn(served, application_name=f"good{n}"), autocommit=True) as con:
                    if round == 0:
                        connected.wait(60)
                    for k in range(20):
                        rows = con.execute("SELECT i FROM numbers WHERE i %% 7 = %s ORDER BY i LIMIT 3", [n]).fetchall()
                        assert rows == [(n,), (n + 7,), (n + 14,)], rows
                        assert con.execute("SELECT sum(i) FROM range(%s) t(i)", [k * 100]).fetchone() == \
                            (sum(range(k * 100)) if k else None,)
                        count += 1
                if round == 0:
                    flooded.wait(120)
            checked[n] = count
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append((n, repr(error)))

    def bad() -> None:
        connected.wait(60)
        try:
            held.extend(_misbehave(served.port, _dsn(served), flooded, seen))
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(("misbehaving", repr(error)))
        finally:
            flooded.set()

    threads = [threading.Thread(target=good, args=(n,)) for n in range(7)] + [threading.Thread(target=bad)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert failures == []
        assert checked == {n: 60 for n in range(7)}  # every query of the seven, with the right rows
        assert seen[:3] == ["08P01", "08P01", "08P01"]  # huge startup, password and query messages
        assert seen[3:6] == ['password authentication failed for user "tester"'] * 3
        assert set(seen[6:]) == {"42501"}  # SET threads: server-wide, refused for a client
        assert "its slot went to a newer connection" in served.log
        assert _query(served) == (42,)
    finally:
        for sock in held:
            sock.close()
        served.stop()
