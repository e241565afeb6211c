"""Test data the scale-out modules share: a database with 400 rows in ``t`` and the logistic model
``churn`` trained on them (a real model, trained in the test's own database file)."""

from __future__ import annotations

import mldb

ROWS_OF_T = ("SELECT i AS id, (i % 7) * 1.5 AS a, (i % 5) - 2.0 AS b, CASE WHEN i % 3 = 0 THEN 'x' ELSE 'y' END "
             "AS kind, (i % 7) + (i % 5) > 6 AS churned FROM range(400) r(i)")


def churn_database(path) -> mldb.Connection:
    """A connection to a new database at ``path`` with ``t`` and the model ``churn``."""
    connection = mldb.connect(str(path))
    connection.execute(f"CREATE TABLE t AS {ROWS_OF_T}")
    connection.execute("CREATE MODEL churn PREDICT churned FROM (SELECT a, b, kind, churned FROM t) USING logistic "
                       "WITH (epochs = 3, seed = 1)")
    return connection
