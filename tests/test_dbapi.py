"""PEP 249 conformance of mldb's DB-API: globals, types, every method, errors, persistence."""

from __future__ import annotations

import datetime
import decimal

import duckdb
import pytest

import mldb


def test_module_globals_and_exception_tree():
    assert mldb.apilevel == "2.0"
    assert mldb.threadsafety in (0, 1, 2, 3)
    assert mldb.paramstyle in ("qmark", "numeric", "named", "format", "pyformat")
    assert issubclass(mldb.Error, Exception) and issubclass(mldb.Warning, Exception)
    assert issubclass(mldb.InterfaceError, mldb.Error)
    assert issubclass(mldb.DatabaseError, mldb.Error)
    for cls in (mldb.DataError, mldb.OperationalError, mldb.IntegrityError, mldb.InternalError,
                mldb.ProgrammingError, mldb.NotSupportedError):
        assert issubclass(cls, mldb.DatabaseError)
    con = mldb.connect()
    assert con.ProgrammingError is mldb.ProgrammingError  # optional PEP 249 extension
    con.close()


def test_type_objects_and_constructors():
    con = mldb.connect()
    cur = con.execute("SELECT 1::INTEGER, 'a', 'x'::BLOB, DATE '2024-01-02', 2.5::DECIMAL(5,2)")
    codes = [column[1] for column in cur.description]
    assert codes[0] == mldb.NUMBER and codes[0] != mldb.STRING
    assert codes[1] == mldb.STRING
    assert codes[2] == mldb.BINARY
    assert codes[3] == mldb.DATETIME
    assert cur.description[4][4:6] == (5, 2)  # precision, scale
    assert all(len(column) == 7 for column in cur.description)
    assert mldb.Date(2024, 1, 2) == datetime.date(2024, 1, 2)
    assert mldb.Time(1, 2, 3) == datetime.time(1, 2, 3)
    assert mldb.Timestamp(2024, 1, 2, 3, 4, 5).hour == 3
    assert mldb.DateFromTicks(0).year in (1969, 1970)
    assert isinstance(mldb.TimeFromTicks(0), datetime.time)
    assert isinstance(mldb.TimestampFromTicks(0), datetime.datetime)
    assert mldb.Binary(b"\x00\x01") == b"\x00\x01"


@pytest.mark.parametrize("value", [
    42, -7, 3.25, decimal.Decimal("12.34"), "tea; with semicolon", b"\x00\xffbin", True, False,
    datetime.date(2024, 2, 29), datetime.datetime(2024, 2, 29, 12, 30, 1), None, [1, 2, 3], ["a", "b"],
])
def test_parameters_round_trip(value):
    con = mldb.connect()
    assert con.execute("SELECT ?", [value]).fetchone() == (value,)
    assert con.execute("SELECT $1", [value]).fetchone() == (value,)
    con.close()


def test_results_identical_to_duckdb():
    sql = ("SELECT range AS i, range * 1.5 AS f, 'row ' || range AS s, [range, range + 1] AS l, "
           "{'k': range} AS st, map([range], ['v']) AS m, DATE '2024-01-01' + range::INTEGER AS d, "
           "uuid '00000000-0000-0000-0000-000000000001' AS u FROM range(5)")
    expected = duckdb.connect().execute(sql).fetchall()
    assert mldb.connect().execute(sql).fetchall() == expected


def test_cursor_fetch_methods_iteration_and_arraysize():
    con = mldb.connect()
    cur = con.cursor()
    cur.execute("SELECT range FROM range(10)")
    assert cur.rowcount == -1
    assert cur.fetchone() == (0,)
    cur.arraysize = 3
    assert cur.fetchmany() == [(1,), (2,), (3,)]
    assert cur.fetchmany(2) == [(4,), (5,)]
    assert list(cur) == [(6,), (7,), (8,), (9,)]
    assert cur.fetchone() is None
    assert cur.fetchall() == []
    cur.setinputsizes([10])
    cur.setoutputsize(10)
    cur.close()


def test_rowcount_and_executemany(tmp_db):
    cur = tmp_db.cursor()
    cur.execute("CREATE TABLE t(a INTEGER, b VARCHAR)")
    cur.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a"), (2, "b"), (3, None)])
    assert cur.rowcount == 3
    cur.execute("UPDATE t SET b = 'z' WHERE a >= 2")
    assert cur.rowcount == 2
    assert cur.description is not None  # DuckDB reports a Count column, as duckdb's own cursor does
    cur.execute("DELETE FROM t WHERE a = 1")
    assert cur.rowcount == 1
    assert tmp_db.execute("SELECT * FROM t ORDER BY a").fetchall() == [(2, "z"), (3, "z")]


def test_arrow_polars_pandas_results():
    con = mldb.connect()
    sql = "SELECT range AS a, 'x' || range AS b FROM range(4)"
    table = con.execute(sql).arrow()
    assert table.column_names == ["a", "b"] and table.num_rows == 4
    frame = con.execute(sql).pl()
    assert frame["b"].to_list() == ["x0", "x1", "x2", "x3"]
    pandas_frame = con.execute(sql).df()
    assert list(pandas_frame["a"]) == [0, 1, 2, 3]


