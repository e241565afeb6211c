"""Shadow deployments: DEPLOY MODEL m VERSION n AS SHADOW (SPEC section 11).

Real database files and real (tiny) models: the served results never change, the shadow's
agreement / mean absolute difference in mldb.prediction_log is the one computed here from
PREDICT of the pinned versions, and bad input writes nothing.
"""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest

import mldb
from mldb.frontend import split_statements
from mldb.frontend.dialect import parse
from mldb.frontend.models import DeployModel

ROWS = """CREATE TABLE people AS SELECT i AS id, (i * 37 % 60 + 18)::DOUBLE AS age, (i * 53 % 100)::DOUBLE AS spend,
    ['a', 'b', 'c'][i % 3 + 1] AS plan, (i % 11)::DOUBLE AS bonus,
    (i * 37 % 60 + 18) > 45 OR i % 7 = 0 AS churned,
    (i * 37 % 60 + 18) * 2.0 + (i * 53 % 100) * 0.5 + i % 5 AS value
    FROM range(400) t(i)"""
FEATURES = "SELECT age, spend, plan, churned FROM people"


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """Classifier clf: v1 and v2 trained alike, v3 another, v4 with an extra feature (bonus); v1 deployed.
    Regression reg: v1, v2 another, v3 a classifier of the same name; v1 deployed."""
    con = mldb.connect(str(tmp_path_factory.mktemp("shadow") / "shop.db"))
    con.execute(ROWS)
    con.execute(f"CREATE MODEL clf PREDICT churned FROM ({FEATURES}) USING logistic WITH (epochs = 5, seed = 1)")
    con.execute("TRAIN clf USING logistic WITH (epochs = 5, seed = 1)")
    con.execute("TRAIN clf USING logistic WITH (epochs = 1, lr = 0.5, seed = 7)")
    con.execute("TRAIN clf FROM (SELECT age, spend, plan, bonus, churned FROM people) USING logistic "
                "WITH (epochs = 2, seed = 3)")
    con.execute("CREATE MODEL reg PREDICT value FROM (SELECT age, spend, plan, value FROM people) USING linear "
                "WITH (epochs = 5, seed = 1)")
    con.execute("TRAIN reg USING linear WITH (epochs = 1, lr = 0.5, seed = 9)")
    con.execute("TRAIN reg PREDICT churned FROM (SELECT age, spend, plan, churned FROM people) USING logistic "
                "WITH (epochs = 1)")
    con.execute("DEPLOY MODEL clf VERSION 1")
    con.execute("DEPLOY MODEL reg VERSION 1")
    yield con
    con.close()


def rows(con, sql: str, params=None) -> list[tuple]:
    return con.execute(sql, params).fetchall()


def shadow_of_models(con, name: str):
    return rows(con, "SELECT shadow_version FROM mldb.models WHERE name = ?", [name])[0][0]


def logged(con, statement: str) -> list[tuple]:
    """Run ``statement``; the log rows it wrote: (model, version, rows, calls, shadow_of, agreement,
    mean_abs_diff, summary)."""
    before = rows(con, "SELECT count(*) FROM mldb.prediction_log")[0][0]
    result = rows(con, statement)
    log = rows(con, "SELECT model, version, rows, calls, shadow_of, agreement, mean_abs_diff, summary "
                    "FROM mldb.prediction_log ORDER BY rowid OFFSET ?", [before])
    return result, log


def test_grammar():
    node = parse(split_statements("DEPLOY MODEL churn VERSION 3 AS SHADOW")[0])
    assert isinstance(node, DeployModel)
    assert (node.this, node.args["version"].name, node.args["shadow"]) == ("churn", "3", True)
    plain = parse(split_statements("deploy model churn version 3")[0])
    assert plain.args.get("shadow") is None
    con = mldb.connect()
    for bad in ("DEPLOY MODEL churn VERSION 3 AS", "DEPLOY MODEL churn VERSION 3 AS CHAMPION"):
        with pytest.raises(mldb.ProgrammingError) as caught:
            con.execute(bad)
        assert caught.value.sqlstate == "42601"


