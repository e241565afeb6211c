"""The thread policy (mldb.threads) and the paths that use it: TRAIN's loop, EMBED, CREATE INDEX."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

import mldb
from mldb import threads

CUSTOMERS = ("CREATE TABLE customers AS SELECT i AS id, 18 + i % 50 AS age, ['a', 'b', 'c'][1 + i % 3] AS plan, "
             "(i * 37 % 101) / 7.0 AS spend, (i % 50 + (i * 37 % 101) / 7.0) > 40 AS churned FROM range(600) t(i)")


# -- the policy ------------------------------------------------------------------------------
def test_small_steps_get_one_thread_and_never_more_than_the_free_cores():
    assert threads.for_work(256 * 92) == 1  # a 45 -> 2 linear layer on 256 rows
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # a neighbour busy on one core
    try:
        time.sleep(0.5)
        assert threads.busy_cores() >= 1  # (its thread is always runnable)
        if threads.cores() > 1:
            assert threads.free_cores() < threads.cores()
            assert threads.for_work(1e12) < threads.cores()  # big work still leaves the neighbour's core
        else:
            assert threads.free_cores() == threads.for_work(1e12) == 1
    finally:
        spinner.kill()
        spinner.wait()


def test_mldb_threads_caps_every_choice(monkeypatch):
    monkeypatch.setenv("MLDB_THREADS", "1")
    assert threads.free_cores() == 1
    assert threads.for_work(1e12) == 1


def test_fixed_pins_the_count_and_is_undone():
    with threads.fixed(3):
        assert threads.for_work(10) == 3
    assert threads.for_work(10) == 1


def test_torch_threads_restores_the_setting_before():
    before = torch.get_num_threads()
    with threads.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ZeroDivisionError), threads.torch_threads(1):
        1 / 0
    assert torch.get_num_threads() == before


def test_a_block_changes_only_its_own_thread_and_restores_it():
    """torch's setting (OpenMP backend) is the calling thread's: a session training on one thread
    leaves another's alone, and gets its own setting back after the block."""
    before = torch.get_num_threads()
    inside, leave, seen = threading.Event(), threading.Event(), {}

    def block():
        seen["before"] = torch.get_num_threads()
        with threads.torch_threads(1):
            seen["inside"] = torch.get_num_threads()
            inside.set()
            leave.wait(timeout=30)
        seen["after"] = torch.get_num_threads()

    with threads.torch_threads(threads.cores()):
        set_here = torch.get_num_threads()
        worker = threading.Thread(target=block)
        worker.start()
        assert inside.wait(timeout=30)
        mine = torch.get_num_threads()
        leave.set()
        worker.join(timeout=30)
    assert seen["inside"] == 1 and seen["after"] == seen["before"]
    assert mine == set_here  # the worker's block set 1 on its own thread, not on this one
    assert torch.get_num_threads() == before


def test_faiss_threads_are_set_for_the_block_and_restored():
    import faiss

    before = faiss.omp_get_max_threads()
    with threads.faiss_threads(1):
        assert faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == before


# -- TRAIN -------------------------------------------------------------------------------------
def _weights(con, model: str) -> bytes:
    return con.execute("SELECT weights FROM mldb.model_versions WHERE model = ?", [model]).fetchone()[0]


@pytest.mark.parametrize("algorithm, options", [("logistic", ""), ("mlp", ", hidden = [64, 64], batch_size = 64")])
def test_a_seed_trains_the_same_model_whatever_the_thread_count(tmp_db, algorithm, options):
    tmp_db.execute(CUSTOMERS)
    create = (f"CREATE MODEL {{}} PREDICT churned FROM (SELECT age, plan, spend, churned FROM customers) "
              f"USING {algorithm} WITH (epochs = 3, seed = 7{options})")
    with threads.fixed(1):
        tmp_db.execute(create.format("one"))
    with threads.fixed(2):
        with threads.torch_threads(1):
            assert torch.get_num_threads() == 2  # (fixed wins over the policy and the free cores)
        tmp_db.execute(create.format("two"))
    tmp_db.execute(create.format("chosen"))  # what the policy picks
    assert _weights(tmp_db, "one") == _weights(tmp_db, "two") == _weights(tmp_db, "chosen")
    logs = tmp_db.execute("SELECT model, list(valid_loss ORDER BY epoch) FROM mldb.training_log "
                          "GROUP BY model").fetchall()
    assert len({tuple(losses) for _, losses in logs}) == 1


