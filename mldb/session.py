"""Session: the one entry point every frontend uses, ``execute(sql, params) -> Result``.

A statement flows one way:

    split -> parse (only statements holding mldb's words) -> plan (pure rules: SQL plus
    ML operators) -> execute (operators, then DuckDB) -> Result (a stream of rows)

A statement with nothing of mldb's goes to DuckDB as written. A DB-API connection,
a wire client or the shell each have one ``Session`` on a DuckDB cursor of the
database's root connection: their own transaction, temp tables, variables, prepared
statements and settings, as a DuckDB connection has. Every way to begin, commit or roll
back (SQL, ``Connection.commit()``, mldb's own steps, the wire server) goes through
``begin`` / ``commit`` / ``rollback`` here, which tell the features (FAISS indexes, the
model cache) so that they follow what DuckDB holds.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import duckdb
from sqlglot import exp

from mldb import errors, frames
from mldb.database import Database, open_database
from mldb.execution import Execution, canceled
from mldb.frontend import MLDB, Statement, parse, split_statements
from mldb.frontend.expressions import MldbStatement
from mldb.frontend.positions import as_written
from mldb.frontend.settings import statement_options
from mldb.plan import cache, literals, template
from mldb.plan.rules import EXECUTION_VARIABLE, Planner, rewrite
from mldb.prepared import PreparedStatements
from mldb.result import Result

__all__ = ["Database", "Session", "open_database"]

_BEGIN = frozenset({"BEGIN", "START"})
_COMMIT = frozenset({"COMMIT", "END"})
_ROLLBACK = frozenset({"ROLLBACK", "ABORT"})
_ENDS = frozenset({"BEGIN", "COMMIT", "ROLLBACK"})  # statuses of transaction statements: no view runs in them
_SETTINGS = frozenset({"USE", "SET", "RESET", "PRAGMA", "CALL"})  # may change the current schema
# statements that change no catalog (every other one moves the catalog version: mldb.plan.cache)
_READS = frozenset({"SELECT", "WITH", "FROM", "VALUES", "TABLE", "(", "INSERT", "UPDATE", "DELETE", "EXPLAIN",
                    "DESCRIBE", "SHOW", "SUMMARIZE"})


def _locked(method):
    """Run ``method`` holding the session's lock: one DuckDB call on its connection at a time."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return run


_WRITE_WORDS = frozenset({"INSERT", "UPDATE", "DELETE", "COPY", "TRUNCATE", "DROP", "ALTER", "CREATE", "WITH",
                          "MERGE", "EXECUTE", "CALL"})  # statements that may change a table (features follow them)


