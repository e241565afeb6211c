"""DuckDB's Python API on mldb.Connection: replacement scans, register, sql(), fetch methods,
$name parameters and executemany, against real database files (DuckDB itself is the oracle)."""

from __future__ import annotations

import datetime

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

import mldb

GLOBAL_FRAME = pd.DataFrame({"g": [7, 8]})  # found through the caller's globals


def frame():
    return pd.DataFrame({
        "i": [1, 2, 3],
        "f": [0.1, 0.2, 0.3],
        "s": ["a", "b", None],
        "t": pd.to_datetime(["2024-01-01 10:00", "2024-06-01 12:30", "2024-12-31 23:59"]).tz_localize("UTC"),
    })


@pytest.fixture
def con(tmp_path):
    connection = mldb.connect(tmp_path / "api.db")
    yield connection
    connection.close()


def views(con) -> list[str]:
    return [row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE database_name = 'temp'").fetchall()]


# -- replacement scans ----------------------------------------------------------------------
def test_select_from_every_kind_of_frame_in_the_callers_scope(con):
    pdf = frame()
    pldf = pl.from_pandas(pdf)
    lazy = pldf.lazy()
    tbl = pa.Table.from_pandas(pdf)
    batch = tbl.to_batches()[0]
    dataset = ds.dataset(tbl)
    reader = pa.Table.from_pandas(pdf).to_reader()
    structured = np.array([(1, 0.5), (2, 1.5)], dtype=[("x", "i8"), ("y", "f8")])
    arrays = {"x": np.array([1, 2]), "y": np.array([0.5, 1.5])}
    for name in ("pdf", "pldf", "lazy", "tbl", "batch", "dataset", "reader"):
        assert con.execute(f"SELECT i, f, s FROM {name} ORDER BY i").fetchall() == [
            (1, 0.1, "a"), (2, 0.2, "b"), (3, 0.3, None)], name
    for name in ("structured", "arrays"):
        assert con.execute(f"SELECT * FROM {name}").fetchall() == [(1, 0.5), (2, 1.5)], name
    assert con.execute("SELECT g FROM GLOBAL_FRAME").fetchall() == [(7,), (8,)]
    assert views(con) == []  # nothing stays behind once the next statement runs


def test_cursor_sql_joins_ctes_and_subqueries_see_frames(con):
    lhs = pd.DataFrame({"k": [1, 2], "a": ["x", "y"]})
    rhs = pl.DataFrame({"k": [2, 1], "b": [20.0, 10.0]})
    cur = con.cursor()
    query = ("WITH w AS (SELECT * FROM lhs JOIN rhs USING (k)) "
             "SELECT k, a, b FROM w WHERE k IN (SELECT k FROM lhs) ORDER BY k")
    assert cur.execute(query).fetchall() == [(1, "x", 10.0), (2, "y", 20.0)]
    assert con.sql(query).fetchall() == [(1, "x", 10.0), (2, "y", 20.0)]
    assert con.execute("DESCRIBE lhs").fetchall()[0][:2] == ("k", "BIGINT")


def test_create_table_as_from_df_keeps_types_and_values(con, tmp_path):
    df = frame()
    con.execute("CREATE TABLE t AS FROM df")
    con.close()
    with mldb.connect(tmp_path / "api.db") as again:
        types = [row[:2] for row in again.execute("DESCRIBE t").fetchall()]
        assert types == [("i", "BIGINT"), ("f", "DOUBLE"), ("s", "VARCHAR"), ("t", "TIMESTAMP WITH TIME ZONE")]
        assert again.execute("SELECT f FROM t WHERE i = 1").fetchone() == (0.1,)  # not 0.10000000149
        stamp = again.execute("SELECT epoch(t) FROM t WHERE i = 2").fetchone()[0]
        assert stamp == datetime.datetime(2024, 6, 1, 12, 30, tzinfo=datetime.timezone.utc).timestamp()
        assert again.execute("INSERT INTO t SELECT * FROM df").rowcount == 3
        assert again.execute("SELECT count(*) FROM t").fetchone() == (6,)


def test_a_table_wins_over_a_python_variable(con):
    con.execute("CREATE TABLE items AS SELECT 1 AS id")
    items = pd.DataFrame({"id": [100, 200]})
    assert con.execute("SELECT * FROM items").fetchall() == [(1,)]
    con.execute("CREATE VIEW shown AS SELECT 2 AS id")
    shown = items
    assert con.execute("SELECT * FROM shown").fetchall() == [(2,)]
    assert len(shown) == 2


def test_an_unsupported_object_is_a_clear_error_and_changes_nothing(con):
    con.execute("CREATE TABLE target (a BIGINT)")
    rows = 5
    with pytest.raises(mldb.ProgrammingError) as caught:
        con.execute("INSERT INTO target SELECT * FROM rows")
    assert caught.value.sqlstate == "42P01"
    assert '"rows" of type "int"' in str(caught.value) and "test_duckdb_api.py" in str(caught.value)
    with pytest.raises(mldb.ProgrammingError, match="Table with name nowhere does not exist"):
        con.execute("SELECT * FROM nowhere")  # a name bound to nothing: DuckDB's own error
    assert con.execute("SELECT count(*) FROM target").fetchone() == (0,) and rows == 5


def test_qualified_names_columns_and_writes_are_not_frames(con):
    a = pd.DataFrame({"x": [1]})
    con.execute("CREATE TABLE a (x BIGINT)")
    con.execute("INSERT INTO a VALUES (5)")
    assert con.execute("SELECT * FROM main.a").fetchall() == [(5,)]
    b = pd.DataFrame({"x": [1]})
    with pytest.raises(mldb.ProgrammingError, match="Table with name b does not exist"):
        con.execute("INSERT INTO b VALUES (1)")  # an INSERT target is never a frame
    assert len(a) == len(b) == 1


def test_frames_inside_models(con):
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300)})
    train["y"] = train.x > 0
    con.execute("CREATE MODEL m PREDICT y FROM train")
    fresh = pl.DataFrame({"x": [-3.0, 3.0], "z": [0.0, 0.0]})
    assert con.execute("SELECT x, PREDICT(m) FROM fresh ORDER BY x").fetchall() == [(-3.0, False), (3.0, True)]
    assert con.execute("SELECT x FROM fresh WHERE PREDICT(m) AND x > $lo", {"lo": 0}).fetchall() == [(3.0,)]
    assert views(con) == []


