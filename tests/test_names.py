"""Column names and error positions as the user wrote the SQL (SPEC section 9).

An unaliased ``PREDICT(m)`` / ``EMBED(x)`` column is named as DuckDB names the text the user
wrote (``PREDICT(m)``, ``(PREDICT(m) = y)``, ``CAST(PREDICT(m) AS INTEGER)``), never after
mldb's internal function; errors point into the statement as written, through DB-API,
psql against a real ``mldb serve`` and the CLI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import duckdb
import psycopg
import pytest

import mldb
from conftest_server import server  # noqa: F401 - the fixture

PSQL = shutil.which("psql")
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "mldb")
CLI = [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "mldb.cli"]

TABLE = ("CREATE TABLE t AS SELECT i AS x, (i % 7)::DOUBLE AS z, i % 2 = 0 AS y, 'doc ' || i AS body "
         "FROM range(60) r(i)")
MODEL = "CREATE MODEL m PREDICT y FROM (SELECT x, z, y FROM t) USING logistic WITH (epochs = 2, seed = 1)"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A database file with table t and a trained model m (features x, z; target y)."""
    path = str(tmp_path_factory.mktemp("names") / "shop.db")
    con = mldb.connect(path)
    con.execute(TABLE)
    con.execute(MODEL)
    yield path, con
    con.close()


def names(con, sql: str) -> list[str]:
    return [column[0] for column in con.execute(sql).description]


# -- column names -----------------------------------------------------------------------------------

@pytest.mark.parametrize("sql, expected", [
    ("SELECT PREDICT(m) FROM t", ["PREDICT(m)"]),
    ("select predict(m) from t", ["predict(m)"]),
    ("SELECT PREDICT('m', x, z) FROM t", ["PREDICT('m', x, z)"]),
    ("SELECT PREDICT('m@1') FROM t", ["PREDICT('m@1')"]),
    ("SELECT Predict( m ) FROM t", ["Predict(m)"]),
    ("SELECT PREDICT_PROBA(m) FROM t", ["PREDICT_PROBA(m)"]),
    ("SELECT PREDICT_PROBA(m)['true'] FROM t", ["PREDICT_PROBA(m)['true']"]),
    ("SELECT PREDICT(m) = y FROM t", ["(PREDICT(m) = y)"]),
    ("SELECT CAST(PREDICT(m) AS INT) FROM t", ["CAST(PREDICT(m) AS INTEGER)"]),
    ("SELECT PREDICT(m)::int FROM t", ["CAST(PREDICT(m) AS INTEGER)"]),
    ("SELECT x, PREDICT(m) AS p FROM t", ["x", "p"]),
    ("SELECT t.x, PREDICT(m), y FROM t", ["x", "PREDICT(m)", "y"]),
    ("SELECT count(*), PREDICT(m) FROM t GROUP BY PREDICT(m)", ["count_star()", "PREDICT(m)"]),
    ("SELECT * FROM (SELECT PREDICT(m) FROM t)", ["PREDICT(m)"]),
    ("SELECT * FROM (SELECT PREDICT(m) FROM t) AS s(p)", ["p"]),
    ("WITH c AS (SELECT PREDICT(m), x FROM t) SELECT * FROM c", ["PREDICT(m)", "x"]),
    ("SELECT PREDICT(m) FROM t UNION ALL SELECT y FROM t", ["PREDICT(m)"]),
    ("SELECT y FROM t UNION ALL SELECT PREDICT(m) FROM t", ["y"]),
    ("SELECT (SELECT PREDICT(m) FROM t LIMIT 1)", ["(SELECT PREDICT(m) FROM t LIMIT 1)"]),
    ("SELECT * FROM PREDICT(m, (SELECT x, z FROM t))", ["x", "z", "prediction", "probability"]),
    ("SELECT * FROM EVALUATE(m, (SELECT x, z, y FROM t))",
     ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "rows"]),
])
def test_unaliased_model_columns_are_named_as_written(shop, sql, expected):
    _, con = shop
    assert names(con, sql) == expected