class Session:
    def __init__(self, database: Database):
        self.database = database
        self.con = database.root.cursor()
        self.closed = False
        # Every use of ``con`` (statements, reads of their results, commit, close) holds this
        # re-entrant lock, so a connection's cursors may be used from many threads, one at a
        # time; ``interrupt`` never takes it (it must reach a running statement).
        self.lock = threading.RLock()
        self.in_transaction = False  # an explicit transaction (BEGIN ... COMMIT) is open
        self.load_udfs_allowed = True  # a wire client may not run a file's code on the server
        self.access = None  # a wire client's ClientAccess (mldb.server.access): what it may run
        self.changed_settings: set[str] = set()  # settings a wire client changed (its RESET ALL resets them)
        self.mldb_settings: dict = {}  # mldb's own settings this session SET (mldb.scaleout.settings)
        self.statement_settings: dict = {}  # those the running statement gave itself: ... WITH (workers = 2)
        self.prepared = PreparedStatements()  # DuckDB's prepared statements of texts run again (mldb.prepared)
        self.running: Execution | None = None  # the statement running or streaming now
        self.statement: Execution | None = None  # the step (TRAIN, CREATE INDEX, ...) running now, if any
        self._pending: Result | None = None  # the result open on ``con``
        self._schema: str | None = None  # current_schema(), read once until USE / SET / RESET
        self._holder: duckdb.DuckDBPyConnection | None = None
        self._scanned: list[str] = []  # replacement-scan views registered for the last statement
        self._nested = 0  # how many execute() calls are running (a step runs SQL through execute too)
        self.generation = 0  # counts statements and registrations (a Relation's result may be stale)
        self.plans = cache.PlanCache()  # planned statements by shape (mldb.plan.cache)
        self._catalog_changed = False  # the open transaction ran a statement that may change the catalog
        self.con.execute("SET python_enable_replacements = false")  # it would look at mldb's frames: see frames.py

    def restrict(self, access) -> None:
        """A wire client's session: every SQL text on ``con`` passes ``access`` first (mldb.server.access)."""
        self.access = access
        self.con = access.checked(self.con, self.changed_settings)

    # -- the entry point -------------------------------------------------------------------
    @_locked
    def execute(self, sql: str, params=None, scope: frames.Scope | None = None) -> Result:
        """Run one or more statements; the result is the last statement's. A table name that is
        no table but a frame in ``scope`` reads that frame (replacement scans, see frames.py)."""
        self._check_open()
        if not isinstance(sql, str):
            raise errors.ProgrammingError(f"SQL must be a string, got {type(sql).__name__}")
        self.generation += 1
        self.release_result()
        if not self._nested:  # a step's own SQL (TRAIN reads its FROM) keeps the outer statement's views
            self._drop_scans()
        statements = split_statements(sql)
        if statements is None:  # sqlglot cannot tokenize it: DuckDB judges the text as written
            result = self._run_sql(sql, params, _first_word(sql))
            result.lock = self.lock
            return result
        if not statements:
            raise errors.ProgrammingError("empty query: there is no statement to execute")
        result = None
        for statement, statement_params in _distribute(statements, params):
            if result is not None:
                result.drain()  # as DuckDB: every statement but the last runs to its end
            self._nested += 1
            try:
                result = self._guarded(self._execute_one, statement, statement_params, scope)
            except errors.Error as error:  # (as_written: the user's text, not the SQL mldb ran for it)
                if (better := frames.unscannable(as_written(error, statement), scope)) is error:
                    raise
                raise better from None
            finally:
                self._nested -= 1
        result.lock = self.lock  # its reads use ``con`` (or a spill of it): one thread at a time
        return result

    def _execute_one(self, statement: Statement, params, scope: frames.Scope | None = None) -> Result:
        word = statement.first_word
        if word in _SETTINGS:
            self._schema = None
        if word in _BEGIN or word in _COMMIT or word in _ROLLBACK:
            return self._transaction_statement(statement, params)
        if word in _READS and _analyzed(statement).first_word in _READS:  # (EXPLAIN ANALYZE runs its statement)
            return self._execute_statement(statement, params, scope)
        with self.changing_catalog():
            return self._execute_statement(statement, params, scope)

    @contextlib.contextmanager
    def changing_catalog(self):
        """Around a statement (or a monitor's run) that may change the catalog: no plan made before it runs
        after it."""
        self._catalog_changed = self._catalog_changed or self.in_transaction
        self.database.catalog_version.move()
        try:
            yield
        finally:
            self.database.catalog_version.move()

    def _execute_statement(self, statement: Statement, params, scope: frames.Scope | None) -> Result:
        """A statement ending with its own scale-out settings (``SELECT ... WITH (workers = 2)``) runs
        with them over the session's."""
        prefix, inner = _split_explain(statement)
        inner, own = statement_options(inner)
        if not own:
            return self._execute_query(statement, params, scope)
        statement = split_statements(prefix + inner.text)[0] if prefix else inner
        checked = _scaleout_settings().checked_for_statement(self, own)
        outer, self.statement_settings = self.statement_settings, checked
        try:
            return self._execute_query(statement, params, scope)
        finally:
            self.statement_settings = outer

    def _execute_query(self, statement: Statement, params, scope: frames.Scope | None) -> Result:
        prefix, inner = _split_explain(statement)
        scanned = self._scan(inner, scope)
        if scanned is not inner and not prefix:  # (memory.main.df read as main.df)
            statement = inner = scanned
        if not inner.has_mldb and not _scaleout().plan.may_go_out(self, inner):
            return self._run_plain(statement, params)  # (EXPLAIN's tail is one string token: look at the inner one)
        plan_key, written, marks = None, (statement, params), None
        local = _scaleout_settings().executor(self) == "local"  # (under Ray: planned each time)
        if not prefix and not self._scanned and local and statement.first_word in _READS:  # (others move the version)
            text, params, marks = literals.parameterized(inner, params) or (inner.text, params, None)
            plan_key = cache.key(text, params, self.current_schema(), self.database.catalog_version.value)
            plan = self.plans.get(plan_key)
            if plan is not None:
                return self._run_plan(statement, plan, params, self.database.start(self, inner.text))
            if text is not inner.text:  # (a query vector written as a list literal is now a parameter)
                statement = inner = literals.statement_of(text) or written[0]
                params = params if inner is not written[0] else written[1]
        tree = parse(inner)
        if tree is None:
            return self._run_plain(*written)
        if isinstance(tree, MldbStatement):
            if prefix:
                raise errors.NotSupportedError(f"EXPLAIN of {inner.first_word} is not supported")
            return self._run_step(tree, params)
        execution = self.database.start(self, inner.text)
        try:
            return self._run_planned(statement, tree, params, execution, prefix, plan_key, written, marks)
        except BaseException:
            execution.finish(success=False)
            raise

    def _run_planned(self, statement: Statement, tree, params, execution: Execution, explain: str,
                     plan_key=None, written=None, marks=None) -> Result:
        planner = Planner(self, params, execution.id)
        if marks and not literals.faithful(tree, marks, before=True):
            return self._run_written(written, execution)
        original = tree.copy() if _scaleout_settings().executor(self) != "local" else None
        tree = rewrite(tree, planner)
        if marks and not literals.faithful(tree, marks, before=False):
            return self._run_written(written, execution)
        if original is not None and (out := self._run_out(original, planner, params, execution, explain)):
            return out
        if not planner.notes and not (explain and planner.scaleout is not None):
            # (as written: a query vector literal made a parameter goes back in the text)
            execution.finish()
            return self._run_plain(*(written or (statement, params)))
        if explain:
            sql, explain_params = template.plain(tree, planner.params)
            plan = self._run_plain(statement, explain_params, explain + sql, stream=False)
            execution.finish()
            executor = _scaleout().explain.explain_notes(planner, analyze=explain.startswith("EXPLAIN ANALYZE"))
            return self._hold(_explained(plan, [*planner.notes, *executor]), "EXPLAIN")
        for callback, always in planner.finishers:
            execution.on_finish(callback, always=always)
        self.running = execution
        for operator in planner.operators:
            if operator.run is not None:
                execution.check()
                operator.run(execution)
        plan = cache.compile_plan(planner, tree)
        if plan_key is not None and planner.cacheable:
            self.plans.put(plan_key, plan)
        return self._run_plan(statement, plan, planner.params, execution)

    def _run_out(self, original, planner: Planner, params, execution: Execution, explain: str) -> Result | None:
        """The statement run by the scale-out executor, when its planner said it goes out (else None)."""
        driver = _scaleout_driver()
        if not driver.goes_out(self, planner.scaleout, explain):
            return None
        self.running = execution
        for callback, always in planner.finishers:  # (e.g. the lineage edges of what it writes)
            execution.on_finish(callback, always=always)
        return driver.run(self, planner.scaleout, original, params, execution, self._holder_connection)

    def _run_written(self, written: tuple, execution: Execution) -> Result:
        """The statement as written, when a query vector literal made a parameter would change what
        it returns (``literals.faithful``): planned each time, as every new literal is a new text."""
        statement, params = written
        return self._run_planned(statement, parse(statement), params, execution, "", None, written)

    def _run_plan(self, statement: Statement, plan: cache.Plan, params, execution: Execution) -> Result:
        """Fill the plan's holes (its operators run: a FAISS search, a query's embedding), then DuckDB."""
        try:
            self.running = execution
            sql, params = plan.filled(execution, params)
            return self._run_plain(statement, params, sql, execution, plan.stream)
        except BaseException:
            execution.finish(success=False)
            raise

    def _run_step(self, node: MldbStatement, params) -> Result:
        step = _features().STEPS.get(type(node))
        if step is None:
            raise errors.NotSupportedError(f"{type(node).__name__} has no step to run it")
        if self.access is not None:  # (a FAISS index on a table of mldb's catalog)
            self.access.admit_step(node)
        execution = self.database.start(self, None)
        self.running = execution
        outer, self.statement = self.statement, execution  # its own SQL replaces ``running``: not this
        try:
            result = step(self, node, params)
        except BaseException:
            execution.finish(success=False)
            raise
        finally:
            self.statement = outer
        execution.finish()
        return result

    def _run_plain(self, statement: Statement, params, sql: str | None = None,
                   execution: Execution | None = None, stream: bool = True) -> Result:
        sql = statement.text if sql is None else sql
        listeners = []
        written = _analyzed(statement)  # (EXPLAIN ANALYZE runs its statement: a write is followed as one)
        if written.first_word in _WRITE_WORDS:
            listeners = [listener for listener in _features().each("on_write") if listener(self, written, "check")]
        if not listeners:
            return self._run_sql(sql, params, statement.first_word, execution, stream, prepare=sql == statement.text)
        with self.transaction():
            for listener in listeners:
                listener(self, written, "before")
            result = self._run_sql(sql, params, statement.first_word, execution)
            if result.has_rows:  # INSERT ... RETURNING: the rows must be computed before the index follows
                result.spill(self._holder_connection())
            for listener in listeners:
                listener(self, written, "after")
        return result

    def _run_sql(self, sql: str, params, status: str, execution: Execution | None = None,
                 stream: bool = True, prepare: bool = False) -> Result:
        rewritten = execution is not None and stream  # a planned statement: a SELECT of it streams Arrow batches
        if execution is None and self.database.stored_functions and status not in _ENDS:
            execution = self.database.start(self, sql)  # a view may call mldb's functions
        self.running = execution
        result = None
        try:
            if execution is not None and self.database.stored_functions:
                # (inside an aborted transaction this fails as the statement itself would)
                # (mldb's own text, new for every statement: a wire client's access check would not keep it)
                getattr(self.con, "unchecked", self.con).execute(f"SET VARIABLE {EXECUTION_VARIABLE} = {execution.id}")
            if rewritten:
                result = Result.stream(self.con, sql, params, status, execution, self._holder_connection)
            if result is None and not (prepare and self._run_prepared(sql, params, status)):
                if params is None:
                    self.con.execute(sql)
                else:
                    self.con.execute(sql, params)
        except duckdb.Error as error:
            if execution is not None:
                execution.finish(success=False)
            translated = errors.translate(error, sql)
            raise (self.access.explained(translated) if self.access is not None else translated) from None
        if result is None:
            result = Result.from_duckdb(self.con, status, execution)
        if result.streaming:
            self._pending = result
        return result

    def _run_prepared(self, sql: str, params, status: str) -> bool:
        """A text this session ran before, as DuckDB's prepared statement (``mldb.prepared``)."""
        if status in _SETTINGS:  # (a name may mean another table after it)
            self.prepared.forget(self.con)
            return False
        return not self.in_transaction and self.prepared.execute(self.con, sql, params, status)

    def _guarded(self, run, *args) -> Result:
        """Run a statement; a cancel of any kind reaches the caller as SQLSTATE 57014."""
        try:
            return run(*args)
        except KeyboardInterrupt:
            self._abandon()
            raise canceled() from None
        except errors.OperationalError as error:
            if error.sqlstate == "57014":
                self._abandon()
            raise
        except errors.Error:
            raise
        except duckdb.Error as error:  # e.g. registering a frame DuckDB cannot scan (no columns)
            raise errors.translate(error) from None
        except RecursionError:  # sqlglot reads nested expressions recursively (PREDICT(PREDICT(...)) 500 deep)
            raise errors.ProgrammingError("statement too deeply nested: simplify it (PostgreSQL's stack depth "
                                          "limit)", sqlstate="54001") from None
        except (OverflowError, ValueError) as error:  # a value out of range for a step (epochs = 10**30)
            raise errors.DataError(f"value out of range: {error}", sqlstate="22003" if isinstance(error, OverflowError)
                                   else "22023") from error

    def _abandon(self) -> None:
        """After a cancel: the statement's own transaction was rolled back by whoever raised."""
        self.running = None

    # -- replacement scans (frames.py) --------------------------------------------------------
    def _scan(self, statement: Statement, scope: frames.Scope | None) -> Statement:
        """Register the frames of ``scope`` the statement reads and DuckDB has no table for;
        the statement to run (a frame named ``database.schema.name`` is read as ``schema.name``)."""
        names = frames.candidates(statement.tokens, scope)
        if not names:
            return statement
        tree = parse(statement)
        read = sorted(frames.read_names(tree, self.current_schema, self._database_name) & set(names)) \
            if tree is not None else []
        read = [name for name in read if name in self._scanned or not self._is_relation(name)]
        if (refusal := frames.stored_reader(tree, read, scope)) is not None:
            raise refusal
        for name in read:
            if name not in self._scanned:
                self.con.complete()  # (a status row of the statement before may be unread)
                self.con.register(name, frames.scannable(scope.get(name)))
                self._scanned.append(name)
        text = frames.without_database(statement, read, self._database_name) if read else None
        return statement if text is None else split_statements(text)[0]

    def _database_name(self) -> str:
        return self.sql("SELECT current_database()").fetchall()[0][0]

    def _is_relation(self, name: str) -> bool:
        """Whether DuckDB resolves ``name`` to a table or view (it wins over a Python variable)."""
        try:
            self.con.table(exp.to_identifier(name).sql(dialect=MLDB))
        except duckdb.CatalogException:
            return False
        except duckdb.Error:
            return True  # e.g. an aborted transaction: register nothing, the statement says why
        return True

    @_locked
    def register(self, name: str, value) -> None:
        """``Connection.register``: a temporary view of this session over ``value``."""
        self.generation += 1
        self.database.catalog_version.move()  # (a view of that name may hide a table a plan reads)
        self.release_result()
        self._drop_scans()
        try:
            self.con.complete()
            self.con.register(name, value)
        except duckdb.Error as error:
            raise errors.translate(error) from None

    @_locked
    def unregister(self, name: str) -> None:
        self.generation += 1
        self.database.catalog_version.move()
        self.release_result()
        self._drop_scans()
        try:
            self.con.complete()
            self.con.unregister(name)
        except duckdb.Error as error:
            raise errors.translate(error) from None

    def _drop_scans(self) -> None:
        names, self._scanned = self._scanned, []
        if names:
            with contextlib.suppress(duckdb.Error):
                self.con.complete()
        for name in names:
            with contextlib.suppress(duckdb.Error):
                self.con.unregister(name)

    # -- results ---------------------------------------------------------------------------
    def release_result(self) -> None:
        """Before another statement runs on ``con``: keep the open result readable (spill it)."""
        pending, self._pending = self._pending, None
        if pending is not None and pending.streaming and pending.cursor is self.con:
            try:
                pending.spill(self._holder_connection())
            except errors.Error:  # DuckDB already ended that result (a failed statement ran since)
                pending.finish(success=False)

    def _hold(self, table, status: str) -> Result:
        """Serve an Arrow table as a DuckDB result from the private in-memory connection."""
        held = self._holder_connection().cursor()
        held.register("held_result", table)
        held.execute("SELECT * FROM held_result")
        return Result.from_duckdb(held, status)

    def _holder_connection(self) -> duckdb.DuckDBPyConnection:
        if self._holder is None:
            self._holder = duckdb.connect()
        return self._holder

    # -- helpers for steps ---------------------------------------------------------------------
    @_locked
    def sql(self, sql: str, params=None, client: bool = False):
        """Run internal SQL on this session's connection, translating errors. For a wire client
        it is mldb's own SQL, which may write mldb's catalog (mldb.server.access); ``client``:
        SQL that stands for the client's own statement (a DROP INDEX passed on to DuckDB), which
        may not."""
        self.release_result()
        con = self.con if client else self.own_con
        try:
            return con.execute(sql, params) if params is not None else con.execute(sql)
        except duckdb.Error as error:
            raise errors.translate(error, sql) from None

    @property
    def own_con(self):
        """``con`` for mldb's own SQL (see ``sql``): a wire client's checks but the catalog's."""
        return getattr(self.con, "own", self.con)

    @_locked
    def sql_over(self, sql: str, rows, params=None):
        """Internal SQL that reads the Arrow table ``rows`` as ``__mldb_rows`` (an INSERT of catalog rows)."""
        self.con.register("__mldb_rows", rows)
        try:
            return self.sql(sql, params)
        finally:
            self.con.unregister("__mldb_rows")

    @_locked
    def current_schema(self) -> str:
        """DuckDB's ``current_schema()``, read once per change of it (rules ask on every statement)."""
        if self._schema is None:
            self._schema = self.sql("SELECT current_schema()").fetchall()[0][0]
        return self._schema

    def settings_changed(self) -> None:
        """The search path or a setting may have changed: a name may mean another table now."""
        self._schema = None
        self.prepared.forget(self.con)

    def check_cancel(self) -> None:
        """Raise SQLSTATE 57014 if the running statement was cancelled (steps call it between batches)."""
        for execution in (self.statement, self.running):
            if execution is not None:
                execution.check()

    # -- transactions: the one path ---------------------------------------------------------------
    @_locked
    def begin(self, sql: str = "BEGIN TRANSACTION", params=None) -> Result:
        self.release_result()
        result = self._run_sql(sql, params, "BEGIN")
        self.in_transaction = True
        return result

    @_locked
    def commit(self, sql: str = "COMMIT", params=None) -> Result:
        self.release_result()
        aborted = self.in_transaction and self._aborted()  # DuckDB's COMMIT then rolls back, silently
        try:
            result = self._run_sql(sql, params, "COMMIT")
        except errors.Error:
            if self.in_transaction and not self._transaction_open():  # DuckDB rolled it back
                self._ended(committed=False)
            raise
        self._ended(committed=not aborted)
        return result

    @_locked
    def rollback(self, sql: str = "ROLLBACK", params=None) -> Result:
        self.release_result()
        try:
            return self._run_sql(sql, params, "ROLLBACK")
        finally:
            self._ended(committed=False)

    def _ended(self, committed: bool) -> None:
        """Tell every feature; each one hears of it even if another fails (their locks must go)."""
        self.in_transaction = False
        failure = None
        for listener in _features().each("on_commit" if committed else "on_rollback"):
            try:
                listener(self)
            except Exception as error:  # noqa: BLE001 - re-raised below, after the others ran
                failure = failure or error
        if self._catalog_changed:  # what it changed is now visible to the others (indexes published), or gone
            self._catalog_changed = False
            self.database.catalog_version.move()
        if failure is not None:
            raise failure

    def _transaction_statement(self, statement: Statement, params) -> Result:
        word = statement.first_word
        if word in _BEGIN:
            return self.begin(statement.text, params)
        if word in _COMMIT:
            return self.commit(statement.text, params)
        return self.rollback(statement.text, params)

    def _aborted(self) -> bool:
        """Whether the open transaction failed (DuckDB then refuses every statement but its end)."""
        try:
            self.con.execute("SELECT 1")
        except duckdb.TransactionException:
            return True
        except duckdb.Error:
            return False
        return False

    def _transaction_open(self) -> bool:
        try:
            first = self.con.execute("SELECT txid_current()").fetchone()[0]
            return self.con.execute("SELECT txid_current()").fetchone()[0] == first
        except duckdb.Error:
            return True  # an aborted transaction refuses every statement but ROLLBACK

    @contextlib.contextmanager
    def transaction(self):
        """BEGIN ... COMMIT around the block (ROLLBACK on error), or join the user's open one."""
        if self.in_transaction:
            yield  # already inside the user's transaction: it decides
            return
        self.begin()
        try:
            yield
        except BaseException:
            with contextlib.suppress(errors.Error):
                self.rollback()
            raise
        self.commit()

    @_locked
    def finish_transaction(self, committed: bool) -> None:
        """``Connection.commit()`` / ``rollback()``: end the open transaction, if any."""
        self._check_open()
        if not self.in_transaction:
            return
        self.commit() if committed else self.rollback()

    # -- cancel and close ---------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Cancel the running statement (from another thread): mldb's operators stop at their
        next batch, DuckDB at its next vector; the statement fails with SQLSTATE 57014."""
        for execution in (self.statement, self.running):
            if execution is not None:
                execution.cancel()
        with contextlib.suppress(duckdb.Error):
            self.con.interrupt()

    @_locked
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.finish()
        with contextlib.suppress(errors.Error):
            if self.in_transaction:
                self.rollback()
        with contextlib.suppress(duckdb.Error):
            self.con.close()
            if self._holder is not None:
                self._holder.close()

    def _check_open(self) -> None:
        if self.closed:
            raise errors.InterfaceError("the connection or cursor is closed")


def _features():
    """The features (imported on first use: they bring numpy and pyarrow; ``import mldb`` stays light)."""
    from mldb import features

    return features


def _scaleout_driver():
    """The scale-out driver (Ray imported only when a job starts)."""
    import mldb.scaleout.driver

    return mldb.scaleout.driver


def _scaleout_settings():
    import mldb.scaleout.settings

    return mldb.scaleout.settings


def _scaleout():
    """The scale-out feature's recognizer and EXPLAIN lines (imported on first use, as the features are)."""
    import mldb.scaleout.explain
    import mldb.scaleout.plan

    return mldb.scaleout


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


def _analyzed(statement: Statement) -> Statement:
    """The statement ``EXPLAIN ANALYZE <statement>`` runs (``statement`` itself otherwise)."""
    if statement.first_word != "EXPLAIN":
        return statement
    prefix, inner = _split_explain(statement)
    return inner if prefix == "EXPLAIN ANALYZE " else statement


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
    """EXPLAIN of a rewritten statement: mldb's operators and the executor (``notes``) as ``mldb_rewrite``
    rows, then DuckDB's plan."""
    import pyarrow as pa

    plan = result.arrow()
    names = plan.column_names
    rows = pa.table({names[0]: ["mldb_rewrite"] * len(notes), names[-1]: notes}) if len(names) == 2 else None
    return pa.concat_tables([rows.cast(plan.schema), plan]) if rows is not None else plan
