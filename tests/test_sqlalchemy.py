"""SQLAlchemy 2.x, pandas and jupysql against mldb: the in-process ``mldb://`` dialect and the stock
``postgresql+psycopg`` / ``postgresql+pg8000`` dialects against a real ``mldb serve``; psql's ``\\d+`` and ``\\dt``."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest_server import server  # noqa: F401 - the fixture
from IPython.core.interactiveshell import InteractiveShell
from sqlalchemy.exc import NoSuchTableError

import mldb

os.environ.setdefault("PLOOMBER_STATS_ENABLED", "false")  # jupysql's telemetry: nothing may reach the network

FRAME = pd.DataFrame({"f": [0.1, 0.2, 1e300], "i": [1, 2, 2**40], "s": ["a", "b", None],
                      "d": pd.to_datetime(["2024-01-01 10:00:00", "2024-02-29 00:00:01.5", "1999-12-31 00:00:00"], format="ISO8601"),
                      "b": [True, False, True]})
SCHEMA = """
CREATE TABLE parent (id INTEGER PRIMARY KEY, name VARCHAR UNIQUE);
CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id), score DOUBLE, tag VARCHAR);
CREATE INDEX child_score ON child (score);
"""


def _make_schema(connection) -> None:
    for statement in filter(str.strip, SCHEMA.split(";")):
        connection.execute(sa.text(statement))


def _check_reflection(engine, default_schema_tables: bool = True) -> None:
    inspector = sa.inspect(engine)
    tables = inspector.get_table_names()
    assert {"parent", "child"} <= set(tables)
    assert not {"models", "model_versions", "training_log"} & set(tables)  # mldb's own schema stays apart
    assert inspector.has_table("child") and not inspector.has_table("no_such_table")
    columns = {c["name"]: c for c in inspector.get_columns("child")}
    assert list(columns) == ["id", "parent_id", "score", "tag"]
    assert isinstance(columns["id"]["type"], sa.Integer) and columns["id"]["nullable"] is False
    assert isinstance(columns["score"]["type"], sa.Float) and isinstance(columns["tag"]["type"], sa.String)
    assert inspector.get_pk_constraint("child")["constrained_columns"] == ["id"]
    foreign = inspector.get_foreign_keys("child")
    assert [(f["constrained_columns"], f["referred_table"], f["referred_columns"]) for f in foreign] == \
        [(["parent_id"], "parent", ["id"])]
    assert [(i["name"], i["column_names"], i["unique"]) for i in inspector.get_indexes("child")] == \
        [("child_score", ["score"], False)]
    with pytest.raises(NoSuchTableError):
        inspector.get_columns("no_such_table")


def _check_pandas(engine) -> None:
    FRAME.to_sql("frame", engine, index=False)
    with engine.connect() as connection:
        types = dict(connection.execute(sa.text(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'frame'")).fetchall())
    assert types["f"] == "DOUBLE" and types["i"] == "BIGINT" and types["b"] == "BOOLEAN"
    assert types["d"].startswith("TIMESTAMP")
    back = pd.read_sql_table("frame", engine)
    assert back["f"].tolist() == [0.1, 0.2, 1e300]  # float64 stays float64: 0.1 reads back as 0.1
    assert back["i"].tolist() == [1, 2, 2**40]
    assert back["d"].tolist() == FRAME["d"].tolist()
    assert back["s"].tolist()[:2] == ["a", "b"] and back["s"].isna().tolist() == [False, False, True]
    queried = pd.read_sql(sa.text("SELECT f FROM frame WHERE i = :i"), engine, params={"i": 2})
    assert queried["f"].tolist() == [0.2]
    with pytest.raises(ValueError, match="already exists"):
        FRAME.head(1).to_sql("frame", engine, index=False, if_exists="fail")
    assert len(pd.read_sql_table("frame", engine)) == 3  # nothing changed
    FRAME.head(1).to_sql("frame", engine, index=False, if_exists="append")
    assert len(pd.read_sql_table("frame", engine)) == 4


def _check_orm_serial(engine) -> None:
    """SQLAlchemy's Integer primary key is SERIAL: a sequence and a default, ids from 1."""
    metadata = sa.MetaData()
    items = sa.Table("items", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(30)))
    metadata.create_all(engine)
    with engine.begin() as connection:
        assert connection.execute(items.insert().values(name="a")).inserted_primary_key == (1,)
        connection.execute(items.insert(), [{"name": "b"}, {"name": "c"}])
    with engine.begin() as connection:
        connection.execute(items.insert().values(name="rolled back"))
        connection.rollback()
    with engine.connect() as connection:
        assert connection.execute(sa.select(items).order_by(items.c.id)).fetchall() == [(1, "a"), (2, "b"), (3, "c")]
    metadata.drop_all(engine)
    metadata.create_all(engine)  # a table made again counts from 1 again
    with engine.begin() as connection:
        assert connection.execute(items.insert().values(name="a")).inserted_primary_key == (1,)
    metadata.drop_all(engine)


