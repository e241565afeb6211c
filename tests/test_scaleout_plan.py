"""Scale-out planning (issue 17, no Ray needed): mldb's session settings, the recognizer that decides
which statements go out (``scaleout.plan.qualify``), the split of aggregates into per-file partials
and their combine, and EXPLAIN's executor note. Real Parquet and CSV files written by DuckDB, a
really trained model, real wire-server subprocesses.

``ray`` is not installed here, so ``SET mldb_executor = 'ray'`` is refused (that is tested); the
tests that need a Ray session put the checked value on the session's settings as SET would."""

from __future__ import annotations

import importlib.util
import math
import os
import sys

import psycopg
import pytest
from conftest_server import start_server

import mldb
from mldb.frontend import parse, split_statements
from mldb.frontend.settings import ResetSetting, SetSetting, ShowSetting
from mldb.plan import template
from mldb.plan.rules import Planner, rewrite
from mldb.scaleout import plan

DEFAULTS = {"mldb_executor": ("local", "VARCHAR"), "mldb_ray_workers": (None, "BIGINT"),
            "mldb_ray_cpus_per_worker": (1, "BIGINT"), "mldb_ray_batch_rows": (65536, "BIGINT"),
            "mldb_ray_retries": (3, "BIGINT"), "mldb_ray_preserve_order": (False, "BOOLEAN")}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """ev/: 4 parquet files (one empty, one whose rows all fail kind <> 'z', one with NULL x and d);
    csv/: 2 csv files (one header-only)."""
    root = tmp_path_factory.mktemp("scaleout")
    os.makedirs(root / "ev")
    os.makedirs(root / "csv")
    con = mldb.connect(":memory:")
    rows = ("SELECT i AS id, (i % 7)::INTEGER AS a, CASE WHEN i % 5 = 0 THEN NULL ELSE i * 1.5 END AS x, "
            "(i % 11)::DOUBLE / 3 AS d, ['a', 'b', 'c'][i % 3 + 1] AS kind, 'w' || i AS s FROM range({}, {}) t(i)")
    con.execute(f"COPY ({rows.format(0, 300)}) TO '{root}/ev/e1.parquet' (FORMAT parquet)")
    con.execute(f"COPY ({rows.format(300, 300)}) TO '{root}/ev/e2.parquet' (FORMAT parquet)")  # empty
    con.execute(f"COPY (SELECT * REPLACE ('z' AS kind) FROM ({rows.format(300, 400)})) "
                f"TO '{root}/ev/e3.parquet' (FORMAT parquet)")  # removed whole by kind <> 'z'
    con.execute(f"COPY (SELECT * REPLACE (NULL::DECIMAL(18, 1) AS x, NULL::DOUBLE AS d) FROM ({rows.format(400, 450)}))"
                f" TO '{root}/ev/e4.parquet' (FORMAT parquet)")  # NULL x and d
    con.execute(f"COPY ({rows.format(0, 40)}) TO '{root}/csv/c1.csv' (HEADER)")
    con.execute(f"COPY ({rows.format(0, 0)}) TO '{root}/csv/c2.csv' (HEADER)")  # header only
    con.close()
    return root


@pytest.fixture(scope="module")
def con(files):
    connection = mldb.connect(":memory:")
    connection.execute(f"CREATE TABLE train AS SELECT a, kind, a > 3 AS y FROM '{files}/ev/e1.parquet'")
    connection.execute("CREATE MODEL churn PREDICT y FROM train USING logistic WITH (epochs = 2, seed = 1)")
    connection.execute("CREATE MACRO twice(v) AS v * 2")
    yield connection
    connection.close()


@pytest.fixture
def ray_session(con):
    """The module's connection with mldb_executor = 'ray', as SET would leave it with ray installed."""
    con.session.mldb_settings["mldb_executor"] = "ray"
    yield con
    con.session.mldb_settings.clear()


