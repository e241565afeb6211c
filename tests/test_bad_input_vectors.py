"""Bad input to the vector statements, for what sql/errors/vectors.test cannot express:
statements that used to abort or crash the process now raise in it, parameters (k, the
query vector, LOAD UDFS's file), explicit transactions, and what the option schema stores."""

from __future__ import annotations

import math

import pytest

import mldb
from mldb.options import Option
from mldb.vectors import faiss as fx


@pytest.fixture
def con(tmp_path):
    connection = mldb.connect(str(tmp_path / "vectors.db"))
    connection.execute("CREATE TABLE vecs(id INTEGER, v FLOAT[3])")
    connection.execute("INSERT INTO vecs SELECT i, [cos(i), sin(i), i % 3]::FLOAT[3] FROM range(60) t(i)")
    yield connection
    connection.close()


def _state(con):
    return (con.execute("SELECT name, kind, version, row_count, options FROM mldb.indexes ORDER BY name").fetchall(),
            con.execute("SELECT count(*) FROM vecs").fetchone())


def _exact(con, query, k=3):
    """Ids of the k nearest rows by DuckDB's exact search (no index on this table)."""
    con.execute("CREATE TABLE IF NOT EXISTS copy AS SELECT * FROM vecs")
    return [r[0] for r in con.execute("SELECT id FROM copy ORDER BY array_distance(v, ?::FLOAT[3]), id LIMIT ?",
                                      [query, k]).fetchall()]


@pytest.mark.parametrize("options, message", [
    ("m = 0", "option m must be an integer in [2, 256]; found 0"),  # was: a FAISS assertion aborted the process
    ("m = 1", "option m must be an integer in [2, 256]; found 1"),  # was: a segmentation fault
    ("type = 'ivf', nprobe = 0", "option nprobe must be an integer in [1, 1048576]"),  # broke every search
    ("type = 'ivf', nlist = 1000", "nlist = 1000 needs at least 1000 rows"),  # was: clamped without a word
    ("ef_construction = 0", "option ef_construction must be an integer in [1, 65536]"),  # recall 0.5
])
def test_former_crashers_raise_in_process(con, options, message):
    before = _state(con)
    with pytest.raises(mldb.ProgrammingError, match=message.replace("[", r"\[").replace("]", r"\]")) as caught:
        con.execute(f"CREATE INDEX i ON vecs USING FAISS (v) WITH ({options})")
    assert caught.value.sqlstate == "22023"
    assert _state(con) == before
    con.execute("CREATE INDEX i ON vecs USING FAISS (v) WITH (metric = 'l2', m = 2)")  # the process goes on
    query = [1.0, 0.0, 0.0]
    rows = con.execute("SELECT id FROM vecs ORDER BY array_distance(v, ?::FLOAT[3]) LIMIT 3", [query]).fetchall()
    assert [r[0] for r in rows] == _exact(con, query)


def test_an_ivf_index_searches_with_its_checked_options(con):
    con.execute("CREATE INDEX i ON vecs USING FAISS (v) WITH (metric = 'l2', type = 'ivf', nlist = 6, nprobe = 99)")
    query = [0.0, 1.0, 1.0]  # nprobe above nlist: FAISS probes every list
    rows = con.execute("SELECT id FROM vecs ORDER BY array_distance(v, ?::FLOAT[3]) LIMIT 4", [query]).fetchall()
    assert [r[0] for r in rows] == _exact(con, query, 4)


def test_what_the_schema_stores(con):
    con.execute("CREATE INDEX i ON vecs USING FAISS (v) WITH (m = 100, max_memory = '2GiB')")
    options = con.execute("SELECT options::JSON FROM mldb.indexes WHERE name = 'i'").fetchone()[0]
    import json

    options = json.loads(options)
    assert options["m"] == 100 and options["ef_construction"] == 100  # left out: max(64, m)
    assert "max_memory" not in options  # a limit of this statement, not of the index


