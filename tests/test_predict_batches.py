"""PREDICT's batch path (``features.Encoder`` into a kept matrix, ``inference.Network`` into kept
buffers, one torch thread per call) gives the rows a plain reference computes.

The reference is written here from the model's stored parameters alone: fetch the feature
columns, standardise them in float64 (NULL, NaN, inf -> the mean), run the loaded
``torch.nn`` module as a user would (``module(x)``, fresh tensors, torch's own threads) and
undo the target's scaling. Every form of PREDICT (projection, table form, CTAS, INSERT ...
SELECT, COPY, PREDICT_PROBA, with filters, NULLs, empty tables, deleted rows, LIMIT,
parameters) must give the reference's rows, on one DuckDB thread and on several (each keeps
its own buffers). Also: the prediction log's one row per statement, cancel between batches,
and a stream of a few million rows that does not grow the process's memory.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pyarrow as pa
import pytest
import torch

import mldb
from mldb.models.registry import load_model

WIDTH = 6
FEATURES = [f"f{i}" for i in range(WIDTH)]
ROWS = 6_000


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    connection = mldb.connect(str(tmp_path_factory.mktemp("batches") / "b.db"))
    columns = ", ".join(f"(hash(i * {k + 3}) % 1000) / 100.0 AS f{k}" for k in range(WIDTH))
    connection.execute(f"CREATE TABLE t AS SELECT i AS id, {columns} FROM range({ROWS}) r(i)")
    connection.execute("ALTER TABLE t ADD COLUMN y DOUBLE")
    connection.execute("UPDATE t SET y = f0 * 2 - f1 + sin(f2) * f3")
    connection.execute("ALTER TABLE t ADD COLUMN label VARCHAR")
    connection.execute("UPDATE t SET label = CASE WHEN y > 5 THEN 'high' WHEN y > 0 THEN 'mid' ELSE 'low' END")
    features = ", ".join(FEATURES)
    connection.execute(f"CREATE MODEL reg PREDICT y FROM (SELECT {features}, y FROM t) USING mlp "
                       "WITH (hidden = [32, 16], epochs = 2, seed = 1)")
    connection.execute(f"CREATE MODEL cls PREDICT label FROM (SELECT {features}, label FROM t) USING mlp "
                       "WITH (hidden = [16], epochs = 2, seed = 1)")
    # NULL, NaN, inf and out-of-float32-range features, and deleted rows
    connection.execute("UPDATE t SET f1 = NULL WHERE id % 13 = 0")
    connection.execute("UPDATE t SET f2 = 'nan'::DOUBLE WHERE id % 17 = 0")
    connection.execute("UPDATE t SET f3 = 'inf'::DOUBLE WHERE id % 19 = 0")
    connection.execute("UPDATE t SET f4 = 1e39 WHERE id % 23 = 0")
    connection.execute("DELETE FROM t WHERE id % 29 = 0")
    yield connection
    connection.close()


# -- the reference ---------------------------------------------------------------------------
def reference(con, model_name: str, where: str = "true") -> tuple[np.ndarray, np.ndarray]:
    """(ids, raw outputs) computed without mldb's batch path: values (n,) or probabilities (n, k)."""
    model = load_model(con, model_name)
    table = con.database.root.sql(f"SELECT id, {', '.join(FEATURES)} FROM t WHERE {where} ORDER BY id").to_arrow_table()
    x = np.stack([table[name].to_numpy(zero_copy_only=False).astype(np.float64) for name in FEATURES], axis=1)
    mean = np.array([f["mean"] for f in model.features])
    std = np.array([f["std"] for f in model.features])
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = (x.astype(np.float32).astype(np.float64) - mean) / std
    scaled[~np.isfinite(scaled)] = 0.0
    with torch.inference_mode():
        out = model.module(torch.from_numpy(scaled.astype(np.float32))).double().numpy()
    ids = table["id"].to_numpy()
    if model.task == "regression":
        return ids, out[:, 0] * model.target_encoder["std"] + model.target_encoder["mean"]
    return ids, torch.softmax(torch.from_numpy(out), dim=1).numpy()


def labels(con, proba: np.ndarray) -> list[str]:
    classes = load_model(con, "cls").classes
    return [classes[i] for i in proba.argmax(axis=1)]


@pytest.fixture(params=[1, 2], ids=["1 thread", "2 threads"])
def threads(request, con):
    con.execute(f"SET threads = {request.param}")
    yield request.param
    con.execute("RESET threads")


