"""Cancel works in every frontend (SPEC.md section 8): TRAIN, EMBED, CREATE INDEX, PREDICT and plain SQL.

Each statement gets work for many minutes, is cancelled once it is under way, and then
the test checks that

- it failed with ``mldb.OperationalError`` / SQLSTATE 57014 (psycopg's ``QueryCanceled``);
- it stopped early: counted, never timed (epochs run, texts embedded, index chunks added,
  or simply that it did not finish), and nothing keeps running afterwards;
- nothing was half-written: the same model versions, training log, prediction log,
  tables, rows and indexes as before;
- the connection, server or shell is still usable.

Frontends: ``Connection.interrupt()`` from another thread, a PostgreSQL CancelRequest
(psycopg's ``cancel_safe()`` and psql's Ctrl-C), a client that disconnects mid-statement,
SIGTERM to ``mldb serve``, Ctrl-C in the ``mldb`` shell on a real terminal (pty), and
interrupting a Jupyter cell (SIGINT while ``%mldb`` runs).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

import mldb

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 100_000  # TRAIN would run for hours: any early end is the cancel's doing
INDEX_ROWS = 300_000
SETUP = [
    "CREATE TABLE pts AS SELECT i::DOUBLE AS x, (i % 7)::DOUBLE AS y, i % 2 = 0 AS up FROM range(4000) t(i)",
    "CREATE MODEL slow PREDICT up FROM pts WITH (epochs = 1, seed = 1)",
    f"CREATE TABLE vecs AS SELECT i AS id, [random() for j in range(32)]::FLOAT[32] AS v FROM range({INDEX_ROWS}) t(i)",
]
TRAIN = f"TRAIN slow WITH (epochs = {EPOCHS}, patience = {EPOCHS})"
PLAIN = ("INSERT INTO pts SELECT r::DOUBLE, 0, true FROM range(1000000000000) t(r) "
         "WHERE hash(r) % 1000000 = 0")  # about 10^12 rows to look at; a few match and are inserted


def statement(kind: str) -> str:
    """The statement of each kind (EMBED's texts are new each time: none comes from the cache)."""
    token = uuid.uuid4().hex[:8]
    return {
        "train": TRAIN,
        "embed": f"CREATE TABLE notes AS SELECT i, EMBED('note {token} number ' || i) AS v FROM range(20000) t(i)",
        "create_index": "CREATE INDEX vecs_v ON vecs USING FAISS (v) WITH (type = 'hnsw')",
        "predict": "SELECT count(PREDICT(slow, i::DOUBLE, (i % 7)::DOUBLE)) FROM range(50000000) t(i)",
        "plain": PLAIN,
    }[kind]


KINDS = ["train", "embed", "create_index", "predict", "plain"]
CANCELED = re.compile(r"canceling statement due to user request|INTERRUPT Error: Interrupted!")  # mldb's, DuckDB's

STATE_QUERIES = {
    "versions": "SELECT list(version ORDER BY version) FROM mldb.model_versions WHERE model = 'slow'",
    "deployed": "SELECT deployed_version FROM mldb.models WHERE name = 'slow'",
    "training_log": "SELECT count(*) FROM mldb.training_log",
    "prediction_log": "SELECT count(*) FROM mldb.prediction_log",
    "pts": "SELECT count(*) FROM pts",
    "tables": "SELECT list(table_name ORDER BY table_name) FROM duckdb_tables() WHERE schema_name = 'main'",
    "indexes": "SELECT count(*) FROM mldb.indexes",
    "duckdb_indexes": "SELECT count(*) FROM duckdb_indexes()",
}


def state(query) -> dict:
    """What a cancelled statement must leave as it was; ``query(sql)`` returns the first value."""
    return {name: query(sql) for name, sql in STATE_QUERIES.items()}


LIMIT = 120  # seconds a cancelled statement may take to stop before the test gives up on it (a failure)


def wait_until(condition, what: str, timeout: float = LIMIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def cancelled(run, started, cancel) -> BaseException:
    """Run ``run()`` in a helper thread, call ``cancel()`` once ``started()`` is true, and return
    the exception the statement ended with. A statement that ignores the cancel fails the test
    after ``LIMIT`` seconds instead of hanging it (the helper thread is left behind)."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = run()
        except BaseException as error:  # noqa: BLE001 - the test looks at it
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_until(lambda: started() or not thread.is_alive(), "the statement to get going")
    cancel()
    thread.join(LIMIT)
    assert not thread.is_alive(), f"the statement still ran {LIMIT} s after it was cancelled"
    assert "error" in outcome, f"the statement finished despite the cancel: {outcome.get('value')!r}"
    return outcome["error"]


def after(seconds: float):
    """A ``started`` condition for statements with no counter: true ``seconds`` from now."""
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() >= deadline


# -- counters of work done (in this process) ----------------------------------------------------

class Work:
    """Counts what the steps do: epochs trained, texts embedded, index chunks added. A step
    still at work ``LIMIT`` seconds after the cancel is stopped by force (the test fails)."""

    def __init__(self, monkeypatch):
        from mldb.models import train
        from mldb.vectors import embedding
        from mldb.vectors import faiss as fx

        self.epochs = self.texts = self.chunks = 0
        self.deadline = float("inf")
        epoch, build = train._epoch, fx.build

        def counted_epoch(*args, **kwargs):
            self.epochs += 1
            self._safety()
            return epoch(*args, **kwargs)

        def counted_build(*args, check=None, **kwargs):
            def counted_check():
                self.chunks += 1
                self._safety()
                if check is not None:
                    check()
            return build(*args, check=counted_check, **kwargs)

        model = embedding.load_model()  # the default model, offline, loaded once per process
        encode = model.encode

        def counted_encode(texts, *args, **kwargs):
            self.texts += len(texts)
            self._safety()
            return encode(texts, *args, **kwargs)

        monkeypatch.setattr(train, "_epoch", counted_epoch)
        monkeypatch.setattr(fx, "build", counted_build)
        monkeypatch.setattr(model, "encode", counted_encode)

    def _safety(self) -> None:
        if time.monotonic() > self.deadline:
            raise RuntimeError(f"test safety stop: still working {LIMIT} s after the cancel")

    def cancel_with(self, cancel):
        def cancel_and_start_the_clock():
            self.deadline = time.monotonic() + LIMIT
            cancel()
        return cancel_and_start_the_clock

    @property
    def done(self) -> tuple[int, int, int]:
        return self.epochs, self.texts, self.chunks

    def started(self, kind: str):
        return {"train": lambda: self.epochs > 0, "embed": lambda: self.texts > 0,
                "create_index": lambda: self.chunks > 1}.get(kind) or after(1.5)

    def check_stopped_early(self, kind: str) -> None:
        if kind == "train":
            assert 0 < self.epochs < EPOCHS
        elif kind == "embed":
            assert 0 < self.texts < 20000
        elif kind == "create_index":
            assert 1 < self.chunks < INDEX_ROWS // 4096


# -- 1. Connection.interrupt() ----------------------------------------------------------------

@pytest.fixture
def prepared(tmp_path):
    con = mldb.connect(str(tmp_path / "cancel.db"))
    for sql in SETUP:
        con.execute(sql)
    yield con
    con.close()


def first(con):
    return lambda sql: con.execute(sql).fetchone()[0]


@pytest.mark.parametrize("kind", [*KINDS])
def test_connection_interrupt_from_another_thread(prepared, monkeypatch, kind):
    con = prepared
    work = Work(monkeypatch)
    before = state(first(con))
    error = cancelled(lambda: con.execute(statement(kind)).fetchall(), work.started(kind),
                      work.cancel_with(con.interrupt))
    assert isinstance(error, mldb.OperationalError) and error.sqlstate == "57014", error
    assert CANCELED.search(str(error))
    work.check_stopped_early(kind)
    done = work.done
    assert state(first(con)) == before  # nothing half-written
    assert con.execute("SELECT 42").fetchone() == (42,)  # the connection works
    con.execute("INSERT INTO pts VALUES (1, 2, true)")
    assert first(con)("SELECT count(*) FROM pts") == before["pts"] + 1
    assert work.done == done  # and nothing went on in the background


def test_interrupt_in_an_explicit_transaction_fails_it(prepared, monkeypatch):
    """Inside BEGIN ... the cancelled TRAIN fails the transaction; ROLLBACK undoes the rest too."""
    con = prepared
    work = Work(monkeypatch)
    before = state(first(con))
    con.execute("BEGIN")
    con.execute("INSERT INTO pts VALUES (1, 2, true)")
    error = cancelled(lambda: con.execute(TRAIN), work.started("train"), work.cancel_with(con.interrupt))
    assert isinstance(error, mldb.OperationalError) and error.sqlstate == "57014", error
    con.rollback()
    assert state(first(con)) == before
    assert con.execute("SELECT 42").fetchone() == (42,)


def test_interrupt_when_nothing_runs_is_harmless(prepared):
    con = prepared
    con.interrupt()  # nothing running: nothing to cancel, and the next statement is not hit
    assert con.execute("SELECT count(*) FROM pts").fetchone() == (4000,)


# -- 2-4. the wire server ---------------------------------------------------------------------------

# ``mldb serve`` with a probe that writes each TRAIN epoch, and each statement begun, as a line into
# a file (another process's work): the name of the thread it ran on, which for the server is its
# connection's (``mldb-client-<process id>``).
PROBE = textwrap.dedent("""
    import os, sys, threading
    from mldb.models import train
    epoch = train._epoch
    def counted(*args, **kwargs):
        with open(os.environ["MLDB_TEST_EPOCHS"], "a") as log:
            log.write(threading.current_thread().name + "\\n")
        return epoch(*args, **kwargs)
    train._epoch = counted
    from mldb import session
    execute, inside = session.Session.execute, threading.local()
    def marked(*args, **kwargs):  # a statement began: the moment a cancel has something to stop
        outer = getattr(inside, "statement", False)
        if not outer:  # (not a query a statement runs itself, e.g. TRAIN's read of its table)
            with open(os.environ["MLDB_TEST_STATEMENTS"], "a") as log:
                log.write(threading.current_thread().name + "\\n")
        inside.statement = True
        try:
            return execute(*args, **kwargs)
        finally:
            inside.statement = outer
    session.Session.execute = marked
    from mldb.cli import main
    sys.exit(main())
""")


class Probe:
    """An ``mldb`` command (serve or shell) in a subprocess that counts the epochs it trains
    and the statements it begins, each by the thread that ran it (a fixed wait instead failed
    on a loaded machine: the Ctrl-C came before the shell had read the line, and cancelled only
    the input)."""

    def __init__(self, directory: Path):
        self.counter = directory / f"epochs-{uuid.uuid4().hex[:8]}"
        self.counter.write_text("")
        self.begun = directory / f"statements-{uuid.uuid4().hex[:8]}"
        self.begun.write_text("")
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "MLDB_TEST_EPOCHS": str(self.counter), "MLDB_TEST_STATEMENTS": str(self.begun)}
        self.env.pop("PYTEST_CURRENT_TEST", None)
        self.command = [sys.executable, "-c", PROBE]

    @property
    def epochs(self) -> int:
        return self.epochs_on()

    def epochs_on(self, thread: str | None = None) -> int:
        """Epochs trained (on that thread, or on any)."""
        return _lines(self.counter, thread)

    def statements_on(self, thread: str | None = None) -> int:
        return _lines(self.begun, thread)

    def running(self, kind: str, thread: str | None = None):
        """A condition true once the next statement of ``kind`` is under way (given a connection's
        thread, its first, which may have begun already): for TRAIN its first epoch, for the others
        their start and a second more (into DuckDB's work)."""
        epochs, statements, since = (0, 0, []) if thread else (self.epochs, self.statements_on(), [])

        def condition() -> bool:
            if kind == "train":
                return self.epochs_on(thread) > epochs
            if not since and self.statements_on(thread) > statements:
                since.append(time.monotonic())
            return bool(since) and time.monotonic() - since[0] >= 1.0
        return condition


def _lines(path: Path, thread: str | None) -> int:
    return sum(thread is None or line == thread for line in path.read_text().splitlines())


def _connection(pid: int) -> str:
    """The server's thread for connection ``pid`` (mldb.server.app)."""
    return f"mldb-client-{pid}"


class Server:
    def __init__(self, directory: Path, *args: str):
        self.probe = Probe(directory)
        self.database = directory / "served.db"
        self.log_path = directory / f"server-{uuid.uuid4().hex[:8]}.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([*self.probe.command, "serve", str(self.database), "--port", "0", *args],
                                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=self.probe.env)
        wait_until(lambda: re.search(r" on [\d.]+:(\d+), ", self.log) or self.process.poll() is not None,
                   "the server to start", 120)
        found = re.search(r" on [\d.]+:(\d+), ", self.log)
        assert found, f"the server did not start:\n{self.log}"
        self.port = int(found.group(1))

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    @property
    def epochs(self) -> int:
        return self.probe.epochs

    def running(self, kind: str, pid: int | None = None):
        return self.probe.running(kind, pid and _connection(pid))

    def access_line(self, pid: int) -> str | None:
        """Connection ``pid``'s access-log line: written once it has ended (its statement returned)."""
        found = re.search(rf"^.* connection {pid} from .*$", self.log, re.MULTILINE)
        return found and found.group(0)

    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=tester dbname=served"

    def connect(self):
        import psycopg

        return psycopg.connect(self.dsn(), autocommit=True)

    def state(self) -> dict:
        with self.connect() as con:
            return state(lambda sql: con.execute(sql).fetchone()[0])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=LIMIT)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    served = Server(tmp_path_factory.mktemp("cancel-server"))
    with served.connect() as con:
        for sql in SETUP:
            con.execute(sql)
    yield served
    assert served.stop() == 0, served.log


@pytest.mark.parametrize("kind", [*KINDS])
def test_psycopg_cancel_request(server, kind):
    import psycopg

    before = server.state()
    with server.connect() as con:
        started = server.running(kind)
        error = cancelled(lambda: con.execute(statement(kind)), started, con.cancel_safe)
        assert isinstance(error, psycopg.errors.QueryCanceled) and error.sqlstate == "57014", error
        assert CANCELED.search(str(error))
        epochs = server.epochs
        assert epochs < EPOCHS
        assert con.execute("SELECT 42").fetchone() == (42,)  # the same connection goes on
        assert state(lambda sql: con.execute(sql).fetchone()[0]) == before
    assert server.epochs == epochs  # the TRAIN stopped when the client heard of it


PSQL = shutil.which("psql")


@pytest.mark.parametrize("kind", ["train", "plain"])
def test_psql_ctrl_c_sends_a_cancel_request(server, kind):
    assert PSQL is not None, "psql is installed by .ci/setup_server.sh"
    before, running = server.state(), server.running(kind)
    psql = subprocess.Popen([PSQL, "-h", "127.0.0.1", "-p", str(server.port), "-U", "tester", "-d", "served", "-X",
                             "-c", statement(kind)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PGCONNECT_TIMEOUT": "30"})
    try:
        wait_until(running, "the statement to get going")
        psql.send_signal(signal.SIGINT)  # what Ctrl-C does: psql sends a CancelRequest
        out, err = psql.communicate(timeout=LIMIT)
    finally:
        if psql.poll() is None:
            psql.kill()
    assert psql.returncode == 1, (out, err)
    assert re.search(r"ERROR:  " + CANCELED.pattern, err), err
    epochs = server.epochs
    assert epochs < EPOCHS
    assert server.state() == before
    assert server.epochs == epochs


HUNG_UP = "client disconnected during a statement"  # the access log's outcome for such a connection


@pytest.mark.parametrize("kind", ["train", "plain"])
def test_client_that_dies_mid_statement_stops_it(server, kind):
    before = server.state()
    script = textwrap.dedent(f"""
        import psycopg, time
        con = psycopg.connect("{server.dsn()}", autocommit=True)
        print(con.info.backend_pid, flush=True)
        con.pgconn.send_query({statement(kind)!r}.encode())
        while con.pgconn.flush():
            pass
        print("sent", flush=True)
        time.sleep(600)
    """)
    client = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(client.stdout.readline())
        assert client.stdout.readline().strip() == "sent"
        wait_until(server.running(kind, pid), "the statement to start")
    finally:
        client.kill()  # the socket closes with the process
        client.wait()
    _assert_stopped_after_hang_up(server, before, pid)


@pytest.mark.parametrize("kind", ["train", "plain"])
def test_client_that_says_goodbye_mid_statement_stops_it(server, kind):
    """Terminate ('X') then close while the statement runs: the bytes left unread must not hide the hang-up."""
    from conftest_server import raw_session, send

    before = server.state()
    sock, pid = raw_session(server.port)
    send(sock, b"Q", statement(kind).encode() + b"\0")
    wait_until(server.running(kind, pid), "the statement to start")
    send(sock, b"X")
    sock.close()
    _assert_stopped_after_hang_up(server, before, pid)


def _assert_stopped_after_hang_up(server, before: dict, pid: int) -> None:
    """The server noticed, stopped connection ``pid``'s statement (its only one) and ended the
    connection: its access-log line, written once the statement returned, says so."""
    wait_until(lambda: server.access_line(pid), f"the server to end connection {pid}")
    assert server.access_line(pid).endswith(HUNG_UP), server.access_line(pid)
    assert server.probe.statements_on(_connection(pid)) == 1  # no retry, no second statement
    epochs = server.probe.epochs_on(_connection(pid))
    assert epochs < EPOCHS
    trained = server.epochs
    assert server.state() == before  # rolled back: no version, no log
    assert server.epochs == trained  # nothing trains on, on that connection or any other


@pytest.mark.parametrize("kind", ["train", "plain"])
def test_sigterm_stops_a_running_statement_and_exits_cleanly(tmp_path, kind):
    import psycopg

    served = Server(tmp_path)
    try:
        with served.connect() as con:
            for sql in SETUP[:2]:
                con.execute(sql)
        before, running = served.state(), served.running(kind)
        heard: list[BaseException] = []

        def run() -> None:
            try:
                with served.connect() as con:
                    con.execute(statement(kind))
            except psycopg.Error as error:
                heard.append(error)

        client = threading.Thread(target=run)
        client.start()
        wait_until(running, "the statement to start")
        served.process.send_signal(signal.SIGTERM)
        status = served.process.wait(timeout=LIMIT)
        client.join(timeout=LIMIT)
    finally:
        if served.process.poll() is None:
            served.process.kill()
    assert status == 0, served.log
    assert "mldb serve: stopped" in served.log
    assert "terminate called" not in served.log and "Traceback" not in served.log
    assert served.epochs < EPOCHS
    assert len(heard) == 1 and heard[0].sqlstate == "57014", heard
    with mldb.connect(str(served.database)) as con:  # closed cleanly: the file opens, nothing half-written
        assert state(first(con)) == before


# -- 5. Ctrl-C in the mldb shell, on a real terminal ----------------------------------------------

@pytest.mark.parametrize("kind", ["train", "plain"])
def test_ctrl_c_in_the_shell_cancels_and_returns_to_the_prompt(tmp_path, kind):
    import pexpect
    path = tmp_path / "shell.db"
    with mldb.connect(str(path)) as con:
        for sql in SETUP[:2]:
            con.execute(sql)
        before = state(first(con))
    probe = Probe(tmp_path)
    shell = pexpect.spawn(probe.command[0], [*probe.command[1:], str(path)], cwd=str(ROOT), env=probe.env,
                          encoding="utf-8", timeout=LIMIT, dimensions=(40, 200))
    shell.logfile_read = seen = io.StringIO()  # everything the terminal showed
    try:
        shell.expect_exact("mldb> ")
        running = probe.running(kind)
        shell.sendline(statement(kind) + ";")
        wait_until(running, "the statement to get going")
        shell.sendintr()  # Ctrl-C: the terminal sends SIGINT to the shell
        shell.expect(r"Error \(OperationalError, SQLSTATE 57014\): (.*)\r?\n")
        assert CANCELED.search(shell.match.group(1))
        shell.expect_exact("mldb> ")  # back at the prompt
        epochs = probe.epochs
        shell.sendline("SELECT count(*) AS n FROM pts;")
        shell.expect(r"\|\s+4000 \|")  # still usable, the table unchanged
        shell.expect_exact("mldb> ")
        shell.sendline(".quit")
        shell.expect(pexpect.EOF)
        shell.close()
    finally:
        if shell.isalive():
            shell.terminate(force=True)
    assert shell.exitstatus == 0
    assert "Traceback" not in seen.getvalue() and "KeyboardInterrupt" not in seen.getvalue()
    assert epochs < EPOCHS and probe.epochs == epochs
    with mldb.connect(str(path)) as con:
        assert state(first(con)) == before


# -- 6. interrupting a Jupyter cell (SIGINT in the kernel's main thread) ---------------------------

@pytest.fixture
def ip(tmp_path):
    assert threading.current_thread() is threading.main_thread(), "SIGINT reaches only the main thread"
    from IPython.core.interactiveshell import InteractiveShell

    from mldb.magic import MldbMagic

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "mldb")
    shell.register_magics(MldbMagic(shell=shell))
    con = mldb.connect(str(tmp_path / "notebook.db"))
    for sql in SETUP[:2]:
        con.execute(sql)
    shell.user_ns["con"] = con
    yield shell, con
    shell.user_ns.pop("con", None)
    con.close()


def _interrupt_the_kernel() -> None:
    """What Jupyter's "interrupt the kernel" does: SIGINT to the process, handled in the main thread."""
    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


@pytest.mark.parametrize("kind", ["train", "plain"])
def test_interrupting_a_notebook_cell_cancels_the_statement(ip, monkeypatch, kind):
    shell, con = ip
    work = Work(monkeypatch)
    before = state(first(con))
    ran = threading.Event()
    gave_up = []

    def interrupt_once_started() -> None:  # the cell runs in this (the main) thread, as in a kernel
        wait_until(work.started(kind), "the statement to get going")
        work.cancel_with(_interrupt_the_kernel)()
        if not ran.wait(LIMIT):
            gave_up.append(True)
            con.interrupt()  # so that the test fails instead of hanging

    interrupter = threading.Thread(target=interrupt_once_started, daemon=True)
    interrupter.start()
    result = shell.run_cell(f"%%mldb con\n{statement(kind)}", store_history=False)
    ran.set()
    interrupter.join()
    assert not gave_up, "the interrupted cell did not stop"
    error = result.error_in_exec
    assert isinstance(error, mldb.OperationalError) and error.sqlstate == "57014", error
    work.check_stopped_early(kind)
    assert state(first(con)) == before
    again = shell.run_cell("%mldb SELECT count(*) AS n FROM pts", store_history=False)
    assert again.success and "4000" in repr(again.result)
