"""The database-grade core (SPEC section 8): per-database state, one transaction path,
connection semantics as DuckDB's, plain DuckDB parity, streaming results, UDF errors.

Two template files are trained once per module and copied for each test:

- ``a``: model ``m`` learns ``up = x > 0`` and samples every prediction (``log_sample = 1.0``);
- ``b``: model ``m`` learns the opposite and samples nothing.

Both hold a view ``v`` (PREDICT over 200 rows), a table ``docs`` with different vectors
and a FAISS index of the same name, so anything one database leaks into the other shows.
"""

from __future__ import annotations

import gc
import os
import random
import shutil
import threading
import time
import weakref

import duckdb
import numpy as np
import pytest

import mldb

TRAIN_OPTIONS = "epochs = 20, lr = 0.1, seed = 1"
VIEW_ROWS = 200
POSITIVE = sum(1 for i in range(VIEW_ROWS) if i % 100 > 50)  # rows of the view with x > 0
DIM = 4


def _make_template(path: str, *, flipped: bool, sample: bool, seed: int) -> None:
    con = mldb.connect(path)
    con.execute("CREATE TABLE pts AS SELECT (i - 100) / 10.0 AS x, i > 100 AS up FROM range(201) t(i)")
    source = "(SELECT x, NOT up AS up FROM pts)" if flipped else "pts"
    sample_option = ", log_sample = 1.0" if sample else ""
    con.execute(f"CREATE MODEL m PREDICT up FROM {source} WITH ({TRAIN_OPTIONS}{sample_option})")
    con.execute(f"CREATE VIEW v AS SELECT x, PREDICT(m) AS p FROM "
                f"(SELECT (range % 100 - 50) / 10.0 AS x FROM range({VIEW_ROWS}))")
    vectors = np.random.default_rng(seed).normal(size=(50, DIM)).astype(np.float32)
    con.execute(f"CREATE TABLE docs(id INTEGER, v FLOAT[{DIM}])")
    con.execute(f"INSERT INTO docs SELECT unnest(range(50)), unnest(?::FLOAT[{DIM}][])", [vectors.tolist()])
    con.execute("CREATE INDEX docs_v ON docs USING FAISS (v) WITH (type = 'flat')")
    con.close()


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    folder = tmp_path_factory.mktemp("templates")
    paths = {"a": str(folder / "a.db"), "b": str(folder / "b.db")}
    _make_template(paths["a"], flipped=False, sample=True, seed=1)
    _make_template(paths["b"], flipped=True, sample=False, seed=2)
    return paths


@pytest.fixture
def files(templates, tmp_path):
    """Fresh copies of the two template databases: {"a": path, "b": path}."""
    copies = {}
    for name, source in templates.items():
        copies[name] = str(tmp_path / f"{name}.db")
        shutil.copy(source, copies[name])
    return copies


def _log(con) -> list[int]:
    return [row[0] for row in con.execute("SELECT rows FROM mldb.prediction_log ORDER BY logged_at, rowid")
            .fetchall()]


def _samples(con) -> int:
    return con.execute("SELECT count(*) FROM mldb.prediction_samples").fetchone()[0]


def _predict_five(con) -> list[bool]:
    rows = con.execute("SELECT PREDICT(m, x) FROM (SELECT 5.0 + range AS x FROM range(5))").fetchall()
    return [row[0] for row in rows]


_QUERY = [0.3, -0.2, 0.9, 0.1]


def _nearest(con) -> tuple[list[int], list[int]]:
    """The index's top 3 (through the FAISS rewrite) and exact search's, for this database's vectors."""
    literal = f"{_QUERY}::FLOAT[{DIM}]"
    found = con.execute(f"SELECT id FROM docs ORDER BY array_cosine_distance(v, {literal}) LIMIT 3").fetchall()
    exact = con.execute(f"SELECT id FROM (SELECT id, array_cosine_distance(v, {literal}) AS d FROM docs) "
                        "ORDER BY d LIMIT 3").fetchall()
    return [row[0] for row in found], [row[0] for row in exact]


def _live_databases() -> int:
    from mldb.database import Database

    gc.collect()
    return sum(1 for thing in gc.get_objects() if type(thing) is Database and not thing.closed)


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _threads() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads in /proc/self/status")


# -- 1. two databases in one process --------------------------------------------------------------
def test_the_reported_repro_a_view_in_a_then_five_rows_in_b(files):
    a, b = mldb.connect(files["a"]), mldb.connect(files["b"])
    assert len(a.execute("SELECT * FROM v").fetchall()) == VIEW_ROWS
    a.close()
    assert _predict_five(b) == [False] * 5  # b's own model, which learned the opposite
    assert _log(b) == [5]
    assert _samples(b) == 0
    b.close()
    a = mldb.connect(files["a"])
    assert _log(a) == [VIEW_ROWS] and _samples(a) == VIEW_ROWS
    a.close()


