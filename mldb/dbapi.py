"""PEP 249 (DB-API 2.0): Connection, Cursor, type objects and constructors.

A connection is one mldb ``Session``: its cursors and ``con.execute`` share its
transaction, temp tables, variables, prepared statements and settings, as in sqlite3
and DuckDB. Transactions follow DuckDB: every statement commits on its own unless the
user opens one with ``BEGIN``; ``commit()`` / ``rollback()`` end it through the
session's one transaction path, and a result a cursor has not fetched yet stays readable.
Each ``connect()`` of the same file in one process shares one ``Database``.

DuckDB's Python API works too: ``SELECT * FROM df`` reads a pandas / polars / pyarrow /
NumPy object of the caller's scope (frames.py), ``register`` / ``unregister``, ``sql()``
returning a ``Relation``, ``fetchdf`` / ``fetchnumpy`` / ``fetch_arrow_table`` on the
connection (its last ``execute``) and on cursors, ``$name`` parameters with a dict.
"""

from __future__ import annotations

import datetime
import time

from mldb import batch, errors, frames
from mldb.database import Database, open_database
from mldb.result import Result
from mldb.session import Session

apilevel = "2.0"
threadsafety = 2  # threads may share a connection: its cursors run one at a time (its session's lock);
# for parallel work open a connect(path) per thread (the same database, its own session)
paramstyle = "qmark"  # also numeric ($1) and named ($name), as DuckDB accepts


class Connection(errors.ErrorClasses):
    def __init__(self, database: Database):
        self._database = database
        self._session = database.session()
        self.closed = False
        self._last: Cursor | None = None  # what ``con.fetchall()`` and friends read, as in DuckDB

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
        cursor = self._last = self.cursor()
        cursor._execute(sql, params, frames.caller_scope())
        return cursor

    def executemany(self, sql: str, seq_of_params) -> "Cursor":
        cursor = self._last = self.cursor()
        cursor.executemany(sql, seq_of_params)
        return cursor

    def sql(self, query: str, params=None) -> "Relation | None":
        """DuckDB's ``con.sql``: a ``Relation`` for a statement with rows; any other statement
        runs now and gives ``None``."""
        self._check_open()
        relation = Relation(self.cursor(), query, params, frames.caller_scope())
        return relation if relation.description is not None else None

    query = sql

    def register(self, view_name: str, python_object) -> "Connection":
        """A temporary view of this connection over a pandas / polars / pyarrow / NumPy object,
        as DuckDB's ``register``: it hides a table of the same name until ``unregister``."""
        self._check_open()
        value = frames.scannable(python_object)
        if value is None:
            raise errors.ProgrammingError(
                f'Python object "{view_name}" of type "{type(python_object).__name__}" cannot be registered: '
                f"it is not a {frames.SCANNED}", sqlstate="42P01")
        self._session.register(view_name, value)
        return self

    def unregister(self, view_name: str) -> "Connection":
        """Drop a view ``register`` made (an unknown name is no error, as in DuckDB)."""
        self._check_open()
        self._session.unregister(view_name)
        return self

    # DuckDB's connection-level fetches read the result of the connection's last execute()
    def fetchone(self):
        return self._last_cursor().fetchone()

    def fetchmany(self, size: int = 1):
        return self._last_cursor().fetchmany(size)

    def fetchall(self):
        return self._last_cursor().fetchall()

    def fetchdf(self):
        return self._last_cursor().df()

    def fetchnumpy(self):
        return self._last_cursor().fetchnumpy()

    def fetch_arrow_table(self):
        return self._last_cursor().arrow()

    def pl(self):
        return self._last_cursor().pl()

    def fetch_record_batch(self, rows_per_batch: int = 1_000_000):
        return self._last_cursor().arrow_reader(rows_per_batch)

    fetch_df = df = fetchdf
    arrow = fetch_arrow_table

    @property
    def description(self):
        return self._last.description if self._last is not None else None

    def _last_cursor(self) -> "Cursor":
        self._check_open()
        if self._last is None:
            raise errors.ProgrammingError("no statement has been executed on this connection")
        return self._last

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
        return self._execute(sql, params, frames.caller_scope())

    def _execute(self, sql: str, params, scope: frames.Scope | None) -> "Cursor":
        """``execute`` with the scope replacement scans look in (the caller's, or a notebook's)."""
        self._check_open()
        self._close_result()
        self._result = self._session.execute(sql, _params(params), scope)
        return self

    def executemany(self, sql: str, seq_of_params) -> "Cursor":
        """As DuckDB's: each parameter set in turn, rows earlier than a failing one stay inserted.
        A plain ``INSERT ... VALUES (?, ...)`` runs as one INSERT of an Arrow table of the
        parameters (batch.py); if that fails outside a transaction, it runs row by row so the
        rows before the bad one are kept and the error is that row's."""
        self._check_open()
        with self._session.lock:  # (no other thread's statement between the rows)
            return self._executemany(sql, seq_of_params, frames.caller_scope())

    def _executemany(self, sql: str, seq_of_params, scope: frames.Scope) -> "Cursor":
        seq_of_params = seq_of_params if isinstance(seq_of_params, (list, tuple)) else list(seq_of_params)
        plan = batch.insert_plan(sql, seq_of_params)
        if plan is not None:
            try:
                return self._execute(plan.sql, None, plan.scope)
            except errors.Error as error:
                if self._session.in_transaction or error.sqlstate == "57014":
                    raise  # DuckDB has aborted the transaction, or the user cancelled: no row by row
        total = 0
        for params in seq_of_params:
            self._execute(sql, params, scope)
            total += max(self.rowcount, 0)
        if self._result is not None and returns_rows(self):
            return self  # INSERT ... RETURNING: the last parameter set's rows, as DuckDB's
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

    fetchdf = fetch_df = df
    fetch_arrow_table = arrow
    fetch_record_batch = arrow_reader

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