def test_classification_agreement_is_the_share_of_equal_labels(shop):
    shop.execute("DEPLOY MODEL clf VERSION 1")
    served_alone = rows(shop, "SELECT id, PREDICT(clf) FROM people ORDER BY id")
    shop.execute("DEPLOY MODEL clf VERSION 3 AS SHADOW")
    assert shadow_of_models(shop, "clf") == 3
    served, log = logged(shop, "SELECT id, PREDICT(clf) FROM people ORDER BY id")
    assert served == served_alone  # the shadow changes nothing served
    shadow = [row[0] for row in rows(shop, "SELECT PREDICT('clf@3') FROM people ORDER BY id")]
    expected = np.mean([mine == theirs for mine, (_, theirs) in zip(shadow, served)])
    assert 0 < expected < 1  # (the two versions differ: the test measures something)
    assert [(row[0], row[1], row[2], row[4]) for row in log] == [("clf", 1, 400, None), ("clf", 3, 400, 1)]
    assert log[1][5] == pytest.approx(expected) and log[1][6] is None and log[0][5] is None
    summary = json.loads(log[1][7])
    assert summary["compared"] == 400 and summary["shadow_errors"] == 0
    assert sum(summary["counts"].values()) == 400


def test_an_identical_shadow_agrees_fully_in_every_form(shop):
    weights = rows(shop, "SELECT weights FROM mldb.model_versions WHERE model = 'clf' AND version IN (1, 2) "
                         "ORDER BY version")
    assert weights[0] == weights[1]  # v2 was trained as v1 was
    shop.execute("DEPLOY MODEL clf VERSION 1")
    shop.execute("DEPLOY MODEL clf VERSION 2 AS SHADOW")
    for statement in ("SELECT PREDICT(clf) FROM people", "SELECT PREDICT_PROBA(clf) FROM people",
                      "SELECT * FROM PREDICT(clf, (SELECT * FROM people))"):
        _, log = logged(shop, statement)
        assert [(row[1], row[4], row[5]) for row in log] == [(1, None, None), (2, 1, 1.0)], statement


def test_regression_mean_abs_diff(shop):
    shop.execute("DEPLOY MODEL reg VERSION 1")
    alone = rows(shop, "SELECT * FROM PREDICT(reg, (SELECT id, age, spend, plan FROM people)) ORDER BY id")
    shop.execute("DEPLOY MODEL reg VERSION 2 AS SHADOW")
    served, log = logged(shop, "SELECT * FROM PREDICT(reg, (SELECT id, age, spend, plan FROM people)) ORDER BY id")
    assert served == alone
    shadow = np.array([row[0] for row in rows(shop, "SELECT PREDICT('reg@2') FROM people ORDER BY id")])
    expected = np.mean(np.abs(shadow - np.array([row[-1] for row in served])))
    assert expected > 0
    assert [(row[1], row[2], row[4], row[5]) for row in log] == [(1, 400, None, None), (2, 400, 1, None)]
    assert log[1][6] == pytest.approx(expected)


def test_pinned_versions_and_evaluate_are_not_shadowed(shop):
    shop.execute("DEPLOY MODEL clf VERSION 1")
    shop.execute("DEPLOY MODEL clf VERSION 3 AS SHADOW")
    for statement in ("SELECT PREDICT('clf@1') FROM people", "SELECT PREDICT_PROBA('clf@1') FROM people",
                      "SELECT * FROM EVALUATE(clf, (SELECT * FROM people))"):
        _, log = logged(shop, statement)
        assert [row[4] for row in log] == [None], statement


def test_a_view_resolves_the_shadow_when_read(shop):
    shop.execute("DEPLOY MODEL clf VERSION 1")
    shop.execute("CREATE OR REPLACE VIEW scored AS SELECT id, PREDICT(clf) AS p FROM people")
    _, log = logged(shop, "SELECT * FROM scored")
    assert [row[4] for row in log] == [None]
    shop.execute("DEPLOY MODEL clf VERSION 3 AS SHADOW")
    _, log = logged(shop, "SELECT * FROM scored")
    assert [(row[1], row[4]) for row in log] == [(1, None), (3, 1)]
    shop.execute("DEPLOY MODEL clf VERSION 1")  # plain DEPLOY clears it, for the view too
    _, log = logged(shop, "SELECT * FROM scored")
    assert [row[4] for row in log] == [None]
    shop.execute("DROP VIEW scored")