@pytest.mark.parametrize("expression", [
    "x::VARCHAR", "if(x > 1, 1, 2)", "date_diff('day', DATE '2020-01-01', DATE '2020-02-01')",
    "INTERVAL 1 DAY", "x + 1", "lower(body)", "[x, 2]", "x::text", "'a'", "x BETWEEN 1 AND 2",
])
def test_other_projections_keep_duckdbs_name_in_a_rewritten_statement(shop, expression):
    """sqlglot prints some expressions differently (``x::VARCHAR`` as ``CAST(x AS TEXT)``): in a
    statement mldb rewrites, they still get the name plain DuckDB gives the text."""
    _, con = shop
    plain = duckdb.connect()
    plain.execute(TABLE)
    expected = [column[0] for column in plain.execute(f"SELECT {expression} FROM t").description]
    assert names(con, f"SELECT {expression}, PREDICT(m) FROM t") == [*expected, "PREDICT(m)"]


def test_parameters_are_numbered_in_names_as_duckdb_numbers_them(shop):
    _, con = shop
    plain = duckdb.connect()
    assert [c[0] for c in plain.execute("SELECT ?, lower(?)", [0, "a"]).description] == ["$1", "lower($2)"]
    result = con.execute("SELECT ?, PREDICT(m, ?, ?::DOUBLE) FROM t LIMIT 1", [0, 1, 2.0])
    assert [column[0] for column in result.description] == ["$1", "PREDICT(m, $2, CAST($3 AS DOUBLE))"]


def test_tables_and_views_keep_the_written_names_after_reopen(tmp_path):
    path = str(tmp_path / "v.db")
    con = mldb.connect(path)
    con.execute(TABLE)
    con.execute(MODEL)
    con.execute("CREATE VIEW v AS SELECT x, PREDICT(m), PREDICT(m) = y FROM t")
    con.execute("CREATE TABLE scored AS SELECT x, PREDICT(m) FROM t")
    con.close()
    con = mldb.connect(path)
    assert names(con, "SELECT * FROM v") == ["x", "PREDICT(m)", "(PREDICT(m) = y)"]
    assert names(con, "SELECT * FROM scored") == ["x", "PREDICT(m)"]
    assert con.execute('SELECT count(*) FROM scored WHERE "PREDICT(m)" IS NOT NULL').fetchone() == (60,)
    con.close()


def test_embed_and_vector_search_columns_are_named_as_written(shop):
    _, con = shop
    assert names(con, "SELECT EMBED(body) FROM t LIMIT 2") == ["EMBED(body)"]
    assert names(con, "SELECT EMBED('cheap flights')") == ["EMBED('cheap flights')"]
    assert names(con, "SELECT embed(body, 'all-MiniLM-L6-v2') FROM t LIMIT 1") == ["embed(body, 'all-MiniLM-L6-v2')"]
    con.execute("CREATE OR REPLACE TABLE vecs AS SELECT x AS id, EMBED(body) AS v FROM t")
    con.execute("CREATE INDEX vecs_v ON vecs USING FAISS (v)")
    sql = ("SELECT id, array_cosine_distance(v, EMBED('doc 7')) FROM vecs "
           "ORDER BY array_cosine_distance(v, EMBED('doc 7')) LIMIT 3")
    result = con.execute(sql)
    assert [column[0] for column in result.description] == ["id", "array_cosine_distance(v, EMBED('doc 7'))"]
    rows = result.fetchall()
    assert rows[0][0] == 7 and rows[0][1] == pytest.approx(0.0, abs=1e-5)
    assert names(con, "SELECT * FROM VECTOR_SEARCH(vecs, v, EMBED('doc 7'), 2)") == ["id", "v", "distance"]


# -- errors through DB-API -------------------------------------------------------------------------

def _raised(con, sql: str) -> mldb.Error:
    with pytest.raises(mldb.Error) as caught:
        con.execute(sql).fetchall()
    return caught.value


def _points_at(error: mldb.Error, sql: str, pointed: str) -> None:
    """``position`` and the ``LINE n:`` excerpt's carets both mark ``pointed`` in ``sql``."""
    assert error.position == sql.index(pointed) + 1
    shown, carets = str(error).splitlines()[-2:]
    assert shown[carets.index("^"):].startswith(pointed) and carets.count("^") == len(pointed)


def test_a_typo_next_to_predict_points_into_the_users_text(shop):
    _, con = shop
    sql = "SELECT PREDICT(m), zz FROM t"
    error = _raised(con, sql)
    assert isinstance(error, mldb.ProgrammingError) and error.sqlstate == "42703"
    assert error.position == sql.index("zz") + 1
    assert str(error).endswith("\n\nLINE 1: SELECT PREDICT(m), zz FROM t\n                           ^^")
    assert "mldb_" not in str(error).lower()