class Relation:
    """What ``con.sql()`` returns: a statement's rows read with DuckDB's relation names.

    The first read uses the result ``sql()`` computed (errors surface there, as in DuckDB)
    unless another statement ran on the connection since (it could change what the query
    reads: it runs again); as a DuckDB relation keeps no result, each later whole read
    (``df``, ``fetchall`` ...) runs the statement again. ``fetchone`` / ``fetchmany`` read on through one result. It is
    not a relational API: write the SQL (``SELECT ... FROM rel`` reads it as a frame).
    """

    def __init__(self, cursor: Cursor, sql: str, params, scope: frames.Scope):
        self._cursor, self._sql, self._params = cursor, sql, params
        cursor._execute(sql, params, scope)
        self._scope = scope.pinned()  # the frames it read, not the caller's whole frame
        self.description = cursor.description if returns_rows(cursor) else None
        self._fresh = True
        self._generation = cursor.session.generation

    @property
    def columns(self) -> list[str]:
        return [column[0] for column in self.description]

    @property
    def types(self) -> list[str]:
        return [column[1] for column in self.description]

    dtypes = types

    def _whole(self) -> Cursor:
        stale = not self._fresh or self._cursor.session.generation != self._generation
        if stale and self._cursor.status in _QUERY_WORDS:  # (never an INSERT ... RETURNING again)
            self._cursor._execute(self._sql, self._params, self._scope)
        self._fresh = False
        return self._cursor

    def df(self):
        return self._whole().df()

    def pl(self):
        return self._whole().pl()

    def arrow(self):
        return self._whole().arrow()

    def fetchnumpy(self):
        return self._whole().fetchnumpy()

    def fetchall(self):
        return self._whole().fetchall()

    def fetch_arrow_reader(self, batch_size: int = 100_000):
        return self._whole().arrow_reader(batch_size)

    fetchdf = to_df = df
    fetch_arrow_table = to_arrow_table = arrow
    to_arrow_reader = fetch_arrow_reader

    def fetchone(self):
        return self._reading().fetchone()

    def fetchmany(self, size: int = 1):
        return self._reading().fetchmany(size)

    def _reading(self) -> Cursor:
        """The cursor ``fetchone`` / ``fetchmany`` read on through (the first of them as a whole read)."""
        return self._whole() if self._fresh else self._cursor

    def show(self, max_rows: int = 10_000) -> None:
        """Print the rows as DuckDB's shell draws them."""
        print(self._render(max_rows))

    def _render(self, max_rows: int = 10_000) -> str:
        import duckdb
        import pyarrow as pa

        reader, kept, count = self._whole().arrow_reader(), [], 0
        for part in reader:
            kept.append(part.slice(0, max_rows - count))
            count += kept[-1].num_rows
            if count >= max_rows:
                reader.close()
                break
        with duckdb.connect() as holder:
            return str(holder.from_arrow(pa.Table.from_batches(kept, reader.schema)))

    def __repr__(self) -> str:
        return self._render()


def returns_rows(cursor: Cursor) -> bool:
    """Whether the statement gave rows (DuckDB answers INSERT / CREATE / SET with one ``Count``
    or ``Success`` column: those are statements without rows)."""
    description = cursor.description
    if description is None:
        return False
    return (cursor.status in _QUERY_WORDS or len(description) != 1
            or description[0][0] not in ("Count", "Success"))


_QUERY_WORDS = frozenset({"SELECT", "WITH", "FROM", "VALUES", "TABLE", "SHOW", "DESCRIBE", "SUMMARIZE",
                          "PRAGMA", "EXPLAIN", "CALL", "PIVOT", "UNPIVOT"})


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
