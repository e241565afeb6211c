"""Running the due monitors on a thread of their own: ``mldb serve`` and ``mldb monitor``.

A ``Scheduler`` owns one thread and one session on the database (no client's): it calls
``runner.run_due`` every ``interval`` seconds, so monitors run one at a time and never
overlap themselves in this process, and a run goes on when a client that was connected
hangs up or crashes. ``stop()`` ends the wait at once, interrupts a run in progress (the
run's statement fails with SQLSTATE 57014 and rolls back, as a client's cancel does) and
joins the thread; the session is closed on the thread that used it.

A pass that fails as a whole (the runner could not even record its runs: a disk error, a
lock) is logged and the next pass comes at the next tick: a scheduler never dies of one
bad pass, nor spins on it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from mldb import errors

log = logging.getLogger("mldb.monitors")

_INTERRUPT_EVERY = 1.0  # seconds between interrupts of a run that has not stopped yet
LONGEST_INTERVAL = 86_400.0  # seconds between two passes, at most (a day; longer, or inf, cannot be waited for)


class Scheduler:
    """Due monitors every ``interval`` seconds on a thread with its own session.

    ``prepare(session)`` adjusts the new session first (the server restricts it as a client's);
    ``report(run)`` hears of every run row; ``once`` makes one pass, then the thread ends;
    ``now`` fixes the clock (``mldb monitor --now``)."""

    def __init__(self, database, interval: float, *, once: bool = False, now=None,
                 prepare: Callable | None = None, report: Callable[[dict], None] | None = None):
        self.database, self.interval, self.once, self.now = database, interval, once, now
        self.prepare, self.report = prepare, report or log_run
        self.failed: BaseException | None = None  # why the last pass failed as a whole, if it did
        self.passes = 0
        self._stopping = threading.Event()
        self._session = None
        self._thread = threading.Thread(target=self._loop, name="mldb-monitors", daemon=True)

    def start(self) -> "Scheduler":
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (``once``); whether it did. Returns early for a signal handler."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> bool:
        """End the loop and interrupt a run in progress (again each second: an interrupt that
        came between two statements of a run is lost); whether the thread ended in ``timeout``."""
        self._stopping.set()
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            session = self._session
            if session is not None:
                session.interrupt()
            self._thread.join(min(_INTERRUPT_EVERY, max(0.0, deadline - time.monotonic())))
        return not self._thread.is_alive()

    def _loop(self) -> None:
        from mldb.monitors import runner

        session = self.database.session()
        try:
            if self.prepare is not None:
                self.prepare(session)
            self._session = session
            while not self._stopping.is_set():
                self._pass(runner, session)
                if self.once or self._stopping.wait(self.interval):
                    break
        finally:
            self._session = None
            session.close()

    def _pass(self, runner, session) -> None:
        try:
            runs = runner.run_due(session, now=self.now)
        except Exception as error:  # noqa: BLE001 - one failed pass must not end the scheduler
            self.failed = error
            if self._stopping.is_set() and isinstance(error, errors.Error) and error.sqlstate == "57014":
                self._interrupted(getattr(error, "interrupted_run", None))
            else:
                log.error("mldb monitor: running the due monitors failed: %s", error,
                          exc_info=not isinstance(error, errors.Error))
            return
        self.failed = None
        self.passes += 1
        for run in runs:
            self.report(run)


    def _interrupted(self, run: dict | None) -> None:
        """Stopping cancelled the pass: a run (recorded as an error, and reported) or the search for due monitors."""
        if run is None:
            log.info("mldb monitor: stopped while looking for due monitors (no run was in progress)")
            return
        log.info("mldb monitor: the run in progress was interrupted: stopping")
        self.report(run)


def describe_run(run: dict) -> str:
    """One line for a run row: when, which monitor, the outcome, the action and the versions."""
    started = run.get("started_at")
    when = started.strftime("%Y-%m-%d %H:%M:%S") if hasattr(started, "strftime") else str(started or "")
    before, after = run.get("model_version_before"), run.get("model_version_after")
    parts = [f"{when} {_printable(run.get('monitor'))} on {_printable(run.get('model'))}: {run.get('outcome')}"]
    if run.get("triggered"):
        parts.append(f"action {run.get('action')}")
    elif run.get("triggered") is False:
        parts.append("not triggered")
    parts.append(f"version {before}" if before == after else f"version {before} -> {after}")
    if run.get("message"):
        parts.append(_printable(str(run["message"]).strip().splitlines()[0]))  # (DuckDB's go on with hints)
    return ", ".join(parts)


def _printable(text) -> str:
    """``text`` on one line: a name is a client's text, and a newline in it would forge a log line."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in str(text))


def log_run(run: dict) -> None:
    (log.warning if run.get("outcome") == "error" else log.info)("monitor run: %s", describe_run(run))
