"""The database the console's tests and screenshots read: the monitors example's story (model churn with
versions, deploy decisions, drift and quality monitors with runs, alerts, a shadow), plus a regression model
trained from a view, a multiclass model, a table written with predictions and a user who never trained.

    from tests.console_db import build
    build("/tmp/console.db")        # about 20 s; every run builds the same catalog (seeded)
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from pathlib import Path

import mldb

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "monitors.py"


def build(path: str) -> str:
    spec = importlib.util.spec_from_file_location("monitors_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    con = mldb.connect(path)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            example.story(con)
        for statement in EXTRA:
            con.execute(statement).fetchall()
    finally:
        con.close()
    return path


def built_from(path: str, statements: list[str]) -> str:
    """A database made by running ``statements`` (the tests' small hostile or odd databases)."""
    con = mldb.connect(path)
    try:
        for statement in statements:
            con.execute(statement).fetchall()
    finally:
        con.close()
    return path


EXTRA = [
    "CREATE VIEW recent_customers AS SELECT age, plan, spend, churned FROM customers WHERE day >= 3",
    "CREATE MODEL spend_model PREDICT spend FROM recent_customers USING linear WITH (epochs = 10, seed = 1)",
    "CREATE MODEL plan_model PREDICT plan FROM (SELECT age, spend, plan FROM customers) USING mlp "
    "WITH (epochs = 5, seed = 1)",
    "TRAIN plan_model WITH (epochs = 8, seed = 2)",
    "CREATE TABLE scored AS SELECT age, plan, spend, PREDICT(churn) AS churn_predicted, "
    "PREDICT(spend_model) AS spend_predicted FROM customers",
    "SELECT count(*) FROM customers WHERE PREDICT(plan_model) = 'pro'",
]
