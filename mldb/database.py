"""Database: one open DuckDB file and everything mldb keeps for it.

All per-database state hangs off this object: the root DuckDB connection (mldb's
functions are registered on it, so its cursors and the views stored in the file see
them), one state object per feature (the model cache, FAISS indexes, sampling rates),
and the statements now running (their prediction counters and cancel flags). The
function closures registered on the root capture the ``Database``, never a module
global, so two open databases never see each other's models, logs or indexes.

Opening a file that is already open in this process returns the same ``Database``
(DuckDB itself allows one writer per file); it is closed when its last connection
closes, which releases the models' weights and the indexes.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref

import duckdb

from mldb import catalog, errors
from mldb.execution import Execution
from mldb.plan.cache import CatalogVersion

_OPEN: "weakref.WeakValueDictionary[str, Database]" = weakref.WeakValueDictionary()  # file -> its Database
_OPEN_LOCK = threading.RLock()  # (re-entered when a forgotten Connection is collected inside it)


def open_database(path: str = ":memory:", *, read_only: bool = False, config: dict | None = None) -> "Database":
    """The ``Database`` for ``path``: the one already open in this process, or a new one."""
    key = _file_key(path)
    with _OPEN_LOCK:
        database = _OPEN.get(key) if key is not None else None
        if database is not None and not database.closed:
            database.check_compatible(read_only, config)
            database.users += 1
            return database
        database = Database(path, read_only=read_only, config=config)
        if key is not None:
            _OPEN[key] = database
        return database


def _stored_functions(con) -> bool:
    """Whether a view or macro in the file calls mldb's functions (then each statement
    tells them which statement runs, through a session variable)."""
    row = con.execute("SELECT count(*) FROM duckdb_views() WHERE sql LIKE '%mldb\\_execution%' ESCAPE '\\'"
                      ).fetchall()
    return bool(row[0][0])


def _file_key(path: str) -> str | None:
    """Identifies a database file (``None`` for an in-memory database: each one is new)."""
    if path in ("", ":memory:") or path.startswith(":memory:"):
        return None
    return os.path.realpath(os.path.expanduser(path))


class Database:
    """One open DuckDB database with mldb's catalog, functions and per-database state."""

    def __init__(self, path: str = ":memory:", *, read_only: bool = False, config: dict | None = None):
        from mldb import features

        self.path = path
        self.read_only = read_only
        self.config = dict(config or {})
        self.lock = threading.RLock()  # serialises mldb statements that rewrite catalog state
        self.users = 1
        self.closed = False
        self._ids = itertools.count(1)
        self._running: dict[int, Execution] = {}
        self._running_lock = threading.Lock()
        try:
            self.root = duckdb.connect(path, read_only=read_only, config=self.config)
        except duckdb.Error as error:
            raise errors.translate(error) from None
        if not read_only:
            catalog.ensure(self.root)
        self.stored_functions = _stored_functions(self.root)  # views that call mldb's functions
        self.features = features.FEATURES
        self._state = {feature.name: feature.make_state(self) for feature in self.features if feature.make_state}
        self.file_roots: list[str] | None = None  # served: the only directories clients' model paths may name
        self.udf_sources: dict = {}  # function -> udf.UdfSource: the text LOAD UDFS ran (what ships to Ray workers)
        self.described: dict = {}  # the wire server's catalog queries: parameter/result types per SQL text
        self.catalog_version = CatalogVersion()  # moves with every change planning may read (mldb.plan.cache)
        for feature in self.features:
            if feature.register_functions is not None:
                feature.register_functions(self)

    def session(self):
        """A new session (its own DuckDB cursor, transaction and settings) on this database."""
        from mldb.session import Session

        return Session(self)

    # -- feature state -------------------------------------------------------------------------
    def state(self, feature: str):
        """The per-database state object of a feature (``database.state("models")``)."""
        return self._state[feature]

    # -- running statements ---------------------------------------------------------------------
    def start(self, session, text: str | None) -> Execution:
        execution = Execution(next(self._ids), self, session, text)
        with self._running_lock:
            self._running[execution.id] = execution
        return execution

    def finished(self, execution: Execution) -> None:
        with self._running_lock:
            self._running.pop(execution.id, None)

    def execution(self, execution_id) -> Execution | None:
        """The running statement with this id (what a function was called for), if any."""
        return self._running.get(execution_id) if execution_id is not None else None

    # -- opening and closing ----------------------------------------------------------------------
    def check_compatible(self, read_only: bool, config: dict | None) -> None:
        if read_only != self.read_only or dict(config or {}) != self.config:
            mode = "read-only" if self.read_only else "read-write"
            raise errors.OperationalError(
                f"database {self.path} is already open in this process ({mode}, config {self.config}); "
                "close it before opening it with other settings", sqlstate="55006")

    def release(self) -> None:
        """One connection let go of the database; the last one closes it."""
        with _OPEN_LOCK:
            self.users -= 1
            if self.users > 0:
                return
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for execution in list(self._running.values()):
            execution.cancel()
        for state in self._state.values():
            close = getattr(state, "close", None)
            if close is not None:
                close()
        self._state.clear()
        try:
            self.root.close()
        except duckdb.Error:
            pass
