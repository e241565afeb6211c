"""The listener: one thread per client, cancel requests, a watchdog, graceful shutdown.

DuckDB releases the GIL while it works, so a slow query in one client's thread does
not hold up the others. Every way to stop a statement goes through its session's
``interrupt()`` (mldb's steps stop at their next batch, DuckDB at its next vector; the
statement rolls back and fails with SQLSTATE 57014):

Connection slots, the authentication deadline and the refusals are ``limits.Limits``; the
watchdog closes connections that have not authenticated in time.

- a CancelRequest (psql's Ctrl-C, psycopg's ``cancel()``) with the connection's key;
- the watchdog, when the client hangs up while its statement runs (its socket is
  polled for the peer's FIN, as PostgreSQL's ``client_connection_check_interval``);
- ``stop()`` (SIGTERM/SIGINT): stop accepting, tell idle clients the server is going
  away, give running statements ``grace`` seconds (none by default; a second signal
  ends the wait), interrupt what is left, wait for every client thread, close the database.

Due monitors run on a thread of their own (``mldb.monitors.background``) with a session that
has a client's rights (a monitor's queries are texts a client wrote): no client's connection
carries a run, so a client that crashes does not take it down. Shutdown interrupts a run in
progress (it rolls back) and joins that thread before the database closes; so it stops the web
console (``mldb serve --ui-port``: ``self.console``, a uvicorn server on a thread) first.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
import select
import socket
import ssl
import threading
import time

from mldb.server import protocol
from mldb.server.access import ClientAccess
from mldb.server.client import Client
from mldb.server.limits import Limits, too_many_for_user

log = logging.getLogger("mldb.server")

_WATCH_EVERY = 0.25
_HUNG_UP = "client disconnected during a statement"
_STOP_WAIT = 30.0  # seconds interrupted statements get to stop before the server exits without them
# The peer closed its end (Linux's POLLRDHUP sees it even with unread bytes; elsewhere recv peeks)
_CLOSED = (select.POLLRDHUP | select.POLLHUP | select.POLLERR | select.POLLNVAL) if hasattr(select, "POLLRDHUP") else 0


class Server:
    def __init__(self, database, host: str = "127.0.0.1", port: int = 5433, *, secret=None,
                 auth_method: str = "scram-sha-256", limits: Limits = Limits(), grace: float = 0.0,
                 tls=None, tls_required: bool = False, access: ClientAccess | None = None,
                 monitor_interval: float = 0.0):
        self.database, self.secret, self.auth_method = database, secret, auth_method
        self.access = access or ClientAccess()  # what clients may run and read (mldb.server.access)
        self.access.bind(database)
        self.tls, self.tls_required = tls, tls_required  # an ssl.SSLContext (mldb.server.tls), or None
        self.limits, self.grace = limits, grace
        self.listener = socket.create_server((host, port), reuse_port=False, backlog=128)
        self.listener.settimeout(_WATCH_EVERY)
        self.address = self.listener.getsockname()
        self.stopping = False
        self._hurry = threading.Event()  # a second stop(): interrupt running statements now
        self._lock = threading.Lock()
        self._connections: dict[int, Client] = {}
        self._threads: set[threading.Thread] = set()
        self._pids = itertools.count(1000)
        self.monitors = self._scheduler(monitor_interval) if monitor_interval > 0 else None
        self.console = None  # the web console beside the server (mldb serve --ui-port): a uvicorn server

    def _scheduler(self, interval: float):
        from mldb.monitors.background import Scheduler

        def prepare(session) -> None:  # as a client's session (mldb.server.client)
            session.restrict(self.access)
            session.load_udfs_allowed = self.access.allow_admin

        return Scheduler(self.database, interval, prepare=prepare)

    # -- connection registry (used by Client) ------------------------------------------------
    def register(self, connection: Client) -> str | None:
        """Give a new connection its process id, cancel key (BackendKeyData) and a slot, or the
        reason there is none (limits.Limits.admit)."""
        host = connection.address[0]
        with self._lock:
            connection.pid, connection.secret = next(self._pids), secrets.randbits(31)
            waiting = [c for c in self._connections.values() if not c.authenticated]
            authenticating = [c for c in waiting if not c.dropped]
            # (a dropped connection still counts for its address until its thread ends: closing it
            # early must not let that address try more passwords)
            from_address = sum(c.address[0] == host for c in waiting)
            slots = sum(not c.dropped for c in self._connections.values())
            verdict = self.limits.admit(slots, len(authenticating), from_address)
            if verdict == "refuse":
                return self.limits.refusal(from_address, host)
            if verdict == "replace":
                _drop(min(authenticating, key=lambda c: c.started), "closed: its slot went to a newer connection")
            self._connections[connection.pid] = connection
        return None

    def authenticated(self, connection: Client, user: str) -> str | None:
        """Mark a connection authenticated, or say why it may not go on (--max-connections-per-user)."""
        limit = self.limits.max_connections_per_user
        with self._lock:
            if connection.dropped:
                return connection.dropped
            if limit and sum(c.authenticated and c.user == user for c in self._connections.values()) >= limit:
                return too_many_for_user(user)
            connection.authenticated, connection.user = True, user
        return None

    def unregister(self, connection: Client) -> None:
        with self._lock:
            self._connections.pop(connection.pid, None)
            self._threads.discard(threading.current_thread())

    def cancel(self, pid: int, secret: int) -> None:
        """CancelRequest: interrupt that connection's running statement if the key matches."""
        with self._lock:
            connection = self._connections.get(pid)
        if connection is not None and connection.secret == secret and connection.session is not None:
            log.info("cancel request for connection %d", pid)
            if connection.busy:  # (an idle connection has nothing to cancel, as in PostgreSQL)
                connection.cancel_message = connection.message  # the watchdog repeats it until it stops
                _interrupt(connection, again=True)

    # -- serving -------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        watchdog = threading.Thread(target=self._watch, name="mldb-watchdog", daemon=True)
        watchdog.start()
        if self.monitors is not None:
            self.monitors.start()
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
        """Interrupt the statement of a client that closed its socket while the statement ran, and
        repeat the interrupt of a cancelled one each second until it stops (a cancel that came
        while the statement was between two steps would otherwise be lost)."""
        while not self.stopping:
            time.sleep(_WATCH_EVERY)
            self._expire()
            with self._lock:
                running = [c for c in self._connections.values() if c.busy and c.session is not None]
            for connection in running:
                # (busy read again after the hang-up was seen: a client that had its answer, and then
                # left, is not interrupted; busy goes before ReadyForQuery is sent)
                if connection.outcome != _HUNG_UP and _hung_up(connection.sock) and connection.busy:
                    log.info("client of connection %d hung up during a statement: interrupting it", connection.pid)
                    connection.outcome = _HUNG_UP
                if connection.outcome == _HUNG_UP or connection.cancel_message == connection.message:
                    _interrupt(connection)

    def _expire(self) -> None:
        """Close connections that have not authenticated within --auth-timeout (as PostgreSQL's
        authentication_timeout: without a message; the handshake or read in progress fails)."""
        deadline = time.monotonic() - self.limits.auth_timeout
        with self._lock:
            for connection in self._connections.values():
                if not connection.authenticated and not connection.dropped and connection.started < deadline:
                    _drop(connection, "authentication timeout")

    def stop(self) -> None:
        """Shut down (called from a signal handler): a second call stops waiting for running statements."""
        if self.stopping:
            self._hurry.set()
        self.stopping = True

    def _shutdown(self) -> None:
        self.listener.close()
        console_stopped = self._stop_console()
        monitors_stopped = self.monitors is None or self.monitors.stop(_STOP_WAIT)  # a run in progress: cancelled
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            if not connection.busy:
                _end(connection)
        if self.grace > 0 and any(c.busy for c in connections):
            log.info("mldb serve: stopping; running statements have %.1f s to finish", self.grace)
            _wait(lambda: self._hurry.is_set() or not any(c.busy for c in connections), self.grace)
        stopped = _wait(lambda: not _interrupt_busy(connections), _STOP_WAIT)  # until no statement runs
        for connection in connections:
            _end(connection)
        threads = list(self._threads)
        deadline = time.monotonic() + 5
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if not stopped or not monitors_stopped or not console_stopped or any(t.is_alive() for t in threads):
            # A statement that does not stop must not run on while the interpreter exits under it
            # (torch and DuckDB abort the process then): leave without closing the database.
            # DuckDB's write-ahead log keeps every committed transaction.
            log.error("mldb serve: a statement did not stop after it was interrupted; exiting without "
                      "closing the database")
            logging.shutdown()
            os._exit(1)
        self.database.close()
        log.info("mldb serve: stopped")

    def _stop_console(self) -> bool:
        """Stop the console (its requests in flight finish) before the database it reads closes."""
        if self.console is None:
            return True
        self.console.should_exit = True
        self.console.thread.join(timeout=_STOP_WAIT)
        return not self.console.thread.is_alive()