def test_same_names_in_two_open_databases_never_mix(files):
    a, b = mldb.connect(files["a"]), mldb.connect(files["b"])
    assert a.database is not b.database
    for _ in range(2):  # twice: the second time everything comes from the caches
        assert _predict_five(a) == [True] * 5 and _predict_five(b) == [False] * 5
        assert {p for _, p in a.execute("SELECT * FROM v WHERE x > 0").fetchall()} == {True}
        assert {p for _, p in b.execute("SELECT * FROM v WHERE x > 0").fetchall()} == {False}
        found_a, exact_a = _nearest(a)
        found_b, exact_b = _nearest(b)
        assert found_a == exact_a and found_b == exact_b and exact_a != exact_b
    assert _log(a) == [5, POSITIVE, 5, POSITIVE]
    assert _log(b) == [5, POSITIVE, 5, POSITIVE]
    assert _samples(a) == 2 * (5 + POSITIVE) and _samples(b) == 0
    a.close()
    b.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_order_of_open_close_and_garbage_collection(files, seed):
    """Random walks over open / close / forget (garbage collected) / read the view / predict
    five rows on both databases; each database's log holds exactly its own statements."""
    rng = random.Random(seed)
    open_cons: dict[str, list] = {"a": [], "b": []}
    expected = {"a": [], "b": []}
    for _ in range(16):
        name = rng.choice("ab")
        action = rng.choice(["open", "open", "close", "forget", "view", "five", "five"])
        cons = open_cons[name]
        if action == "open" or not cons:
            cons.append(mldb.connect(files[name]))
            continue
        con = cons[rng.randrange(len(cons))]
        if action == "close":
            cons.remove(con)
            con.close()
        elif action == "forget":
            cons.remove(con)
            del con
            gc.collect()
        elif action == "view":
            rows = con.execute("SELECT * FROM v").fetchall()
            assert {p for x, p in rows if x > 0} == {name == "a"}
            expected[name].append(VIEW_ROWS)
        else:
            assert _predict_five(con) == [name == "a"] * 5
            expected[name].append(5)
    for cons in open_cons.values():
        for con in cons:
            con.close()
    del con, cons
    gc.collect()
    for name in "ab":
        with mldb.connect(files[name]) as con:
            assert _log(con) == expected[name]
            assert _samples(con) == (sum(expected[name]) if name == "a" else 0)


def test_a_forgotten_connection_releases_its_database(files):
    a = mldb.connect(files["a"])
    database = weakref.ref(a.database)
    assert _predict_five(a) == [True] * 5
    cursor = a.execute("SELECT * FROM v")  # an unread result on a forgotten connection
    del a, cursor
    gc.collect()
    assert database() is None or database().closed
    read_only = mldb.connect(files["a"], read_only=True)  # the file is really closed
    assert _log(read_only)[0] == 5
    read_only.close()


def test_two_hundred_databases_in_a_loop_leave_nothing_behind(files, tmp_path):
    from mldb.models.registry import ModelVersion

    def loaded_models() -> int:
        gc.collect()
        return sum(1 for thing in gc.get_objects() if type(thing) is ModelVersion)

    copies = []
    for i in range(3):
        copies.append(str(tmp_path / f"copy{i}.db"))
        shutil.copy(files["a"], copies[-1])
    before, threads, models = _live_databases(), _threads(), loaded_models()
    databases = weakref.WeakSet()
    for i in range(200):
        kind = i % 4
        if kind == 0:
            con = mldb.connect()
            con.execute("CREATE TABLE t AS SELECT range AS a FROM range(10)")
            assert con.execute("SELECT sum(a) FROM t").fetchone() == (45,)
        elif kind == 1:
            con = mldb.connect(str(tmp_path / f"plain{i % 5}.db"))
            con.execute("CREATE OR REPLACE TABLE t AS SELECT ? AS a", [i])
            con.execute("SELECT * FROM range(5000)")  # left unread
        else:
            con = mldb.connect(copies[i % 3])
            if kind == 2:
                assert _predict_five(con) == [True] * 5
            else:
                assert len(con.execute("SELECT * FROM v").fetchmany(10)) == 10  # left half read
        databases.add(con.database)
        if i % 3:
            con.close()
        del con  # every third one forgotten: garbage collection closes it
        if i % 50 == 49:
            assert _live_databases() <= before + 1
    gc.collect()
    assert len(databases) == 0
    assert _live_databases() == before
    assert loaded_models() == models
    assert _threads() <= threads + 2