def fetched(con, sql: str, params=None) -> pa.Table:
    return con.execute(sql, params).arrow() if params is not None else con.execute(sql).arrow()


# -- every form gives the reference's rows -------------------------------------------------------
def test_projection_regression(con, threads):
    ids, expected = reference(con, "reg")
    got = fetched(con, "SELECT id, PREDICT(reg) AS p FROM t ORDER BY id")
    assert got["id"].to_numpy().tolist() == ids.tolist()
    np.testing.assert_allclose(got["p"].to_numpy(), expected, rtol=1e-5, atol=1e-5)


def test_projection_classifier_and_proba(con, threads):
    ids, proba = reference(con, "cls")
    got = fetched(con, "SELECT id, PREDICT(cls) AS p, PREDICT_PROBA(cls) AS q FROM t ORDER BY id")
    assert got["p"].to_pylist() == labels(con, proba)
    maps = got["q"].to_pylist()
    classes = load_model(con, "cls").classes
    got_proba = np.array([[dict(row)[c] for c in classes] for row in maps])
    np.testing.assert_allclose(got_proba, proba, rtol=1e-5, atol=1e-6)


def test_filters_limit_and_parameters(con, threads):
    ids, expected = reference(con, "reg", "f0 > 5 AND id % 3 = 1")
    got = fetched(con, "SELECT id, PREDICT(reg) AS p FROM t WHERE f0 > ? AND id % 3 = 1 ORDER BY id", [5])
    np.testing.assert_allclose(got["p"].to_numpy(), expected, rtol=1e-5, atol=1e-5)
    limited = fetched(con, "SELECT id, PREDICT(reg) AS p FROM t WHERE f0 > 5 AND id % 3 = 1 ORDER BY id LIMIT 7")
    np.testing.assert_allclose(limited["p"].to_numpy(), expected[:7], rtol=1e-5, atol=1e-5)


def test_table_form(con, threads):
    ids, proba = reference(con, "cls")
    got = fetched(con, "SELECT id, prediction, probability FROM PREDICT(cls, (SELECT * FROM t)) ORDER BY id")
    assert got["prediction"].to_pylist() == labels(con, proba)
    np.testing.assert_allclose(got["probability"].to_numpy(), proba.max(axis=1), rtol=1e-5, atol=1e-6)


def test_ctas_insert_and_copy(con, threads, tmp_path):
    ids, expected = reference(con, "reg")
    con.execute("CREATE OR REPLACE TABLE out AS SELECT id, PREDICT(reg) AS p FROM t")
    con.execute("INSERT INTO out SELECT id + 1000000, PREDICT(reg) FROM t")
    got = fetched(con, "SELECT id, p FROM out ORDER BY id")
    np.testing.assert_allclose(got["p"].to_numpy(), np.concatenate([expected, expected]), rtol=1e-5, atol=1e-5)
    path = tmp_path / f"p{threads}.parquet"
    con.execute(f"COPY (SELECT id, PREDICT(reg) AS p FROM t ORDER BY id) TO '{path}' (FORMAT parquet)")
    copied = con.execute(f"SELECT p FROM '{path}'").arrow()
    np.testing.assert_allclose(copied["p"].to_numpy(), expected, rtol=1e-5, atol=1e-5)
    con.execute("DROP TABLE out")


def test_empty_table_and_all_null_rows(con, threads):
    assert fetched(con, "SELECT PREDICT(reg) AS p FROM t WHERE false").num_rows == 0
    nulls = ", ".join(f"NULL::DOUBLE AS {name}" for name in FEATURES)
    at_mean = fetched(con, f"SELECT PREDICT(reg) AS p FROM (SELECT {nulls} FROM range(3))")["p"].to_numpy()
    model = load_model(con, "reg")
    with torch.inference_mode():
        out = model.module(torch.zeros(1, WIDTH)).double().numpy()[0, 0]
    expected = out * model.target_encoder["std"] + model.target_encoder["mean"]
    np.testing.assert_allclose(at_mean, [expected] * 3, rtol=1e-6)


def test_batches_of_other_sizes_reuse_no_stale_buffer(con):
    """Calls of different sizes on one thread (a full vector, the short last one) never see another
    call's values: each row is what it is alone (up to float32 rounding, which BLAS blocks by size)."""
    model = load_model(con, "reg")
    table = con.database.root.sql(f"SELECT {', '.join(FEATURES)} FROM t ORDER BY id LIMIT 5000").to_arrow_table()
    whole = model.predict(table).to_numpy()
    for start, size in ((0, 2048), (100, 7), (2048, 2048), (9, 1), (0, 5000), (4000, 7)):
        part = model.predict(table.slice(start, size)).to_numpy()
        np.testing.assert_allclose(part, whole[start : start + size], rtol=1e-5, atol=1e-5)


