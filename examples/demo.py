"""The mldb demo: plain SQL, then train, predict, evaluate, embed and search, on a database file.

    bash .ci/demo            (or: .venv/bin/python examples/demo.py [DB_PATH])
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import mldb
from mldb.cli import format_result


def show(con, title: str, sql: str, params=None) -> None:
    print(f"\n-- {title}\n{sql.strip()}")
    print(format_result(con.execute(sql, params)))


def main(path: str) -> None:
    con = mldb.connect(path)
    print(f"mldb demo on {path}")
    show(con, "plain DuckDB SQL passes through", """
        CREATE OR REPLACE TABLE sales AS
        SELECT range AS id, ['north', 'south', 'east'][range % 3 + 1] AS region, (range * 7) % 23 AS amount
        FROM range(300)""")
    show(con, "DuckDB-only syntax works as written", "FROM sales SELECT region, sum(amount) AS total GROUP BY ALL ORDER BY ALL")
    con.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(str(Path(folder) / "demo.db"))
