"""DuckDB prepared statements for the plain statements a session runs again.

DuckDB plans every ``execute(sql, params)`` from scratch; for a cheap statement (``SELECT
$1::int + 1``) planning is most of its cost (measured: about 540 us a call against 310 us
for ``EXECUTE`` of the same statement prepared once). So a session that runs the same
read-only text a second time prepares it (``PREPARE mldb_plan_n AS <text>``) and from then
on runs ``EXECUTE mldb_plan_n(<the parameters as literals>)``.

What keeps the results the same as the plain path:

- Each parameter becomes a literal of the very type DuckDB's Python binding gives the
  value (``CAST(5 AS INTEGER)``, ``CAST('x' AS VARCHAR)``); values of other types (dates,
  decimals, lists, bytes, ...) run the plain way.
- DuckDB binds a prepared statement again when the catalog changed (DDL by any
  connection); a change of the search path is no change of the catalog, so the session
  forgets its plans on USE / SET / RESET (``forget``), as PostgreSQL re-plans then.
- Functions are evaluated when the statement runs (``now()``, ``nextval``, ``getvariable``,
  ``current_setting``: checked), not when it is prepared.
- Only outside an explicit transaction: a statement that fails there (a plan DuckDB refuses
  to bind any more, a parameter of a type it does not take) ran in its own transaction, so it
  runs again the plain way and its error is DuckDB's error for the text as written (a refused
  plan is forgotten). Any other error (a division by zero, a conversion, a cancel) is the
  statement's own and is raised as it is: running it again would run a failing query twice
  (and its side effects, a ``nextval``, twice). Inside a transaction the first error would
  end the transaction.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
from collections import OrderedDict

import duckdb

_READS = frozenset({"SELECT", "WITH", "VALUES", "FROM", "TABLE"})
_KEPT = 64  # prepared statements per session
_WATCHED = 512  # texts remembered as seen once
_LONGEST_TEXT = 256  # characters of a string parameter written as a literal (longer: the plain way)
# the plan no longer fits the catalog: prepare it again (an InvalidInput error is the statement's own:
# a division by zero)
_BIND_ERRORS = (duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException)
_SEEN_ONCE = ""  # a text seen once (prepared on its second run)
_NAMES = itertools.count(1)
_TOKEN = secrets.token_hex(6)  # in every name: a user's own PREPARE mldb_plan_1 cannot replace one of mldb's


class PreparedStatements:
    """One session's prepared statements, keyed by the statement text."""

    def __init__(self):
        self._names: OrderedDict[str, str | None] = OrderedDict()  # text -> prepared name, _SEEN_ONCE, None: refused

    def execute(self, con, sql: str, params, first_word: str) -> bool:
        """Run ``sql`` with ``params`` on ``con`` as a prepared statement (outside a transaction);
        False when it is not one to prepare or it failed (the caller runs it the plain way).
        ``con`` is the session's connection, checked by a wire client's access rules
        (``PREPARE`` is; ``EXECUTE`` of what was prepared is not judged again)."""
        if first_word not in _READS:
            return False
        arguments = _arguments(params)
        if arguments is None:
            return False
        name = self._prepared(con, sql)
        if name is None:
            return False
        try:
            getattr(con, "unchecked", con).execute(f"EXECUTE {name}{arguments}")
        except _BIND_ERRORS:  # the plan no longer fits: the plain way gives DuckDB's error for the text
            self._drop(con, sql)
            return False
        except duckdb.Error as error:
            if name in str(error):  # a parameter's literal failed (nothing ran): DuckDB's error for the text
                return False
            raise
        return True

    def forget(self, con) -> None:
        """Drop every plan (the search path or a setting may have changed what a name means)."""
        for sql in [sql for sql, name in self._names.items() if name]:
            self._drop(con, sql)
        self._names.clear()

    def _prepared(self, con, sql: str) -> str | None:
        name = self._names.get(sql)
        if name is None and sql not in self._names:
            self._remember(con, sql, _SEEN_ONCE)
            return None
        if name != _SEEN_ONCE:
            self._names.move_to_end(sql)
            return name
        name = f"mldb_plan_{_TOKEN}_{next(_NAMES)}"
        try:
            con.execute(f"PREPARE {name} AS {sql}")
        except duckdb.TransactionException:  # an aborted transaction: maybe later
            return None
        except duckdb.Error:  # not a statement DuckDB prepares
            self._names[sql] = None
            return None
        self._remember(con, sql, name)
        return name

    def _remember(self, con, sql: str, name: str) -> None:
        self._names[sql] = name
        self._names.move_to_end(sql)
        if len(self._names) > _WATCHED:
            self._drop(con, next(iter(self._names)))
        prepared = [text for text, kept in self._names.items() if kept]
        if len(prepared) > _KEPT:
            self._drop(con, prepared[0])

    def _drop(self, con, sql: str) -> None:
        name = self._names.pop(sql, None)
        if name:
            with contextlib.suppress(duckdb.Error):
                getattr(con, "unchecked", con).execute(f"DEALLOCATE {name}")


def _arguments(params) -> str | None:
    """``(lit, lit, ...)`` for EXECUTE, or None when a value has no exact literal here."""
    if params is None:
        return ""
    if not isinstance(params, (list, tuple)) or not params:
        return None
    literals = [_literal(value) for value in params]
    return None if None in literals else "(" + ", ".join(literals) + ")"


def _literal(value) -> str | None:
    """``value`` as a SQL literal of the type DuckDB's Python binding gives it (None: not here)."""
    kind = type(value)
    if value is None:
        return "NULL"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        if -(1 << 31) <= value < 1 << 31:
            return f"CAST({value} AS INTEGER)"
        return f"CAST({value} AS BIGINT)" if -(1 << 63) <= value < 1 << 63 else None
    if kind is float:
        return f"CAST('{value!r}' AS DOUBLE)"
    if kind is str and len(value) <= _LONGEST_TEXT and "\0" not in value:
        return "CAST('" + value.replace("'", "''") + "' AS VARCHAR)"
    return None