def test_a_half_read_result_survives_the_next_statement(con):
    big = pd.DataFrame({"n": np.arange(5000)})
    first = con.cursor().execute("SELECT n FROM big ORDER BY n")
    assert first.fetchone() == (0,)
    other = con.execute("SELECT 1").fetchall()
    assert other == [(1,)] and len(first.fetchall()) == 4999


# -- register / unregister --------------------------------------------------------------------
def test_register_and_unregister_as_duckdb(con, tmp_path):
    con.execute("CREATE TABLE people AS SELECT 1 AS id")
    assert con.register("people", pd.DataFrame({"id": [10, 20]})) is con
    assert con.execute("SELECT * FROM people ORDER BY id").fetchall() == [(10,), (20,)]  # hides the table
    with mldb.connect(tmp_path / "api.db") as other:  # another connection: its own view list
        assert other.execute("SELECT * FROM people").fetchall() == [(1,)]
    con.register("later", pa.table({"v": [1.5]}))
    assert con.execute("SELECT * FROM later").fetchall() == [(1.5,)]
    assert con.execute("SELECT * FROM later").fetchall() == [(1.5,)]  # stays for later statements
    con.unregister("people")
    assert con.execute("SELECT * FROM people").fetchall() == [(1,)]
    con.unregister("never_registered")  # as DuckDB: no error
    con.unregister("people")  # a table's name: the table stays
    assert con.execute("SELECT * FROM people").fetchall() == [(1,)]