def test_plain_deploy_clears_the_shadow(shop):
    shop.execute("DEPLOY MODEL reg VERSION 1")  # (the module's models are shared: no shadow left by other tests)
    shop.execute("DEPLOY MODEL clf VERSION 1")
    shop.execute("DEPLOY MODEL clf VERSION 3 AS SHADOW")
    shown = shop.execute("SHOW MODELS")
    assert shown.description[-1][0] == "shadow_version"
    assert [(row[0], row[-1]) for row in shown.fetchall()] == [("clf", 3), ("reg", None)]
    shop.execute("DEPLOY MODEL clf VERSION 2")
    assert shadow_of_models(shop, "clf") is None
    _, log = logged(shop, "SELECT PREDICT(clf) FROM people")
    assert [(row[1], row[4]) for row in log] == [(2, None)]
    shop.execute("DEPLOY MODEL clf VERSION 1")


def test_a_shadow_that_cannot_score_leaves_the_result_intact(shop):
    shop.execute("DEPLOY MODEL clf VERSION 1")
    alone = rows(shop, "SELECT id, PREDICT(clf), PREDICT_PROBA(clf) FROM people ORDER BY id")
    shop.execute("DEPLOY MODEL clf VERSION 4 AS SHADOW")  # v4 needs bonus, which PREDICT(clf) does not pass
    served, log = logged(shop, "SELECT id, PREDICT(clf), PREDICT_PROBA(clf) FROM people ORDER BY id")
    assert served == alone
    shadow_rows = [row for row in log if row[4] is not None]
    assert [(row[1], row[2], row[5], row[6]) for row in shadow_rows] == [(4, 0, None, None)]
    summary = json.loads(shadow_rows[0][7])
    assert summary["shadow_errors"] == shadow_rows[0][3] >= 2 and "bonus" in summary["shadow_error"]
    shop.execute("DEPLOY MODEL clf VERSION 1")


def test_a_rolled_back_shadow_is_forgotten(shop):
    shop.execute("DEPLOY MODEL clf VERSION 1")
    cursor = shop.cursor()
    cursor.execute("BEGIN")
    cursor.execute("DEPLOY MODEL clf VERSION 3 AS SHADOW")
    cursor.execute("SELECT PREDICT(clf) AS inside FROM people").fetchall()  # (the transaction's shadow)
    cursor.execute("ROLLBACK")
    assert rows(shop, "SELECT version, shadow_of FROM mldb.prediction_log WHERE statement LIKE '%inside%' "
                      "ORDER BY rowid") == [(1, None), (3, 1)]
    assert shadow_of_models(shop, "clf") is None
    _, log = logged(shop, "SELECT PREDICT(clf) FROM people")
    assert [row[4] for row in log] == [None]


def test_bad_input_writes_nothing(shop):
    shop.execute("DEPLOY MODEL clf VERSION 1")
    shop.execute("DEPLOY MODEL reg VERSION 1")
    catalog = "SELECT name, deployed_version, shadow_version, updated_at FROM mldb.models ORDER BY name"
    before, deployments = rows(shop, catalog), rows(shop, "SELECT count(*) FROM mldb.deployments")
    for statement, sqlstate in (("DEPLOY MODEL clf VERSION 9 AS SHADOW", "42704"),
                                ("DEPLOY MODEL nothing VERSION 1 AS SHADOW", "42704"),
                                ("DEPLOY MODEL clf VERSION 1 AS SHADOW", "22023"),  # the deployed version
                                ("DEPLOY MODEL reg VERSION 3 AS SHADOW", "22023"),  # labels beside values
                                ("DEPLOY MODEL clf VERSION 0 AS SHADOW", "42704")):
        with pytest.raises(mldb.Error) as caught:
            shop.execute(statement)
        assert caught.value.sqlstate == sqlstate, statement
    assert rows(shop, catalog) == before
    assert rows(shop, "SELECT count(*) FROM mldb.deployments") == deployments