def test_connecting_twice_shares_the_database(files, tmp_path):
    first = mldb.connect(files["b"])
    second = mldb.connect(files["b"])
    assert first.database is second.database
    first.execute("CREATE TABLE lines AS SELECT range / 10.0 AS x, range / 10.0 * 3 + 1 AS y FROM range(100)")
    first.execute("CREATE MODEL line PREDICT y FROM lines USING linear WITH (epochs = 5)")
    value = second.execute("SELECT PREDICT(line, 2.0)").fetchone()[0]
    assert isinstance(value, float)
    first.close()
    assert second.execute("SELECT count(*) FROM mldb.models").fetchone() == (2,)
    with pytest.raises(mldb.OperationalError, match="already open"):
        mldb.connect(files["b"], read_only=True)
    assert second.execute("SELECT PREDICT(line, 2.0)").fetchone()[0] == value  # still usable
    second.close()
    read_only = mldb.connect(files["b"], read_only=True)  # closed by its last connection: now it opens
    with pytest.raises(mldb.OperationalError, match="already open"):
        mldb.connect(files["b"])
    assert read_only.execute("SELECT PREDICT(line, 2.0)").fetchone()[0] == value
    read_only.close()


def test_an_uncommitted_train_is_not_served_to_other_connections(files):
    """A version trained inside one connection's transaction is neither seen by another
    connection's view before the commit, nor hidden from it after."""
    writer, reader = mldb.connect(files["a"]), mldb.connect(files["a"])
    view = "SELECT p FROM v WHERE x = 4.0 LIMIT 1"
    assert reader.execute(view).fetchone() == (True,)
    writer.execute("BEGIN")
    writer.execute("TRAIN m FROM (SELECT x, NOT up AS up FROM pts)")
    assert writer.execute("SELECT PREDICT(m, 5.0)").fetchone() == (False,)
    assert writer.execute(view).fetchone() == (False,)  # its own views follow its transaction
    assert reader.execute(view).fetchone() == (True,)
    assert reader.execute("SELECT PREDICT(m, 5.0)").fetchone() == (True,)
    writer.commit()
    assert reader.execute(view).fetchone() == (False,)
    assert reader.execute("SELECT PREDICT(m, 5.0)").fetchone() == (False,)
    writer.close()
    reader.close()


# -- 2. connection semantics as in DuckDB and sqlite3 -------------------------------------------------
def test_connection_execute_shares_the_session(db_path):
    con = mldb.connect(db_path)
    con.execute("CREATE TEMP TABLE x AS SELECT 1 a")
    assert con.execute("SELECT * FROM x").fetchall() == [(1,)]
    con.execute("SET VARIABLE v = 5")
    assert con.execute("SELECT getvariable('v')").fetchall() == [(5,)]
    con.execute("PREPARE p AS SELECT $1 + 1")
    assert con.execute("EXECUTE p(41)").fetchall() == [(42,)]
    con.execute("SET threads = 1")
    assert con.execute("SELECT current_setting('threads')").fetchall() == [(1,)]
    cursor = con.cursor()  # cursors share it too
    assert cursor.execute("SELECT a + getvariable('v') FROM x").fetchall() == [(6,)]
    other = mldb.connect(db_path)  # another connection has its own
    with pytest.raises(mldb.ProgrammingError):
        other.execute("SELECT * FROM x")
    assert other.execute("SELECT getvariable('v')").fetchall() == [(None,)]
    other.close()
    con.close()


def test_begin_then_execute_then_rollback_keeps_the_rows(tmp_db):
    tmp_db.execute("CREATE TABLE t AS SELECT range AS a FROM range(3)")
    tmp_db.execute("BEGIN")
    tmp_db.execute("DELETE FROM t")
    assert tmp_db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    tmp_db.rollback()
    assert tmp_db.execute("SELECT count(*) FROM t").fetchone() == (3,)
    tmp_db.execute("BEGIN")
    tmp_db.execute("DELETE FROM t WHERE a = 0")
    tmp_db.commit()
    tmp_db.rollback()  # nothing open: a no-op
    assert tmp_db.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_commit_keeps_an_unfetched_result(tmp_db):
    cursor = tmp_db.cursor()
    cursor.execute("SELECT 42")
    tmp_db.commit()
    assert cursor.fetchall() == [(42,)]
    tmp_db.execute("CREATE TABLE t AS SELECT range AS a FROM range(5000)")
    tmp_db.execute("BEGIN")
    cursor.execute("SELECT a FROM t ORDER BY a")
    assert cursor.fetchone() == (0,)
    tmp_db.commit()
    assert len(cursor.fetchall()) == 4999
    cursor.execute("SELECT 7")
    tmp_db.rollback()
    assert cursor.fetchone() == (7,)


def test_two_unfetched_cursors_survive_a_third_statement_in_a_transaction(tmp_db):
    tmp_db.execute("CREATE TABLE t AS SELECT range AS a FROM range(10000)")
    tmp_db.execute("BEGIN")
    first, second = tmp_db.cursor(), tmp_db.cursor()
    first.execute("SELECT a FROM t ORDER BY a")
    second.execute("SELECT a * 2 FROM t ORDER BY a")
    assert first.fetchmany(3) == [(0,), (1,), (2,)]
    tmp_db.execute("INSERT INTO t VALUES (-1)")  # a third statement on the same connection
    assert tmp_db.execute("SELECT count(*) FROM t").fetchone() == (10001,)
    assert len(first.fetchall()) == 9997
    assert second.fetchall() == [(2 * i,) for i in range(10000)]
    tmp_db.rollback()
    assert tmp_db.execute("SELECT count(*) FROM t").fetchone() == (10000,)