def test_register_of_an_unsupported_object_is_refused(con):
    for bad in (5, "text", [1, 2], {"a": [1, 2]}):
        with pytest.raises(mldb.ProgrammingError) as caught:
            con.register("bad", bad)
        assert caught.value.sqlstate == "42P01"
    assert views(con) == []


def test_duckdb_register_behaviour_is_the_same(con):
    """The oracle: DuckDB's own connection shows the same thing."""
    ref = duckdb.connect()
    for connection in (ref, con):
        connection.execute("CREATE TABLE t AS SELECT 1 AS a")
        connection.register("t", pd.DataFrame({"a": [2]}))
        shadowed = connection.execute("SELECT a FROM t").fetchall()
        connection.unregister("t")
        assert (shadowed, connection.execute("SELECT a FROM t").fetchall()) == ([(2,)], [(1,)])


# -- sql() and the fetch methods -----------------------------------------------------------------
def test_sql_returns_a_relation_with_duckdbs_names(con, capsys):
    con.execute("CREATE TABLE t AS SELECT range AS n, 'r' || range AS s FROM range(3)")
    rel = con.sql("SELECT n, s FROM t ORDER BY n")
    assert rel.columns == ["n", "s"] and rel.types == ["BIGINT", "VARCHAR"]
    assert rel.fetchall() == [(0, "r0"), (1, "r1"), (2, "r2")]
    assert rel.df()["s"].tolist() == ["r0", "r1", "r2"]  # runs again, as a DuckDB relation does
    assert rel.pl()["n"].to_list() == [0, 1, 2]
    assert rel.arrow().column("s").to_pylist() == ["r0", "r1", "r2"]
    assert rel.fetchnumpy()["n"].tolist() == [0, 1, 2]
    rel.show()
    shown = capsys.readouterr().out
    assert "r2" in shown and "│" in shown
    one = con.sql("SELECT n FROM t ORDER BY n")
    assert one.fetchone() == (0,) and one.fetchone() == (1,)
    assert con.sql("CREATE TABLE u (a INT)") is None  # runs now, as DuckDB's sql() does
    assert con.execute("SELECT count(*) FROM u").fetchone() == (0,)
    with pytest.raises(mldb.ProgrammingError):
        con.sql("SELECT * FROM missing_table")  # errors at sql(), not at the first read


def test_a_relation_is_a_frame_for_the_next_query(con):
    rel = con.sql("SELECT range AS n FROM range(4)")
    assert con.execute("SELECT sum(n) FROM rel").fetchone() == (6,)


def test_fetch_methods_on_connection_and_cursor(con):
    query = "SELECT 1 AS a, 2.5 AS b"
    for getter in ("fetchdf", "fetch_df", "df"):
        cur = con.cursor().execute(query)
        assert getattr(cur, getter)().to_dict("list") == {"a": [1], "b": [2.5]}
        con.execute(query)
        assert getattr(con, getter)().to_dict("list") == {"a": [1], "b": [2.5]}
    for getter in ("fetch_arrow_table", "arrow"):
        assert getattr(con.cursor().execute(query), getter)().to_pydict() == {"a": [1], "b": [2.5]}
        con.execute(query)
        assert getattr(con, getter)().to_pydict() == {"a": [1], "b": [2.5]}
    con.execute(query)
    assert {k: v.tolist() for k, v in con.fetchnumpy().items()} == {"a": [1], "b": [2.5]}
    con.execute(query)
    assert con.pl().to_dict(as_series=False) == {"a": [1], "b": [2.5]}
    con.execute(query)
    assert con.fetchone() == (1, 2.5) and con.fetchone() is None
    with pytest.raises(mldb.ProgrammingError, match="no statement"):
        mldb.connect().fetchall()