@pytest.mark.parametrize("sql, pointed, line", [
    ("SELECT PREDICT('m', x, zz) FROM t", "zz", 1),
    ("SELECT x, PREDICT(m)\nFROM t\nWHERE zz > 1", "zz", 3),
    ("EXPLAIN SELECT PREDICT(m), zz FROM t", "zz", 1),
    ("SELECT PREDICT(m) FROM t JOIN nosuch USING (x)", "nosuch", 1),
    ("SELECT x FROM t WHERE PREDICT(m) = 'abc'::INT", "'abc'::INT", 1),
])
def test_errors_in_rewritten_statements_point_at_what_the_user_wrote(shop, sql, pointed, line):
    _, con = shop
    error = _raised(con, sql)
    _points_at(error, sql, pointed)
    assert f"LINE {line}: " in str(error) and "mldb_" not in str(error).lower()


def test_a_feature_only_predict_reads_is_explained_and_points_at_the_call(shop):
    _, con = shop
    sql = "SELECT x, PREDICT(m) FROM t GROUP BY x"
    error = _raised(con, sql)
    assert error.sqlstate == "42000"
    assert '"z" is a feature that PREDICT(m) reads' in str(error)
    assert error.position == sql.index("PREDICT") + 1
    assert str(error).endswith("LINE 1: SELECT x, PREDICT(m) FROM t GROUP BY x\n                  ^^^^^^^^^^")


def test_internal_function_names_never_reach_the_message(shop):
    _, con = shop
    error = _raised(con, "SELECT PREDICT(m) OVER () FROM t")
    assert str(error).startswith("Catalog Error: PREDICT is not an aggregate function")
    assert "mldb_" not in str(error).lower()


def test_mldbs_own_errors_point_at_the_call(shop):
    _, con = shop
    sql = "SELECT 1;\nSELECT x,\n  PREDICT(m, x) FROM t"
    error = _raised(con, sql)
    assert "takes 2 features" in str(error)
    statement = "SELECT x,\n  PREDICT(m, x) FROM t"  # positions count in the statement that failed
    assert error.position == statement.index("PREDICT") + 1
    assert str(error).endswith("LINE 2:   PREDICT(m, x) FROM t\n          ^^^^^^^^^^^^^")


def test_binder_error_in_an_embed_statement(shop):
    _, con = shop
    sql = "SELECT x, EMBED(bodyy) FROM t"
    error = _raised(con, sql)
    assert isinstance(error, mldb.ProgrammingError) and error.sqlstate == "42703"
    assert error.position == sql.index("bodyy") + 1
    assert "mldb_embed" not in str(error) and "LINE 1: SELECT x, EMBED(bodyy) FROM t" in str(error)
    error = _raised(con, "SELECT EMBED(body, 'no-such-model') FROM t")
    assert error.sqlstate == "42704" and error.position == len("SELECT ") + 1


@pytest.mark.parametrize("sql, pointed", [
    ("CREATE MODEL q PREDICT y FROM nosuch", "nosuch"),
    ("CREATE MODEL q PREDICT y FROM (SELECT x, zz, y FROM t)", "zz"),
    ("TRAIN m FROM (SELECT x, z,\n  yy FROM t)", "yy"),
])
def test_errors_in_the_sql_a_step_runs_point_into_the_statement(shop, sql, pointed):
    """TRAIN and CREATE MODEL run their own SQL around the query the user wrote: the error
    points at the user's text, never at a position in SQL the user never saw."""
    _, con = shop
    versions = con.execute("SELECT count(*) FROM mldb.model_versions").fetchone()
    error = _raised(con, sql)
    _points_at(error, sql, pointed)
    assert sql.splitlines()[-1] in str(error).splitlines()[-2]
    assert con.execute("SELECT count(*) FROM mldb.model_versions").fetchone() == versions


def test_a_failed_create_as_changes_nothing(shop):
    _, con = shop
    error = _raised(con, "CREATE TABLE out AS SELECT PREDICT(m), zz FROM t")
    assert error.position == len("CREATE TABLE out AS SELECT PREDICT(m), ") + 1
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'out'").fetchone() == (0,)


def test_plain_statements_keep_duckdbs_message_and_get_its_position(shop):
    _, con = shop
    sql = "SELECT x,\n  lower(zz) FROM t"
    error = _raised(con, sql)
    plain = duckdb.connect()
    plain.execute(TABLE)
    with pytest.raises(duckdb.Error) as expected:
        plain.execute(sql)
    assert str(error) == str(expected.value)
    assert error.position == sql.index("zz") + 1


