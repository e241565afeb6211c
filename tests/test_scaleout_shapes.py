"""Every statement shape the scale-out recognizer accepts runs on Ray and equals the local run (issue 17).

One real database file with a trained model, real Parquet files (rows, an empty file, NULLs, a file
every row of which the filter removes) and real CSV files (a header-only one, empty strings and
NULLs); one Ray runtime for the module. Each statement runs with ``SET mldb_executor = 'ray'`` and
again with ``'local'`` on the same connection; the results must be the same multiset of rows with
the same column names and DuckDB types (floats to 1e-9 relative: partial sums add in another order).
"""

from __future__ import annotations

import math
import os

import pytest

import mldb
from mldb import errors
from mldb.scaleout import driver, executor, plan, worker

pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def db(tmp_path_factory, runtime):
    """(connection, folder): the model ``churn``; parquet files p0 (300 rows), p1 (none), p2 (NULLs),
    p3 (kind 'z' only); csv files c0 (rows, NULLs, empty strings), c1 (a header only), c2 (rows)."""
    folder = tmp_path_factory.mktemp("shapes")
    connection = mldb.connect(str(folder / "s.db"))
    connection.execute("CREATE TABLE t AS SELECT i AS id, (i % 7) * 1.5 AS a, (i % 5) - 2.0 AS b, "
                       "CASE WHEN i % 3 = 0 THEN 'x' ELSE 'y' END AS kind, (i % 7) + (i % 5) > 6 AS churned "
                       "FROM range(420) r(i)")
    connection.execute("CREATE MODEL churn PREDICT churned FROM (SELECT a, b, kind, churned FROM t) USING logistic "
                       "WITH (epochs = 3, seed = 1)")
    data = folder / "data"
    data.mkdir()
    copies = {"p0": "SELECT id, a, b, kind FROM t WHERE id < 300",
              "p1": "SELECT id, a, b, kind FROM t WHERE false",
              "p2": "SELECT id, CASE WHEN id % 2 = 0 THEN NULL ELSE a END AS a, CASE WHEN id % 3 = 0 THEN NULL "
                    "ELSE b END AS b, CASE WHEN id % 4 = 0 THEN NULL ELSE kind END AS kind FROM t "
                    "WHERE id >= 350 AND id < 400",
              "p3": "SELECT id, a, b, 'z' AS kind FROM t WHERE id >= 400"}
    for name, query in copies.items():
        connection.execute(f"COPY ({query}) TO '{data}/{name}.parquet' (FORMAT parquet)")
    csv = folder / "csv"
    csv.mkdir()
    (csv / "c0.csv").write_text('id;name;v\n1;a;1.5\n2;;2.5\n3;"";\n4;"q;r";4\n')
    (csv / "c1.csv").write_text("id;name;v\n")
    (csv / "c2.csv").write_text("id;name;v\n5;zz;7\n6;NA;\n")
    yield connection, folder
    connection.close()


def _both(connection, statement: str, params=None):
    """(ray result, local result): each (rows, [(name, type)]), and the Ray job's Outcome."""
    connection.execute("SET mldb_ray_workers = 1")
    connection.execute("SET mldb_executor = 'ray'")
    try:
        cursor = connection.execute(statement, params)
        outcome = cursor._result.scaleout
        out = (cursor.fetchall(), _columns(cursor))
    finally:
        connection.execute("RESET mldb_executor")
        connection.execute("RESET mldb_ray_workers")
    cursor = connection.execute(statement, params)
    local = (cursor.fetchall(), _columns(cursor))
    return out, local, outcome


def _columns(cursor):
    return [(column[0], str(column[1])) for column in cursor.description]


def _same(out, local) -> None:
    assert out[1] == local[1]
    assert len(out[0]) == len(local[0])
    for got, want in zip(sorted(out[0], key=repr), sorted(local[0], key=repr)):
        assert len(got) == len(want)
        for left, right in zip(got, want):
            if isinstance(left, float) and isinstance(right, float):
                assert math.isclose(left, right, rel_tol=1e-9)
            else:
                assert left == right


def _check(connection, statement, params=None, pieces=4):
    out, local, outcome = _both(connection, statement, params)
    assert outcome is not None  # it went out
    assert sorted(report["piece"] for report in outcome.reports) == list(range(pieces))
    _same(out, local)
    return out, local


def test_predict_and_predict_proba_with_a_parameter_in_where(db):
    connection, folder = db
    out, _ = _check(connection, "SELECT id, kind, PREDICT(churn) AS p, PREDICT_PROBA(churn) AS pp "
                    "FROM read_parquet(?) WHERE kind <> ?", [f"{folder}/data/*.parquet", "x"])
    assert len(out[0]) > 150 and {row[1] for row in out[0]} == {"y", "z"}
    assert out[1][2:] == [("p", "BOOLEAN"), ("pp", "MAP(VARCHAR, DOUBLE)")]


