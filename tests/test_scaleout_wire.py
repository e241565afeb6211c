"""Scale-out through the wire server: a psycopg client of ``mldb serve --allow-admin`` sends its
statement to Ray and reads the local executor's rows (issue 17).

The server process connects to its own local Ray cluster on the first statement that goes out,
from a connection thread; the server must keep answering (and still stop on SIGTERM with exit 0:
Ray must not have taken its signal handlers).
"""

from __future__ import annotations

import signal

import psycopg
import pytest
from conftest_server import start_server

import mldb

pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("wire")
    (root / "ev").mkdir()
    connection = mldb.connect(str(root / "shop.db"))
    rows = "SELECT i AS id, (i % 7)::INTEGER AS a, ['a', 'b'][i % 2 + 1] AS kind FROM range({}, {}) t(i)"
    for name, (low, high) in {"e1": (0, 300), "e2": (300, 300), "e3": (300, 420)}.items():
        connection.execute(f"COPY ({rows.format(low, high)}) TO '{root}/ev/{name}.parquet' (FORMAT parquet)")
    connection.execute(f"CREATE TABLE train AS SELECT a, kind, a > 3 AS y FROM '{root}/ev/e1.parquet'")
    connection.execute("CREATE MODEL churn PREDICT y FROM train USING logistic WITH (epochs = 2, seed = 1)")
    connection.close()
    server = start_server(root, "--allow-admin", "--data-dir", str(root))
    server.glob = f"{root}/ev/*.parquet"
    yield server
    if server.process.poll() is None:
        server.stop()


def test_a_client_reads_rays_rows_and_the_server_still_stops_cleanly(served):
    query = f"SELECT id, kind, PREDICT(churn) AS p FROM read_parquet('{served.glob}') WHERE a > 1"
    with psycopg.connect(served.dsn(), autocommit=True) as client:
        local = sorted(client.execute(query).fetchall())
        client.execute("SET mldb_executor = 'ray'")
        client.execute("SET mldb_ray_workers = 1")
        plan = [row[-1] for row in client.execute(f"EXPLAIN {query}").fetchall()]
        assert any(line.startswith("scale-out: 3 files") for line in plan), plan
        cursor = client.execute(query)
        assert [column.name for column in cursor.description] == ["id", "kind", "p"]
        assert sorted(cursor.fetchall()) == local
        assert len(local) == 420 * 5 // 7
        assert client.execute("SELECT 41 + 1").fetchall() == [(42,)]  # the connection still answers
    assert served.stop(signal.SIGTERM) == 0