# -- $name parameters -------------------------------------------------------------------------------
def test_named_parameters(con):
    assert con.execute("SELECT $x + 1", {"x": 41}).fetchone() == (42,)
    assert con.execute("SELECT $x + $x, $y", {"x": 1, "y": "b"}).fetchone() == (2, "b")
    assert con.execute("SELECT $1 + $2", [40, 2]).fetchone() == (42,)
    con.execute("CREATE TABLE t AS SELECT range AS n FROM range(10)")
    assert con.execute("SELECT count(*) FROM t WHERE n >= $lo; SELECT $lo", {"lo": 7}).fetchone() == (7,)
    with pytest.raises(mldb.ProgrammingError, match="y"):
        con.execute("SELECT $x + 1", {"y": 41})
    with pytest.raises(mldb.ProgrammingError):
        con.execute("INSERT INTO t VALUES ($n)", {"m": 1})
    assert con.execute("SELECT count(*) FROM t").fetchone() == (10,)


# -- executemany ----------------------------------------------------------------------------------
ROWS = [(i, f"name{i}", i * 0.5, None if i % 3 else datetime.date(2024, 1, 1 + i % 28)) for i in range(500)]
DDL = "CREATE TABLE t (id INTEGER PRIMARY KEY, name VARCHAR, v DOUBLE, d DATE)"


def both(tmp_path):
    ref = duckdb.connect(str(tmp_path / "ref.duckdb"))
    con = mldb.connect(tmp_path / "m.db")
    for connection in (ref, con):
        connection.execute(DDL)
    return ref, con


def rows_of(connection):
    return connection.execute("SELECT * FROM t ORDER BY id").fetchall()


def test_executemany_inserts_what_duckdb_inserts(tmp_path):
    ref, con = both(tmp_path)
    ref.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", ROWS)
    cur = con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", ROWS)
    assert cur.rowcount == len(ROWS)  # PEP 249: the total (DuckDB's counts only the last row)
    assert rows_of(con) == rows_of(ref)
    named = [{"id": 1000 + i, "name": f"n{i}"} for i in range(3)]
    con.executemany("INSERT INTO t (name, id) VALUES (upper($name), $id)", named)
    ref.executemany("INSERT INTO t (name, id) VALUES (upper($name), $id)", named)
    numbered = [(2000 + i, f"m{i}") for i in range(3)]
    con.executemany("INSERT INTO t (id, name) VALUES ($1, $2 || $2)", iter(numbered))
    ref.executemany("INSERT INTO t (id, name) VALUES ($1, $2 || $2)", numbered)
    mixed = [(3000, "x", 1, None), (3001, "y", 2.5, "2024-02-03")]  # int and float; str into DATE
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", mixed)
    ref.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", mixed)
    assert rows_of(con) == rows_of(ref)


def test_executemany_error_keeps_the_rows_before_it_as_duckdb(tmp_path):
    ref, con = both(tmp_path)
    bad = [(1, "a", 0.0, None), (2, "b", 0.0, None), (1, "dup", 0.0, None), (4, "d", 0.0, None)]
    with pytest.raises(duckdb.ConstraintException):
        ref.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", bad)
    with pytest.raises(mldb.IntegrityError):
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", bad)
    assert rows_of(con) == rows_of(ref) == [(1, "a", 0.0, None), (2, "b", 0.0, None)]
    with pytest.raises(mldb.Error):
        con.executemany("INSERT INTO t VALUES (?, ?)", [(9, "x"), (10, "y")])  # wrong arity
    with pytest.raises(mldb.Error):
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [(9, "x", 0.0, None), (10, "y")])
    assert rows_of(con) == [(1, "a", 0.0, None), (2, "b", 0.0, None), (9, "x", 0.0, None)]  # DuckDB's too
    con.execute("BEGIN")
    with pytest.raises(mldb.IntegrityError):
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [(20, "a", 0.0, None), (1, "dup", 0.0, None)])
    con.execute("ROLLBACK")
    assert len(rows_of(con)) == 3


def test_executemany_with_returning_and_on_conflict_runs_row_by_row(con):
    con.execute("CREATE TABLE k (id INTEGER PRIMARY KEY, n INTEGER)")
    cur = con.executemany("INSERT INTO k VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET n = k.n + excluded.n",
                          [(1, 1), (1, 2), (2, 5)])
    assert cur.rowcount == 3
    assert con.execute("SELECT * FROM k ORDER BY id").fetchall() == [(1, 3), (2, 5)]