# -- in process: mldb:// ---------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path):
    engine = sa.create_engine(f"mldb:///{tmp_path / 'shop.db'}")
    yield engine
    engine.dispose()


def test_dialect_is_registered_by_the_package_and_memory_urls_work():
    for url in ("mldb://", "mldb:///:memory:"):
        memory = sa.create_engine(url)
        with memory.connect() as connection:
            assert connection.execute(sa.text("SELECT 40 + 2")).scalar() == 42
            assert type(connection.connection.dbapi_connection) is mldb.Connection
        memory.dispose()


def test_in_process_reflection(engine):
    with engine.begin() as connection:
        _make_schema(connection)
    _check_reflection(engine)
    assert "models" in sa.inspect(engine).get_table_names(schema="mldb")  # still reachable by schema


def test_in_process_reflection_of_many_tables_stays_in_its_schema(engine):
    """get_multi_columns / MetaData.reflect: the current schema only, not mldb's own tables, and
    not a same-named table of another schema (its columns were merged in)."""
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (a INTEGER)"))
        connection.execute(sa.text("CREATE SCHEMA other"))
        connection.execute(sa.text("CREATE TABLE other.t (a INTEGER, b INTEGER)"))
    inspector = sa.inspect(engine)
    assert {key: [c["name"] for c in columns] for key, columns in inspector.get_multi_columns().items()} == \
        {(None, "t"): ["a"]}
    assert [c["name"] for c in inspector.get_multi_columns(schema="other")[("other", "t")]] == ["a", "b"]
    metadata = sa.MetaData()
    metadata.reflect(engine)
    assert list(metadata.tables) == ["t"] and list(metadata.tables["t"].columns.keys()) == ["a"]


def test_in_process_pandas_round_trip_keeps_types(engine):
    _check_pandas(engine)


def test_in_process_serial_primary_key_and_rollback(engine):
    _check_orm_serial(engine)


def test_in_process_errors_are_wrapped_and_change_nothing(engine):
    with engine.begin() as connection:
        _make_schema(connection)
        connection.execute(sa.text("INSERT INTO parent VALUES (1, 'one')"))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO parent VALUES (2, 'two')"))
        connection.execute(sa.text("INSERT INTO parent VALUES (1, 'again')"))
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT id, name FROM parent")).fetchall() == [(1, "one")]


def test_in_process_read_sql_with_predict(tmp_path):
    path = tmp_path / "ml.db"
    with mldb.connect(str(path)) as con:
        con.execute("CREATE TABLE pts AS SELECT i::DOUBLE AS x, i >= 50 AS y FROM range(100) t(i)")
        con.execute("CREATE MODEL above PREDICT y FROM pts USING logistic WITH (epochs = 200, seed = 1)")
    engine = sa.create_engine(f"mldb:///{path}")
    frame = pd.read_sql(sa.text("SELECT x, PREDICT(above) AS p FROM pts WHERE x IN (0, 99) ORDER BY x"), engine)
    assert frame["p"].tolist() == [False, True]
    engine.dispose()


def test_jupysql_in_process(tmp_path):
    path = tmp_path / "j.db"
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "sql")
    shell.run_line_magic("sql", f"mldb:///{path}")
    shell.run_line_magic("sql", "CREATE TABLE t AS SELECT range AS i, range * 0.5 AS f FROM range(5)")
    result = shell.run_line_magic("sql", "SELECT * FROM t WHERE i > 2 ORDER BY i")
    assert result.DataFrame().values.tolist() == [[3, 1.5], [4, 2.0]]
    shell.run_line_magic("sql", "--close " + f"mldb:///{path}")
    with mldb.connect(str(path)) as con:  # committed, in the file
        assert con.execute("SELECT sum(i) FROM t").fetchone() == (10,)


