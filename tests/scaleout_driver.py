"""A scale-out driver as its own process, for tests/test_scaleout_cluster.py: SELECT and COPY on the cluster
RAY_ADDRESS names, the outcome printed as one JSON line.

Why a process of its own: a driver connecting to an explicit address sends Ray's auth token only when
RAY_AUTH_MODE=token was in its environment when Ray was imported (Ray reads its config once), and a
user's driver is started that way; the test's own process has imported Ray long before.

    python tests/scaleout_driver.py <database> <files glob> <copy target>
"""

from __future__ import annotations

import glob
import json
import sys

import ray

import mldb
from mldb.scaleout import cluster, executor


def main(database: str, pattern: str, target: str) -> dict:
    ray.data.DataContext.get_current().wait_for_min_actors_s = 600  # both actors up before pieces are handed out
    connection = mldb.connect(database)
    connection.execute("SET mldb_executor = 'ray'")
    connection.execute("SET mldb_ray_workers = 2")
    cursor = connection.execute(f"SELECT id, PREDICT(churn) AS p FROM read_parquet('{pattern}')")
    selected = cursor._result.scaleout  # the Ray job's record: one report per file
    ids = [row[0] for row in cursor.fetchall()]
    copied = executor.execute(connection._session, executor.Request(
        fragment="SELECT id, PREDICT(churn) AS p FROM __mldb_piece", files=sorted(glob.glob(pattern)),
        models=["churn"], mode="copy", target=target, workers=2))
    written = connection.execute(f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{target}/*.parquet')"
                                 ).fetchall()[0]
    described = cluster.describe()
    connection.close()
    return {"ids": len(ids), "distinct": len(set(ids)), "select_reports": selected.reports,
            "copy_reports": copied.reports, "copied": copied.rows, "written": list(written),
            "described": described, "address": cluster.wanted_address("ray")}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4]), default=str))
