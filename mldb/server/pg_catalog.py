"""What PostgreSQL clients ask that DuckDB does not answer, in one place.

- ``parameter_status``: the ParameterStatus values sent after authentication.
- ``intercept``: ``SET`` / ``SHOW`` / ``RESET`` of client-side parameters
  (application_name, extra_float_digits, DateStyle, ...) that DuckDB does not have;
  they are kept per connection. Everything else goes to DuckDB, whose own
  ``pg_catalog`` schema answers most catalog look-ups.
"""

from __future__ import annotations

import re

from mldb import errors
from mldb.result import Result

SERVER_VERSION = "15.0"

_DEFAULTS = {
    "server_version": SERVER_VERSION,
    "server_version_num": "150000",
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
    "is_superuser": "on",
    "default_transaction_read_only": "off",
    "in_hot_standby": "off",
    "transaction_isolation": "serializable",
    "max_identifier_length": "63",
    "extra_float_digits": "1",
}
_REPORTED = ("server_version", "server_encoding", "client_encoding", "DateStyle", "IntervalStyle",
             "integer_datetimes", "standard_conforming_strings", "is_superuser", "default_transaction_read_only",
             "in_hot_standby")

_SET = re.compile(r"^\s*SET\s+(?:SESSION\s+|LOCAL\s+)?([A-Za-z_][\w.]*)\s*(?:=|\s+TO\s+|\s+)\s*(.+?)\s*;?\s*$",
                  re.IGNORECASE | re.DOTALL)
_SET_NAMES = re.compile(r"^\s*SET\s+(?:SESSION\s+)?(?:NAMES|TIME\s+ZONE)\b", re.IGNORECASE)
_SHOW = re.compile(r"^\s*SHOW\s+([A-Za-z_][\w.]*)\s*;?\s*$", re.IGNORECASE)
_RESET = re.compile(r"^\s*(?:RESET\s+\w+|RESET\s+ALL|DISCARD\s+ALL)\s*;?\s*$", re.IGNORECASE)
_FIRST = re.compile(r"^\s*(SET|SHOW|RESET|DISCARD)\b", re.IGNORECASE)


def parameter_status(startup: dict[str, str], session) -> dict[str, str]:
    values = {name: _DEFAULTS[name] for name in _REPORTED}
    values["application_name"] = startup.get("application_name", "")
    values["session_authorization"] = startup.get("user", "")
    values["TimeZone"] = _timezone(session)
    return values


def _timezone(session) -> str:
    try:
        return str(session.sql("SELECT current_setting('TimeZone')").fetchone()[0])
    except errors.Error:
        return "UTC"


def intercept(connection, sql: str) -> Result | None:
    """A Result for statements answered here; None for everything DuckDB runs itself."""
    first = _FIRST.match(sql)
    if first is None:
        return None
    word = first.group(1).upper()
    if word == "SET":
        return _set(connection, sql)
    if word == "SHOW":
        return _show(connection, sql)
    return Result.done(" ".join(sql.split()[:2]).upper().rstrip(";")) if _RESET.match(sql) else None


def _set(connection, sql: str) -> Result | None:
    if _SET_NAMES.match(sql):
        return Result.done("SET")
    match = _SET.match(sql)
    if match is None or _is_duckdb_setting(connection.session, match.group(1)):
        return None
    name, value = match.group(1), match.group(2).strip().strip("'\"")
    if name.lower() == "client_encoding" and value.upper().replace("-", "") not in ("UTF8", "UNICODE"):
        raise errors.NotSupportedError(f"client_encoding {value!r} is not supported: mldb speaks UTF8",
                                       sqlstate="22023")
    connection.params[name.lower()] = value
    return Result.done("SET")


def _show(connection, sql: str) -> Result | None:
    match = _SHOW.match(sql)
    if match is None:
        return None
    name = match.group(1)
    value = connection.params.get(name.lower())
    if value is None:
        value = next((v for key, v in _DEFAULTS.items() if key.lower() == name.lower()), None)
    if value is None:
        return None
    return connection.session.execute(f'SELECT ? AS "{name.lower()}"', [value])


def _is_duckdb_setting(session, name: str) -> bool:
    found = session.sql("SELECT count(*) FROM duckdb_settings() WHERE lower(name) = lower(?)", [name]).fetchone()
    return bool(found[0])