def _show(con, name):
    cursor = con.execute(f"SHOW {name}")
    return cursor.fetchall(), [(column[0], str(column[1])) for column in cursor.description]


def _error(con, sql):
    with pytest.raises(mldb.Error) as caught:
        con.execute(sql)
    return caught.value


# -- settings ------------------------------------------------------------------------------------
def test_every_setting_shows_its_default_with_its_type():
    with mldb.connect(":memory:") as con:
        for name, (value, kind) in DEFAULTS.items():
            assert _show(con, name) == ([(value,)], [(name, kind)])


@pytest.mark.parametrize("sql, name, value", [
    ("SET mldb_ray_workers = 4", "mldb_ray_workers", 4),
    ("SET mldb_ray_workers TO '8'", "mldb_ray_workers", 8),
    ("SET SESSION mldb_ray_cpus_per_worker = 2", "mldb_ray_cpus_per_worker", 2),
    ("SET mldb_ray_batch_rows = 1000", "mldb_ray_batch_rows", 1000),
    ("SET mldb_ray_retries = 0", "mldb_ray_retries", 0),
    ("SET mldb_ray_preserve_order = true", "mldb_ray_preserve_order", True),
    ("SET mldb_ray_preserve_order = 'on'", "mldb_ray_preserve_order", True),
    ("set MLDB_EXECUTOR = 'LOCAL'", "mldb_executor", "local"),
    ("SET mldb_executor = local", "mldb_executor", "local"),
])
def test_set_show_and_reset_round_trip(sql, name, value):
    with mldb.connect(":memory:") as con:
        con.execute(sql)
        assert _show(con, name)[0] == [(value,)]
        con.execute(f"RESET {name}")
        assert _show(con, name)[0] == [(DEFAULTS[name][0],)]
        con.execute(sql)
        con.execute(f"SET {name} = DEFAULT")
        assert _show(con, name)[0] == [(DEFAULTS[name][0],)]


def test_settings_are_per_session(tmp_path):
    path = str(tmp_path / "two.db")
    with mldb.connect(path) as a, mldb.connect(path) as b:
        a.execute("SET mldb_ray_workers = 3")
        assert _show(a, "mldb_ray_workers")[0] == [(3,)]
        assert _show(b, "mldb_ray_workers")[0] == [(None,)]


@pytest.mark.parametrize("sql, expected", [
    ("SET mldb_executor = 'spark'", "must be 'local', 'ray' or 'ray://host:port'; found 'spark'"),
    ("SET mldb_executor = 'ray://head'", "must be 'local', 'ray' or 'ray://host:port'; found 'ray://head'"),
    ("SET mldb_executor = 3", "must be 'local', 'ray' or 'ray://host:port'; found 3"),
    ("SET mldb_ray_workers = 0", "mldb_ray_workers must be an integer in [1, 100000]; found 0"),
    ("SET mldb_ray_workers = 'many'", "must be an integer in [1, 100000]; found 'many'"),
    ("SET mldb_ray_cpus_per_worker = 1.5", "must be an integer in [1, 1024]; found 1.5"),
    ("SET mldb_ray_batch_rows = -1", "must be an integer in [1, 2147483647]; found -1"),
    ("SET mldb_ray_retries = -1", "must be an integer in [0, 1000]; found -1"),
    ("SET mldb_ray_preserve_order = 'sometimes'", "must be true or false; found 'sometimes'"),
])
def test_a_bad_value_is_22023_with_the_accepted_forms_and_changes_nothing(sql, expected):
    with mldb.connect(":memory:") as con:
        name = sql.split()[1]
        error = _error(con, sql)
        assert error.sqlstate == "22023"
        assert expected in str(error)
        assert _show(con, name)[0] == [(DEFAULTS[name][0],)]


