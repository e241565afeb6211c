"""The listener: one thread per client, cancel requests, a watchdog, graceful shutdown.

DuckDB releases the GIL while it works, so a slow query in one client's thread does
not hold up the others. The watchdog notices clients that hang up while their query
runs and interrupts that query. ``stop()`` (SIGTERM/SIGINT) stops accepting, tells
idle clients the server is going away, gives running statements ``grace`` seconds,
interrupts what is left (open transactions roll back) and closes the database.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import socket
import threading
import time

from mldb.server import protocol
from mldb.server.client import Client

log = logging.getLogger("mldb.server")

_WATCH_EVERY = 0.25
_HUNG_UP = "client disconnected during a statement"


class Server:
    def __init__(self, database, host: str = "127.0.0.1", port: int = 5433, *, secret=None,
                 auth_method: str = "scram-sha-256", max_connections: int = 100, grace: float = 10.0):
        self.database, self.secret, self.auth_method = database, secret, auth_method
        self.max_connections, self.grace = max_connections, grace
        self.listener = socket.create_server((host, port), reuse_port=False, backlog=128)
        self.listener.settimeout(_WATCH_EVERY)
        self.address = self.listener.getsockname()
        self.stopping = False
        self._lock = threading.Lock()
        self._connections: dict[int, Client] = {}
        self._threads: set[threading.Thread] = set()
        self._pids = itertools.count(1000)

    # -- connection registry (used by Client) ------------------------------------------------
    def register(self, connection: Client) -> None:
        """Give a connection its process id and cancel key (BackendKeyData) and list it."""
        with self._lock:
            connection.pid, connection.secret = next(self._pids), secrets.randbits(31)
            self._connections[connection.pid] = connection

    def unregister(self, connection: Client) -> None:
        with self._lock:
            self._connections.pop(connection.pid, None)
            self._threads.discard(threading.current_thread())

    def full(self) -> bool:
        """More clients than --max-connections (the asking one counted)."""
        with self._lock:
            return sum(c.session is not None for c in self._connections.values()) >= self.max_connections

    def cancel(self, pid: int, secret: int) -> None:
        """CancelRequest: interrupt that connection's running statement if the key matches."""
        with self._lock:
            connection = self._connections.get(pid)
        if connection is not None and connection.secret == secret and connection.session is not None:
            log.info("cancel request for connection %d", pid)
            connection.session.interrupt()

    # -- serving -------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        watchdog = threading.Thread(target=self._watch, name="mldb-watchdog", daemon=True)
        watchdog.start()
        while not self.stopping:
            try:
                sock, address = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stopping:
                    break
                raise
            self._start(sock, address)
        self._shutdown()

    def _start(self, sock: socket.socket, address) -> None:
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = Client(self, sock, address)
        thread = threading.Thread(target=connection.serve, name=f"mldb-client-{connection.pid}", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _watch(self) -> None:
        """Interrupt the statement of a client that closed its socket while the statement ran."""
        while not self.stopping:
            time.sleep(_WATCH_EVERY)
            with self._lock:
                running = [c for c in self._connections.values() if c.busy and c.session is not None
                           and c.outcome != _HUNG_UP]
            for connection in running:
                if _hung_up(connection.sock):
                    log.info("client of connection %d hung up during a statement: interrupting it", connection.pid)
                    connection.outcome = _HUNG_UP
                    connection.session.interrupt()

    def stop(self) -> None:
        self.stopping = True

    def _shutdown(self) -> None:
        self.listener.close()
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            if not connection.busy:
                _end(connection)
        _wait(lambda: not any(c.busy for c in connections), self.grace)
        _wait(lambda: not _interrupt_busy(connections), 5.0)  # until no statement runs any more
        for connection in connections:
            _end(connection)
        for thread in list(self._threads):
            thread.join(timeout=5)
        self.database.close()
        log.info("mldb serve: stopped")


def _wait(done, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)


def _interrupt_busy(connections: list[Client]) -> bool:
    """Interrupt every running statement; whether any was running."""
    busy = [c for c in connections if c.busy and c.session is not None]
    for connection in busy:
        connection.session.interrupt()
    return bool(busy)


def _hung_up(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True


def _end(connection: Client) -> None:
    """Tell a client the server is shutting down and close its socket (its thread then cleans up)."""
    connection.outcome = "server shut down"
    try:
        connection.sock.sendall(protocol.error_fields(b"E", {"S": "FATAL", "V": "FATAL", "C": "57P01",
                                                              "M": "terminating connection due to administrator command"}))
        connection.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