def test_drop_model_clears_the_shadow(tmp_db):
    tmp_db.execute(ROWS)
    tmp_db.execute(f"CREATE MODEL gone PREDICT churned FROM ({FEATURES}) USING logistic WITH (epochs = 1)")
    tmp_db.execute("TRAIN gone USING logistic WITH (epochs = 1, seed = 5)")
    tmp_db.execute("DEPLOY MODEL gone VERSION 1 AS SHADOW")
    assert rows(tmp_db, "SELECT count(*) FROM mldb.prediction_log WHERE shadow_of IS NOT NULL") == [(0,)]
    rows(tmp_db, "SELECT PREDICT(gone) FROM people")
    assert rows(tmp_db, "SELECT version, shadow_of FROM mldb.prediction_log WHERE shadow_of IS NOT NULL") == [(1, 2)]
    tmp_db.execute("DROP MODEL gone")
    tmp_db.execute(f"CREATE MODEL gone PREDICT churned FROM ({FEATURES}) USING logistic WITH (epochs = 1)")
    tmp_db.execute("TRAIN gone USING logistic WITH (epochs = 1, seed = 5)")
    assert shadow_of_models(tmp_db, "gone") is None
    rows(tmp_db, "SELECT PREDICT(gone) FROM people")
    assert rows(tmp_db, "SELECT count(*) FROM mldb.prediction_log WHERE shadow_of IS NOT NULL") == [(1,)]


def test_a_shadow_with_fewer_features_is_fed_by_name(tmp_db):
    tmp_db.execute(ROWS)
    tmp_db.execute(f"CREATE MODEL sub PREDICT churned FROM ({FEATURES}) USING logistic WITH (epochs = 3)")
    tmp_db.execute("TRAIN sub FROM (SELECT spend, age, churned FROM people) USING logistic WITH (epochs = 1, lr = 0.5)")
    tmp_db.execute("DEPLOY MODEL sub VERSION 1")
    tmp_db.execute("DEPLOY MODEL sub VERSION 2 AS SHADOW")
    served, log = logged(tmp_db, "SELECT id, PREDICT(sub) FROM people ORDER BY id")
    shadow = [row[0] for row in rows(tmp_db, "SELECT PREDICT('sub@2') FROM people ORDER BY id")]
    expected = np.mean([mine == theirs for mine, (_, theirs) in zip(shadow, served)])
    assert [(row[1], row[2], row[4]) for row in log] == [(1, 400, None), (2, 400, 1)]
    assert log[1][5] == pytest.approx(expected) and json.loads(log[1][7])["shadow_errors"] == 0


OLD_MODELS = ("CREATE TABLE mldb.models (name VARCHAR PRIMARY KEY, target VARCHAR, task VARCHAR, "
              "algorithm VARCHAR, deployed_version INTEGER, latest_version INTEGER, training_query VARCHAR, "
              "options JSON, created_at TIMESTAMP, updated_at TIMESTAMP)")
OLD_LOG = ("CREATE TABLE mldb.prediction_log (model VARCHAR, version INTEGER, rows BIGINT, calls INTEGER, "
           "seconds DOUBLE, started_at TIMESTAMP, logged_at TIMESTAMP, query_fingerprint VARCHAR, "
           "statement VARCHAR, summary JSON)")


def test_a_file_made_before_shadows_opens_and_takes_one(db_path):
    old = duckdb.connect(db_path)
    for statement in ("CREATE SCHEMA mldb", OLD_MODELS, OLD_LOG,
                      "INSERT INTO mldb.prediction_log VALUES ('x', 1, 5, 1, 0.1, NULL, NULL, NULL, 'old', '{}')"):
        old.execute(statement)
    old.close()
    con = mldb.connect(db_path)
    con.execute(ROWS)
    con.execute(f"CREATE MODEL clf PREDICT churned FROM ({FEATURES}) USING logistic WITH (epochs = 1)")
    con.execute("TRAIN clf USING logistic WITH (epochs = 1, lr = 0.5, seed = 2)")
    con.execute("DEPLOY MODEL clf VERSION 1")
    con.execute("DEPLOY MODEL clf VERSION 2 AS SHADOW")
    rows(con, "SELECT PREDICT(clf) FROM people")
    assert rows(con, "SELECT model, version, shadow_of FROM mldb.prediction_log ORDER BY rowid") == [
        ("x", 1, None), ("clf", 1, None), ("clf", 2, 1)]
    con.close()
    reopened = mldb.connect(db_path)
    assert rows(reopened, "SELECT name, shadow_version FROM mldb.models") == [("clf", 2)]
    reopened.close()
