"""Session: the one entry point every frontend uses, ``execute(sql, params) -> Result``.

A ``Database`` owns the DuckDB database (one root connection, mldb's catalog and
functions registered once). Each DB-API cursor, wire client or shell gets its own
``Session`` on a DuckDB cursor of that root, so each has its own transaction state
and pending result, as in DuckDB itself.
"""

from __future__ import annotations

import contextlib
import threading

import duckdb

from mldb import catalog, errors
from mldb.frontend import MLDB, Statement, parse, split_statements
from mldb.frontend.expressions import MldbStatement
from mldb.plan.hooks import hooks_for
from mldb.plan.rules import RewriteContext, rewrite
from mldb.plan.steps import run_step
from mldb.result import Result


class Database:
    """One open DuckDB database with mldb's catalog and functions attached."""

    def __init__(self, path: str = ":memory:", *, read_only: bool = False, config: dict | None = None):
        self.path = path
        self.read_only = read_only
        self.lock = threading.RLock()  # serialises mldb steps that rewrite catalog state
        try:
            self.root = duckdb.connect(path, read_only=read_only, config=config or {})
        except duckdb.Error as error:
            raise errors.translate(error) from None
        if not read_only:
            catalog.ensure(self.root)
        from mldb.engine.udf import register_builtin_functions

        register_builtin_functions(self.root)

    def session(self) -> "Session":
        return Session(self, self.root.cursor())

    def close(self) -> None:
        self.root.close()


class Session:
    def __init__(self, database: Database, con: duckdb.DuckDBPyConnection):
        self.database = database
        self.con = con
        self.closed = False
        self._holder: duckdb.DuckDBPyConnection | None = None

    # -- the entry point -------------------------------------------------------------
    def execute(self, sql: str, params=None) -> Result:
        """Run one or more statements; the result is the last statement's."""
        self._check_open()
        if not isinstance(sql, str):
            raise errors.ProgrammingError(f"SQL must be a string, got {type(sql).__name__}")
        statements = split_statements(sql)
        if statements is None:  # sqlglot cannot tokenize it: DuckDB judges the text as written
            return self._run_duckdb(sql, params, _first_word(sql))
        if not statements:
            raise errors.ProgrammingError("empty query: there is no statement to execute")
        result = None
        for statement, statement_params in _distribute(statements, params):
            result = self._execute_one(statement, statement_params)
        return result

    def _execute_one(self, statement: Statement, params) -> Result:
        prefix, inner = _split_explain(statement)
        if not inner.has_mldb:  # (EXPLAIN's tail is one string token: look at the inner statement)
            return self._run_plain(statement, params)
        tree = parse(inner)
        if tree is None:
            return self._run_plain(statement, params)
        if isinstance(tree, MldbStatement):
            if prefix:
                raise errors.NotSupportedError(f"EXPLAIN of {inner.first_word} is not supported")
            return run_step(self, tree, params)
        context = RewriteContext(self, params)
        tree = rewrite(tree, context)
        if not context.notes:
            return self._run_plain(statement, params)
        if prefix:
            plan = self._run_duckdb(prefix + tree.sql(dialect=MLDB), context.params, "EXPLAIN")
            return self._hold(_explained(plan, context.notes), "EXPLAIN")
        result = self._run_plain(statement, context.params, tree.sql(dialect=MLDB))  # rules may consume parameters
        if context.after:
            result = self._materialize(result)  # DuckDB computes lazily: finish before logging the call
            for callback in context.after:
                callback()
        return result

    def _run_plain(self, statement: Statement, params, sql: str | None = None) -> Result:
        sql = statement.text if sql is None else sql
        hooks = [hook for hook in hooks_for(statement.first_word) if hook(self, statement, "check")]
        if not hooks:
            return self._run_duckdb(sql, params, statement.first_word)
        with self.transaction():
            for hook in hooks:
                hook(self, statement, "before")
            result = self._run_duckdb(sql, params, statement.first_word)
            result = self._materialize(result)
            for hook in hooks:
                hook(self, statement, "after")
        return result

    def _run_duckdb(self, sql: str, params, status: str) -> Result:
        try:
            if params is None:
                self.con.execute(sql)
            else:
                self.con.execute(sql, params)
        except duckdb.Error as error:
            raise errors.translate(error) from None
        return Result.from_duckdb(self.con, status)

    def _materialize(self, result: Result) -> Result:
        """Compute the whole result now, so it stays readable after more statements run here."""
        if result.cursor is None or result.description is None or result.cursor is not self.con:
            return result if result.has_rows else Result.done(result.status, result.rowcount)
        return self._hold(result.arrow(), result.status)

    def _hold(self, table, status: str) -> Result:
        """Serve an Arrow table as a DuckDB result from a private in-memory connection (made once)."""
        if self._holder is None:
            self._holder = duckdb.connect()
        held = self._holder.cursor()  # each held result on its own cursor: an earlier one may be unread
        held.register("held_result", table)
        held.execute("SELECT * FROM held_result")
        return Result.from_duckdb(held, status)

    # -- helpers for steps -------------------------------------------------------------
    def sql(self, sql: str, params=None):
        """Run internal SQL on this session's connection, translating errors."""
        try:
            return self.con.execute(sql, params) if params is not None else self.con.execute(sql)
        except duckdb.Error as error:
            raise errors.translate(error) from None

    @contextlib.contextmanager
    def transaction(self):
        """BEGIN ... COMMIT around the block (ROLLBACK on error), or join the user's open one."""
        if self.in_transaction:
            yield  # already inside the user's transaction: it decides
            return
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                self.con.execute("ROLLBACK")
            raise
        try:
            self.con.execute("COMMIT")
        except duckdb.Error as error:
            raise errors.translate(error) from None

    @property
    def in_transaction(self) -> bool:
        """True inside an explicit transaction (a failed BEGIN would abort it, so ask DuckDB:
        in auto-commit mode every statement gets a new transaction id)."""
        first = self.con.execute("SELECT txid_current()").fetchone()[0]
        return self.con.execute("SELECT txid_current()").fetchone()[0] == first

    def interrupt(self) -> None:
        self.con.interrupt()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(duckdb.Error):
                self.con.close()
                if self._holder is not None:
                    self._holder.close()

    def _check_open(self) -> None:
        if self.closed:
            raise errors.InterfaceError("the connection or cursor is closed")