def test_transactions_commit_and_rollback(db_path):
    con = mldb.connect(db_path)
    con.execute("CREATE TABLE t(a INTEGER)")
    cur = con.cursor()
    cur.execute("BEGIN TRANSACTION")
    cur.execute("INSERT INTO t VALUES (1)")
    con.rollback()
    assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
    cur.execute("BEGIN TRANSACTION")
    cur.execute("INSERT INTO t VALUES (2)")
    con.commit()
    con.commit()  # nothing open: a no-op, not an error
    con.close()
    with mldb.connect(db_path) as reopened:
        assert reopened.execute("SELECT * FROM t").fetchall() == [(2,)]


def test_context_manager_commits_and_closes(db_path):
    with mldb.connect(db_path) as con:
        con.execute("CREATE TABLE t AS SELECT 7 AS a")
    assert con.closed
    with pytest.raises(mldb.InterfaceError):
        con.execute("SELECT 1")
    assert mldb.connect(db_path).execute("SELECT a FROM t").fetchall() == [(7,)]


def test_use_after_close_is_interface_error():
    con = mldb.connect()
    cur = con.cursor()
    cur.execute("SELECT 1")
    cur.close()
    for call in (lambda: cur.execute("SELECT 1"), cur.fetchone, cur.fetchall, lambda: cur.fetchmany(1)):
        with pytest.raises(mldb.InterfaceError):
            call()
    other = con.cursor()
    con.close()
    con.close()  # closing twice is allowed
    for call in (con.cursor, con.commit, con.rollback, lambda: other.execute("SELECT 1")):
        with pytest.raises(mldb.InterfaceError):
            call()


@pytest.mark.parametrize("sql, params, error, sqlstate, fragment", [
    ("SELEC 1", None, mldb.ProgrammingError, "42601", "syntax error"),
    ("SELECT * FROM nowhere", None, mldb.ProgrammingError, "42P01", "nowhere"),
    ("SELECT nope FROM range(1)", None, mldb.ProgrammingError, "42703", "nope"),
    ("SELECT ?, ?", [1], mldb.ProgrammingError, None, "parameter"),
    ("SELECT 'x'::INTEGER", None, mldb.DataError, "22P02", "Could not convert"),
    ("SELECT 1 // 0", None, mldb.DataError, "22012", "division by zero"),
    ("   ", None, mldb.ProgrammingError, "42000", "empty query"),
    ("-- just a comment", None, mldb.ProgrammingError, "42000", "empty query"),
])
def test_errors_are_mldb_classes_and_connection_stays_usable(sql, params, error, sqlstate, fragment):
    con = mldb.connect()
    with pytest.raises(error) as caught:
        con.execute(sql, params)
    assert not isinstance(caught.value, duckdb.Error)
    if sqlstate:
        assert caught.value.sqlstate == sqlstate
    assert fragment.lower() in str(caught.value).lower()
    assert con.execute("SELECT 41 + 1").fetchone() == (42,)


def test_integrity_error_and_nothing_written(tmp_db):
    tmp_db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY)")
    tmp_db.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(mldb.IntegrityError):
        tmp_db.execute("INSERT INTO t VALUES (2), (1)")
    assert tmp_db.execute("SELECT * FROM t").fetchall() == [(1,)]


def test_wrong_parameter_types_are_rejected():
    con = mldb.connect()
    with pytest.raises(mldb.ProgrammingError):
        con.execute("SELECT ?", 5)
    with pytest.raises(mldb.ProgrammingError):
        con.execute(b"SELECT 1")


def test_fetch_before_execute_and_after_statement_without_rows():
    con = mldb.connect()
    cur = con.cursor()
    with pytest.raises(mldb.ProgrammingError):
        cur.fetchone()
    assert cur.description is None and cur.rowcount == -1


def test_persistence_across_reopen(db_path):
    con = mldb.connect(db_path)
    con.execute("CREATE TABLE kept AS SELECT range AS a FROM range(100)")
    con.close()
    con = mldb.connect(db_path)
    assert con.execute("SELECT sum(a) FROM kept").fetchone() == (4950,)
    con.close()
    read_only = mldb.connect(db_path, read_only=True)
    with pytest.raises(mldb.Error):
        read_only.execute("INSERT INTO kept VALUES (1)")
    read_only.close()


def test_cursors_are_independent():
    con = mldb.connect()
    first, second = con.cursor(), con.cursor()
    first.execute("SELECT range FROM range(3)")
    second.execute("SELECT 'other'")
    assert first.fetchall() == [(0,), (1,), (2,)]
    assert second.fetchall() == [("other",)]


def test_named_parameters_and_multi_statement_parameters():
    con = mldb.connect()
    assert con.execute("SELECT $name || '!'", {"name": "hi"}).fetchone() == ("hi!",)
    con.execute("CREATE TABLE t(a INTEGER); INSERT INTO t VALUES (?); INSERT INTO t VALUES (?)", [5, 6])
    assert con.execute("SELECT sum(a) FROM t").fetchone() == (11,)