def test_a_half_read_arrow_reader_survives_the_next_statement(tmp_db):
    """As a cursor's rows do: the reader goes on where it stopped, with every row once."""
    tmp_db.execute("CREATE TABLE t AS SELECT range AS a FROM range(100000)")
    reader = tmp_db.cursor().execute("SELECT a FROM t ORDER BY a").arrow_reader(1000)
    first = reader.read_next_batch()
    assert tmp_db.execute("SELECT count(*) FROM t WHERE a < 10").fetchone() == (10,)
    unread = tmp_db.cursor().execute("SELECT a * 2 AS b FROM t ORDER BY a").arrow_reader(5000)
    tmp_db.execute("INSERT INTO t VALUES (-1)")
    rest = [value for batch in reader for value in batch.column(0).to_pylist()]
    assert first.column(0).to_pylist() + rest == list(range(100000))
    assert [value for batch in unread for value in batch.column(0).to_pylist()] == list(range(0, 200000, 2))


def test_a_with_block_that_raises_rolls_back(db_path):
    with mldb.connect(db_path) as con:
        con.execute("CREATE TABLE t AS SELECT range AS a FROM range(3)")
    with pytest.raises(ZeroDivisionError):
        with mldb.connect(db_path) as con:
            con.execute("BEGIN")
            con.execute("DELETE FROM t")
            1 / 0
    assert con.closed
    with mldb.connect(db_path) as con:
        assert con.execute("SELECT count(*) FROM t").fetchone() == (3,)
        con.execute("BEGIN")
        con.execute("INSERT INTO t VALUES (3)")
    with mldb.connect(db_path) as con:  # a block that ends normally commits
        assert con.execute("SELECT count(*) FROM t").fetchone() == (4,)


def _sql_rollback(con, change: str) -> None:
    con.execute("BEGIN")
    con.execute(change)
    con.execute("ROLLBACK")


def _api_rollback(con, change: str) -> None:
    con.execute("BEGIN")
    con.execute(change)
    con.rollback()


def _failing_string(con, change: str) -> None:
    """A multi-statement string that fails half way: the transaction is aborted (as in
    DuckDB, every statement but its end is refused), and COMMIT then rolls it back."""
    with pytest.raises(mldb.ProgrammingError):
        con.execute(f"BEGIN; {change}; SELECT * FROM nowhere; COMMIT")
    with pytest.raises(mldb.OperationalError):
        con.execute("SELECT 1")
    con.execute("COMMIT")


def _with_block(con, change: str) -> None:
    path = con.database.path
    con.close()
    with pytest.raises(RuntimeError):
        with mldb.connect(path) as inner:
            inner.execute("BEGIN")
            inner.execute(change)
            raise RuntimeError("the block fails")


ROLLBACKS = {"sql": _sql_rollback, "api": _api_rollback, "failing_string": _failing_string,
             "with_block": _with_block}


@pytest.mark.parametrize("path", ROLLBACKS)
def test_a_rolled_back_train_is_not_served(files, path):
    con = mldb.connect(files["a"])
    con.execute("CREATE VIEW five AS SELECT PREDICT(m, 5.0) AS p")
    assert con.execute("SELECT * FROM five").fetchone() == (True,)  # loads and caches version 1
    ROLLBACKS[path](con, "TRAIN m FROM (SELECT x, NOT up AS up FROM pts)")
    con = mldb.connect(files["a"]) if con.closed else con
    assert con.execute("SELECT max(version) FROM mldb.model_versions").fetchone() == (1,)
    assert con.execute("SELECT PREDICT(m, 5.0)").fetchone() == (True,)
    assert con.execute("SELECT * FROM five").fetchone() == (True,)
    assert con.execute("SELECT PREDICT('m@1', 5.0)").fetchone() == (True,)
    with pytest.raises(mldb.ProgrammingError) as caught:
        con.execute("SELECT PREDICT('m@2', 5.0)")
    assert caught.value.sqlstate == "42704"
    con.close()


@pytest.mark.parametrize("path", ROLLBACKS)
def test_a_rolled_back_replace_does_not_change_sampling(files, path):
    """CREATE OR REPLACE MODEL ... WITH (log_sample = 1.0) rolled back: b still samples nothing."""
    con = mldb.connect(files["b"])
    ROLLBACKS[path](con, f"CREATE OR REPLACE MODEL m PREDICT up FROM pts WITH ({TRAIN_OPTIONS}, log_sample = 1.0)")
    con = mldb.connect(files["b"]) if con.closed else con
    assert _predict_five(con) == [False] * 5
    assert con.execute("SELECT * FROM v").fetchall()
    assert _samples(con) == 0
    con.close()