def _wait(done, seconds: float) -> bool:
    """Poll ``done()`` until it is true (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _interrupt_busy(connections: list[Client]) -> bool:
    """Interrupt every running statement (again each second, in case one was between two
    steps when it came); whether any is still running."""
    busy = [c for c in connections if c.busy and c.session is not None]
    for connection in busy:
        _interrupt(connection)
    return bool(busy)


def _interrupt(connection: Client, again: bool = False) -> None:
    """Interrupt the connection's running statement; called repeatedly, at most once a second
    (unless ``again``), in case it was between two steps when an interrupt came."""
    now = time.monotonic()
    if again or now - connection.interrupted_at >= 1.0:
        connection.interrupted_at = now
        connection.session.interrupt()


def _hung_up(sock: socket.socket) -> bool:
    """Whether the client closed its end (even with bytes it sent still unread, e.g. Terminate)."""
    try:
        if _CLOSED:
            poller = select.poll()
            poller.register(sock, _CLOSED)
            return bool(poller.poll(0))
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except (OSError, ValueError):  # (a closed socket has no file descriptor any more)
        return True


def _drop(connection: Client, reason: str) -> None:
    """Close a connection that has not authenticated: its thread's read fails and it ends."""
    connection.dropped = reason
    with contextlib.suppress(OSError):
        socket.socket.shutdown(connection.sock, socket.SHUT_RDWR)


def _end(connection: Client) -> None:
    """Tell a client the server is shutting down and close its socket (its thread then cleans up)."""
    connection.outcome = "server shut down"
    if isinstance(connection.sock, ssl.SSLSocket):
        # (a TLS connection's thread may be inside a read: writing to it from here is not safe; its
        # client sees the connection close)
        with contextlib.suppress(OSError):
            socket.socket.shutdown(connection.sock, socket.SHUT_RDWR)
        return
    try:
        connection.sock.sendall(protocol.error_fields(b"E", {"S": "FATAL", "V": "FATAL", "C": "57P01",
                                                              "M": "terminating connection due to administrator command"}))
        connection.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
