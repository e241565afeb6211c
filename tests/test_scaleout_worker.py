"""The scale-out executor on a real Ray runtime gives the local run's rows (issue 17, first prototype).

Three real Parquet files (one with no rows, one with NULL features) and a real trained model: the
executor's PREDICT fragment over ``__mldb_piece``, run per file by Ray Data actors each holding their
own DuckDB + mldb, must return the rows of the local ``SELECT ..., PREDICT(m) FROM read_parquet(glob)``;
COPY mode must write a directory with exactly those rows; a failing fragment must leave nothing behind.
Through ``mldb.connect``, ``SET mldb_executor = 'ray'`` must send such a statement out (rows shape) and
give the local executor's rows.
"""

from __future__ import annotations

import os
import re

import pytest
from scaleout_data import churn_database

from mldb import errors
from mldb.scaleout import executor

pytestmark = pytest.mark.xdist_group("ray")  # one Ray runtime at a time per pytest worker (.ci/test: --dist loadgroup)

FRAGMENT = "SELECT id, kind, PREDICT(churn) AS p FROM __mldb_piece WHERE kind <> 'z'"
LOCAL = "SELECT id, kind, PREDICT(churn) AS p FROM read_parquet(?) WHERE kind <> 'z'"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A database with the model ``churn`` and three parquet files: 300 rows, 0 rows, 50 rows with NULLs."""
    folder = tmp_path_factory.mktemp("scaleout")
    connection = churn_database(folder / "s.db")
    data = folder / "data"
    data.mkdir()
    connection.execute(f"COPY (SELECT id, a, b, kind FROM t WHERE id < 300) TO '{data}/p0.parquet' (FORMAT parquet)")
    connection.execute(f"COPY (SELECT id, a, b, kind FROM t WHERE false) TO '{data}/p1.parquet' (FORMAT parquet)")
    connection.execute(f"COPY (SELECT id, CASE WHEN id % 2 = 0 THEN NULL ELSE a END AS a, "
                       f"CASE WHEN id % 3 = 0 THEN NULL ELSE b END AS b, CASE WHEN id % 4 = 0 THEN NULL ELSE kind "
                       f"END AS kind FROM t WHERE id >= 350) TO '{data}/p2.parquet' (FORMAT parquet)")
    files = sorted(str(path) for path in data.glob("*.parquet"))
    yield connection, files, str(data / "*.parquet"), folder
    connection.close()


def _local_rows(connection, pattern):
    return sorted(connection.execute(LOCAL, [pattern]).fetchall(), key=repr)


def _request(files, **kwargs):
    return executor.Request(fragment=FRAGMENT, files=files, models=["churn"], **kwargs)


def test_rows_equal_the_local_run(runtime, scored):
    connection, files, pattern, _ = scored
    outcome = executor.execute(connection._session, _request(files, workers=2))
    rows = [tuple(row.values()) for table in outcome.tables for row in table.to_pylist()]
    local = _local_rows(connection, pattern)
    assert len(local) > 250  # the NULL file and the filter leave rows; kind NULL rows drop (NULL <> 'z')
    assert sorted(rows, key=repr) == local
    assert sorted(report["piece"] for report in outcome.reports) == [0, 1, 2]
    by_piece = {report["piece"]: report for report in outcome.reports}
    assert by_piece[1]["rows"] == 0
    assert sum(report["rows"] for report in outcome.reports) == len(local)
    logged = [entry for report in outcome.reports for entry in report["predictions"]]
    assert {entry["model"] for entry in logged} == {"churn"}
    local_logged = connection.execute("SELECT rows FROM mldb.prediction_log WHERE statement = ? "
                                      "ORDER BY logged_at DESC LIMIT 1",
                                      [LOCAL]).fetchall()[0][0]
    assert sum(entry["rows"] for entry in logged) == local_logged  # the workers scored what the local run did


def test_copy_writes_the_local_rows_once(runtime, scored):
    connection, files, pattern, folder = scored
    target = folder / "scored"
    outcome = executor.execute(connection._session, _request(files, mode="copy", target=str(target)))
    written = connection.execute(f"SELECT id, kind, p FROM read_parquet('{target}/*.parquet')").fetchall()
    assert sorted(written, key=repr) == _local_rows(connection, pattern)
    assert len({row[0] for row in written}) == len(written)
    assert outcome.rows == len(written)
    assert sorted(os.listdir(target)) == ["data_00000.parquet", "data_00002.parquet"]  # the empty p1 writes none
    assert not [name for name in os.listdir(folder) if name.startswith(".scored.mldb-")]


def test_failing_fragment_leaves_no_directory(runtime, scored):
    connection, files, _, folder = scored
    target = folder / "broken"
    request = executor.Request(fragment="SELECT id, CAST(kind AS INTEGER) AS k FROM __mldb_piece", files=files,
                               mode="copy", target=str(target))
    with pytest.raises(errors.Error) as raised:
        executor.execute(connection._session, request)
    assert type(raised.value) is errors.DataError  # the worker's own error, not Ray's wrapper of it
    assert raised.value.sqlstate.startswith("22")
    # (two pieces fail, p0 on 'x' and p2 on 'y'; whichever Ray reports first is the statement's error)
    assert re.search(r"Could not convert string '[xy]' to INT32", str(raised.value))
    assert not target.exists()
    assert not [name for name in os.listdir(folder) if name.startswith(".broken.mldb-")]


def test_a_statement_with_the_ray_executor_gives_the_local_rows(runtime, scored):
    connection, _, pattern, _ = scored
    statement = f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{pattern}') WHERE a > 0"
    connection.execute("SET mldb_executor = 'ray'")
    try:
        cursor = connection.execute(statement)
        outcome = cursor._result.scaleout  # the Ray job's record: it went out, one report per file
        out = cursor.fetchall()
        connection.execute("SET mldb_executor = 'local'")
        local = connection.execute(statement).fetchall()
    finally:
        connection.execute("RESET mldb_executor")
    assert len(local) > 200  # p0 and the NULL file p2 leave rows (a NULL a drops), the empty p1 none
    assert sorted(out, key=repr) == sorted(local, key=repr)
    assert sorted(report["piece"] for report in outcome.reports) == [0, 1, 2]
    assert {report["pid"] for report in outcome.reports}.isdisjoint({os.getpid()})
    assert sum(report["rows"] for report in outcome.reports) == len(local)


def test_numbered_parameters_outside_the_scan_go_out_renumbered(runtime, scored):
    connection, _, pattern, _ = scored
    statement = "SELECT id, kind, PREDICT(churn) AS p FROM read_parquet($1) WHERE b > $3 AND kind <> $2"
    params = [pattern, "x", -1.5]
    connection.execute("SET mldb_executor = 'ray'")
    try:
        cursor = connection.execute(statement, params)
        went_out = cursor._result.scaleout is not None
        out = cursor.fetchall()
    finally:
        connection.execute("RESET mldb_executor")
    local = connection.execute(statement, params).fetchall()
    assert went_out
    assert {row[1] for row in local} == {"y"} and len(local) > 100
    assert sorted(out, key=repr) == sorted(local, key=repr)


def test_a_limit_that_goes_out_returns_that_many_rows_of_the_local_ones(runtime, scored):
    connection, _, pattern, _ = scored
    statement = f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{pattern}') LIMIT 7"
    everything = set(connection.execute(f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{pattern}')").fetchall())
    connection.execute("SET mldb_executor = 'ray'")
    try:
        cursor = connection.execute(statement)
        went_out = cursor._result.scaleout is not None
        out = cursor.fetchall()
    finally:
        connection.execute("RESET mldb_executor")
    assert went_out
    assert len(out) == 7 and len(set(out)) == 7  # each piece gives up to 7: the driver keeps 7 of them
    assert set(out) <= everything


def test_a_workers_error_is_the_statements_mldb_error_and_the_session_goes_on(runtime, scored):
    connection, _, pattern, _ = scored
    connection.execute("SET mldb_executor = 'ray'")
    try:
        with pytest.raises(errors.Error) as raised:
            connection.execute(f"SELECT id, PREDICT(churn) AS p, CAST(kind AS INTEGER) AS k "
                               f"FROM read_parquet('{pattern}')").fetchall()
        assert type(raised.value) is errors.DataError and raised.value.sqlstate.startswith("22")
        assert "Could not convert string" in str(raised.value)
        assert connection.execute("SELECT count(*) FROM t").fetchall() == [(400,)]
    finally:
        connection.execute("RESET mldb_executor")