def test_two_trains_at_once_in_two_threads(db_path):
    setup = mldb.connect(db_path)
    setup.execute(CUSTOMERS)
    before, failures = torch.get_num_threads(), []

    def train(name: str) -> None:
        con = mldb.connect(db_path)  # the same file: one shared database
        try:
            con.execute(f"CREATE MODEL {name} PREDICT churned FROM (SELECT age, plan, spend, churned FROM customers) "
                        "USING mlp WITH (epochs = 3, seed = 1)")
        except Exception as error:  # noqa: BLE001 - reported by the test
            failures.append(repr(error))
        finally:
            con.close()

    workers = [threading.Thread(target=train, args=(name,)) for name in ("left", "right")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert not failures and not any(worker.is_alive() for worker in workers)
    assert setup.execute("SELECT count(*) FROM mldb.models").fetchone()[0] == 2
    assert _weights(setup, "left") == _weights(setup, "right")  # same data, same seed
    assert torch.get_num_threads() == before
    setup.close()


# -- CREATE INDEX ------------------------------------------------------------------------------
def _table(con, name: str, element: str, vectors: np.ndarray) -> None:
    con.execute(f"CREATE TABLE {name}(id INTEGER PRIMARY KEY, v {element}[{vectors.shape[1]}])")
    con.execute(f"INSERT INTO {name} SELECT id, v FROM (SELECT unnest(range(?)) AS id, "
                f"unnest(?::{element}[][]) AS v)", [len(vectors), vectors.tolist()])


def _nearest(con, table: str, element: str, query: np.ndarray, function: str) -> list[int]:
    literal = "[" + ", ".join(repr(float(x)) for x in query) + f"]::{element}[{len(query)}]"
    return [row[0] for row in con.execute(f"SELECT id FROM {table} ORDER BY {function}(v, {literal}) "
                                          f"LIMIT 10").fetchall()]


@pytest.mark.parametrize("metric, function", [("cosine", "array_cosine_distance"), ("l2", "array_distance")])
def test_a_float_column_read_without_a_cast_indexes_as_a_cast_one_does(tmp_db, metric, function):
    """FLOAT[n] is read as Arrow's fixed-size list (no cast, no copy); DOUBLE[n] through the cast to
    FLOAT[]: both indexes answer as exact search does."""
    rng = np.random.default_rng(3)
    vectors, queries = rng.normal(size=(800, 8)), rng.normal(size=(5, 8))
    _table(tmp_db, "f", "FLOAT", vectors.astype(np.float32))
    _table(tmp_db, "d", "DOUBLE", vectors.astype(np.float32).astype(np.float64))
    exact = [_nearest(tmp_db, "f", "FLOAT", q, function) for q in queries]
    for table, element in (("f", "FLOAT"), ("d", "DOUBLE")):
        tmp_db.execute(f"CREATE INDEX {table}_v ON {table} USING FAISS (v) WITH (metric = '{metric}', type = 'flat')")
        assert "FAISS" in str(tmp_db.execute("EXPLAIN SELECT id FROM f ORDER BY "
                                             f"{function}(v, [1, 2, 3, 4, 5, 6, 7, 8]::FLOAT[8]) LIMIT 10").fetchall())
        assert [_nearest(tmp_db, table, element, q, function) for q in queries] == exact


def test_a_build_of_several_chunks_answers_as_exact_search(tmp_db):
    """More rows than one chunk of a build (added by the worker thread in several calls)."""
    from mldb.vectors import faiss as fx

    rows = fx._BUILD_STEP + 1000
    rng = np.random.default_rng(5)
    tmp_db.execute(f"CREATE TABLE many AS SELECT i AS id, [random(), random(), random(), random()]::FLOAT[4] AS v "
                   f"FROM range({rows}) t(i)")
    queries = rng.normal(size=(4, 4))
    exact = [_nearest(tmp_db, "many", "FLOAT", q, "array_distance") for q in queries]
    tmp_db.execute("CREATE INDEX many_v ON many USING FAISS (v) WITH (metric = 'l2', type = 'flat')")
    assert tmp_db.execute("SELECT row_count FROM mldb.indexes WHERE name = 'many_v'").fetchone()[0] == rows
    assert [_nearest(tmp_db, "many", "FLOAT", q, "array_distance") for q in queries] == exact


def test_a_float_column_with_a_null_element_is_refused(tmp_db):
    tmp_db.execute("CREATE TABLE holes(id INTEGER, v FLOAT[2])")
    tmp_db.execute("INSERT INTO holes VALUES (1, [1, 2]), (2, [NULL, 3])")
    with pytest.raises(mldb.DataError, match="NaN or infinite"):
        tmp_db.execute("CREATE INDEX holes_v ON holes USING FAISS (v) WITH (type = 'flat')")
    assert tmp_db.execute("SELECT count(*) FROM mldb.indexes").fetchone()[0] == 0


def test_long_regions_use_every_core_unless_capped(monkeypatch):
    assert threads.for_long_regions() == threads.cores()
    monkeypatch.setenv("MLDB_THREADS", "1")
    assert threads.for_long_regions() == 1
