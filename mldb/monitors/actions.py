"""What a triggered monitor does: TRAIN its model, ROLLBACK to the version that served before, or ALERT.

ROLLBACK only goes back: to the version that served before the current one when that is older. After a
rollback (by a monitor, or by hand: DEPLOY of an older version) the version replaced is the one judged
bad, so a monitor never brings it back.

Each action runs inside the run's transaction (the runner opens it), so its writes commit with the run
row or not at all. TRAIN is the SQL statement itself, run through ``session.execute``: the same
validation, cancel, lineage and deployment policy (``deploy = 'if_better'``) as a user's TRAIN.
Each returns ``(outcome, message)``.
"""

from __future__ import annotations

from mldb.models import deployments, registry
from mldb.monitors import store


def act(session, monitor: store.Monitor, values: dict, now) -> tuple[str, str]:
    return _ACTIONS[monitor.action](session, monitor, values, now)


def train_sql(monitor: store.Monitor) -> str:
    """``TRAIN m [FROM (q)] [WITH (deploy = 'if_better', holdout = 'h')]``."""
    sql = f"TRAIN {_identifier(monitor.model)}"
    if monitor.train_query:
        sql += f" FROM ({monitor.train_query})"
    if monitor.holdout_query:
        sql += f" WITH (deploy = 'if_better', holdout = {_string(monitor.holdout_query)})"
    return sql


def _train(session, monitor: store.Monitor, values: dict, now) -> tuple[str, str]:
    session.execute(train_sql(monitor)).fetchall()
    latest, deployed = registry.model_row(session, monitor.model)[2], deployments.deployed(session, monitor.model)
    serving = "deployed" if deployed == latest else f"version {deployed} stays deployed"
    return "ok", f"trained version {latest} of {monitor.model}; {serving}"


def _rollback(session, monitor: store.Monitor, values: dict, now) -> tuple[str, str]:
    name = monitor.model
    current = deployments.deployed(session, name)
    if _put_in_place_by_rollback(session, name, current):  # (rolling back again would bring back the bad one)
        return "skipped", f"version {current} of {name} serves since a rollback; not rolling back again"
    target = deployments.previous(session, name)
    if target is None:
        return "skipped", f"nothing to roll back to: no earlier version of {name} served before version {current}"
    if target > current:  # (a DEPLOY of an older version was a rollback by hand: the newer one was judged worse)
        return "skipped", (f"version {current} of {name} was deployed over the newer version {target}; a rollback "
                           f"goes back to an older version, never forward to the one replaced")
    deployments.serve(session, name, target, "rollback", f"ROLLBACK of {name} to version {target}")
    return "ok", f"rolled {name} back from version {current} to version {target}"


def _put_in_place_by_rollback(session, name: str, version: int) -> bool:
    rows = session.sql("SELECT reason FROM mldb.deployments WHERE model = ? AND version = ? "
                       "ORDER BY deployed_at DESC, rowid DESC LIMIT 1", [name, version]).fetchall()
    return bool(rows) and rows[0][0] == "rollback"


def _alert(session, monitor: store.Monitor, values: dict, now) -> tuple[str, str]:
    message = f"monitor {monitor.name} on model {monitor.model}: {monitor.condition} ({_shown(values)})"
    alert_id = store.raise_alert(session, monitor, message, values, now)
    return "ok", f"alert {alert_id}: {message}"


def _shown(values: dict) -> str:
    return ", ".join(f"{name} = {round(value, 4) if isinstance(value, float) else value}"
                     for name, value in values.items())


_ACTIONS = {"train": _train, "rollback": _rollback, "alert": _alert}


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
