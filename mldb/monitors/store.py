"""The monitors' catalog rows: ``mldb.monitors`` (definitions and schedules), ``mldb.monitor_runs``
(every run) and ``mldb.alerts``. Plain SQL on the session, so each write joins the run's transaction.

Ids come from DuckDB sequences (``mldb.monitor_run_ids``, ``mldb.alert_ids``): two sessions writing at
once never take the same one, whatever their transactions see.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from mldb import errors

_COLUMNS = ("name", "model", "check_kind", "check_query", "every", "condition", "action", "train_query",
            "holdout_query", "paused", "disabled", "disabled_reason", "next_run_at", "created_at")
_RUN = ("id", "monitor", "model", "started_at", "seconds", "values", "triggered", "action", "outcome", "message",
        "model_version_before", "model_version_after", "scheduled")


@dataclass(frozen=True)
class Monitor:
    name: str
    model: str
    check_kind: str  # 'drift' | 'evaluate'
    check_query: str
    every: timedelta | None  # None: runs only by RUN MONITOR
    condition: str
    action: str  # 'train' | 'rollback' | 'alert'
    train_query: str | None
    holdout_query: str | None
    paused: bool
    disabled: bool
    disabled_reason: str | None
    next_run_at: datetime | None
    created_at: datetime


def find(session, name: str) -> Monitor | None:
    rows = session.sql(f"SELECT {', '.join(_COLUMNS)} FROM mldb.monitors WHERE name = ?", [name]).fetchall()
    return Monitor(*rows[0]) if rows else None


def get(session, name: str) -> Monitor:
    """The monitor ``name``, or 42704 listing those there are."""
    monitor = find(session, name)
    if monitor is None:
        raise unknown(session, name)
    return monitor


def unknown(session, name: str) -> errors.ProgrammingError:
    names = [row[0] for row in session.sql("SELECT name FROM mldb.monitors ORDER BY name").fetchall()]
    known = f"monitors: {', '.join(names)}" if names else "there are no monitors yet"
    return errors.ProgrammingError(f"monitor '{name}' does not exist ({known})", sqlstate="42704")


def insert(session, monitor: Monitor, statement: str) -> None:
    session.sql(f"INSERT INTO mldb.monitors ({', '.join(_COLUMNS)}, statement) "
                f"VALUES ({', '.join('?' for _ in _COLUMNS)}, ?)",
                [getattr(monitor, column) for column in _COLUMNS] + [statement])


def delete(session, name: str) -> None:
    session.sql("DELETE FROM mldb.monitors WHERE name = ?", [name])


def set_paused(session, name: str, paused: bool) -> None:
    """PAUSE / RESUME (RESUME also lifts a disabling: the model is back)."""
    session.sql("UPDATE mldb.monitors SET paused = ?, disabled = CASE WHEN ? THEN disabled ELSE false END, "
                "disabled_reason = CASE WHEN ? THEN disabled_reason ELSE NULL END WHERE name = ?",
                [paused, paused, paused, name])


def disable(session, name: str, reason: str) -> None:
    session.sql("UPDATE mldb.monitors SET disabled = true, disabled_reason = ? WHERE name = ?", [reason, name])


def set_next_run(session, name: str, when: datetime | None) -> None:
    session.sql("UPDATE mldb.monitors SET next_run_at = ? WHERE name = ?", [when, name])


def due(session, now: datetime) -> list[Monitor]:
    """Active, unpaused monitors whose next run is at or before ``now``, in name order."""
    rows = session.sql(f"SELECT {', '.join(_COLUMNS)} FROM mldb.monitors WHERE NOT paused AND NOT disabled "
                       "AND next_run_at <= ? ORDER BY name", [now]).fetchall()
    return [Monitor(*row) for row in rows]


def write_run(session, monitor: Monitor, *, started_at: datetime, seconds: float, values: dict | None,
              triggered: bool | None, action: str | None, outcome: str, message: str | None,
              before: int | None, after: int | None, scheduled: bool) -> dict:
    """Insert one mldb.monitor_runs row; the row written, as a dict."""
    run_id = session.sql("SELECT nextval('mldb.monitor_run_ids')").fetchall()[0][0]
    row = dict(zip(_RUN, (run_id, monitor.name, monitor.model, started_at, seconds,
                          _json(values), triggered, action, outcome, message,
                          before, after, scheduled)))
    session.sql(f"INSERT INTO mldb.monitor_runs ({', '.join(_RUN)}) VALUES ({', '.join('?' for _ in _RUN)})",
                list(row.values()))
    return row


def raise_alert(session, monitor: Monitor, message: str, values: dict | None, when: datetime) -> int:
    alert_id = session.sql("SELECT nextval('mldb.alert_ids')").fetchall()[0][0]
    session.sql("INSERT INTO mldb.alerts (id, monitor, model, raised_at, message, values, acknowledged) "
                "VALUES (?, ?, ?, ?, ?, ?, false)",
                [alert_id, monitor.name, monitor.model, when, message, _json(values)])
    return alert_id


def acknowledge(session, alert_id: int, when: datetime) -> bool:
    """Mark an alert acknowledged (once: the first acknowledgement's time stays); False if there is none."""
    found = session.sql("SELECT acknowledged FROM mldb.alerts WHERE id = ?", [alert_id]).fetchall()
    if not found:
        return False
    if not found[0][0]:
        session.sql("UPDATE mldb.alerts SET acknowledged = true, acknowledged_at = ? WHERE id = ?", [when, alert_id])
    return True


def _json(values: dict | None) -> str | None:
    """Values as JSON (a NaN or infinite metric, which JSON cannot hold, as null)."""
    if values is None:
        return None
    return json.dumps({name: None if isinstance(value, float) and not math.isfinite(value) else value
                       for name, value in values.items()})