def test_a_plain_insert_runs_as_one_statement_of_an_arrow_table():
    from mldb import batch

    plan = batch.insert_plan("INSERT INTO t (a, b) VALUES (?, upper(?))", [(1, "x"), (2, "y")])
    assert plan.sql == "INSERT INTO t (a, b) SELECT mldb_p0, UPPER(mldb_p1) FROM mldb_executemany_rows"
    assert plan.scope.get(batch.ROWS).to_pydict() == {"mldb_p0": [1, 2], "mldb_p1": ["x", "y"]}
    named = batch.insert_plan("INSERT INTO t VALUES ($b, $a, $b)", [{"a": 1, "b": 2}, {"a": 3, "b": 4}])
    assert named.sql == "INSERT INTO t SELECT mldb_pb, mldb_pa, mldb_pb FROM mldb_executemany_rows"
    for sql, rows in (("INSERT INTO t VALUES (?) RETURNING *", [(1,), (2,)]),
                      ("INSERT INTO t VALUES (?), (?)", [(1, 2), (3, 4)]),
                      ("UPDATE t SET a = ?", [(1,), (2,)]),
                      ("INSERT INTO t VALUES (?)", [(1,), ("x",)]),  # no one Arrow type: row by row
                      ("INSERT INTO t VALUES (?, ?)", [(1, 2), (3,)])):
        assert batch.insert_plan(sql, rows) is None, sql


def test_locals_shadow_globals_and_mldbs_own_variables_are_never_read(con):
    GLOBAL_FRAME = pl.DataFrame({"g": [1]})  # noqa: N806 - the same name as the module's frame
    assert con.execute("SELECT g FROM GLOBAL_FRAME").fetchall() == [(1,)]
    for name in ("sql", "params", "statement", "result", "self", "exp", "contextlib"):  # names inside mldb's own frames
        with pytest.raises(mldb.ProgrammingError, match=f"Table with name {name} does not exist"):
            con.execute(f"SELECT * FROM {name}")


def test_embed_reads_a_frame(con):
    docs = pl.DataFrame({"id": [1, 2], "text": ["a cat on a mat", "stock prices fell"]})
    rows = con.execute("SELECT id, EMBED(text) AS v FROM docs ORDER BY id").fetchall()
    alone = con.execute("SELECT EMBED(?)", ["stock prices fell"]).fetchone()[0]
    assert [row[0] for row in rows] == [1, 2] and len(rows[1][1]) == 384
    assert np.allclose(rows[1][1], alone, atol=1e-6)


# -- issue 11: what a tester found -------------------------------------------------------------
def test_a_stored_view_or_macro_over_a_frame_is_refused_and_nothing_is_created(tmp_path):
    path = tmp_path / "views.db"
    con = mldb.connect(path)
    hist = pd.DataFrame({"a": [1, 2, 3]})
    for sql in ("CREATE VIEW vdf AS SELECT * FROM hist",
                "CREATE OR REPLACE TEMP VIEW vdf AS SELECT a FROM hist WHERE a > 1",
                "CREATE MACRO mdf() AS TABLE SELECT * FROM hist"):
        with pytest.raises(mldb.ProgrammingError, match="CREATE TABLE hist AS SELECT") as caught:
            con.execute(sql)
        assert caught.value.sqlstate == "0A000" and "con.register('hist', hist)" in str(caught.value)
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'vdf'").fetchall() == [(0,)]
    assert con.execute("SELECT count(*) FROM duckdb_functions() WHERE function_name = 'mdf'").fetchall() == [(0,)]
    assert con.execute("SELECT count(*) FROM hist").fetchall() == [(3,)]  # a plain read still works
    con.execute("CREATE TABLE hist AS SELECT * FROM hist")  # the way the error suggests
    con.execute("CREATE VIEW vdf AS SELECT * FROM hist")  # a table now: a view over it is fine
    con.close()
    con = mldb.connect(path)
    del hist
    assert con.execute("SELECT count(*) FROM vdf").fetchall() == [(3,)]
    con.close()


