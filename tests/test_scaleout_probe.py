"""Probes of the scale-out from a new user's and an attacker's side (issue 17): what the other
modules' shapes do not cover.

- A wire client's session (``Session.restrict`` with the server's ``ClientAccess``) that may use Ray
  (``--allow-admin``) but writes files only inside ``--export-dir``: a COPY that goes out is written by
  Ray workers, which have none of DuckDB's file restrictions, so the driver must refuse a target
  outside the export directory exactly as the local COPY is refused (42501), and write nothing.
- A glob whose later Parquet file lacks a column of the first: locally DuckDB reads it as long as the
  statement does not read that column (and fails with Invalid Input Error, 42000, where it does); each
  Ray piece is cast to the glob's columns, which must not fail a statement that never reads the column.
- Column types that Arrow has no plain type for (UUID, HUGEINT) come back as the local run's, not
  as VARCHAR / DECIMAL(38,0) (the workers' DuckDB exports them as Arrow extension types).
- COPY's edges: ``(OVERWRITE)`` stays local (the workers commit a new directory only; refusing what
  DuckDB does locally would be a surprise); a target whose parent directory does not exist fails as
  locally (58030) and creates no directory.

One real database file with a trained model and real Parquet files; the conftest Ray runtime.
"""

from __future__ import annotations

import pytest

import mldb
from mldb import errors
from mldb.server.access import ClientAccess

pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def db(tmp_path_factory, runtime):
    """(connection, folder): the model ``churn``; data/e1.parquet (100 rows), data/e2.parquet (50)."""
    folder = tmp_path_factory.mktemp("probe")
    connection = mldb.connect(str(folder / "p.db"))
    (folder / "data").mkdir()
    rows = "SELECT i AS id, (i % 7)::INTEGER AS a, ['a', 'b'][i % 2 + 1] AS kind FROM range({}, {}) t(i)"
    for name, (low, high) in {"e1": (0, 100), "e2": (100, 150)}.items():
        connection.execute(f"COPY ({rows.format(low, high)}) TO '{folder}/data/{name}.parquet' (FORMAT parquet)")
    connection.execute(f"CREATE TABLE train AS SELECT a, kind, a > 3 AS y FROM '{folder}/data/e1.parquet'")
    (folder / "mixed").mkdir()  # m0 has a column 'note' that m1 lacks
    connection.execute(f"COPY (SELECT *, 'n' || id AS note FROM ({rows.format(0, 60)})) "
                       f"TO '{folder}/mixed/m0.parquet' (FORMAT parquet)")
    connection.execute(f"COPY ({rows.format(60, 90)}) TO '{folder}/mixed/m1.parquet' (FORMAT parquet)")
    connection.execute("CREATE MODEL churn PREDICT y FROM train USING logistic WITH (epochs = 2, seed = 1)")
    yield connection, folder
    connection.close()


@pytest.fixture
def client(db, tmp_path):
    """(connection, folder, out): a second session of the database, restricted as the session of a
    client of ``mldb serve --allow-admin --export-dir out`` is (its SQL passes the access checks)."""
    _, folder = db
    out = tmp_path / "out"
    out.mkdir()
    connection = mldb.connect(str(folder / "p.db"))
    connection.session.restrict(ClientAccess(allow_admin=True, export_dir=str(out)))
    connection.execute("SET mldb_ray_workers = 1")
    yield connection, folder, out
    connection.close()


def _copy(folder, target: str) -> str:
    return (f"COPY (SELECT id, PREDICT(churn) AS p FROM read_parquet('{folder}/data/*.parquet')) "
            f"TO '{target}' (FORMAT parquet)")


@pytest.mark.parametrize("where", ["outside", "dotdot"])
def test_a_restricted_client_cannot_copy_outside_its_export_dir_through_ray(client, tmp_path, where):
    connection, folder, out = client
    target = str(tmp_path / "stolen") if where == "outside" else f"{out}/../stolen"
    with pytest.raises(errors.ProgrammingError) as local:
        connection.execute(_copy(folder, target))
    connection.execute("SET mldb_executor = 'ray'")
    plan = "\n".join(row[-1] for row in connection.execute(f"EXPLAIN {_copy(folder, target)}").fetchall())
    assert "scale-out:" in plan  # it would go out: the check must be the driver's
    with pytest.raises(errors.ProgrammingError) as out_there:
        connection.execute(_copy(folder, target))
    assert out_there.value.sqlstate == local.value.sqlstate == "42501"
    assert "export directory" in str(out_there.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]  # nothing written, no staging left