def _first_word(sql: str) -> str:
    words = sql.split(None, 1)
    return words[0].upper().rstrip(";") if words else ""


def _split_explain(statement: Statement) -> tuple[str, Statement]:
    """``EXPLAIN [ANALYZE] <stmt>`` -> ("EXPLAIN [ANALYZE] ", <stmt>) so rules see the inner query."""
    if statement.first_word != "EXPLAIN":
        return "", statement
    inner = statement.rest()
    if inner is None:
        return "", statement
    prefix = "EXPLAIN "
    if inner.first_word == "ANALYZE" and (analyzed := inner.rest()) is not None:
        prefix, inner = "EXPLAIN ANALYZE ", analyzed
    return prefix, inner


def _distribute(statements: list[Statement], params):
    """Give each statement its share of the parameters (``?`` are consumed in order)."""
    if params is None or len(statements) == 1:
        for statement in statements:
            yield statement, params
        return
    if isinstance(params, dict):
        for statement in statements:
            yield statement, (params if statement.placeholders else None)
        return
    params = list(params)
    for statement in statements:
        count = statement.placeholders
        yield statement, (params[:count] if count else None)
        params = params[count:]


def _explained(result: Result, notes: list[str]):
    """EXPLAIN of a rewritten statement: mldb's rewrites as ``mldb_rewrite`` rows, then DuckDB's plan."""
    import pyarrow as pa

    plan = result.arrow()
    names = plan.column_names
    rows = pa.table({names[0]: ["mldb_rewrite"] * len(notes), names[-1]: notes}) if len(names) == 2 else None
    return pa.concat_tables([rows.cast(plan.schema), plan]) if rows is not None else plan