def test_mldb_syntax_errors_carry_a_position_and_excerpt(shop):
    _, con = shop
    sql = "CREATE MODEL q\n  PREDICT y FROM t WITH (epochs = )"
    error = _raised(con, sql)
    assert isinstance(error, mldb.ProgrammingError) and error.sqlstate == "42601"
    assert error.position == sql.index(")") + 1
    assert "syntax error at line 2, column" in str(error)
    shown = "LINE 2:   PREDICT y FROM t WITH (epochs = )"
    assert str(error).endswith(f"{shown}\n{' ' * shown.index(')')}^")
    assert con.execute("SELECT count(*) FROM mldb.models WHERE name = 'q'").fetchone() == (0,)


# -- psql against mldb serve, and the CLI ---------------------------------------------------------

@pytest.fixture(scope="module")
def served_model(server):  # noqa: F811
    with psycopg.connect(server.dsn(), autocommit=True) as con:
        con.execute(TABLE.replace("CREATE TABLE", "CREATE OR REPLACE TABLE"))
        con.execute(MODEL.replace("CREATE MODEL", "CREATE OR REPLACE MODEL"))
    return server


def psql(server, *commands: str) -> subprocess.CompletedProcess:  # noqa: F811
    args = [PSQL, "-h", "127.0.0.1", "-p", str(server.port), "-U", "tester", "-d", "shop", "-X", "-A"]
    for command in commands:
        args += ["-c", command]
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PGCONNECT_TIMEOUT": "30"})


def test_psql_header_names_the_column_as_written(served_model):
    done = psql(served_model, "SELECT x, PREDICT(m), CAST(PREDICT(m) AS INT) FROM t WHERE x = 2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "x|PREDICT(m)|CAST(PREDICT(m) AS INTEGER)"
    assert done.stdout.splitlines()[1] == "2|t|1"
    with psycopg.connect(served_model.dsn()) as con:
        cursor = con.execute("SELECT PREDICT(m) = y FROM t LIMIT 1")
        assert [column.name for column in cursor.description] == ["(PREDICT(m) = y)"]


def test_psql_error_points_into_the_users_text(served_model):
    done = psql(served_model, "SELECT PREDICT(m), zz FROM t")
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == 'ERROR:  Binder Error: Referenced column "zz" not found in FROM clause!'
    at = lines.index("LINE 1: SELECT PREDICT(m), zz FROM t")
    assert lines[at + 1] == " " * len("LINE 1: SELECT PREDICT(m), ") + "^"
    assert done.stderr.count("LINE 1") == 1 and "mldb_" not in done.stderr.lower()
    with psycopg.connect(served_model.dsn()) as con:
        with pytest.raises(psycopg.errors.UndefinedColumn) as caught:
            con.execute("SELECT PREDICT('m', x, zz) FROM t")
        assert caught.value.diag.statement_position == str(len("SELECT PREDICT('m', x, ") + 1)


def test_an_error_in_a_later_statement_of_a_query_points_into_the_whole_text(served_model):
    """psql sends a script line as one Query: the caret is under the word in that text."""
    done = psql(served_model, "SELECT 1;  SELECT PREDICT(m), zz FROM t")
    at = done.stderr.splitlines().index("LINE 1: SELECT 1;  SELECT PREDICT(m), zz FROM t")
    assert done.stderr.splitlines()[at + 1] == " " * len("LINE 1: SELECT 1;  SELECT PREDICT(m), ") + "^"
    with psycopg.connect(served_model.dsn(), autocommit=True) as con:
        with pytest.raises(psycopg.errors.UndefinedColumn) as caught:
            con.execute("SELECT 1;\nSELECT x FROM t; SELECT zz FROM t")
        assert caught.value.diag.statement_position == str(len("SELECT 1;\nSELECT x FROM t; SELECT ") + 1)


def test_cli_header_names_the_column_as_written(tmp_path):
    path = str(tmp_path / "cli.db")
    with mldb.connect(path) as con:
        con.execute(TABLE)
        con.execute(MODEL)
    con.close()
    done = subprocess.run([*CLI, path, "-c", "SELECT PREDICT(m), PREDICT(m) = y FROM t LIMIT 1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if "PREDICT" in line)
    assert "PREDICT(m)" in header and "(PREDICT(m) = y)" in header
    assert "mldb_" not in done.stdout.lower()