def test_the_memory_guard(con):
    need = fx.build_bytes(60, 3, "hnsw", 32)
    assert need == 60 * (4 * 3 + 8 * 32 + 17) + 2 * 4 * 60 * 3
    with pytest.raises(mldb.OperationalError, match="building it would take about") as caught:
        con.execute(f"CREATE INDEX i ON vecs USING FAISS (v) WITH (max_memory = {need - 1})")
    assert caught.value.sqlstate == "54000"
    con.execute(f"CREATE INDEX i ON vecs USING FAISS (v) WITH (max_memory = {need})")
    assert fx.memory_limit() > 0


def test_memory_sizes_read_as_duckdb_reads_them():
    option = Option("max_memory", "bytes", low=1)
    assert option.check("8GB", "x") == 8 * 10**9
    assert option.check("512 MiB", "x") == 512 * 2**20
    assert option.check("1.5kb", "x") == 1500
    assert option.check(4096, "x") == 4096
    for bad in ("lots", "-1GB", True, 0, "8 parsecs"):
        with pytest.raises(mldb.ProgrammingError, match="option max_memory must be a memory size"):
            option.check(bad, "x")


@pytest.mark.parametrize("indexed", [True, False])
@pytest.mark.parametrize("k", [None, 0, -2, 2.5])
def test_k_as_a_parameter(con, indexed, k):
    if indexed:
        con.execute("CREATE INDEX i ON vecs USING FAISS (v) WITH (metric = 'l2')")
    with pytest.raises(mldb.ProgrammingError, match="VECTOR_SEARCH: k must be a positive integer") as caught:
        con.execute("SELECT id FROM VECTOR_SEARCH(vecs, v, [1, 0, 0]::FLOAT[3], ?)", [k]).fetchall()
    assert caught.value.sqlstate == "22023"
    rows = con.execute("SELECT id FROM VECTOR_SEARCH(vecs, v, [1, 0, 0]::FLOAT[3], ?)", [2]).fetchall()
    assert len(rows) == 2


@pytest.mark.parametrize("indexed", [True, False])
@pytest.mark.parametrize("query, sqlstate", [(None, "22004"), ([1.0, math.nan, 0.0], "22023"),
                                             ([1.0, math.inf, 0.0], "22023"), ([1.0, None, 0.0], "22023")])
def test_a_bad_query_vector_as_a_parameter(con, indexed, query, sqlstate):
    if indexed:
        con.execute("CREATE INDEX i ON vecs USING FAISS (v) WITH (metric = 'l2')")
    forms = ["SELECT id FROM VECTOR_SEARCH(vecs, v, ?, 3)", "SELECT id FROM VECTOR_SEARCH(vecs, v, ?::FLOAT[3], 3)"]
    if indexed:  # without an index, ORDER BY ... LIMIT is DuckDB's own query
        forms.append("SELECT id FROM vecs ORDER BY array_distance(v, ?::FLOAT[3]) LIMIT 3")
    for sql in forms:
        with pytest.raises(mldb.DataError, match="the query vector") as caught:
            con.execute(sql, [query]).fetchall()
        assert caught.value.sqlstate == sqlstate, sql


def test_a_null_key_in_a_transaction_changes_nothing(con):
    con.execute("CREATE INDEX i ON vecs USING FAISS (v) WITH (metric = 'l2', type = 'flat')")
    before = _state(con)
    con.execute("BEGIN")
    con.execute("INSERT INTO vecs VALUES (100, [5, 5, 5])")
    with pytest.raises(mldb.IntegrityError, match="index i needs a value in key column vecs.id") as caught:
        con.execute("INSERT INTO vecs VALUES (NULL, [1, 2, 3])")
    assert caught.value.sqlstate == "23502"
    con.rollback()
    assert _state(con) == before
    rows = con.execute("SELECT id FROM vecs ORDER BY array_distance(v, [1, 0, 0]::FLOAT[3]) LIMIT 3").fetchall()
    assert [r[0] for r in rows] == _exact(con, [1.0, 0.0, 0.0])


def test_a_null_key_at_create_index(con):
    con.execute("INSERT INTO vecs VALUES (NULL, [1, 2, 3])")
    with pytest.raises(mldb.IntegrityError, match="1 row would have NULL"):
        con.execute("CREATE INDEX i ON vecs USING FAISS (v)")
    assert _state(con)[0] == []


