"""Fixtures for the wire-server tests: a real ``python -m mldb.server serve`` subprocess on a
free port, serving a real database file, its access log written to a file."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Served:
    process: subprocess.Popen
    port: int
    log_path: Path
    database: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def dsn(self, **extra) -> str:
        options = {"host": "127.0.0.1", "port": self.port, "user": "tester", "dbname": "shop", **extra}
        return " ".join(f"{key}={value}" for key, value in options.items())

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=60)

    def wait_for_log(self, pattern: str, timeout: float = 30) -> str:
        """The first access-log line matching ``pattern`` (the server writes it asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log)
            if found:
                return found.group(0)
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r} in:\n{self.log}")


_SERVE = "\nimport sys\nfrom mldb.server.cli import serve_main\nsys.exit(serve_main(sys.argv[1:]))"


def start_server(directory: Path, *args: str, database: str = "shop.db", hooks: str = "") -> Served:
    """``hooks``: Python the server process runs first (a probe that patches mldb.server)."""
    log_path = directory / f"server-{time.monotonic_ns()}.log"
    path = directory / database
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = ["-m", "mldb.server", "serve"]
    if hooks:
        command = ["-c", hooks + _SERVE]
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, *command, str(path), "--port", "0", *args],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    served = Served(process, 0, log_path, path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r" on [\d.]+:(\d+), ", served.log)
        if found:
            served.port = int(found.group(1))
            return served
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{served.log}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"server did not start:\n{served.log}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    served = start_server(tmp_path_factory.mktemp("served"))
    yield served
    served.stop()


# -- raw protocol helpers for bad-input tests (bytes written by hand, not with mldb's codec) -----


def raw_connect(port: int, user: str = "tester") -> socket.socket:
    """A socket past start-up (trust authentication): ReadyForQuery has been read."""
    return raw_session(port, user)[0]


def raw_session(port: int, user: str = "tester") -> tuple[socket.socket, int]:
    """``raw_connect``'s socket and the connection's process id (BackendKeyData), which names it
    in the server's access log."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    params = b"user\0" + user.encode() + b"\0database\0shop\0\0"
    sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    keys = [body for kind, body in read_until(sock, b"Z") if kind == b"K"]
    return sock, struct.unpack("!i", keys[0][:4])[0]


def send(sock: socket.socket, kind: bytes, body: bytes = b"") -> None:
    sock.sendall(kind + struct.pack("!i", len(body) + 4) + body)


def read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    header = _exact(sock, 5)
    kind, length = header[:1], struct.unpack("!i", header[1:])[0]
    return kind, _exact(sock, length - 4)


def read_until(sock: socket.socket, kind: bytes) -> list[tuple[bytes, bytes]]:
    messages = []
    while True:
        message = read_message(sock)
        messages.append(message)
        if message[0] == kind:
            return messages


def error_fields(body: bytes) -> dict[str, str]:
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode()
    return fields


def _exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    return data