@pytest.mark.parametrize("value", ["ray", "ray://head.example:10001"])
def test_choosing_ray_without_the_ray_package_is_0A000(value, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed, also where it is (the ray venv / CI)
    with mldb.connect(":memory:") as con:
        error = _error(con, f"SET mldb_executor = '{value}'")
        assert isinstance(error, mldb.NotSupportedError)
        assert error.sqlstate == "0A000"
        assert f"SET mldb_executor = '{value}' needs the ray package: pip install 'mldb[ray]'" in str(error)
        assert _show(con, "mldb_executor")[0] == [("local",)]


def test_set_global_of_an_mldb_setting_is_refused():
    with mldb.connect(":memory:") as con:
        error = _error(con, "SET GLOBAL mldb_ray_workers = 2")
        assert error.sqlstate == "0A000" and "per session" in str(error)
        assert _show(con, "mldb_ray_workers")[0] == [(None,)]


def test_other_settings_still_go_to_duckdb():
    with mldb.connect(":memory:") as con:
        con.execute("SET threads = 1")
        assert _show(con, "threads")[0] == [(1,)]
        con.execute("RESET threads")
        assert _show(con, "threads")[0] != [(1,)] or os.cpu_count() == 1
        assert "unrecognized configuration parameter" in str(_error(con, "SET no_such_setting = 1"))


@pytest.mark.parametrize("sql, node, back", [
    ("SET mldb_executor = 'ray'", SetSetting, "SET mldb_executor = 'ray'"),
    ("SET mldb_ray_workers TO 4", SetSetting, "SET mldb_ray_workers = 4"),
    ("SET mldb_ray_preserve_order = DEFAULT", SetSetting, "SET mldb_ray_preserve_order = DEFAULT"),
    ("RESET mldb_executor", ResetSetting, "RESET mldb_executor"),
    ("SHOW mldb_ray_batch_rows", ShowSetting, "SHOW mldb_ray_batch_rows"),
])
def test_grammar_round_trips(sql, node, back):
    from mldb.frontend.dialect import MLDB

    tree = parse(split_statements(sql)[0])
    assert isinstance(tree, node)
    assert tree.sql(dialect=MLDB) == back
    assert parse(split_statements(back)[0]) == tree


def test_setting_the_executor_moves_the_catalog_version():
    with mldb.connect(":memory:") as con:
        before = con.session.database.catalog_version.value
        con.execute("SET mldb_ray_workers = 2")
        assert con.session.database.catalog_version.value != before


# -- wire clients --------------------------------------------------------------------------------
def test_a_wire_client_may_not_choose_ray_unless_the_server_allows_admin(tmp_path):
    plain = start_server(tmp_path)
    try:
        with psycopg.connect(plain.dsn(), autocommit=True) as client:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
                client.execute("SET mldb_executor = 'ray'")
            assert "--allow-admin" in str(caught.value)
            client.execute("SET mldb_executor = 'local'")
            client.execute("SET mldb_ray_workers = 2")
            assert client.execute("SHOW mldb_ray_workers").fetchall() == [(2,)]
            assert client.execute("SHOW mldb_executor").fetchall() == [("local",)]
    finally:
        plain.stop()
    admin = start_server(tmp_path, "--allow-admin", database="admin.db")
    try:
        with psycopg.connect(admin.dsn(), autocommit=True) as client:
            if importlib.util.find_spec("ray") is not None:  # admitted: ray chosen where it is installed
                client.execute("SET mldb_executor = 'ray'")
                assert client.execute("SHOW mldb_executor").fetchall() == [("ray",)]
            else:  # admitted: then ray is missing
                with pytest.raises(psycopg.errors.FeatureNotSupported) as caught:
                    client.execute("SET mldb_executor = 'ray'")
                assert "needs the ray package" in str(caught.value)
    finally:
        admin.stop()


# -- qualify: what goes out -----------------------------------------------------------------------
def _planned(con, sql, params=None):
    """The statement planned as the session plans it (every rule, the scale-out rule last)."""
    planner = Planner(con.session, params, 1)
    rewrite(parse(split_statements(sql)[0]), planner)
    return planner.scaleout


def _ev(files, name="*.parquet"):
    return f"{files}/ev/{name}"


def test_the_default_executor_looks_at_nothing(con, files):
    assert _planned(con, f"SELECT PREDICT(churn) FROM read_parquet('{_ev(files)}')") is None


@pytest.mark.parametrize("query, kind", [
    ("SELECT id, PREDICT(churn) AS p FROM read_parquet('{ev}') WHERE kind = 'a'", "rows"),
    ("SELECT id, PREDICT_PROBA(churn) FROM parquet_scan('{ev}')", "rows"),
    ("SELECT * FROM PREDICT(churn, (SELECT * FROM '{ev}' WHERE a > 1))", "rows"),
    ("SELECT id, PREDICT(churn) FROM read_parquet('{ev}') LIMIT 5", "rows"),
    ("SELECT count(*), avg(PREDICT(churn)::INT) FROM read_parquet('{ev}')", "partials"),
    ("COPY (SELECT id, PREDICT(churn) AS p FROM read_parquet('{ev}')) TO '{out}' (FORMAT parquet)", "copy"),
    ("COPY (SELECT id, PREDICT(churn) AS p FROM read_parquet('{ev}')) TO '{out}.parquet'", "copy"),
    ("SELECT id, upper(kind), a + 1 FROM (SELECT * FROM (SELECT * FROM read_parquet('{ev}')) WHERE a > 2)", "rows"),
])
def test_shapes_that_go_out(ray_session, files, tmp_path, query, kind):
    found = _planned(ray_session, query.format(ev=_ev(files), out=tmp_path / "scored"))
    assert isinstance(found, plan.Shape), found
    assert found.kind == kind
    assert found.scan.reader == "parquet"
    assert found.scan.files == tuple(str(files / "ev" / f"e{i}.parquet") for i in (1, 2, 3, 4))
    fragment = plan.piece_sql(found)
    assert plan.PIECE in fragment and "ev/" not in fragment
    if "PREDICT" in query:
        assert found.models == ("churn@1",)
    assert found.limit == (5 if "LIMIT" in query else None)
    assert found.target == (None if kind != "copy" else query.format(ev="", out=tmp_path / "scored").split("'")[-2])


def test_a_fragment_over_one_file_gives_that_files_rows(ray_session, files):
    """The per-piece fragment, run over a view of one file, returns what the whole query returns for it."""
    query = f"SELECT id, PREDICT(churn) AS p, a * 2 AS b FROM read_parquet('{_ev(files)}') WHERE kind = 'a'"
    shape = _planned(ray_session, query)
    pieces = []
    for path in shape.scan.files:
        ray_session.execute(f"CREATE OR REPLACE TEMP VIEW {plan.PIECE} AS SELECT * FROM read_parquet('{path}')")
        pieces += ray_session.execute(plan.piece_sql(shape)).fetchall()
    ray_session.session.mldb_settings.clear()
    assert sorted(pieces) == sorted(ray_session.execute(query).fetchall())
    assert len(pieces) == 100 + 16  # kind 'a': ids 0..299 with i % 3 = 0 in e1, 402..447 in e4


def test_files_come_from_duckdbs_glob_in_order_for_lists_and_parameters(ray_session, files, monkeypatch):
    first, second = str(files / "ev" / "e3.parquet"), str(files / "ev" / "e1.parquet")
    shape = _planned(ray_session, f"SELECT PREDICT(churn) FROM read_parquet(['{first}', '{_ev(files, 'e[12]*')}'])")
    assert shape.scan.files == (first, second, str(files / "ev" / "e2.parquet"))
    shape = _planned(ray_session, "SELECT PREDICT(churn) FROM read_parquet($1)", [_ev(files)])
    assert len(shape.scan.files) == 4
    shape = _planned(ray_session, "SELECT PREDICT(churn) FROM read_parquet(?)", [[first]])
    assert shape.scan.files == (first,)
    monkeypatch.chdir(files)
    shape = _planned(ray_session, "SELECT PREDICT(churn) FROM 'ev/e1.parquet'")
    assert shape.scan.files == (second,)


def test_a_loaded_udf_goes_out_with_its_name(ray_session, files, tmp_path):
    source = tmp_path / "udfs.py"
    source.write_text("import pyarrow.compute as pc\nimport mldb\n\n"
                      "@mldb.udf(params=['INTEGER'], returns='BIGINT')\ndef double_it(a):\n    return pc.multiply(a, 2)\n")
    ray_session.execute(f"LOAD UDFS FROM '{source}'")
    shape = _planned(ray_session, f"SELECT id, double_it(a), PREDICT(churn) FROM read_parquet('{_ev(files)}')")
    assert isinstance(shape, plan.Shape), shape
    assert shape.udfs == ("double_it",) and shape.models == ("churn@1",)


def test_csv_scans_keep_their_options(ray_session, files):
    shape = _planned(ray_session, f"SELECT id, PREDICT(churn) FROM read_csv('{files}/csv/*.csv', header = true, "
                                  "delim = ',')")
    assert shape.scan.reader == "csv"
    assert shape.scan.options == ("header = TRUE", "delim = ','")
    assert len(shape.scan.files) == 2


@pytest.mark.parametrize("query, reason", [
    ("SELECT PREDICT(churn) FROM read_parquet('{ev}') e JOIN train t ON e.a = t.a", "the query joins"),
    ("SELECT id, PREDICT(churn) AS p FROM read_parquet('{ev}') ORDER BY id", ("ORDER BY needs all rows (only "
     "LIMIT goes out)")),
    ("SELECT DISTINCT PREDICT(churn) FROM read_parquet('{ev}')", "DISTINCT needs all rows"),
    ("SELECT PREDICT(churn) FROM read_parquet('{ev}') LIMIT 5 OFFSET 2", "OFFSET needs all rows"),
    ("SELECT count(DISTINCT kind), count(*) FROM read_parquet('{ev}')", ("count(DISTINCT ...) cannot be combined "
     "from partials")),
    ("SELECT median(a) FROM read_parquet('{ev}')", "median(...) cannot be combined from partials"),
    ("SELECT kind, count(*) FROM read_parquet('{ev}') GROUP BY kind", "GROUP BY with aggregates runs here"),
    ("SELECT PREDICT(churn) FROM read_parquet('{ev}', union_by_name = true)", ("read_parquet(..., union_by_name = "
     "true)")),
    ("SELECT PREDICT(churn) FROM read_parquet('s3://bucket/ev/*.parquet')", ("'s3://bucket/ev/*.parquet' is not a "
     "local or shared path")),
    ("SELECT twice(a), PREDICT(churn) FROM read_parquet('{ev}')", ("it calls the macro twice, defined in this "
     "database only")),
    ("SELECT PREDICT(churn) FROM train", "it reads the table train of this database"),
    ("WITH e AS (SELECT * FROM read_parquet('{ev}')) SELECT PREDICT(churn) FROM e", "WITH clause"),
    ("SELECT PREDICT(churn) FROM read_parquet('{ev}') UNION ALL SELECT PREDICT(churn) FROM train",
     "runs here (only SELECT and COPY"),
    ("SELECT PREDICT(churn) FROM read_parquet('{ev}') WHERE a IN (SELECT a FROM train)", "the table train"),
    ("SELECT p FROM (SELECT PREDICT(churn) AS p FROM read_parquet('{ev}') LIMIT 3)", ("LIMIT in a subquery needs "
     "all rows")),
    ("SELECT PREDICT(churn), row_number() OVER () FROM read_parquet('{ev}')", "a window function needs all rows"),
    ("SELECT PREDICT(churn) FROM read_parquet('{files}/none/*.parquet')", "no file matches"),
    ("SELECT * FROM EXPLAIN_PREDICT(churn, (SELECT * FROM read_parquet('{ev}')))", "EXPLAIN_PREDICT / EVALUATE"),
    ("CREATE TABLE scored AS SELECT PREDICT(churn) FROM read_parquet('{ev}')", "CREATE TABLE AS runs here"),
    ("COPY (SELECT PREDICT(churn) FROM read_parquet('{ev}')) TO '{files}/o.csv' (FORMAT csv)",
     "(FORMAT csv) runs here (only FORMAT parquet goes out)"),
    ("COPY (SELECT count(*), sum(PREDICT(churn)::INT) FROM read_parquet('{ev}')) TO '{files}/o' (FORMAT parquet)",
     "COPY of an aggregate runs here"),
    ("SELECT nextval('s'), PREDICT(churn) FROM read_parquet('{ev}')", "it calls nextval()"),
])
def test_shapes_that_stay_here_say_why(ray_session, files, query, reason):
    found = _planned(ray_session, query.format(ev=_ev(files), files=files))
    assert isinstance(found, str), found
    assert reason in found


# -- split_aggregates: the combine gives the local numbers ----------------------------------------
AGGREGATES = ("count(*), count(x), sum(x), min(x), max(x), avg(x), sum(d), avg(d), min(s), max(kind), "
              "count(*) * 2 + 1, sum(a), avg(a), avg(PREDICT(churn)::INT), count(PREDICT(churn))")


def _combined(con, shape, params=None):
    """Every piece's partial row (the fragment over a view of one file), then the combine over them."""
    con.execute("DROP TABLE IF EXISTS __mldb_partials")
    for index, path in enumerate(shape.scan.files):
        con.execute(f"CREATE OR REPLACE TEMP VIEW {plan.PIECE} AS SELECT * FROM read_parquet('{path}')")
        fragment, bound = template.plain(shape.fragment, params)
        verb = "CREATE TEMP TABLE __mldb_partials AS" if index == 0 else "INSERT INTO __mldb_partials"
        con.execute(f"{verb} {fragment}", bound)
    assert con.execute("SELECT count(*) FROM __mldb_partials").fetchall() == [(len(shape.scan.files),)]
    cursor = con.execute(template.plain(shape.combine, params)[0])
    return cursor.fetchall(), [(column[0], str(column[1])) for column in cursor.description]


@pytest.mark.parametrize("where", ["", "WHERE kind <> 'z'", "WHERE a > 100", "WHERE x IS NULL"])
def test_partials_combine_to_the_local_numbers(ray_session, files, where):
    query = f"SELECT {AGGREGATES} FROM read_parquet('{_ev(files)}') {where}"
    shape = _planned(ray_session, query)
    assert isinstance(shape, plan.Shape) and shape.kind == "partials", shape
    combined, types = _combined(ray_session, shape)
    ray_session.session.mldb_settings.clear()
    local = ray_session.execute(query)
    expected, local_types = local.fetchall(), [(column[0], str(column[1])) for column in local.description]
    assert types == local_types
    for got, want in zip(combined[0], expected[0]):
        if isinstance(want, float):
            assert math.isclose(got, want, rel_tol=1e-12), (got, want)
        else:
            assert got == want


def test_an_input_filtered_away_combines_to_zero_counts_and_null_sums(ray_session, files):
    shape = _planned(ray_session, f"SELECT count(*), sum(a), avg(d), min(s) FROM read_parquet('{_ev(files)}') "
                                  "WHERE a > 100")
    assert _combined(ray_session, shape) == ([(0, None, None, None)], [
        ("count_star()", "BIGINT"), ("sum(a)", "HUGEINT"), ("avg(d)", "DOUBLE"), ("min(s)", "VARCHAR")])


def test_split_aggregates_shows_its_partial_and_combine_queries(ray_session, files):
    shape = _planned(ray_session, f"SELECT count(*) * 2, avg(d) FROM read_parquet('{_ev(files)}') WHERE a > 1")
    assert plan.piece_sql(shape) == ("SELECT COUNT(*) AS __p0, SUM(d) AS __p1, COUNT(d) AS __p2 FROM __mldb_piece "
                                     "WHERE a > 1")
    assert template.plain(shape.combine, None)[0] == (
        "SELECT CAST(SUM(__p0) AS BIGINT) * 2 AS \"(count_star() * 2)\", CAST(CAST(SUM(__p1) AS DOUBLE) / "
        "SUM(__p2) AS DOUBLE) AS \"avg(d)\" FROM __mldb_partials")
    assert shape.aggregates == ("count(*)", "avg")


# -- EXPLAIN ---------------------------------------------------------------------------------------
def _notes(con, sql):
    return [row[1] for row in con.execute(f"EXPLAIN {sql}").fetchall() if row[0] == "mldb_rewrite"]


def test_explain_under_the_default_executor_is_unchanged(con, files):
    notes = _notes(con, f"SELECT PREDICT(churn) FROM read_parquet('{_ev(files)}')")
    assert notes[-1] == "executor: local (this process)"
    assert not any("scale-out" in note for note in notes)
    assert _notes(con, f"SELECT count(*) FROM read_parquet('{_ev(files)}')") == []  # plain: DuckDB's plan only


def test_explain_says_where_a_statement_goes_out(ray_session, files, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_session.execute("SET mldb_ray_workers = 2")
    notes = _notes(ray_session, f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{_ev(files)}')")
    ray_session.execute("RESET mldb_ray_workers")
    assert notes[-2].startswith(f"scale-out: 4 files of READ_PARQUET('{_ev(files)}') (")
    assert ("one piece per file -> Ray Data actor pool, 2 workers x 1 CPU, each runs DuckDB + mldb on its files; "
            "models shipped: churn@1; rows streamed back in Arrow batches of 65,536; row order not preserved"
            ) in notes[-2]
    assert notes[-1] == "executor: ray (local cluster of this process, not connected yet)"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    notes = _notes(ray_session, f"SELECT count(*), sum(a) FROM read_parquet('{_ev(files)}')")  # (no mldb words)
    assert notes[-2].endswith("partial aggregates count(*), sum per file, combined here by DuckDB")
    assert notes[-1] == "executor: ray at 10.0.0.5:6379 (RAY_ADDRESS), not connected yet"


def test_explain_of_copy_names_the_directory(ray_session, files, tmp_path):
    notes = _notes(ray_session, f"COPY (SELECT id, PREDICT(churn) AS p FROM '{_ev(files)}') TO '{tmp_path}/scored' "
                                "(FORMAT parquet)")
    assert notes[-2].endswith(f"COPY writes up to 4 parquet files into directory '{tmp_path}/scored' (staged in "
                              "'.scored.mldb-<id>', committed by rename)")
    assert not os.path.exists(tmp_path / "scored")


def test_explain_says_why_a_statement_stays_here(ray_session, files):
    notes = _notes(ray_session, f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{_ev(files)}') ORDER BY id")
    assert notes[-1] == ("executor: local (this process): mldb_executor is 'ray', but ORDER BY needs all rows "
                         "(only LIMIT goes out)")
    notes = _notes(ray_session, f"SELECT count(DISTINCT a) FROM read_parquet('{_ev(files)}')")
    assert notes == [("executor: local (this process): mldb_executor is 'ray', but count(DISTINCT ...) cannot be "
                     "combined from partials")]
    notes = _notes(ray_session, f"ANALYZE SELECT PREDICT(churn) FROM read_parquet('{_ev(files)}')")
    assert notes[-1] == ("executor: local (this process): mldb_executor is 'ray', but EXPLAIN ANALYZE runs the "
                         "statement here")