def test_a_restricted_client_copies_inside_its_export_dir_through_ray(client):
    connection, folder, out = client
    connection.execute("SET mldb_executor = 'ray'")
    cursor = connection.execute(_copy(folder, f"{out}/scored"))
    assert cursor.fetchall() == [(150,)]
    assert cursor._result.scaleout is not None
    connection.execute("SET mldb_executor = 'local'")
    assert connection.execute(f"SELECT count(*) FROM read_parquet('{out}/scored/*.parquet')").fetchall() == [(150,)]


def _run(connection, statement: str, executor: str):
    """(sorted rows, [(name, type)]) or the error's SQLSTATE, run with ``executor``."""
    connection.execute(f"SET mldb_executor = '{executor}'")
    try:
        cursor = connection.execute(statement)
        rows = sorted(cursor.fetchall(), key=repr)
        went_out = cursor._result.scaleout is not None
        return rows, [(column[0], str(column[1])) for column in cursor.description], went_out
    except errors.Error as error:
        return error.sqlstate
    finally:
        connection.execute("RESET mldb_executor")


def test_a_glob_whose_later_file_lacks_a_column_the_statement_does_not_read_runs_as_locally(db):
    connection, folder = db
    connection.execute("SET mldb_ray_workers = 1")
    glob = f"read_parquet('{folder}/mixed/*.parquet')"
    for statement in (f"SELECT id, kind, PREDICT(churn) AS p FROM {glob} WHERE a > 1",
                      f"SELECT count(*), avg(PREDICT(churn)::INT) FROM {glob}"):
        local, out = _run(connection, statement, "local"), _run(connection, statement, "ray")
        assert out[2] and not local[2]
        assert out[:2] == local[:2]
    assert len(_run(connection, f"SELECT id, PREDICT(churn) AS p FROM {glob} WHERE a > 1", "local")[0]) == 90 * 5 // 7
    reads_it = f"SELECT id, note, PREDICT(churn) AS p FROM {glob}"
    assert _run(connection, reads_it, "ray") == _run(connection, reads_it, "local") == "42000"


@pytest.mark.parametrize("option", ["OVERWRITE", "OVERWRITE_OR_IGNORE true"])
def test_copy_with_overwrite_stays_local_and_replaces_as_duckdb_does(db, tmp_path, option):
    connection, folder = db
    target = tmp_path / "scored.parquet"
    target.write_text("old")
    statement = f"{_copy(folder, str(target))[:-1]}, {option})"
    connection.execute("SET mldb_executor = 'ray'")
    try:
        plan = "\n".join(row[-1] for row in connection.execute(f"EXPLAIN {statement}").fetchall())
        assert "executor: local" in plan and "runs here (scale-out writes a new directory only)" in plan
        cursor = connection.execute(statement)
        assert cursor.fetchall() == [(150,)] and cursor._result.scaleout is None
    finally:
        connection.execute("RESET mldb_executor")
    assert connection.execute(f"SELECT count(*) FROM read_parquet('{target}')").fetchall() == [(150,)]


def test_copy_under_a_missing_parent_fails_as_locally_and_creates_nothing(db, tmp_path):
    connection, folder = db
    target = tmp_path / "nope" / "deeper" / "scored"
    with pytest.raises(errors.OperationalError) as local:
        connection.execute(_copy(folder, str(target)))
    connection.execute("SET mldb_ray_workers = 1")
    connection.execute("SET mldb_executor = 'ray'")
    try:
        with pytest.raises(errors.OperationalError) as out:
            connection.execute(_copy(folder, str(target)))
    finally:
        connection.execute("RESET mldb_executor")
    assert out.value.sqlstate == local.value.sqlstate == "58030"
    assert list(tmp_path.iterdir()) == []


def test_uuid_and_hugeint_columns_come_back_with_the_local_types_and_values(db):
    connection, folder = db
    glob = f"read_parquet('{folder}/data/*.parquet')"
    connection.execute("SET mldb_ray_workers = 1")
    for statement in ((f"SELECT id, md5(id::VARCHAR)::UUID AS u, id::HUGEINT * 3 AS h, PREDICT(churn) AS p "
                       f"FROM {glob} WHERE a > 1"),
                      f"SELECT count(*), max(md5(id::VARCHAR)::UUID), sum(id::HUGEINT) FROM {glob} WHERE PREDICT(churn)"):
        local, out = _run(connection, statement, "local"), _run(connection, statement, "ray")
        assert out[2]
        assert out[:2] == local[:2]
    assert [kind for _, kind in local[1]] == ["BIGINT", "UUID", "HUGEINT"]
