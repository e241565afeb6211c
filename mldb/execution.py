"""Execution: one statement while it runs, from planning until its result is exhausted or closed.

Each rewritten statement gets an id that its SQL passes to mldb's functions (the
first argument after the model or text, e.g. ``mldb_predict_double('churn', 7, x)``),
so a function called by DuckDB on any of its threads finds the statement it works
for: its cancel flag, and the tallies features keep for it (the prediction log's
counters). When the statement is done, ``finish`` runs the callbacks features
registered (write the prediction log row, close a progress bar), once.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from mldb import errors


class Execution:
    def __init__(self, execution_id: int, database, session, text: str | None):
        self.id = execution_id
        self.database = database
        self.session = session
        self.text = text
        self.started = time.perf_counter()
        self.tallies: dict = {}  # feature-owned counters, e.g. (model, version) -> prediction calls
        self.lock = threading.Lock()
        self._cancelled = threading.Event()
        self._on_finish: list[tuple[bool, Callable[["Execution"], None]]] = []
        self._finished = False
        self.succeeded: bool | None = None

    # -- cancel ---------------------------------------------------------------------------------
    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise the cancel error if someone cancelled this statement (call between batches)."""
        if self._cancelled.is_set():
            raise canceled()

    # -- tallies and the end -------------------------------------------------------------------------
    def tally(self, key, make: Callable[[], object]):
        """The counter object stored under ``key``, made on first use (thread-safe)."""
        with self.lock:
            value = self.tallies.get(key)
            if value is None:
                value = self.tallies[key] = make()
            return value

    def on_finish(self, callback: Callable[["Execution"], None], *, always: bool = False) -> None:
        """Run ``callback(execution)`` when the statement is done: only if it succeeded
        (its result was read or closed without an error), or in any case with ``always``."""
        self._on_finish.append((always, callback))

    def finish(self, success: bool = True) -> None:
        """The statement's result was exhausted, closed or replaced: run the callbacks once."""
        if self._finished:
            return
        self._finished = True
        self.succeeded = success
        self.database.finished(self)
        callbacks, self._on_finish = self._on_finish, []
        failure = None
        for always, callback in callbacks:
            if not (success or always):
                continue
            try:
                callback(self)
            except errors.Error as error:  # a log that cannot be written must not hide the others
                failure = failure or error
        if failure is not None:
            raise failure


def canceled() -> errors.OperationalError:
    return errors.OperationalError("canceling statement due to user request", sqlstate="57014")
