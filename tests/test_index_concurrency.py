"""FAISS indexes under concurrent writers: in-process connections and wire clients.

Each worker runs random INSERT / DELETE / UPDATE (alone, or a few inside BEGIN ... COMMIT)
and searches on one indexed table. A write may fail, but only with SQLSTATE 40001 (retry);
a search never fails. Inside a transaction an indexed search must give the rows an exact
search gives in the same snapshot. Afterwards every search (ORDER BY distance LIMIT k and
VECTOR_SEARCH) must equal exact search, before and after a reopen, and ``mldb.indexes``
must count the table's rows. A flat index is used so that "equal" can be exact.
"""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import psycopg
import pytest
from conftest_server import start_server

import mldb

DIM, K = 8, 5
START_ROWS = 300
WORKERS, STEPS = 4, 40


def _literal(vector) -> str:
    return "[" + ", ".join(repr(float(x)) for x in vector) + f"]::FLOAT[{DIM}]"


def _indexed(query) -> str:
    return f"SELECT id FROM pts ORDER BY array_cosine_distance(v, {_literal(query)}) LIMIT {K}"


def _vector_search(query) -> str:
    return f"SELECT id FROM VECTOR_SEARCH(pts, v, {_literal(query)}, {K})"


def _exact(query) -> str:  # ``+ 0``: not the indexed pattern, so DuckDB ranks every row
    return f"SELECT id FROM pts ORDER BY array_cosine_distance(v, {_literal(query)}) + 0 LIMIT {K}"


def _agree(run_sql, query, found, exact) -> bool:
    """Same rows in the same order, but for near ties (FAISS and DuckDB round float32
    distances differently, so two rows within 1e-5 may swap)."""
    if found == exact:
        return True
    if len(found) != len(exact):
        return False
    ids = ", ".join(str(row[0]) for row in found + exact)
    distance = dict(run_sql(f"SELECT id, array_cosine_distance(v, {_literal(query)}) FROM pts WHERE id IN ({ids})"))
    return all(abs(distance.get(a[0], np.inf) - distance.get(b[0], -np.inf)) < 1e-5 for a, b in zip(found, exact))