# -- mldb serve: the stock PostgreSQL dialects -----------------------------------------------------


def _url(server, driver: str) -> str:  # noqa: F811
    return f"postgresql+{driver}://tester@127.0.0.1:{server.port}/shop"


@pytest.fixture(scope="module")
def served_schema(server):  # noqa: F811
    engine = sa.create_engine(_url(server, "psycopg"))
    with engine.begin() as connection:
        _make_schema(connection)
    engine.dispose()
    return server


@pytest.mark.parametrize("driver", ["psycopg", "pg8000"])
def test_stock_dialect_connects_and_sees_a_postgresql_version(server, driver):  # noqa: F811
    engine = sa.create_engine(_url(server, driver))
    with engine.connect() as connection:
        version = connection.execute(sa.text("SELECT pg_catalog.version()")).scalar()
        assert version.startswith("PostgreSQL 15.0 (mldb ") and "DuckDB" in version
        assert connection.execute(sa.text("SELECT version()")).scalar() == version
        assert connection.execute(sa.text("SHOW transaction isolation level")).scalar() == "serializable"
        assert connection.execute(sa.text("SHOW transaction_isolation")).scalar() == "serializable"
        assert connection.execute(sa.text("SHOW standard_conforming_strings")).scalar() == "on"
    assert engine.dialect.server_version_info[:2] == (15, 0)
    assert engine.dialect.default_schema_name == "main"
    engine.dispose()


def test_psycopg_reflection(served_schema):
    engine = sa.create_engine(_url(served_schema, "psycopg"))
    _check_reflection(engine)
    assert "models" in sa.inspect(engine).get_table_names(schema="mldb")
    unique = sa.inspect(engine).get_unique_constraints("parent")
    assert [(u["name"], u["column_names"]) for u in unique] == [("parent_name_key", ["name"])]
    engine.dispose()


def test_pg8000_reflection_of_columns_and_keys(served_schema):
    inspector = sa.inspect(sa.create_engine(_url(served_schema, "pg8000")))
    assert {"parent", "child"} <= set(inspector.get_table_names())
    assert [c["name"] for c in inspector.get_columns("child")] == ["id", "parent_id", "score", "tag"]
    assert inspector.get_pk_constraint("child")["constrained_columns"] == ["id"]
    assert inspector.get_foreign_keys("child")[0]["referred_table"] == "parent"
    indexes = inspector.get_indexes("child")  # pg_index.indoption is sent as int2vector, as pg8000's dialect wants
    assert [(i["name"], i["column_names"], i["unique"]) for i in indexes] == [("child_score", ["score"], False)]
    with pytest.raises(NoSuchTableError):
        inspector.get_columns("no_such_table")


@pytest.mark.parametrize("driver", ["psycopg", "pg8000"])
def test_stock_dialect_pandas_round_trip_keeps_types(server, driver):  # noqa: F811
    engine = sa.create_engine(_url(server, driver))
    with engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS frame"))
    _check_pandas(engine)
    engine.dispose()


@pytest.mark.parametrize("driver", ["psycopg", "pg8000"])
def test_stock_dialect_serial_primary_key(server, driver):  # noqa: F811
    engine = sa.create_engine(_url(server, driver))
    _check_orm_serial(engine)
    columns = None
    metadata = sa.MetaData()
    sa.Table("numbered", metadata, sa.Column("id", sa.BigInteger, primary_key=True), sa.Column("v", sa.Float))
    metadata.create_all(engine)
    columns = {c["name"]: c for c in sa.inspect(engine).get_columns("numbered")}
    assert columns["id"]["autoincrement"] is True and "numbered_id_seq" in columns["id"]["default"]
    metadata.drop_all(engine)
    _check_identity_and_sequences_dropped(engine)
    engine.dispose()


def test_in_process_identity_column_and_sequences_dropped(engine):
    _check_identity_and_sequences_dropped(engine)