def test_big_calls_keep_no_buffers(con):
    """A call above ``MAX_KEPT_ROWS`` (a whole table from Python) gets fresh buffers, twice the same rows."""
    from mldb.models import inference

    model = load_model(con, "reg")
    table = con.database.root.sql(f"SELECT {', '.join(FEATURES)} FROM t ORDER BY id").to_arrow_table()
    big = pa.concat_tables([table] * (inference.MAX_KEPT_ROWS // table.num_rows + 1))
    first = model.predict(big).to_numpy()
    second = model.predict(big).to_numpy()
    assert len(first) > inference.MAX_KEPT_ROWS
    np.testing.assert_array_equal(first, second)
    assert all(rows <= inference.MAX_KEPT_ROWS for rows in getattr(model.network._kept._local, "kept", {}))


def test_threads_keep_their_own_buffers(con):
    """Several Python threads predicting at once (as DuckDB's do) each get their own rows."""
    model = load_model(con, "reg")
    table = con.database.root.sql(f"SELECT {', '.join(FEATURES)} FROM t ORDER BY id").to_arrow_table()
    pieces = [table.slice(start, 2048) for start in range(0, 8 * 2048, 2048)]
    expected = [model.predict(piece).to_numpy() for piece in pieces]
    failures = []

    def work(index):
        for _ in range(20):
            if not np.array_equal(model.predict(pieces[index]).to_numpy(), expected[index]):
                failures.append(index)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(pieces))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []


def test_torch_threads_restored(con):
    before = torch.get_num_threads()
    con.execute("SELECT count(PREDICT(reg)) FROM t").fetchall()
    assert torch.get_num_threads() == before


# -- the prediction log, cancel, memory -----------------------------------------------------------
def test_prediction_log_one_row_per_statement(con):
    count = con.execute("SELECT count(*) FROM t WHERE f0 > 2").fetchall()[0][0]
    before = con.execute("SELECT count(*) FROM mldb.prediction_log").fetchall()[0][0]
    con.execute("SET threads = 2")
    try:
        con.execute("SELECT PREDICT(reg), PREDICT(cls) FROM t WHERE f0 > 2").arrow()
    finally:
        con.execute("RESET threads")
    rows = con.execute("SELECT model, rows FROM mldb.prediction_log ORDER BY rowid DESC LIMIT 2").fetchall()
    assert con.execute("SELECT count(*) FROM mldb.prediction_log").fetchall()[0][0] == before + 2
    assert sorted(rows) == [("cls", count), ("reg", count)]


def test_cancel_between_batches(con):
    before = con.execute("SELECT count(*) FROM mldb.prediction_log").fetchall()[0][0]
    cursor = con.cursor()
    reader = cursor.execute("SELECT i, PREDICT(reg, i, i, i, i, i, i) AS p FROM range(20000000) r(i)"
                            ).arrow_reader(10_000)
    first = next(iter(reader))
    assert first.num_rows > 0
    con.interrupt()
    with pytest.raises(mldb.OperationalError) as raised:
        for _ in reader:
            pass
    assert raised.value.sqlstate == "57014"
    cursor.close()
    assert con.execute("SELECT count(*) FROM mldb.prediction_log").fetchall()[0][0] == before
    assert con.execute("SELECT count(PREDICT(reg)) FROM t").fetchall()[0][0] > 0  # still usable


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_long_stream_keeps_memory_flat(con):
    """2M rows read through batch by batch: the process grows by far less than the result's size
    (2M x (8 + 8) bytes = 32 MB as Arrow; as Python rows, hundreds of MB)."""
    cursor = con.cursor()
    reader = cursor.execute("SELECT i, PREDICT(reg, i % 10, i % 7, i % 5, i % 3, i % 11, i % 13) AS p "
                            "FROM range(2000000) r(i)").arrow_reader(50_000)
    batches = iter(reader)
    seen = next(batches).num_rows
    start, peak = _rss(), 0
    for batch in batches:
        seen += batch.num_rows
        peak = max(peak, _rss())
    cursor.close()
    assert seen == 2_000_000
    assert peak - start < 24 * 2**20