@pytest.mark.parametrize("path", ROLLBACKS)
def test_a_rolled_back_deploy_is_not_served(files, path):
    con = mldb.connect(files["a"])
    con.execute("TRAIN m FROM (SELECT x, NOT up AS up FROM pts)")  # version 2, deployed
    con.execute("DEPLOY MODEL m VERSION 1")
    con.execute("CREATE VIEW five AS SELECT PREDICT(m, 5.0) AS p")
    assert con.execute("SELECT * FROM five").fetchone() == (True,)
    ROLLBACKS[path](con, "DEPLOY MODEL m VERSION 2")
    con = mldb.connect(files["a"]) if con.closed else con
    assert con.execute("SELECT deployed_version FROM mldb.models").fetchone() == (1,)
    assert con.execute("SELECT PREDICT(m, 5.0)").fetchone() == (True,)
    assert con.execute("SELECT * FROM five").fetchone() == (True,)
    con.close()


@pytest.mark.parametrize("path", ROLLBACKS)
def test_a_rolled_back_table_change_is_undone(files, path):
    con = mldb.connect(files["a"])
    ROLLBACKS[path](con, "DELETE FROM pts WHERE x > 0")
    con = mldb.connect(files["a"]) if con.closed else con
    assert con.execute("SELECT count(*) FROM pts").fetchone() == (201,)
    con.close()


@pytest.mark.parametrize("path", ROLLBACKS)
def test_a_rolled_back_index_change_is_undone(files, path):
    con = mldb.connect(files["a"])
    found, exact = _nearest(con)
    ROLLBACKS[path](con, f"DELETE FROM docs WHERE id = {found[0]}")
    con = mldb.connect(files["a"]) if con.closed else con
    assert _nearest(con) == (found, exact)
    con.execute(f"INSERT INTO docs VALUES (100, {_QUERY}::FLOAT[{DIM}])")  # the index still follows writes
    assert _nearest(con)[0] == _nearest(con)[1] == [100, *found[:2]]
    con.close()