def test_a_frame_qualified_by_the_default_schema_is_read_as_duckdb_reads_it(con):
    gdf = pd.DataFrame({"g": [1, 2]})
    raw = duckdb.connect()
    assert raw.execute("SELECT sum(g) FROM main.gdf").fetchall() == [(3,)]
    raw.close()
    assert con.execute("SELECT sum(g) FROM main.gdf").fetchall() == [(3,)]
    assert con.execute("SELECT sum(x.g) FROM main.gdf AS x JOIN gdf AS y USING (g)").fetchall() == [(3,)]
    assert con.execute("SELECT sum(g) FROM api.main.gdf").fetchall() == [(3,)]  # (the file is api.db)
    memory = mldb.connect()
    assert memory.execute("SELECT sum(g) FROM memory.main.gdf WHERE g > ?", [1]).fetchall() == [(2,)]
    memory.close()
    with pytest.raises(mldb.ProgrammingError):  # another database is no frame
        con.execute("SELECT * FROM other.main.gdf")
    with pytest.raises(mldb.ProgrammingError):  # another schema is no frame
        con.execute("SELECT * FROM other.gdf")
    assert gdf is not None


def test_a_frame_without_columns_is_an_mldb_error(con):
    empty0 = pd.DataFrame()
    with pytest.raises(mldb.ProgrammingError, match="at least one column") as caught:
        con.execute("SELECT * FROM empty0")
    assert caught.value.sqlstate and empty0.shape == (0, 0)
    assert con.execute("SELECT 1").fetchall() == [(1,)]  # the connection goes on


def test_a_relation_reads_the_data_as_it_is_when_read(con):
    con.execute("CREATE TABLE ch (a INTEGER)")
    con.execute("INSERT INTO ch VALUES (1)")
    raw = duckdb.connect()
    raw.execute("CREATE TABLE ch (a INTEGER); INSERT INTO ch VALUES (1)")
    expected_rel = raw.sql("SELECT * FROM ch ORDER BY a")
    raw.execute("INSERT INTO ch VALUES (2)")
    expected = expected_rel.fetchall()
    raw.close()
    for read in ("fetchall", "fetchone"):
        rel = con.sql("SELECT * FROM ch ORDER BY a")
        con.execute("INSERT INTO ch VALUES (2)")
        got = rel.fetchall() if read == "fetchall" else [rel.fetchone(), rel.fetchone()]
        assert got[:2] == expected == [(1,), (2,)]
        con.execute("DELETE FROM ch WHERE a = 2")
    with pytest.raises(mldb.ProgrammingError):  # errors still surface at sql()
        con.sql("SELECT * FROM no_such_table")
    rel = con.sql("SELECT count(*) FROM ch")
    assert rel.fetchall() == [(1,)]  # nothing ran in between: the result sql() computed


def test_executemany_with_returning_gives_the_last_rows_as_duckdb(tmp_path):
    results = []
    for connection in (duckdb.connect(str(tmp_path / "ref.duckdb")), mldb.connect(tmp_path / "m.db")):
        connection.execute("CREATE TABLE e (id INTEGER, s VARCHAR)")
        cursor = connection.executemany("INSERT INTO e VALUES (?, ?) RETURNING id", [(10, "a"), (11, "b")])
        results.append((cursor.fetchall(), connection.execute("SELECT * FROM e ORDER BY id").fetchall()))
    assert results[0] == results[1] == ([(11,)], [(10, "a"), (11, "b")])


def test_register_sees_a_changed_frame_as_duckdb_does(con):
    """``register`` hands DuckDB the object itself: reads after the frame changes match DuckDB's."""
    seen = []
    for connection in (duckdb.connect(), con):
        df = pd.DataFrame({"a": [1, 2, 3]})
        connection.register("live", df)
        df.loc[0, "a"] = 50
        first = connection.execute("SELECT a FROM live ORDER BY a").fetchall()
        df.loc[3] = [99]
        seen.append((first, connection.execute("SELECT count(*) FROM live").fetchall()))
    assert seen[1] == seen[0]
