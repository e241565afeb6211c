"""``mldb.deployments``: every change of a model's deployed version, with why it changed.

``mldb.models.deployed_version`` says what serves now; this history says what served before, which
ROLLBACK (a monitor's action) and a reviewer need. A row is written in the same transaction as the
change itself: a TRAIN whose new version is served at once (``'train'``), DEPLOY MODEL (``'deploy'``),
and the policies and monitors of SPEC section 11 with their own reasons.
"""

from __future__ import annotations

from mldb.models import dependents, registry


def deployed(session, name: str) -> int | None:
    """The version of ``name`` serving now (None: no such model)."""
    rows = session.sql("SELECT deployed_version FROM mldb.models WHERE name = ?", [name]).fetchall()
    return rows[0][0] if rows else None


def serve(session, name: str, version: int, reason: str, doing: str) -> None:
    """Make ``version`` of ``name`` the one that serves (clearing a shadow) in one transaction, noted with
    ``reason``: DEPLOY MODEL and a monitor's ROLLBACK. Views that call the model must accept the version's
    signature (2BP01 otherwise, see :mod:`mldb.models.dependents`)."""
    with session.database.lock, session.transaction():
        dependents.check(session, name, dependents.of_version(session, name, version), doing)
        before = deployed(session, name)
        session.sql("UPDATE mldb.models SET deployed_version = ?, shadow_version = NULL, "
                    "updated_at = current_localtimestamp() WHERE name = ?", [version, name])
        record(session, name, version, before, reason)
    registry.invalidate(session, name)


def record(session, name: str, version: int, previous: int | None, reason: str) -> None:
    """Note that ``version`` of ``name`` now serves in place of ``previous`` (unchanged: nothing noted)."""
    if version == previous:
        return
    session.sql("INSERT INTO mldb.deployments (model, version, previous_version, reason, deployed_at) "
                "VALUES (?, ?, ?, ?, current_localtimestamp())", [name, version, previous, reason])


def previous(session, name: str) -> int | None:
    """The version that served before the current one (the newest change that put the current version in
    place names it), if it still exists; None when the model has only ever served one version."""
    rows = session.sql(
        "SELECT d.previous_version FROM mldb.deployments d JOIN mldb.models m ON m.name = d.model "
        "AND m.deployed_version = d.version JOIN mldb.model_versions v ON v.model = d.model "
        "AND v.version = d.previous_version WHERE d.model = ? ORDER BY d.deployed_at DESC, d.rowid DESC LIMIT 1",
        [name]).fetchall()
    return rows[0][0] if rows else None