def test_one_connection_is_safe_to_share_between_threads():
    """Cursors of one connection share its session: from 8 threads they run one at a time,
    each result exact (a pending result of one thread is spilled when another executes)."""
    import threading

    con = mldb.connect()
    con.execute("CREATE TABLE nums AS SELECT range AS n FROM range(5000)")
    failures = []

    def work(worker: int) -> None:
        try:
            for i in range(20):
                cursor = con.cursor()
                limit = 100 * worker + i + 1
                cursor.execute("SELECT n FROM nums WHERE n < ? ORDER BY n", [limit])
                kind = i % 4
                if kind == 0:
                    rows = cursor.fetchmany(3) + cursor.fetchall()
                elif kind == 1:
                    rows = [(n,) for n in cursor.arrow().column("n").to_pylist()]
                elif kind == 2:
                    rows = con.cursor().execute("SELECT count(*) FROM range(?)", [limit]).fetchall()
                    assert rows == [(limit,)], rows
                    rows = cursor.fetchall()
                else:
                    rows = [(n,) for batch in cursor.arrow_reader(7) for n in batch.column(0).to_pylist()]
                assert rows == [(n,) for n in range(limit)], (worker, i, len(rows))
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            failures.append(repr(error))

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert con.execute("SELECT count(*) FROM nums").fetchall() == [(5000,)]
    con.close()


def test_a_cursor_whose_rows_ran_out_never_reads_the_next_statements_rows():
    """The flaky failure of the test above, in one thread: a one-row result's ``fetchmany(3)`` runs
    it out, another cursor of the connection runs a query, and the first cursor's ``fetchall`` read
    that query's rows from the session's DuckDB connection (and the second then read none)."""
    con = mldb.connect()
    first, second = con.cursor(), con.cursor()
    first.execute("SELECT 1")
    assert first.fetchmany(3) == [(1,)]
    second.execute("SELECT range FROM range(5)")
    assert first.fetchall() == [] and first.fetchone() is None
    assert second.fetchall() == [(n,) for n in range(5)]
    first.execute("SELECT range FROM range(20)")
    reader = first.arrow_reader(7)  # half read, then spilled: it took every row from DuckDB
    assert reader.read_next_batch().num_rows == 7
    second.execute("SELECT 'other'")
    assert first.fetchall() == []
    assert sum(batch.num_rows for batch in reader) == 13
    assert second.fetchall() == [("other",)]
    con.close()


def test_a_statement_between_a_fetchall_and_its_end_leaves_both_cursors_their_rows(monkeypatch):
    """Thread A's ``fetchall`` has read its rows and not yet ended the result (the lock is free) when
    thread B executes: B spills A's spent result, and A, reading again, gets none of B's rows."""
    import threading

    from mldb.result import Result

    con = mldb.connect()
    reading, a_read, b_executed, a_done = (threading.Event() for _ in range(4))
    finish, outcome = Result.finish, {}

    def parked_finish(result, success=True):
        # (A parks only outside the session's lock: were it held here, B could not come between)
        if threading.current_thread().name == "A" and reading.is_set() and not con.session.lock._is_owned():
            reading.clear()
            a_read.set()
            b_executed.wait()
        finish(result, success)

    monkeypatch.setattr(Result, "finish", parked_finish)

    def a() -> None:
        try:
            cursor = con.cursor().execute("SELECT 1")
            reading.set()
            outcome["a"] = cursor.fetchall()  # parks between its read and the result's end
            outcome["a again"] = cursor.fetchall()
        finally:
            a_read.set()
            a_done.set()

    def b() -> None:
        try:
            a_read.wait()
            cursor = con.cursor().execute("SELECT range FROM range(602)")
        finally:
            b_executed.set()
        a_done.wait()
        outcome["b"] = len(cursor.fetchall())

    threads = [threading.Thread(target=a, name="A"), threading.Thread(target=b, name="B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcome == {"a": [(1,)], "a again": [], "b": 602}
    con.close()


def test_interrupt_reaches_a_running_statement_while_another_thread_waits():
    import threading
    import time

    con = mldb.connect()
    outcome = {}
    started = threading.Event()

    def long_one() -> None:
        started.set()
        try:
            con.cursor().execute("SELECT count(*) FROM range(1000000000000) a WHERE a.range % 7 = 3").fetchall()
            outcome["long"] = "finished"
        except mldb.OperationalError as error:
            outcome["long"] = error.sqlstate

    def waiting_one() -> None:
        outcome["waiting"] = con.cursor().execute("SELECT count(*) FROM range(1000)").fetchall()

    long = threading.Thread(target=long_one)
    long.start()
    started.wait()
    while con.session.lock.acquire(blocking=False):  # until the long statement holds the session
        con.session.lock.release()
        time.sleep(0.001)
    waiting = threading.Thread(target=waiting_one)
    waiting.start()
    while long.is_alive():  # interrupt() does not wait for the lock; repeated if it came before DuckDB began
        con.interrupt()
        long.join(5)
    waiting.join()
    assert outcome == {"long": "57014", "waiting": [(1000,)]}
    con.close()