def test_load_udfs_of_bad_files(con, tmp_path):
    exits = tmp_path / "exits.py"
    exits.write_text("raise SystemExit(3)\n")  # was: the process exited
    with pytest.raises(mldb.ProgrammingError, match="loading UDF file .* failed: SystemExit: 3"):
        con.execute(f"LOAD UDFS FROM '{exits}'")
    named = tmp_path / "named.py"
    named.write_text("import mldb\n@mldb.udf(name=3, params=['DOUBLE'], returns='DOUBLE')\ndef f(x):\n    return x\n")
    with pytest.raises(mldb.ProgrammingError, match="cannot register the UDFs"):  # was: a TypeError
        con.execute(f"LOAD UDFS FROM '{named}'")
    with pytest.raises(mldb.ProgrammingError, match=r"LOAD UDFS FROM \$file needs a parameter 'file'"):
        con.execute("LOAD UDFS FROM $file", {})  # was: a KeyError
    assert con.execute("SELECT count(*) FROM vecs").fetchone() == (60,)


def test_a_renamed_table_keeps_its_index_after_reopening(tmp_path):
    path = str(tmp_path / "renamed.db")
    with mldb.connect(path) as con:
        con.execute("CREATE TABLE t(id INTEGER, v FLOAT[2])")
        con.execute("INSERT INTO t VALUES (1, [1, 0]), (2, [0, 1])")
        con.execute("CREATE INDEX i ON t USING FAISS (v) WITH (metric = 'l2', type = 'flat')")
        con.execute("ALTER TABLE t RENAME TO t2")
        con.execute("INSERT INTO t2 VALUES (3, [0.9, 0.1])")
    with mldb.connect(path) as con:
        assert con.execute("SELECT name, table_name, row_count FROM mldb.indexes").fetchall() == [("i", "t2", 3)]
        sql = "SELECT id FROM t2 ORDER BY array_distance(v, [1, 0]::FLOAT[2]) LIMIT 2"
        assert any("FAISS search: index i" in note for key, note in con.execute("EXPLAIN " + sql).fetchall()
                   if key == "mldb_rewrite")
        assert con.execute(sql).fetchall() == [(1,), (3,)]


def test_a_literal_query_vector_searches_alike_in_and_out_of_a_transaction(con):
    con.execute("CREATE INDEX i ON vecs USING FAISS (v) WITH (metric = 'cosine', type = 'flat')")
    sql = "SELECT id FROM VECTOR_SEARCH(vecs, v, [1, 0, 1], 4)"
    autocommit = con.execute(sql).fetchall()
    con.execute("BEGIN")
    con.execute("UPDATE vecs SET v = v WHERE id = 0")  # this session's change: DuckDB searches exactly
    assert con.execute(sql).fetchall() == autocommit
    con.execute("ROLLBACK")
    before = _state(con)
    with pytest.raises(mldb.DataError, match="beyond float32's range") as caught:
        con.execute("SELECT id FROM VECTOR_SEARCH(vecs, v, [1e39, 0, 1], 4)")
    assert caught.value.sqlstate == "22003"
    assert _state(con) == before


def test_embed_of_a_parameter_that_is_not_text(con):
    with pytest.raises(mldb.ProgrammingError, match=r"EMBED expects text \(VARCHAR\); parameter \$1 is INTEGER") \
            as caught:
        con.execute("SELECT EMBED(?)", [5])
    assert caught.value.sqlstate == "42804"
    assert len(con.execute("SELECT EMBED(?)", ["hi"]).fetchone()[0]) == 384


def test_an_ivf_index_on_few_rows_prints_no_faiss_warning(con, capfd):
    before = con.execute("SELECT id FROM vecs ORDER BY array_distance(v, [1, 0, 0]::FLOAT[3]), id LIMIT 5").fetchall()
    con.execute("CREATE INDEX i ON vecs USING FAISS (v) WITH (metric = 'l2', type = 'ivf', nlist = 8, nprobe = 8)")
    after = con.execute("SELECT id FROM vecs ORDER BY array_distance(v, [1, 0, 0]::FLOAT[3]) LIMIT 5").fetchall()
    assert sorted(after) == sorted(before)
    assert "WARNING" not in capfd.readouterr().err