# -- 3. plain DuckDB parity ---------------------------------------------------------------------------
PARITY = [
    "CREATE TABLE t(a INTEGER, b VARCHAR)",
    "INSERT INTO t VALUES (1, 'x'), (2, 'y'), (3, NULL)",
    "SELECT * FROM t ORDER BY a",
    "SELECT 1; SELECT 2",
    "CREATE TEMP TABLE tt AS SELECT a * 10 AS a FROM t",
    "SELECT sum(a) FROM tt",
    "CREATE TEMP VIEW tv AS SELECT a FROM tt WHERE a > 10",
    "SELECT * FROM tv ORDER BY a",
    "CREATE MACRO add1(x) AS x + 1",
    "SELECT add1(41)",
    "CREATE MACRO rows_of(n) AS TABLE SELECT range AS i FROM range(n)",
    "SELECT count(*) FROM rows_of(5)",
    "CREATE TEMP MACRO twice(x) AS x * 2",
    "SELECT twice(21)",
    "CREATE SEQUENCE seq START 5",
    "SELECT nextval('seq'), nextval('seq')",
    "SELECT currval('seq')",
    "CREATE TEMP SEQUENCE tseq",
    "SELECT nextval('tseq')",
    "SET VARIABLE answer = 42",
    "SELECT getvariable('answer')",
    "RESET VARIABLE answer",
    "SELECT getvariable('answer')",
    "SET threads = 1",
    "SELECT current_setting('threads')",
    "SET default_order = 'DESC'",
    "SELECT range FROM range(3) ORDER BY range",
    "RESET default_order",
    "SELECT range FROM range(3) ORDER BY range",
    "SET search_path = 'main'",
    "SELECT current_setting('search_path')",
    "PREPARE p AS SELECT $1 + 1",
    "EXECUTE p(41)",
    "PREPARE q AS SELECT * FROM t WHERE a = ?",
    "EXECUTE q(2)",
    "DEALLOCATE p",
    "EXECUTE p(1)",
    "BEGIN TRANSACTION",
    "INSERT INTO t VALUES (4, 'z')",
    "SELECT count(*) FROM t",
    "ROLLBACK",
    "SELECT count(*) FROM t",
    "BEGIN",
    "UPDATE t SET b = 'w' WHERE a = 1",
    "COMMIT",
    "SELECT b FROM t WHERE a = 1",
    "BEGIN",
    "SELECT * FROM nowhere",
    "SELECT 1",
    "ROLLBACK",
    "COMMIT",
    "BEGIN",
    "DELETE FROM t",
    "SELECT 1/0::INTEGER, 'x'::INTEGER",
    "COMMIT",
    "SELECT count(*) FROM t",
    "BEGIN; INSERT INTO t VALUES (9, 'n'); SELECT * FROM nowhere",
    "SELECT 1",
    "ROLLBACK",
    "SELECT count(*) FROM t",
    "COPY t TO '{dir}/t.csv' (HEADER)",
    "CREATE TABLE t2 AS SELECT * FROM t LIMIT 0",
    "COPY t2 FROM '{dir}/t.csv' (HEADER)",
    "SELECT * FROM t2 ORDER BY a",
    "COPY (SELECT * FROM t ORDER BY a) TO '{dir}/t.parquet' (FORMAT parquet)",
    "SELECT * FROM read_parquet('{dir}/t.parquet')",
    "COPY t2 FROM '{dir}/missing.csv'",
    "SELECT 1 // 0",
    "SELECT 'x'::INTEGER",
    "INSERT INTO t VALUES ('not a number', 'q')",
    "SELECT * FROM t WHERE",
    "CREATE TABLE t(a INTEGER)",
    "DROP TABLE nowhere",
    "DROP TABLE IF EXISTS nowhere",
    "CREATE TABLE keyed(id INTEGER PRIMARY KEY)",
    "INSERT INTO keyed VALUES (1), (1)",
    "INSERT INTO keyed VALUES (1)",
    "INSERT INTO keyed VALUES (1)",
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    "SELECT 'ok'::mood, 'meh'::mood",
    "SELECT 'ok'::mood",
    "ATTACH ':memory:' AS other",
    "CREATE TABLE other.o AS SELECT 1 AS x",
    "SELECT * FROM other.o",
    "DETACH other",
    "SELECT * FROM other.o",
    "SHOW TABLES",
    "DESCRIBE t",
    "PRAGMA table_info('t')",
    "CHECKPOINT",
    "SELECT name, value FROM duckdb_settings() WHERE name = 'threads'",
    "INSERT INTO t VALUES (5, 'v') RETURNING a",
    "DELETE FROM t WHERE a = 5 RETURNING *",
    "UPDATE t SET b = upper(b) WHERE a < 3",
    "SELECT * FROM (VALUES (1), (2)) v(x)",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT sum(n) FROM r",
    "SELECT list_sum([1, 2, 3]), {'a': 1}, map([1], [2]), [1, 2][1:1]",
    "SELECT $$dollar; quoted$$, 'semi;colon'",
    "SELECT * FROM t ORDER BY a -- a comment; with a semicolon",
    "DROP MACRO add1",
    "SELECT add1(1)",
    "DROP TABLE tt",
    "SELECT * FROM tv",
    "SELECT predict, train FROM (SELECT 1 AS predict, 2 AS train)",
]


def _outcome(con, sql: str):
    try:
        cursor = con.execute(sql)
    except Exception as error:  # noqa: BLE001 - the kind of failure is compared below
        return "error", type(error).__name__
    if cursor.description is None:
        return "ok", None
    return "rows", cursor.fetchall()


def test_plain_statements_behave_as_in_duckdb(tmp_path):
    mine, theirs = tmp_path / "mldb", tmp_path / "duckdb"
    mine.mkdir()
    theirs.mkdir()
    con, reference = mldb.connect(), duckdb.connect()
    differences = []
    for statement in PARITY:
        got = _outcome(con, statement.replace("{dir}", str(mine)))
        expected = _outcome(reference, statement.replace("{dir}", str(theirs)))
        if (got[0], got[1] if got[0] != "error" else None) != \
                (expected[0], expected[1] if expected[0] != "error" else None):
            differences.append((statement, got, expected))
    con.close()
    assert differences == []


# -- 4. streaming ---------------------------------------------------------------------------------------
STREAM_ROWS = 3_000_000
STREAM_SQL = (f"SELECT PREDICT(m, (range % 200 - 100) / 10.0) AS p, repeat('x', 100) || range AS pad "
              f"FROM range({STREAM_ROWS})")


def _streamed(con, read) -> tuple[int, float]:
    """Run STREAM_SQL and read it with ``read(cursor, peak)``; (rows read, RSS growth in MB)."""
    assert _predict_five(con) == [False] * 5  # the model, torch and the functions are loaded now
    gc.collect()
    base = _rss_mb()
    peak = [base]
    cursor = con.cursor()
    cursor.execute(STREAM_SQL)
    rows = read(cursor, peak)
    return rows, peak[0] - base


def _read_many(cursor, peak) -> int:
    total = 0
    while True:
        rows = cursor.fetchmany(10_000)
        total += len(rows)
        peak[0] = max(peak[0], _rss_mb())
        if len(rows) < 10_000:
            return total


def _read_arrow(cursor, peak) -> int:
    total = 0
    for batch in cursor.arrow_reader(10_000):
        total += batch.num_rows
        peak[0] = max(peak[0], _rss_mb())
    return total


