"""A statement's own scale-out settings: ``SELECT ... WITH (executor = 'ray', workers = 2)`` (issue 17).

The trailing list overrides the session's settings for that one statement, is checked as SET checks
values (22023), is refused to a wire client as ``SET mldb_executor = 'ray'`` is (42501), and never
lets a plan made under one executor be reused under another. Real parquet files, a real trained model,
a real Ray runtime for the one statement that goes out.
"""

from __future__ import annotations

import psycopg
import pytest
from conftest_server import start_server

import mldb
from mldb.frontend import split_statements
from mldb.frontend.settings import statement_options

pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    """A database with the model ``churn`` and ev/ of 3 parquet files (one empty)."""
    root = tmp_path_factory.mktemp("options")
    (root / "ev").mkdir()
    connection = mldb.connect(str(root / "o.db"))
    rows = "SELECT i AS id, (i % 7)::INTEGER AS a, ['a', 'b'][i % 2 + 1] AS kind FROM range({}, {}) t(i)"
    for name, (low, high) in {"e1": (0, 200), "e2": (200, 200), "e3": (200, 260)}.items():
        connection.execute(f"COPY ({rows.format(low, high)}) TO '{root}/ev/{name}.parquet' (FORMAT parquet)")
    connection.execute(f"CREATE TABLE train AS SELECT a, kind, a > 3 AS y FROM '{root}/ev/e1.parquet'")
    connection.execute("CREATE MODEL churn PREDICT y FROM train USING logistic WITH (epochs = 2, seed = 1)")
    connection.glob = f"{root}/ev/*.parquet"
    yield connection
    connection.close()


def _notes(con, sql, params=None):
    return [row[1] for row in con.execute(f"EXPLAIN {sql}", params).fetchall() if row[0] == "mldb_rewrite"]


@pytest.mark.parametrize("sql, text, settings", [
    ("SELECT 1 FROM read_parquet('x') WITH (executor = 'ray', workers = 2)", "SELECT 1 FROM read_parquet('x')",
     {"mldb_executor": "ray", "mldb_ray_workers": 2}),
    ("COPY (SELECT 1) TO 'd' (FORMAT parquet) WITH (batch_rows = 10, preserve_order = true, retries = 0)",
     "COPY (SELECT 1) TO 'd' (FORMAT parquet)",
     {"mldb_ray_batch_rows": 10, "mldb_ray_preserve_order": True, "mldb_ray_retries": 0}),
    ("FROM 'x.parquet' WITH (cpus_per_worker = 2);", "FROM 'x.parquet'", {"mldb_ray_cpus_per_worker": 2}),
    ("COPY t TO 'f.csv' WITH (FORMAT csv)", "COPY t TO 'f.csv' WITH (FORMAT csv)", {}),  # DuckDB's own list
    ("WITH a AS (SELECT 1) SELECT * FROM a", "WITH a AS (SELECT 1) SELECT * FROM a", {}),  # a CTE, not options
    ("SELECT count(*) FROM t WHERE (a = 1)", "SELECT count(*) FROM t WHERE (a = 1)", {}),
    ("CREATE MODEL m PREDICT y FROM t WITH (epochs = 2)", "CREATE MODEL m PREDICT y FROM t WITH (epochs = 2)", {}),
])
def test_a_trailing_list_is_read_off_queries_and_copies_only(sql, text, settings):
    statement, found = statement_options(split_statements(sql)[0])
    assert (statement.text.strip().rstrip(";"), found) == (text, settings)


@pytest.mark.parametrize("options, expected", [
    ("workers = 0", "option workers must be an integer in [1, 100000]; found 0"),
    ("executor = 'spark'", "option executor must be 'local', 'ray' or 'ray://host:port'; found 'spark'"),
    ("preserve_order = 'sometimes'", "option preserve_order must be true or false"),
    ("threads = 4", "unknown option threads; known: executor, workers, cpus_per_worker, batch_rows, retries"),
])
def test_a_bad_option_is_22023_and_the_session_keeps_its_settings(con, options, expected):
    with pytest.raises(mldb.ProgrammingError) as caught:
        con.execute(f"SELECT count(*) FROM read_parquet('{con.glob}') WITH ({options})")
    assert caught.value.sqlstate == "22023"
    assert expected in str(caught.value)
    assert con.execute("SHOW mldb_executor").fetchall() == [("local",)]


def test_under_the_local_executor_a_statement_can_choose_ray_for_itself(con):
    query = f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{con.glob}') WHERE a > ?"
    notes = _notes(con, f"{query} WITH (executor = 'ray', workers = 2, batch_rows = 1000)", [2])
    assert notes[-2].startswith("scale-out: 3 files of READ_PARQUET(")
    assert "2 workers x 1 CPU" in notes[-2] and "Arrow batches of 1,000" in notes[-2]
    assert notes[-1] == "executor: ray (local cluster of this process, not connected yet)"
    assert _notes(con, query, [2])[-1] == "executor: local (this process)"  # the session's setting is untouched
    assert con.execute("SHOW mldb_ray_workers").fetchall() == [(None,)]


def test_local_options_give_the_local_rows(con):
    query = f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{con.glob}') WHERE a > ? ORDER BY id"
    expected = con.execute(query, [2]).fetchall()
    assert len(expected) > 100
    assert con.execute(f"{query} WITH (executor = 'local', workers = 3)", [2]).fetchall() == expected


def test_a_plan_made_for_one_executor_is_not_reused_by_the_other(runtime, con):
    """Under a Ray session, the statement run once with ``executor = 'local'`` must still go out
    when it comes again without the list (and the other way round)."""
    query = f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{con.glob}') WHERE kind = 'a'"
    expected = sorted(con.execute(query).fetchall())
    con.execute("SET mldb_executor = 'ray'")
    try:
        con.execute("SET mldb_ray_workers = 1")
        for _ in range(2):
            here = con.execute(f"{query} WITH (executor = 'local')")
            assert getattr(here._result, "scaleout", None) is None
            assert sorted(here.fetchall()) == expected
        out = con.execute(query)
        assert out._result.scaleout is not None  # the job's outcome: it ran on Ray
        assert sorted(out.fetchall()) == expected
        assert {report["piece"] for report in out._result.scaleout.reports} == {0, 1, 2}
    finally:
        con.execute("RESET mldb_executor")
        con.execute("RESET mldb_ray_workers")


def test_a_wire_client_may_not_choose_ray_in_a_statement_unless_the_server_allows_admin(tmp_path):
    server = start_server(tmp_path)
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as client:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
                client.execute("SELECT count(*) FROM range(3) WITH (executor = 'ray')")
            assert "--allow-admin" in str(caught.value)
            assert client.execute("SELECT count(*) FROM range(3) WITH (executor = 'local', workers = 2)"
                                  ).fetchall() == [(3,)]
    finally:
        server.stop()