def _check_identity_and_sequences_dropped(engine):
    """GENERATED BY DEFAULT AS IDENTITY numbers rows from its START and INCREMENT; DROP TABLE takes
    the sequences of its SERIAL / identity columns with it (another sequence stays)."""
    metadata = sa.MetaData()
    table = sa.Table("counted", metadata, sa.Column("id", sa.Integer, sa.Identity(start=5, increment=2), primary_key=True),
                     sa.Column("v", sa.String))
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE SEQUENCE kept_seq"))
        ids = connection.execute(table.insert().returning(table.c.id), [{"v": "a"}, {"v": "b"}]).scalars().all()
        assert sorted(ids) == [5, 7]
    sequences = "SELECT sequence_name FROM duckdb_sequences() WHERE sequence_name IN ('counted_id_seq', 'kept_seq')"
    with engine.connect() as connection:
        assert sorted(connection.execute(sa.text(sequences)).scalars()) == ["counted_id_seq", "kept_seq"]
    metadata.drop_all(engine)
    with engine.begin() as connection:
        assert connection.execute(sa.text(sequences)).scalars().all() == ["kept_seq"]
        connection.execute(sa.text("DROP SEQUENCE kept_seq"))


def test_rollback_to_savepoint_is_refused_and_the_transaction_undone(server):  # noqa: F811
    engine = sa.create_engine(_url(server, "psycopg"))
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE OR REPLACE TABLE sp (i INTEGER)"))
    with pytest.raises(sa.exc.NotSupportedError, match="ROLLBACK TO SAVEPOINT"), engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO sp VALUES (1)"))
        savepoint = connection.begin_nested()
        connection.execute(sa.text("INSERT INTO sp VALUES (2)"))
        savepoint.rollback()
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM sp")).scalar() == 0  # nothing kept
    engine.dispose()


def test_jupysql_with_a_postgresql_url(server):  # noqa: F811
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "sql")
    url = _url(server, "psycopg")
    shell.run_line_magic("sql", url)
    shell.run_line_magic("sql", "CREATE OR REPLACE TABLE jt AS SELECT range AS i FROM range(4)")
    result = shell.run_line_magic("sql", "SELECT sum(i) AS s FROM jt")
    assert result.DataFrame()["s"].tolist() == [6]
    shell.run_line_magic("sql", f"--close {url}")


# -- psql: \d+ and \dt ------------------------------------------------------------------------------


def _psql(server, *commands: str) -> str:  # noqa: F811
    args = [shutil.which("psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "tester", "-d", "shop", "-X"]
    for command in commands:
        args += ["-c", command]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr
    return done.stdout


def test_psql_describe_plus_shows_types_keys_and_constraints(served_schema):
    out = _psql(served_schema, "CREATE OR REPLACE TABLE checked (a INTEGER CHECK (a > 0), b INTEGER REFERENCES parent (id))",
                r"\d+ child", r"\d parent", r"\d checked")
    assert "Table \"main.child\"" in out
    assert "parent_id | integer" in out and "score     | double precision" in out and "| plain" in out
    assert '"child_id_pkey" PRIMARY KEY, btree (id)' in out and '"child_score" btree (score)' in out
    assert 'FOREIGN KEY (parent_id) REFERENCES parent(id)' in out and "Access method: heap" in out
    assert '"parent_name_key" UNIQUE CONSTRAINT, btree (name)' in out and "Referenced by:" in out
    assert '"checked_a_check" CHECK ((a > 0))' in out


def test_psql_dt_lists_the_users_tables_and_mldb_by_schema(served_schema):
    listed = _psql(served_schema, r"\dt")
    assert " parent " in listed and " child " in listed
    assert "mldb" not in listed.replace("| mldb\n", "")  # the owner column says mldb; no mldb.* table
    assert "models" not in listed and "training_log" not in listed
    internal = _psql(served_schema, r"\dt mldb.*")
    assert " models " in internal and " training_log " in internal and "(20 rows)" in internal


# -- SQLAlchemy's own compliance suite: a bounded slice in the main run -------------------------------

SUITE_SLICE = ("LimitOffsetTest or RowFetchTest or ExceptionTest or SimpleUpdateDeleteTest or LastrowidTest "
               "or IntegerTest or DateTimeTest or StringTest or ReturningTest")  # ReturningTest: identity columns


def test_sqlalchemy_compliance_suite_slice_passes_in_process():
    """tests/sqla_suite/run.sh on a slice of sqlalchemy.testing.suite (the whole suite: README table)."""
    run = Path(__file__).parent / "sqla_suite" / "run.sh"
    done = subprocess.run([str(run), "inprocess", "-k", SUITE_SLICE], capture_output=True, text=True, timeout=900,
                          check=False, env={**os.environ, "COLUMNS": "200", "PYTHON": sys.executable})
    summary = done.stdout.strip().splitlines()[-1]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert passed >= 122, done.stdout[-3000:]
    assert "error" not in summary, summary