@pytest.mark.parametrize("read", [_read_many, _read_arrow], ids=["fetchmany", "arrow_reader"])
def test_a_large_predict_result_streams(files, read):
    con = mldb.connect(files["b"])
    rows, growth = _streamed(con, read)
    assert rows == STREAM_ROWS
    assert growth < 100, f"RSS grew {growth:.0f} MB while fetching"
    assert _log(con) == [5, STREAM_ROWS]
    con.close()


def test_unfetched_predict_results_survive_other_statements_and_commit(files):
    con = mldb.connect(files["b"])
    observer = mldb.connect(files["b"])
    predict = "SELECT range AS i, PREDICT(m, 5.0) AS p FROM range(100000)"
    con.execute("BEGIN")
    first, second = con.cursor(), con.cursor()
    first.execute(predict)
    second.execute(predict)
    assert first.fetchmany(3) == [(0, False), (1, False), (2, False)]
    con.execute("CREATE TABLE t AS SELECT 1 AS a")  # a third statement on the same connection
    assert len(first.fetchall()) == 99_997
    third = con.cursor().execute(predict)
    assert third.fetchone() == (0, False)
    con.commit()
    assert second.fetchall() == [(i, False) for i in range(100_000)]
    assert len(third.fetchall()) == 99_999
    assert _log(observer) == [100_000] * 3
    assert con.execute("SELECT * FROM t").fetchall() == [(1,)]
    observer.close()
    con.close()


def test_every_statement_of_a_string_but_the_last_runs_to_its_end(files):
    con = mldb.connect(files["b"])
    cursor = con.execute("SELECT PREDICT(m, range / 10.0) FROM range(100000); SELECT 42")
    assert cursor.fetchall() == [(42,)]
    assert _log(con) == [100_000]
    con.close()


def test_interrupt_stops_a_streaming_predict(files):
    con = mldb.connect(files["b"])
    cursor = con.execute(f"SELECT PREDICT(m, range / 10.0), range FROM range({STREAM_ROWS * 100})")
    timer = threading.Timer(0.5, con.interrupt)
    timer.start()
    started = time.perf_counter()
    with pytest.raises(mldb.OperationalError) as caught:
        while cursor.fetchmany(100_000):
            pass
    timer.join()
    assert caught.value.sqlstate == "57014" and time.perf_counter() - started < 10
    assert con.execute("SELECT PREDICT(m, 5.0)").fetchone() == (False,)
    con.close()


def test_a_result_closed_early_logs_what_was_predicted(files):
    con = mldb.connect(files["b"])
    observer = mldb.connect(files["b"])  # (another statement on ``con`` would read the rest of the result)
    cursor = con.cursor()
    cursor.execute(STREAM_SQL)
    assert len(cursor.fetchmany(12_345)) == 12_345
    assert _log(observer) == []  # the statement is still running
    cursor.close()
    log = _log(observer)
    assert len(log) == 1 and 12_345 <= log[0] < STREAM_ROWS // 10
    cursor = con.cursor()
    reader = cursor.execute(STREAM_SQL).arrow_reader(1000)
    assert reader.read_next_batch().num_rows == 1000
    del reader  # an Arrow reader dropped half way ends the statement too
    gc.collect()
    log = _log(observer)
    assert len(log) == 2 and 1000 <= log[1] < STREAM_ROWS // 10
    observer.close()
    con.close()


_TYPED_COLUMNS = (
    "range AS i, range * 1.5 AS f, 'row ' || range AS s, [range, NULL] AS l, {'k': range} AS st, "
    "map(['a'], [range::DOUBLE]) AS m, DATE '2024-01-01' + range::INTEGER AS d, "
    "TIMESTAMPTZ '2024-01-02 03:04:05+00' + to_seconds(range) AS tz, 1.25::DECIMAL(5, 2) AS dec, "
    "INTERVAL 14 MONTH AS iv, uuid '00000000-0000-0000-0000-000000000001' AS u, [uuid()]::UUID[] IS NULL AS b, "
    "NULL::INTEGER AS n, range::HUGEINT AS h, 'ok'::ENUM('sad', 'ok') AS e, "
    "TIMESTAMP_NS '2024-01-02 03:04:05.123456789' AS ns, "
    "union_value(num := 2)::UNION(num INTEGER, str VARCHAR) AS un")


@pytest.mark.parametrize("extra", ["", ", '101'::BIT AS bits", ", TIMETZ '01:02:03+05' AS ttz"],
                         ids=["streamed", "bit", "timetz"])
