"""Benchmark: FAISS search and EMBED through mldb SQL vs raw FAISS / sentence-transformers / DuckDB.

    .venv/bin/python tests/bench/bench_vectors.py            # 100k x 384 vectors, 2000 sentences
    .venv/bin/python tests/bench/bench_vectors.py --quick    # 20k vectors, 500 sentences

Prints a table of medians and ratios. Vectors are clustered (200 Gaussian clusters),
queries come from the same distribution; recall@10 is measured against exact search.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

import mldb  # noqa: E402

DIM, K = 384, 10


def clustered(n: int, seed: int) -> np.ndarray:
    """200 clusters; within a cluster rows vary along 16 directions (text embeddings, too,
    fill few of their 384 dimensions), plus a little isotropic noise."""
    shared = np.random.default_rng(42)
    centers = shared.normal(size=(200, DIM)).astype(np.float32)
    basis = shared.normal(size=(200, 16, DIM)).astype(np.float32) / 4
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 200, n)
    latent = rng.normal(size=(n, 1, 16)).astype(np.float32)
    data = centers[cluster] + (latent @ basis[cluster])[:, 0] + 0.05 * rng.normal(size=(n, DIM)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def median_ms(run, items) -> float:
    times = []
    for item in items:
        start = time.perf_counter()
        run(item)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def recall(found: list[list[int]], exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e.tolist())) / K for f, e in zip(found, exact)]))


def bench_search(n: int, queries: int, rows: list) -> None:
    import duckdb
    import faiss

    data, query = clustered(n, 0), clustered(queries, 1)
    exact = np.argsort(-(query @ data.T), axis=1)[:, :K]
    # raw FAISS: build + search
    start = time.perf_counter()
    raw = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    raw.hnsw.efConstruction = 64
    raw.add(data)
    raw_build = time.perf_counter() - start
    raw.hnsw.efSearch = 64
    raw_found = []
    raw_ms = median_ms(lambda q: raw_found.append(raw.search(q[None, :], K)[1][0].tolist()), query)
    # mldb: table, CREATE INDEX, SQL top-k
    path = os.path.join(tempfile.mkdtemp(), "bench.db")
    con = mldb.connect(path)
    table = pa.table({"id": pa.array(np.arange(n, dtype=np.int64)),
                      "v": pa.FixedSizeListArray.from_arrays(pa.array(data.reshape(-1)), DIM)})
    con.database.root.register("incoming", table)  # plain DuckDB loading (no mldb involved)
    con.database.root.execute(f"CREATE TABLE vecs(id BIGINT PRIMARY KEY, v FLOAT[{DIM}])")
    con.database.root.execute(f"INSERT INTO vecs SELECT id, v::FLOAT[{DIM}] FROM incoming")
    start = time.perf_counter()
    con.execute("CREATE INDEX vecs_v ON vecs USING FAISS (v) WITH (type = 'hnsw', m = 32, ef_construction = 64)")
    sql_build = time.perf_counter() - start
    cursor = con.cursor()
    sql = f"SELECT id FROM vecs ORDER BY array_cosine_distance(v, ?::FLOAT[{DIM}]) LIMIT {K}"
    sql_found = []
    sql_ms = median_ms(lambda q: sql_found.append([r[0] for r in cursor.execute(sql, [q.tolist()]).fetchall()]),
                       query)
    from mldb.vectors import faiss as fx
    from mldb.vectors import store

    state = store.current_state(con.session, store.find(con.session, "vecs_v"))  # mldb's index, searched without SQL
    same_ms = median_ms(lambda q: fx.search(state, q[None, :], K), query)
    insert = f"INSERT INTO vecs VALUES (?, ?::FLOAT[{DIM}])"
    insert_ms = median_ms(lambda i: cursor.execute(insert, [n + i, query[i].tolist()]), range(10))
    con.close()
    # DuckDB exact
    duck = duckdb.connect()
    duck.register("incoming", table)
    duck.execute(f"CREATE TABLE vecs AS SELECT id, v::FLOAT[{DIM}] AS v FROM incoming")
    exact_found = []
    duck_ms = median_ms(lambda q: exact_found.append([r[0] for r in duck.execute(sql, [q.tolist()]).fetchall()]),
                        query[: max(5, queries // 10)])
    duck_insert_ms = median_ms(lambda i: duck.execute(insert, [n + i, query[i].tolist()]), range(10))
    rows += [
        (f"top-{K} latency, {n:,} x {DIM} (ms, median)", "mldb SQL (HNSW)", sql_ms, f"recall@10 {recall(sql_found, exact):.3f}"),
        ("", "raw FAISS HNSW", raw_ms, f"recall@10 {recall(raw_found, exact):.3f}"),
        ("", "mldb's index, no SQL", same_ms, ""),
        ("", "DuckDB exact ORDER BY", duck_ms, f"recall@10 {recall(exact_found, exact[: len(exact_found)]):.3f}"),
        ("index build (s)", "CREATE INDEX ... USING FAISS", sql_build, f"{sql_build / raw_build:.2f}x raw"),
        ("", "raw FAISS HNSW add", raw_build, ""),
        ("INSERT one row (ms, median)", "mldb, indexed table", insert_ms, f"{insert_ms / duck_insert_ms:.0f}x DuckDB"),
        ("", "DuckDB, no index", duck_insert_ms, ""),
    ]


def sentences(count: int) -> list[str]:
    subjects = ["The pilot", "A chef", "My neighbour", "The team", "An engineer", "The teacher", "A tourist"]
    verbs = ["cooked", "repaired", "painted", "sold", "described", "photographed", "booked"]
    objects = ["a cheap flight", "the old bridge", "fresh bread", "a red bicycle", "the quarterly report",
               "a mountain cabin", "the football match"]
    return [f"{subjects[i % 7]} {verbs[(i // 7) % 7]} {objects[(i // 49) % 7]} on day {i}." for i in range(count)]


def bench_embed(count: int, rows: list) -> None:
    from mldb.vectors import embedding as embed

    texts = sentences(count)
    model = embed.load_model()
    model.encode(texts[:64])  # warm up
    con = mldb.connect()
    con.database.root.register("incoming", pa.table({"body": texts}))
    con.database.root.execute("CREATE TABLE docs AS SELECT * FROM incoming")
    raw_times, first_times = [], []
    for _ in range(2):  # interleaved: the machine's load changes between runs
        raw_times.append(_timed(lambda: model.encode(texts, batch_size=64)))
        embed.clear_cache()
        first_times.append(_timed(lambda: con.execute("SELECT EMBED(body) FROM docs").arrow()))
    raw, first = min(raw_times), min(first_times)
    cached = _timed(lambda: con.execute("SELECT EMBED(body) FROM docs").arrow())
    rows += [
        (f"EMBED, {count:,} sentences (sentences/s)", "SELECT EMBED(body)", count / first, f"{raw / first:.2f}x raw"),
        ("", "sentence-transformers encode", count / raw, ""),
        ("", "SELECT EMBED(body), cached", count / cached, f"{first / cached:.0f}x faster than first"),
    ]


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k vectors and 500 sentences")
    parser.add_argument("--rows", type=int, help="number of vectors (default 100000, quick 20000)")
    parser.add_argument("--queries", type=int, default=200)
    options = parser.parse_args()
    n = options.rows or (20_000 if options.quick else 100_000)
    rows: list = []
    bench_search(n, options.queries, rows)
    bench_embed(500 if options.quick else 2000, rows)
    from tabulate import tabulate

    print(tabulate(rows, headers=["measure", "system", "value", "vs"], floatfmt=".3f"))


if __name__ == "__main__":
    main()