def test_table_form(db):
    connection, folder = db
    out, _ = _check(connection, f"SELECT * FROM PREDICT(churn, (SELECT id, a, b, kind FROM "
                    f"read_parquet('{folder}/data/*.parquet') WHERE b > -1))")
    assert len(out[0]) > 100 and [name for name, _ in out[1]][-2:] == ["prediction", "probability"]


def test_read_csv_with_options_reads_each_file_as_the_glob(db):
    connection, folder = db
    out, local = _check(connection, f"SELECT id, name, v FROM read_csv('{folder}/csv/*.csv', delim = ';', "
                        "nullstr = 'NA')", pieces=3)
    assert ("name", "VARCHAR") in out[1] and len(out[0]) == 6
    names = {row[0]: row[1] for row in local[0]}
    assert names[2] == names[3] == "" and names[4] == "q;r"  # with nullstr given, an empty field is ''
    assert names[6] is None  # the user's NULL string


AGGREGATES = ("count(*) AS n, count(a) AS na, sum(id) AS s, sum(a) AS sa, min(kind) AS lo, max(a) AS hi, "
              "avg(b) AS mean, avg(PREDICT(churn)::INT) AS rate, count(*) * 2 AS twice")


def test_every_aggregate_over_a_quoted_glob_combines_to_the_local_values(db):
    connection, folder = db
    out, local = _check(connection, f"SELECT {AGGREGATES} FROM '{folder}/data/*.parquet' WHERE kind <> 'z'")
    assert len(out[0]) == 1 and local[0][0][0] == 300 + 38  # p3 (kind 'z') is filtered away, NULL kinds too
    assert [kind for _, kind in out[1]] == ["BIGINT", "BIGINT", "HUGEINT", "DECIMAL(38,1)", "VARCHAR",
                                            "DECIMAL(21,1)", "DOUBLE", "DOUBLE", "BIGINT"]


def test_aggregates_of_no_rows_at_all(db):
    connection, folder = db
    out, _ = _check(connection, f"SELECT {AGGREGATES} FROM read_parquet('{folder}/data/*.parquet') WHERE id < 0")
    assert out[0] == [(0, 0, None, None, None, None, None, None, 0)]


def test_aggregates_over_sniffed_csv_with_a_header_only_file(db):
    connection, folder = db
    out, _ = _check(connection, f"SELECT count(*) AS n, count(name) AS names, sum(v) AS total, min(name) AS first "
                    f"FROM read_csv_auto('{folder}/csv/*.csv')", pieces=3)
    assert out[0][0][0] == 6


def test_a_limit_gives_that_many_of_the_local_rows_and_cpus_per_worker_are_duckdb_threads(db):
    connection, folder = db
    statement = (f"SELECT id, PREDICT(churn) AS p, current_setting('threads') AS threads "
                 f"FROM read_parquet('{folder}/data/*.parquet') LIMIT 9")
    connection.execute("SET mldb_ray_cpus_per_worker = 2")
    try:
        out, local, outcome = _both(connection, statement)
    finally:
        connection.execute("RESET mldb_ray_cpus_per_worker")
    assert outcome is not None and len(out[0]) == 9 and out[1] == local[1]
    everything = {row[:2] for row in connection.execute(statement.replace("LIMIT 9", "")).fetchall()}
    assert {row[:2] for row in out[0]} <= everything
    assert {row[2] for row in out[0]} == {2}  # the worker's DuckDB runs 2 threads


def test_copy_writes_a_directory_of_the_local_rows(db):
    connection, folder = db
    query = f"SELECT id, kind, PREDICT(churn) AS p FROM read_parquet('{folder}/data/*.parquet') WHERE kind <> 'x'"
    target = folder / "scored"
    connection.execute("SET mldb_executor = 'ray'")
    try:
        cursor = connection.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet)")
        went_out, rowcount, counted = cursor._result.scaleout is not None, cursor.rowcount, cursor.fetchall()
        with pytest.raises(errors.Error) as again:
            connection.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet)")
    finally:
        connection.execute("RESET mldb_executor")
    local = connection.execute(query).fetchall()
    written = connection.execute(f"SELECT id, kind, p FROM read_parquet('{target}/*.parquet')").fetchall()
    assert went_out and again.value.sqlstate == "42P07"
    assert sorted(written, key=repr) == sorted(local, key=repr)
    local_copy = connection.execute(f"COPY ({query}) TO '{folder / 'local.parquet'}' (FORMAT parquet)")
    assert (rowcount, counted) == (local_copy.rowcount, local_copy.fetchall()) == (len(local), [(len(local),)])
    # the empty file p1 writes nothing; p0, p2 and p3 (kind 'z' only) have rows
    assert sorted(os.listdir(target)) == ["data_00000.parquet", "data_00002.parquet", "data_00003.parquet"]
    assert not [name for name in os.listdir(folder) if name.startswith(".scored.mldb-")]


