"""CREATE INDEX ... USING FAISS against raw FAISS building the same index from the same array.

    .venv/bin/python tests/bench/bench_index_build.py               # 200k x 384, HNSW m = 32 (minutes)
    .venv/bin/python tests/bench/bench_index_build.py --rows 50000  # a quicker look

Raw FAISS: ``IndexHNSWFlat(384, 32, inner product)`` with ``efConstruction = 64`` and one
``add`` of the whole float32 array (already L2-normalised, so cosine needs no more). mldb:
``CREATE INDEX ... WITH (type = 'hnsw', m = 32, ef_construction = 64)`` on a checkpointed
table of the same vectors (``FLOAT[384]``), committed (reading the column, the build, storing
the graph, the commit). Rounds are interleaved (raw, mldb, raw, mldb, ...) and the medians
reported; then one mldb build is profiled to show where its time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
from tabulate import tabulate

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import mldb  # noqa: E402
from bench_vectors import DIM, clustered  # noqa: E402

CREATE = "CREATE INDEX vecs_v ON vecs USING FAISS (v) WITH (type = 'hnsw', m = 32, ef_construction = 64)"


def raw_build(data: np.ndarray) -> None:
    import faiss

    index = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 64
    index.add(data)


def load_table(con, data: np.ndarray) -> None:
    """The vectors as a FLOAT[384] table, loaded by DuckDB alone and checkpointed (so the
    build's commit writes the index, not the table)."""
    root = con.database.root
    table = pa.table({"id": pa.array(np.arange(len(data), dtype=np.int64)),
                      "v": pa.FixedSizeListArray.from_arrays(pa.array(data.reshape(-1)), DIM)})
    root.register("incoming", table)
    root.execute(f"CREATE TABLE vecs(id BIGINT PRIMARY KEY, v FLOAT[{DIM}])")
    root.execute(f"INSERT INTO vecs SELECT id, v::FLOAT[{DIM}] FROM incoming")
    root.unregister("incoming")
    root.execute("CHECKPOINT")


def mldb_build(con) -> None:
    con.execute(CREATE)
    con.execute("DROP INDEX vecs_v")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="profile one more mldb build")
    args = parser.parse_args()
    data = clustered(args.rows, 0)
    with mldb.connect(os.path.join(tempfile.mkdtemp(), "bench.db")) as con:
        load_table(con, data)
        spent = {"raw": [], "mldb": []}
        for _ in range(args.repeat):
            for label, build in (("raw", lambda: raw_build(data)), ("mldb", lambda: mldb_build(con))):
                started = time.perf_counter()
                build()
                spent[label].append(time.perf_counter() - started)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(mldb_build, con)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    raw, built = statistics.median(spent["raw"]), statistics.median(spent["mldb"])
    print(tabulate([["raw FAISS: IndexHNSWFlat(m=32).add(array)", raw, 1.0],
                    ["mldb: CREATE INDEX ... USING FAISS (committed)", built, built / raw]],
                   headers=["", "seconds", "/ raw FAISS"], floatfmt=".2f"))
    print(f"\n{args.rows} x {DIM} clustered vectors, HNSW m = 32, ef_construction = 64; median of {args.repeat} "
          f"interleaved rounds; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
          f"(target: mldb / raw <= 1.2x)")


if __name__ == "__main__":
    main()
