"""PEP 249 (DB-API 2.0): Connection, Cursor, type objects and constructors.

A connection is one mldb ``Session``: its cursors and ``con.execute`` share its
transaction, temp tables, variables, prepared statements and settings, as in sqlite3
and DuckDB. Transactions follow DuckDB: every statement commits on its own unless the
user opens one with ``BEGIN``; ``commit()`` / ``rollback()`` end it through the
session's one transaction path, and a result a cursor has not fetched yet stays readable.
Each ``connect()`` of the same file in one process shares one ``Database``.
"""

from __future__ import annotations

import datetime
import time

from mldb import errors
from mldb.database import Database, open_database
from mldb.result import Result
from mldb.session import Session

apilevel = "2.0"
threadsafety = 1  # threads may share the module, not connections: give each thread its own connect()
paramstyle = "qmark"  # also numeric ($1) and named ($name), as DuckDB accepts


class Connection:
    def __init__(self, database: Database):
        self._database = database
        self._session = database.session()
        self.closed = False

    # -- PEP 249 ----------------------------------------------------------------------
    def cursor(self) -> "Cursor":
        self._check_open()
        return Cursor(self, self._session)

    def commit(self) -> None:
        self._check_open()
        self._session.finish_transaction(committed=True)

    def rollback(self) -> None:
        self._check_open()
        self._session.finish_transaction(committed=False)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._session.close()
        self._database.release()

    # -- extensions --------------------------------------------------------------------
    def execute(self, sql: str, params=None) -> "Cursor":
        """Shortcut: a new cursor (on this connection's session) that has run ``sql``."""
        cursor = self.cursor()
        cursor.execute(sql, params)
        return cursor

    def executemany(self, sql: str, seq_of_params) -> "Cursor":
        cursor = self.cursor()
        cursor.executemany(sql, seq_of_params)
        return cursor

    def interrupt(self) -> None:
        """Cancel the statement running on this connection (call it from another thread);
        it fails with ``OperationalError`` (SQLSTATE 57014) and rolls back."""
        if not self.closed:
            self._session.interrupt()

    @property
    def database(self) -> Database:
        return self._database

    @property
    def session(self) -> Session:
        return self._session

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if not self.closed:
            try:
                self.rollback() if kind else self.commit()
            finally:
                self.close()

    def __del__(self):
        if not getattr(self, "closed", True):
            try:
                self.close()
            except Exception:  # noqa: BLE001 - nothing can be reported from a finalizer
                pass

    Error = errors.Error
    Warning = errors.Warning
    InterfaceError = errors.InterfaceError
    DatabaseError = errors.DatabaseError
    DataError = errors.DataError
    OperationalError = errors.OperationalError
    IntegrityError = errors.IntegrityError
    InternalError = errors.InternalError
    ProgrammingError = errors.ProgrammingError
    NotSupportedError = errors.NotSupportedError

    def _check_open(self) -> None:
        if self.closed:
            raise errors.InterfaceError("the connection is closed")


class Cursor:
    def __init__(self, connection: Connection, session: Session):
        self.connection = connection
        self._session = session
        self._result: Result | None = None
        self.arraysize = 1
        self.closed = False

    # -- PEP 249 ----------------------------------------------------------------------
    @property
    def description(self):
        return _description(self._result.description) if self._result and self._result.has_rows else None

    @property
    def rowcount(self) -> int:
        return self._result.rowcount if self._result else -1

    def execute(self, sql: str, params=None) -> "Cursor":
        self._check_open()
        self._close_result()
        self._result = self._session.execute(sql, _params(params))
        return self

    def executemany(self, sql: str, seq_of_params) -> "Cursor":
        self._check_open()
        total = 0
        for params in seq_of_params:
            self.execute(sql, params)
            total += max(self.rowcount, 0)
        self._result = Result.done(self._result.status if self._result else "", total)
        return self

    def fetchone(self):
        return self._fetching().fetchone()

    def fetchmany(self, size: int | None = None):
        return self._fetching().fetchmany(self.arraysize if size is None else size)

    def fetchall(self):
        return self._fetching().fetchall()

    def setinputsizes(self, sizes) -> None:
        self._check_open()

    def setoutputsize(self, size, column=None) -> None:
        self._check_open()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._close_result()

    def _close_result(self) -> None:
        result, self._result = self._result, None
        if result is not None:
            result.close()

    def __iter__(self):
        return self

    def __next__(self):
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def __enter__(self) -> "Cursor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- extensions --------------------------------------------------------------------
    def arrow(self):
        return self._fetching().arrow()

    def arrow_reader(self, batch_size: int = 100_000):
        """The rows as a pyarrow RecordBatchReader: stream a large result in bounded memory."""
        return self._fetching().arrow_reader(batch_size)

    def pl(self):
        return self._fetching().pl()

    def fetchnumpy(self):
        """The remaining rows as a dict of NumPy arrays, one per column (as DuckDB's)."""
        return self._fetching().fetchnumpy()

    def df(self):
        return self._fetching().df()

    @property
    def status(self) -> str:
        return self._result.status if self._result else ""

    @property
    def session(self) -> Session:
        return self._session

    def _fetching(self) -> Result:
        self._check_open()
        if self._result is None:
            raise errors.ProgrammingError("no statement has been executed on this cursor")
        return self._result

    def _check_open(self) -> None:
        if self.closed:
            raise errors.InterfaceError("the cursor is closed")
        self.connection._check_open()


def connect(database: str = ":memory:", *, read_only: bool = False, config: dict | None = None,
            udfs: list[str] | tuple[str, ...] = ()) -> Connection:
    """Open (or create) a database file; ``:memory:`` or no argument for an in-memory one.

    ``udfs`` names Python files of model UDFs to load (see ``udfs/``); loading is explicit.
    """
    connection = Connection(open_database(str(database), read_only=read_only, config=config))
    for path in udfs:
        connection.execute("LOAD UDFS FROM ?", [str(path)])
    return connection


def _params(params):
    if params is None or isinstance(params, (list, tuple, dict)):
        return params
    raise errors.ProgrammingError(f"parameters must be a list, tuple or dict, got {type(params).__name__}")


def _description(description):
    return [(name, str(type_code), None, None, *_precision(type_code), None) for name, type_code, *_ in description]


def _precision(type_code) -> tuple:
    text = str(type_code)
    if text.startswith("DECIMAL(") and text.endswith(")"):
        precision, scale = text[8:-1].split(",")
        return int(precision), int(scale)
    return None, None


# -- type objects and constructors (PEP 249) ----------------------------------------------
class DBAPITypeObject:
    def __init__(self, *names: str):
        self.names = frozenset(names)

    def __eq__(self, other) -> bool:
        return str(other).split("(")[0].upper() in self.names

    def __hash__(self) -> int:
        return hash(self.names)


STRING = DBAPITypeObject("VARCHAR", "UUID", "JSON", "ENUM")
BINARY = DBAPITypeObject("BLOB", "BIT")
NUMBER = DBAPITypeObject("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                         "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "BOOLEAN")
DATETIME = DBAPITypeObject("DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S",
                           "TIMESTAMP_MS", "TIMESTAMP_NS", "INTERVAL", "TIME WITH TIME ZONE")
ROWID = DBAPITypeObject("BIGINT", "UBIGINT")

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> datetime.date:
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    return Timestamp(*time.localtime(ticks)[:6])