def test_a_copy_of_no_rows_writes_one_empty_file_with_the_schema(db):
    connection, folder = db
    target = folder / "nothing"
    connection.execute("SET mldb_executor = 'ray'")
    try:
        cursor = connection.execute(f"COPY (SELECT id, kind FROM read_parquet('{folder}/data/*.parquet') WHERE id < 0) "
                                    f"TO '{target}' (FORMAT parquet)")
        assert cursor._result.scaleout is not None and cursor.fetchall() == [(0,)]
    finally:
        connection.execute("RESET mldb_executor")
    assert os.listdir(target) == ["data_00000.parquet"]
    read = connection.execute(f"SELECT * FROM read_parquet('{target}/*.parquet')")
    assert read.fetchall() == [] and _columns(read) == [("id", "BIGINT"), ("kind", "VARCHAR")]


def test_a_failed_copy_leaves_no_directory(db):
    connection, folder = db
    target = folder / "broken"
    connection.execute("SET mldb_executor = 'ray'")
    try:
        with pytest.raises(errors.DataError):
            connection.execute(f"COPY (SELECT id, CAST(kind AS INTEGER) AS k FROM "
                               f"read_parquet('{folder}/data/*.parquet')) TO '{target}' (FORMAT parquet)")
    finally:
        connection.execute("RESET mldb_executor")
    assert not target.exists()
    assert not [name for name in os.listdir(folder) if name.startswith(".broken.mldb-")]


def test_the_settings_make_the_request():
    chosen = executor.request_settings({"mldb_executor": "ray", "mldb_ray_workers": 3, "mldb_ray_cpus_per_worker": 2,
                                        "mldb_ray_batch_rows": 10, "mldb_ray_retries": 0,
                                        "mldb_ray_preserve_order": True})
    assert chosen == {"workers": 3, "cpus_per_worker": 2, "batch_rows": 10, "retries": 0, "preserve_order": True}


def test_the_workers_run_the_planned_model_version(db):
    connection, folder = db
    connection.execute("CREATE MODEL pinned PREDICT churned FROM (SELECT a, b, kind, churned FROM t) USING logistic "
                       "WITH (epochs = 1, seed = 1)")
    connection.execute("TRAIN pinned")
    deployed = connection.execute("SELECT deployed_version FROM mldb.models WHERE name = 'pinned'").fetchall()[0][0]
    other = 1 if deployed != 1 else 2
    catalog = executor.shipped_catalog(connection._session, [f"pinned@{other}"])
    shipped = worker.from_ipc(catalog["mldb.models"])
    assert shipped.column("deployed_version").to_pylist() == [other]
    request = executor.Request(fragment="SELECT id, PREDICT(pinned) AS p FROM __mldb_piece", files=[
        f"{folder}/data/p0.parquet"], models=[f"pinned@{other}"], workers=1)
    rows = [tuple(row.values()) for table in executor.execute(connection._session, request).tables
            for row in table.to_pylist()]
    local = connection.execute(f"SELECT id, PREDICT('pinned@{other}') AS p FROM "
                               f"read_parquet('{folder}/data/p0.parquet')").fetchall()
    assert sorted(rows) == sorted(local)


def test_the_fragment_is_built_for_every_shape(db):
    """From the statement as written: the table form, COPY's query, a partial query; ``?`` marks
    numbered, the scan's own parameter dropped, a repeated one kept once."""
    from mldb.frontend import parse, split_statements

    _, folder = db
    pattern = f"{folder}/data/*.parquet"
    cases = [("rows", f"SELECT * FROM PREDICT(churn, (SELECT id, a, b, kind FROM read_parquet('{pattern}') WHERE a > ?))",
              [1.0],
              "SELECT * FROM PREDICT(churn, (SELECT id, a, b, kind FROM __mldb_piece WHERE a > $1))", [1.0]),
             ("copy", f"COPY (SELECT id FROM '{pattern}' WHERE b > ?) TO 'x' (FORMAT parquet)", [1.0],
              "SELECT id FROM __mldb_piece WHERE b > $1", [1.0]),
             ("partials", "SELECT count(*) * 2, avg(a * ?) FROM read_parquet(?) WHERE b > ?", [1.0, pattern, 3.0],
              "SELECT COUNT(*) AS __p0, SUM(a * $1) AS __p1, COUNT(a * $1) AS __p2 FROM __mldb_piece WHERE b > $2",
              [1.0, 3.0])]
    for kind, statement, given, fragment, params in cases:
        tree = parse(split_statements(statement)[0])
        assert driver.fragment_of(plan.Shape(kind, None, None), tree, given) == (fragment, params)