def _setup_sql(seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    rows = ", ".join(f"({i}, {i % 5}, {_literal(rng.normal(size=DIM))})" for i in range(START_ROWS))
    return [f"CREATE TABLE pts(id BIGINT PRIMARY KEY, grp INTEGER, v FLOAT[{DIM}])",
            f"INSERT INTO pts VALUES {rows}",
            "CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')"]


class Worker:
    """One client's random workload. ``run_sql(sql) -> rows or None`` and ``sqlstate(error)``
    adapt it to a DB-API connection or a psycopg one."""

    def __init__(self, number: int, run_sql, sqlstate, failures: list, mismatches: list):
        self.number = number
        self.rng = random.Random(number)
        self.vectors = np.random.default_rng(100 + number)
        self.next_id = 1_000_000 * (number + 1)  # keys of its own: a failure is never a real duplicate
        self.run_sql, self.sqlstate = run_sql, sqlstate
        self.failures, self.mismatches = failures, mismatches
        self.conflicts = 0

    def write_sql(self) -> str:
        action = self.rng.random()
        if action < 0.4:
            rows = []
            for _ in range(self.rng.randint(1, 3)):
                rows.append(f"({self.next_id}, {self.next_id % 5}, {_literal(self.vectors.normal(size=DIM))})")
                self.next_id += 1
            return "INSERT INTO pts VALUES " + ", ".join(rows)
        if action < 0.7:
            ids = [self.rng.randrange(START_ROWS) for _ in range(2)] + [self.next_id - self.rng.randint(1, 3)]
            return f"DELETE FROM pts WHERE id IN ({', '.join(map(str, ids))})"
        if action < 0.9:
            return (f"UPDATE pts SET v = {_literal(self.vectors.normal(size=DIM))} "
                    f"WHERE id = {self.rng.choice([self.rng.randrange(START_ROWS), self.next_id - 1])}")
        return f"UPDATE pts SET grp = grp + 1 WHERE id % 7 = {self.rng.randrange(7)}"  # not the vector

    def step(self) -> None:
        kind = self.rng.random()
        query = self.vectors.normal(size=DIM)
        try:
            if kind < 0.45:
                self.run_sql(self.write_sql())
            elif kind < 0.65:
                self.transaction()
            elif kind < 0.8:
                self.snapshot_search(query)
            else:
                self.run_sql(_indexed(query) if kind < 0.9 else _vector_search(query))
        except Exception as error:  # noqa: BLE001 - classified below
            self.rollback_quietly()
            if self.sqlstate(error) == "40001":
                self.conflicts += 1
            else:
                self.failures.append(f"worker {self.number}: {type(error).__name__}: {error}")

    def transaction(self) -> None:
        self.run_sql("BEGIN")
        for _ in range(self.rng.randint(1, 3)):
            self.run_sql(self.write_sql())
        query = self.vectors.normal(size=DIM)
        self.compare(query, "inside a transaction with its own changes")
        if self.rng.random() < 0.25:
            self.run_sql("ROLLBACK")
        else:
            self.run_sql("COMMIT")

    def snapshot_search(self, query) -> None:
        """BEGIN; indexed search; exact search; COMMIT: one snapshot, so the same rows."""
        self.run_sql("BEGIN")
        self.compare(query, "inside a read transaction")
        self.run_sql("COMMIT")

    def compare(self, query, where: str) -> None:
        indexed, exact = self.run_sql(_indexed(query)), self.run_sql(_exact(query))
        searched = self.run_sql(_vector_search(query))
        if not (_agree(self.run_sql, query, indexed, exact) and _agree(self.run_sql, query, searched, exact)):
            self.mismatches.append(f"worker {self.number} {where}: {indexed} / {searched} != exact {exact}")

    def rollback_quietly(self) -> None:
        try:
            self.run_sql("ROLLBACK")
        except Exception:  # noqa: BLE001 - there may be no transaction to end
            pass


def _run_workers(make_worker) -> list[Worker]:
    workers, errors = [], []

    def body(number):
        worker = None
        try:
            worker = make_worker(number)
            workers.append(worker)
            for _ in range(STEPS):
                worker.step()
        except Exception as error:  # noqa: BLE001 - reported by the test
            errors.append(repr(error))
        finally:
            if worker is not None:
                worker.close()

    threads = [threading.Thread(target=body, args=(number,)) for number in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    assert not errors, errors
    return workers


def _check_against_exact(run_sql, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(15):
        query = rng.normal(size=DIM)
        exact = run_sql(_exact(query))
        assert len(exact) == K
        assert _agree(run_sql, query, run_sql(_indexed(query)), exact)
        assert _agree(run_sql, query, run_sql(_vector_search(query)), exact)
    filtered = rng.normal(size=DIM)
    where = f"SELECT id FROM pts WHERE grp = 2 ORDER BY array_cosine_distance(v, {_literal(filtered)})"
    assert _agree(run_sql, filtered, run_sql(f"{where} LIMIT {K}"), run_sql(f"{where} + 0 LIMIT {K}"))
    count = run_sql("SELECT count(*) FROM pts")[0][0]
    assert run_sql("SELECT row_count FROM mldb.indexes") == [(count,)]


def test_threads_with_their_own_connections(tmp_path):
    path = str(tmp_path / "stress.db")
    setup = mldb.connect(path)
    for sql in _setup_sql():
        setup.execute(sql)
    failures, mismatches = [], []

    def make_worker(number):
        con = mldb.connect(path)  # the same file: one shared Database

        def run_sql(sql):
            cursor = con.execute(sql)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else None

        worker = Worker(number, run_sql, lambda error: getattr(error, "sqlstate", None), failures, mismatches)
        worker.close = con.close
        return worker

    workers = _run_workers(make_worker)
    assert not failures, failures[:5]
    assert not mismatches, mismatches[:5]
    assert sum(worker.conflicts for worker in workers) < WORKERS * STEPS // 2  # most writes went through

    def run_sql(sql):
        cursor = setup.execute(sql)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else None

    _check_against_exact(run_sql, seed=7)
    setup.close()
    reopened = mldb.connect(path)

    def run_reopened(sql):
        return [tuple(row) for row in reopened.execute(sql).fetchall()]

    _check_against_exact(run_reopened, seed=8)
    # DuckDB itself agrees (no mldb in the way)
    raw = reopened.database.root.cursor()
    query = np.random.default_rng(9).normal(size=DIM)
    assert _agree(run_reopened, query, run_reopened(_indexed(query)), raw.execute(_indexed(query)).fetchall())
    raw.close()
    reopened.close()


@pytest.fixture
def served(tmp_path):
    server = start_server(tmp_path)
    yield server
    server.stop()


def _wire_sqlstate(error) -> str | None:
    return getattr(error, "sqlstate", None)


def test_wire_clients(served):
    with psycopg.connect(served.dsn(), autocommit=True) as con:
        for sql in _setup_sql(seed=1):
            con.execute(sql)
    failures, mismatches = [], []

    def make_worker(number):
        # (prepare_threshold=None: psycopg would prepare the repeated BEGIN / COMMIT, and after an
        # error inside a transaction send DEALLOCATE ALL, which mldb serve does not accept yet)
        con = psycopg.connect(served.dsn(), autocommit=True, prepare_threshold=None)

        def run_sql(sql):
            cursor = con.execute(sql)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else None

        worker = Worker(number, run_sql, _wire_sqlstate, failures, mismatches)
        worker.close = con.close
        return worker

    workers = _run_workers(make_worker)
    assert not failures, failures[:5]
    assert not mismatches, mismatches[:5]
    assert sum(worker.conflicts for worker in workers) < WORKERS * STEPS // 2

    with psycopg.connect(served.dsn(), autocommit=True) as con:
        def run_sql(sql):
            return [tuple(row) for row in con.execute(sql).fetchall()]

        _check_against_exact(run_sql, seed=11)
    assert served.stop() == 0
    reopened = mldb.connect(str(served.database))
    try:
        _check_against_exact(lambda sql: [tuple(row) for row in reopened.execute(sql).fetchall()], seed=12)
    finally:
        reopened.close()


def test_wire_rollbacks_leave_the_index_as_duckdb_holds_it(served):
    query = np.random.default_rng(3).normal(size=DIM)
    with psycopg.connect(served.dsn(), autocommit=True) as con:
        for sql in _setup_sql(seed=2):
            con.execute(sql)

        def rows(sql):
            return [tuple(row) for row in con.execute(sql).fetchall()]

        before = rows(_exact(query))
        nearest = before[0][0]
        near = _literal(query * 1.001)
        # BEGIN ... ROLLBACK
        con.execute("BEGIN")
        con.execute(f"INSERT INTO pts VALUES (5000, 0, {near})")
        con.execute(f"DELETE FROM pts WHERE id = {nearest}")
        assert rows(_indexed(query)) == rows(_exact(query)) != before
        con.execute("ROLLBACK")
        assert rows(_indexed(query)) == rows(_vector_search(query)) == before
        # one Query message with two statements: an implicit transaction; the second fails
        with pytest.raises(psycopg.Error):
            con.execute(f"INSERT INTO pts VALUES (5001, 0, {near}); INSERT INTO pts VALUES ({nearest}, 0, {near})")
        assert rows("SELECT count(*) FROM pts WHERE id = 5001") == [(0,)]
        assert rows(_indexed(query)) == before
    # psycopg's default: statements inside a transaction; rollback()
    with psycopg.connect(served.dsn()) as con:
        con.execute(f"UPDATE pts SET v = {_literal(-query)} WHERE id = {nearest}")
        con.execute(f"INSERT INTO pts VALUES (5002, 0, {near})")
        con.rollback()
        assert [tuple(r) for r in con.execute(_indexed(query)).fetchall()] == before
        con.rollback()
    # a client that goes away inside a transaction
    gone = psycopg.connect(served.dsn(), autocommit=True)
    gone.execute("BEGIN")
    gone.execute(f"INSERT INTO pts VALUES (5003, 0, {near})")
    gone.close()
    with psycopg.connect(served.dsn(), autocommit=True) as con:
        for _ in range(200):  # the server notices the closed socket and rolls back
            found = [tuple(row) for row in con.execute(_indexed(query)).fetchall()]
            if found == before:
                break
            time.sleep(0.05)
        assert found == before == [tuple(row) for row in con.execute(_exact(query)).fetchall()]
        con.execute(f"INSERT INTO pts VALUES (5004, 0, {near})")  # the index is not locked by the lost client
        assert [tuple(row) for row in con.execute(_indexed(query)).fetchall()][0] == (5004,)


def _setup(path):
    con = mldb.connect(path)
    for sql in _setup_sql(seed=4):
        con.execute(sql)
    return con


def _ids(con, sql):
    return [tuple(row) for row in con.execute(sql).fetchall()]


def test_a_writer_waits_for_the_index_then_sees_the_change(tmp_path, monkeypatch):
    from mldb.vectors import store

    path = str(tmp_path / "wait.db")
    con = _setup(path)
    query = np.random.default_rng(5).normal(size=DIM)
    nearest = _ids(con, _exact(query))[0][0]
    con.execute("BEGIN")
    con.execute(f"DELETE FROM pts WHERE id = {nearest}")
    outcome = {}

    def writer(other):
        other.execute(f"INSERT INTO pts VALUES (7000, 0, {_literal(query)})")  # waits for con's commit
        outcome["rows"] = _ids(other, _indexed(query))

    thread = _on_own_connection(path, writer, outcome, "error")
    time.sleep(0.5)
    assert thread.is_alive()  # waiting for the index's write lock
    con.commit()
    thread.join(timeout=60)
    assert "error" not in outcome, outcome
    assert outcome["rows"][0] == (7000,) and (nearest,) not in outcome["rows"]
    assert _ids(con, _indexed(query)) == _ids(con, _exact(query)) == outcome["rows"]
    # a writer that waits too long gives up with 40001, and changes nothing
    monkeypatch.setattr(store, "LOCK_TIMEOUT", 0.3)
    con.execute("BEGIN")
    con.execute("DELETE FROM pts WHERE id = 7000")

    thread = _on_own_connection(
        path, lambda other: other.execute(f"INSERT INTO pts VALUES (7001, 0, {_literal(query)})"), outcome, "late")
    thread.join(timeout=60)
    con.rollback()
    assert getattr(outcome.get("late"), "sqlstate", None) == "40001", outcome
    assert _ids(con, "SELECT count(*) FROM pts WHERE id >= 7000") == [(1,)]
    assert _ids(con, _indexed(query)) == _ids(con, _exact(query))
    con.close()


def _on_own_connection(path, work, outcome: dict, error_key: str) -> threading.Thread:
    """Start ``work(connection)`` in a thread on its own connection; an error lands in ``outcome``."""

    def run():
        other = mldb.connect(path)
        try:
            work(other)
        except Exception as error:  # noqa: BLE001 - checked by the test
            outcome[error_key] = error
        finally:
            other.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_create_index_and_concurrent_writers(tmp_path):
    path = str(tmp_path / "create.db")
    con = mldb.connect(path)
    for sql in _setup_sql(seed=6)[:2]:  # the table, no index yet
        con.execute(sql)
    query = np.random.default_rng(106).normal(size=DIM)
    writer = mldb.connect(path)
    writer.execute("BEGIN")  # a write under way when the index is created cannot commit
    writer.execute(f"INSERT INTO pts VALUES (8000, 0, {_literal(query)})")
    con.execute("CREATE INDEX pts_v ON pts USING FAISS (v) WITH (type = 'flat')")
    with pytest.raises(mldb.OperationalError) as caught:
        writer.commit()
    assert caught.value.sqlstate == "40001"
    assert _ids(con, _indexed(query)) == _ids(con, _exact(query))
    assert _ids(con, "SELECT count(*) FROM pts WHERE id = 8000") == [(0,)]
    # while an index is being created (its transaction open), a write to the table waits
    # for it; on this thread it cannot, so it gets 40001 at once
    con.execute("BEGIN")
    con.execute("CREATE INDEX pts_l2 ON pts USING FAISS (v) WITH (metric = 'l2', type = 'flat')")
    with pytest.raises(mldb.OperationalError) as caught:
        writer.execute(f"INSERT INTO pts VALUES (8001, 0, {_literal(query)})")
    assert caught.value.sqlstate == "40001"
    con.commit()
    writer.execute(f"INSERT INTO pts VALUES (8001, 0, {_literal(query)})")
    assert _ids(con, _indexed(query))[0] == (8001,)
    assert _ids(con, _indexed(query)) == _ids(con, _exact(query))
    assert _ids(con, "SELECT name, version, row_count FROM mldb.indexes ORDER BY name") == \
        [("pts_l2", 2, START_ROWS + 1), ("pts_v", 2, START_ROWS + 1)]
    writer.close()
    con.close()
