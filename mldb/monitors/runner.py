"""Running monitors: ``run`` (RUN MONITOR, or one scheduled run) and ``run_due`` (every monitor whose
time has come), the interface ``mldb serve`` and ``mldb monitor DB`` call.

A run is one transaction: the check, the action and the run row commit together. When the check or
the action fails, that transaction is rolled back and the run is recorded, in a transaction of its
own, with outcome ``'error'`` and the message, so nothing else changed. A cancel (SQLSTATE 57014) is
recorded the same way and then reaches the caller. Any other failure, even one that is no mldb error
(a bug), stays that run's: it is recorded and the next monitor runs (one broken monitor never keeps
the others, due after it, from running).

A monitor runs once at a time per database, and so does each model's: a second ``run`` while it (or
another monitor of its model) runs, in another session or thread, records outcome ``'skipped'``
(``run_due`` just passes it over; it stays due). A monitor whose model is gone
is disabled with an alert (outcome ``'skipped'``) instead of failing at every tick; RESUME re-enables
it once the model is back. PAUSE stops scheduled runs only: RUN MONITOR still runs a paused monitor.

Schedules: the first run is due at ``created_at + every``; after a scheduled run ``next_run_at``
moves to the first point of that grid after ``now``, so a schedule missed for days runs once, not
once per missed slot. Months count as 30 days (as DuckDB's ``epoch(INTERVAL)``).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from mldb import errors
from mldb.models import deployments, registry
from mldb.monitors import actions, checks, clock, store


class MonitorState:
    """Per database: which monitors (and so which models) are running now, in any session of this process.
    One run per model at a time: two monitors of one model would each change what serves."""

    def __init__(self, database=None):
        self.lock = threading.Lock()
        self.running: dict[str, str] = {}  # monitor -> its model
        self.models: dict[str, str] = {}  # model -> the monitor running on it

    def claim(self, name: str, model: str) -> str | None:
        """Mark ``name`` running; None, or why it cannot run now (it, or another monitor of its model, runs)."""
        with self.lock:
            if name in self.running:
                return f"monitor {name} is already running"
            if model in self.models:
                return f"monitor {self.models[model]} of model {model} is running"
            self.running[name], self.models[model] = model, name
            return None

    def release(self, name: str) -> None:
        with self.lock:
            model = self.running.pop(name, None)
            if self.models.get(model) == name:
                del self.models[model]


def state(database) -> MonitorState:
    return database.state("monitors")


def run(session, name: str, *, now: datetime | None = None, scheduled: bool = False) -> dict:
    """Run monitor ``name`` once now; the mldb.monitor_runs row written, as a dict."""
    now = now or clock.now()
    _outside_transaction(session)
    monitor = store.get(session, name)
    busy = state(session.database).claim(name, monitor.model)
    if busy is not None:
        return _record(session, monitor, now, 0.0, outcome="skipped", scheduled=scheduled, message=busy)
    try:
        with session.changing_catalog():  # (a run may deploy: no plan made before it serves after it)
            return _run_claimed(session, store.get(session, name), now, scheduled)
    finally:
        state(session.database).release(name)


def run_due(session, now: datetime | None = None) -> list[dict]:
    """Run every active, unpaused monitor whose ``next_run_at <= now`` once, in name order; their rows."""
    now = now or clock.now()
    _outside_transaction(session)
    rows = []
    for due in store.due(session, now):
        if state(session.database).claim(due.name, due.model) is not None:
            continue  # it (or another monitor of its model) runs now: it stays due for the next call
        try:
            monitor = store.find(session, due.name)  # (read again: another session may have run it meanwhile)
            if monitor is not None and not monitor.paused and not monitor.disabled and _is_due(monitor, now):
                with session.changing_catalog():
                    rows.append(_run_claimed(session, monitor, now, scheduled=True))
        finally:
            state(session.database).release(due.name)
    return rows


def next_run(monitor: store.Monitor, now: datetime) -> datetime | None:
    """The first point of the monitor's schedule after ``now`` (None: it has no schedule)."""
    if monitor.every is None:
        return None
    try:
        anchor = monitor.next_run_at or monitor.created_at + monitor.every
        if anchor > now:
            return anchor
        return anchor + monitor.every * ((now - anchor) // monitor.every + 1)
    except OverflowError:  # (past the year 9999: no later run can be written down, so none is due)
        return None


def first_run(every: timedelta | None, created_at: datetime) -> datetime | None:
    return None if every is None else created_at + every


def _is_due(monitor: store.Monitor, now: datetime) -> bool:
    return monitor.next_run_at is not None and monitor.next_run_at <= now


def _outside_transaction(session) -> None:
    if session.in_transaction:
        raise errors.ProgrammingError("RUN MONITOR cannot run inside a transaction block: each run is a "
                                      "transaction of its own (COMMIT or ROLLBACK first)", sqlstate="25001")


def _run_claimed(session, monitor: store.Monitor, now: datetime, scheduled: bool) -> dict:
    if monitor.disabled:
        return _record(session, monitor, now, 0.0, outcome="skipped", scheduled=scheduled,
                       message=f"monitor {monitor.name} is disabled: {monitor.disabled_reason} "
                               f"(ALTER MONITOR {monitor.name} RESUME once that is mended)")
    started = time.perf_counter()
    before = deployments.deployed(session, monitor.model)
    progress: dict = {}  # what the run had measured and decided when it failed
    try:
        with session.transaction():
            if registry.model_row(session, monitor.model) is None:
                return _disable(session, monitor, now, scheduled)
            row = _check_and_act(session, monitor, now, before, started, scheduled, progress)
            if scheduled:
                store.set_next_run(session, monitor.name, next_run(monitor, now))
        return row
    except Exception as error:  # noqa: BLE001 - one monitor's failure, even an unforeseen one, is its own run's
        message = str(error) if isinstance(error, errors.Error) else f"internal error: {type(error).__name__}: {error}"
        row = _record(session, monitor, now, time.perf_counter() - started, outcome="error", scheduled=scheduled,
                      message=message, before=before, after=before, **progress,
                      next_at=next_run(monitor, now) if scheduled else None)
        if getattr(error, "sqlstate", None) == "57014":  # cancelled: recorded, and the caller hears of it
            error.interrupted_run = row  # (a cancel between runs has none: nothing was running)
            raise
        return row


def _check_and_act(session, monitor: store.Monitor, now: datetime, before, started: float, scheduled: bool,
                   progress: dict) -> dict:
    monitor = checks.stored(monitor)  # (its texts as they will run: one query each, one condition)
    task = session.sql("SELECT task FROM mldb.models WHERE name = ?", [monitor.model]).fetchall()[0][0]
    types = checks.value_types(monitor.check_kind, task)
    values = progress["values"] = checks.measure(session, monitor.check_kind, monitor.model, monitor.check_query)
    session.check_cancel()
    triggered = progress["triggered"] = checks.holds(session, monitor.condition, monitor.check_kind, types, values)
    outcome, message = "ok", (None if values.get("rows") else "the check query returned no rows")
    if triggered:
        progress["action"] = monitor.action
        outcome, message = actions.act(session, monitor, values, now)
    return store.write_run(session, monitor, started_at=now, seconds=time.perf_counter() - started, values=values,
                           triggered=triggered, action=monitor.action if triggered else None, outcome=outcome,
                           message=message, before=before, after=deployments.deployed(session, monitor.model),
                           scheduled=scheduled)


def _disable(session, monitor: store.Monitor, now: datetime, scheduled: bool) -> dict:
    """The model is gone: disable the monitor and say so in an alert (once; no failing at every tick)."""
    reason = f"model '{monitor.model}' no longer exists"
    store.disable(session, monitor.name, reason)
    alert_id = store.raise_alert(session, monitor, f"monitor {monitor.name} disabled: {reason}", None, now)
    return store.write_run(session, monitor, started_at=now, seconds=0.0, values=None, triggered=None,
                           action="disable", outcome="skipped", scheduled=scheduled,
                           message=f"{reason}: monitor disabled (alert {alert_id})", before=None, after=None)


def _record(session, monitor: store.Monitor, now: datetime, seconds: float, *, outcome: str, scheduled: bool,
            message: str, before=None, after=None, values=None, triggered=None, action=None,
            next_at: datetime | None = None) -> dict:
    """A run row in a transaction of its own (a skipped run, or a failed one after its rollback)."""
    with session.transaction():
        row = store.write_run(session, monitor, started_at=now, seconds=seconds, values=values, triggered=triggered,
                              action=action, outcome=outcome, message=message, before=before, after=after,
                              scheduled=scheduled)
        if next_at is not None:
            store.set_next_run(session, monitor.name, next_at)
    return row