def test_a_streamed_result_keeps_duckdb_types(files, extra):
    """A rewritten SELECT (here one with PREDICT) gives the rows and the Arrow DuckDB gives,
    whichever way it is read, also after a partial read and in another time zone."""
    con = mldb.connect(files["b"])
    reference = duckdb.connect()
    for setting in ("SET TimeZone = 'America/New_York'", "SET TimeZone = 'UTC'"):
        con.execute(setting)
        reference.execute(setting)
        sql = f"SELECT {_TYPED_COLUMNS}{extra}, PREDICT(m, 1.0) AS p FROM range(5000)"
        plain = f"SELECT {_TYPED_COLUMNS}{extra}, false AS p FROM range(5000)"
        rows = reference.execute(plain).fetchall()
        table = reference.sql(plain).to_arrow_table()
        assert con.execute(sql).fetchall() == rows
        cursor = con.execute(sql)
        assert [cursor.fetchone() for _ in range(3)] == rows[:3]
        assert cursor.fetchmany(70_000) == rows[3:]
        assert con.execute(sql).arrow_reader(1000).read_all().equals(table)
        assert con.execute(sql).arrow().equals(table)
        cursor = con.execute(sql)
        assert cursor.fetchmany(10) == rows[:10]
        rest = cursor.arrow_reader(64).read_all()
        assert rest.schema == table.schema and rest.equals(table.slice(10))
        for read in ("df", "fetchnumpy"):  # (DuckDB cannot give a TIMETZ to pandas or NumPy)
            try:
                expected = getattr(reference.execute(plain), read)()
            except duckdb.Error:
                with pytest.raises(mldb.Error):
                    getattr(con.execute(sql), read)()
                continue
            assert list(getattr(con.execute(sql), read)()["i"]) == list(expected["i"]) == list(range(5000))
    con.close()


# -- 5. errors through UDFs and DB-API extras -------------------------------------------------------------
def test_an_unknown_model_inside_a_function_keeps_its_sqlstate(files):
    con = mldb.connect(files["a"])
    con.execute("CREATE VIEW by_name AS SELECT PREDICT(m, 1.0) AS p")
    con.execute("CREATE VIEW pinned AS SELECT PREDICT('m@1', 1.0) AS p")
    con.execute("CREATE VIEW many AS SELECT PREDICT(m, range / 1000.0) AS p FROM range(100000)")
    # DROP MODEL refuses while views call m (2BP01): the views' SQL outlives the model another way,
    # written again (as DuckDB stored it) once the model is gone
    views = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'").fetchall()
    for name, _ in views:
        con.execute(f"DROP VIEW {name}")
    con.execute("DROP MODEL m")
    for _, sql in views:
        con.execute(sql)
    for sql in ("SELECT * FROM by_name", "SELECT * FROM pinned", "SELECT count(p) FROM many",
                "SELECT PREDICT('missing_model', 1)", "SELECT PREDICT('m@1', 1.0)",
                "SELECT mldb_predict_double('missing_model', NULL, 1.0)"):
        with pytest.raises(mldb.ProgrammingError) as caught:
            con.execute(sql).fetchall()
        assert caught.value.sqlstate == "42704", sql
        assert "does not exist" in str(caught.value) and "Python exception" not in str(caught.value)
    assert con.execute("SELECT 1").fetchone() == (1,)  # the connection stays usable
    con.close()


def test_an_error_late_in_a_streamed_result_keeps_its_class(files):
    con = mldb.connect(files["b"])
    cursor = con.execute("SELECT PREDICT(m, 1.0) AS p, CASE WHEN range = 200000 THEN 'x' ELSE '1' END::INTEGER AS v "
                         "FROM range(300000)")
    assert cursor.fetchone() == (False, 1)
    with pytest.raises(mldb.DataError) as caught:
        cursor.fetchall()
    assert caught.value.sqlstate == "22P02" and "Could not convert" in str(caught.value)
    reader = con.execute("SELECT PREDICT(m, 1.0) AS p, 1 // (range - 200000) AS v FROM range(300000)").arrow_reader()
    with pytest.raises(mldb.DataError) as caught:
        reader.read_all()
    assert caught.value.sqlstate == "22012"
    assert con.execute("SELECT PREDICT(m, 1.0)").fetchone() == (False,)
    con.close()


def test_interrupt_exists_and_is_harmless_when_idle():
    con = mldb.connect()
    con.interrupt()
    assert con.execute("SELECT 1").fetchone() == (1,)
    timer = threading.Timer(0.5, con.interrupt)
    timer.start()
    started = time.perf_counter()
    with pytest.raises(mldb.OperationalError) as caught:
        con.execute("SELECT count(*) FROM range(100000000000) a").fetchall()
    timer.join()
    assert caught.value.sqlstate == "57014" and time.perf_counter() - started < 10
    assert con.execute("SELECT 2").fetchone() == (2,)
    con.close()
    con.interrupt()  # on a closed connection: nothing to do


def test_fetchnumpy():
    con = mldb.connect()
    arrays = con.execute("SELECT range AS a, range * 0.5 AS b FROM range(4)").fetchnumpy()
    assert list(arrays["a"]) == [0, 1, 2, 3] and list(arrays["b"]) == [0, 0.5, 1, 1.5]
    con.close()
