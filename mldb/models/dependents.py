"""What a view that calls a model relies on: the deployed version's signature.

A view stores ``mldb_predict_<type>('m', ..., age, grp)``: the feature columns in order and the
result type, bound when the view was created. A TRAIN (or CREATE OR REPLACE MODEL, or DEPLOY MODEL)
whose version would be served with another target or other feature columns would break every such
view with a message about a column the view never named. As PostgreSQL's CREATE OR REPLACE VIEW
refuses to change the columns of a view others depend on, mldb refuses such a change while views
call the model (2BP01, as DROP MODEL does), naming the views and both signatures. A version with
the same target and the same feature columns (name and type, in order) is a new version as usual.
"""

from __future__ import annotations

import json

from mldb import errors
from mldb.models import registry


def signature(target: str, target_type: str | None, features: list[tuple[str, str]]) -> tuple:
    """(target, its type, ((feature, type), ...)) compared without regard to case."""
    return (target.lower(), (target_type or "").upper(),
            tuple((name.lower(), str(kind).upper()) for name, kind in features))


def of_version(session, name: str, version: int) -> tuple | None:
    """The signature of a stored version (``None`` when it does not exist)."""
    rows = session.sql("SELECT target, target_type, features FROM mldb.model_versions WHERE model = ? "
                       "AND version = ?", [name, version]).fetchall()
    if not rows:
        return None
    target, target_type, features = rows[0]
    return signature(target, target_type, [(f["name"], f["type"]) for f in json.loads(features or "[]")])


def check(session, name: str, new: tuple, doing: str) -> None:
    """Refuse (2BP01) serving a version of signature ``new`` in place of the deployed one while
    views call model ``name`` and the signatures differ. ``doing`` names the statement."""
    row = registry.model_row(session, name)
    if row is None:
        return
    old = of_version(session, name, row[1])
    if old is None or old == new:
        return
    views = registry.views_using(session, name)
    if not views:
        return
    shown = ", ".join(view for view, _ in views)
    many = len(views) > 1
    raise errors.ProgrammingError(
        f"cannot {doing}: view{'s' if many else ''} {shown} call{'' if many else 's'} model '{name}', whose "
        f"deployed version predicts {_shown(old)}; the new version would predict {_shown(new)}. Keep the "
        f"target and feature columns, train a model of another name, or drop the view{'s' if many else ''} "
        f"first (DROP MODEL {name} CASCADE drops {'them' if many else 'it'} with the model)", sqlstate="2BP01")


def _shown(sig: tuple) -> str:
    target, target_type, features = sig
    columns = ", ".join(f"{feature} ({kind})" for feature, kind in features)
    return f"'{target}' ({target_type}) from {columns}"
