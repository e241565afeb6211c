"""The mldb demo: plain SQL, then train, predict, evaluate, embed and search, on a database file.

    bash .ci/demo            (or: .venv/bin/python examples/demo.py [DB_PATH])
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import mldb
from mldb.cli import format_result

ARTICLES = Path(__file__).resolve().parent / "data" / "articles.csv"

CUSTOMERS = """
CREATE OR REPLACE TABLE customers AS
SELECT range AS id,
       18 + (hash(range) % 60)::INTEGER AS age,
       ['basic', 'plus', 'pro'][(hash(range * 7) % 3)::INTEGER + 1] AS plan,
       round((hash(range * 13) % 10000) / 100.0, 2) AS monthly_spend,
       (hash(range * 31) % 36)::INTEGER AS tenure_months
FROM range(3000)"""

LABELS = """
CREATE OR REPLACE TABLE customers AS
SELECT *, (tenure_months < 6 AND plan = 'basic') OR (monthly_spend > 85 AND age < 30) AS churned FROM customers"""


def show(con, title: str, sql: str, params=None) -> None:
    print(f"\n-- {title}\n{sql.strip()}")
    print(format_result(con.execute(sql, params)))


def plain_sql(con) -> None:
    show(con, "plain DuckDB SQL passes through", """
        CREATE OR REPLACE TABLE sales AS
        SELECT range AS id, ['north', 'south', 'east'][range % 3 + 1] AS region, (range * 7) % 23 AS amount
        FROM range(300)""")
    show(con, "DuckDB-only syntax works as written", "FROM sales SELECT region, sum(amount) AS total GROUP BY ALL ORDER BY ALL")


def models(con) -> None:
    con.execute(CUSTOMERS)
    con.execute(LABELS)
    show(con, "train a model where the data lives",
         "CREATE OR REPLACE MODEL churn PREDICT churned FROM (SELECT * EXCLUDE (id) FROM customers) "
         "USING mlp WITH (epochs = 30, seed = 7)")
    show(con, "predict in any query", "SELECT id, plan, age, PREDICT(churn) AS will_churn, "
         "round(PREDICT_PROBA(churn)['true'], 3) AS p_churn FROM customers ORDER BY p_churn DESC LIMIT 5")
    show(con, "evaluate", "SELECT * FROM EVALUATE(churn, (SELECT * FROM customers WHERE id % 5 = 0))")
    show(con, "gradient-boosted trees: a new version of the same model", "TRAIN churn USING lightgbm")
    show(con, "which features matter", "SELECT * FROM FEATURE_IMPORTANCE(churn)")
    show(con, "why each row got its prediction (baseline + contributions = the log-odds)",
         "SELECT id, prediction, round(baseline, 3) AS baseline, contributions "
         "FROM EXPLAIN_PREDICT(churn, (SELECT * FROM customers WHERE id < 3), top_k => 2)")
    show(con, "the registry is plain SQL", "SHOW MODELS")


def vectors(con) -> None:
    show(con, "load a small corpus and embed it (all-MiniLM-L6-v2, offline)",
         "CREATE OR REPLACE TABLE articles AS SELECT id, topic, body, EMBED(body) AS v FROM read_csv(?)",
         [str(ARTICLES)])
    show(con, "a FAISS index lives in the database file",
         "CREATE INDEX articles_v ON articles USING FAISS (v) WITH (metric = 'cosine', type = 'hnsw')")
    show(con, "semantic search through the index",
         "SELECT id, topic, body FROM articles ORDER BY array_cosine_distance(v, EMBED('cheap plane tickets')) LIMIT 3")
    show(con, "search as a table function, with a filter",
         "SELECT id, body, round(distance::DOUBLE, 3) AS distance FROM VECTOR_SEARCH(articles, v, EMBED('saving money'), 3) "
         "WHERE topic = 'finance'")


def lifecycle(con) -> None:
    show(con, "every PREDICT call is logged", "SELECT model, version, rows FROM mldb.prediction_log ORDER BY started_at")
    show(con, "drift of new data against the training statistics",
         "SELECT feature, statistic, round(value, 3) AS value, drifted FROM DRIFT(churn, "
         "(SELECT * REPLACE (age + 25 AS age) FROM customers)) ORDER BY feature, statistic")


def console_hint(path: str, kept: bool) -> None:
    """How to look at what the demo built in the web console (the demo does not start it)."""
    print("\n-- look at it in the console: models, versions, drift, lineage, tables, predictions (read-only)")
    print(f"mldb ui {path}\nthen open http://127.0.0.1:8765/")
    if not kept:
        print("(this run's database is removed when the demo ends: keep one with "
              "`python examples/demo.py demo.db`, then `mldb ui demo.db`)")


def main(path: str, kept: bool = True) -> None:
    con = mldb.connect(path)
    print(f"mldb demo on {path}")
    plain_sql(con)
    models(con)
    vectors(con)
    lifecycle(con)
    con.close()
    console_hint(path, kept)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(str(Path(folder) / "demo.db"), kept=False)
