"""The scale-out settings of a session: where its statements run, and how a Ray job is sized.

    SET mldb_executor = 'ray';              -- 'local' (default) | 'ray' | 'ray://host:port'
    SET mldb_ray_workers = 4;               -- actors (NULL/DEFAULT: min(files, cluster CPUs / cpus_per_worker))
    SHOW mldb_ray_workers;  RESET mldb_ray_workers;

A session keeps the values it was given in ``Session.mldb_settings`` (a dict, nothing else
is per session); ``effective`` adds the defaults. Values are checked by one ``options.Schema``
(22023 with the accepted forms). Choosing Ray checks at SET time that the ``ray`` package is
installed (0A000 otherwise), without importing it: connecting happens on first use.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import pyarrow as pa

from mldb import errors
from mldb.options import Option, Schema
from mldb.result import Result

LOCAL = "local"
_EXECUTOR = Option("mldb_executor", "text", LOCAL, pattern=r"local|ray|ray://[a-z0-9._-]+:[0-9]{1,5}",
                   hint="'local', 'ray' or 'ray://host:port'")
SCHEMA = Schema(
    "SET",
    _EXECUTOR,
    Option("mldb_ray_workers", "int", None, low=1, high=100_000, nullable=True),
    Option("mldb_ray_cpus_per_worker", "int", 1, low=1, high=1024),
    Option("mldb_ray_batch_rows", "int", 65_536, low=1, high=2**31 - 1),
    Option("mldb_ray_retries", "int", 3, low=0, high=1000),
    Option("mldb_ray_preserve_order", "bool", False),
)
_STATEMENT_SCHEMA = Schema("WITH", *(dataclasses.replace(option, name=option.name.removeprefix("mldb_ray_")
                                                           .removeprefix("mldb_")) for option in SCHEMA.options.values()))
_TYPES = {"mldb_executor": pa.string(), "mldb_ray_preserve_order": pa.bool_()}  # the others: BIGINT


def effective(session) -> dict:
    """Every setting's value for ``session``'s running statement: what the statement gave itself
    (``... WITH (workers = 2)``), else what the session SET, else the default."""
    return SCHEMA.defaults | {"mldb_ray_workers": None} | session.mldb_settings | session.statement_settings


def checked_for_statement(session, given: dict) -> dict:
    """A statement's own settings (by session name) checked as SET checks them; choosing Ray is
    refused to a wire client as ``SET mldb_executor`` is."""
    from mldb.frontend.settings import STATEMENT_KEYS

    keys = {name: key for key, name in STATEMENT_KEYS.items()}
    checked = {name: value for name, value in zip(given, _STATEMENT_SCHEMA.check(
        {keys[name]: value for name, value in given.items()}, "WITH after a query").values())}
    chosen = checked.get("mldb_executor", LOCAL)
    if chosen != LOCAL:
        _check_ray_installed(chosen)
        if session.access is not None:
            from mldb.frontend.settings import SetSetting

            session.access.admit_step(SetSetting(this="mldb_executor", value=chosen))
    return checked


def executor(session) -> str:
    return effective(session)["mldb_executor"]


def set_setting(session, node, params) -> Result:
    """``SET mldb_x = v``: checked, then kept on the session (``= DEFAULT`` resets it)."""
    name, value = node.name, node.args.get("value")
    if value is None:
        return reset_setting(session, node, params)
    checked = SCHEMA.check({name: value}, f"SET {name}")[name]
    if name == "mldb_executor" and checked != LOCAL:
        _check_ray_installed(checked)
    session.mldb_settings[name] = checked
    return Result.done("SET")


def reset_setting(session, node, params) -> Result:
    session.mldb_settings.pop(node.name, None)
    return Result.done("RESET")


def show_setting(session, node, params) -> Result:
    """One row, one column named after the setting, as DuckDB's ``SHOW <setting>``."""
    name = node.name
    table = pa.table({name: pa.array([effective(session)[name]], _TYPES.get(name, pa.int64()))})
    return session._hold(table, "SHOW")


def _check_ray_installed(value: str) -> None:
    if importlib.util.find_spec("ray") is None:
        raise errors.NotSupportedError(f"SET mldb_executor = '{value}' needs the ray package: "
                                       "pip install 'mldb[ray]'", sqlstate="0A000")
