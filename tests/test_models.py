"""Models: training quality against scikit-learn, EVALUATE's metrics, the registry API,
persistence, versions and the model cache. SQL-level behaviour lives in sql/models/*.test."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from sklearn import datasets, metrics
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mldb
from mldb.models.registry import load_model


def _load_table(con, name: str, table: pa.Table) -> None:
    """Copy an Arrow table in through DuckDB's own connection (a test fixture, not mldb's API)."""
    root = con.database.root
    root.register("__incoming", table)
    try:
        root.execute(f"CREATE TABLE {name} AS SELECT * FROM __incoming")
    finally:
        root.unregister("__incoming")


def _dataset_tables(con, loader, stratify: bool):
    data = loader()
    x, y = data.data, data.target
    names = [f"f{i}" for i in range(x.shape[1])]
    split = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y if stratify else None)
    x_train, x_test, y_train, y_test = split
    for name, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        columns = {n: xs[:, i] for i, n in enumerate(names)} | {"target": ys}
        _load_table(con, name, pa.table(columns))
    return x_train, x_test, y_train, y_test


def _evaluate(con, model: str, query: str = "SELECT * FROM test") -> dict:
    cursor = con.execute(f"SELECT * FROM EVALUATE({model}, ({query}))")
    names = [column[0] for column in cursor.description]
    return dict(zip(names, cursor.fetchone()))


@pytest.mark.parametrize("loader", [datasets.load_breast_cancer, datasets.load_wine], ids=["breast_cancer", "wine"])
def test_classification_quality_matches_logistic_regression(tmp_db, loader):
    x_train, x_test, y_train, y_test = _dataset_tables(tmp_db, loader, stratify=True)
    tmp_db.execute("CREATE MODEL clf PREDICT target FROM train USING logistic WITH (epochs = 100, seed = 1)")
    baseline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_train, y_train)
    expected = metrics.accuracy_score(y_test, baseline.predict(x_test))
    result = _evaluate(tmp_db, "clf")
    assert result["rows"] == len(y_test)
    assert result["accuracy"] >= expected - 0.03, (result, expected)


def test_regression_quality_matches_ridge(tmp_db):
    x_train, x_test, y_train, y_test = _dataset_tables(tmp_db, datasets.load_diabetes, stratify=False)
    tmp_db.execute("CREATE MODEL reg PREDICT target FROM train USING linear WITH (epochs = 200, seed = 1)")
    baseline = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(x_train, y_train)
    expected = metrics.r2_score(y_test, baseline.predict(x_test))
    result = _evaluate(tmp_db, "reg")
    assert result["r2"] >= expected - 0.08, (result, expected)


def test_mlp_learns_a_nonlinear_boundary(tmp_db):
    tmp_db.execute("CREATE TABLE ring AS SELECT x, y, (x * x + y * y) < 0.5 AS inside FROM "
                   "(SELECT random() * 2 - 1 AS x, random() * 2 - 1 AS y FROM range(3000))")
    tmp_db.execute("CREATE MODEL ring_linear PREDICT inside FROM ring USING logistic WITH (epochs = 30)")
    tmp_db.execute("CREATE MODEL ring_mlp PREDICT inside FROM ring USING mlp WITH (epochs = 60, hidden = [32, 32])")
    linear = _evaluate(tmp_db, "ring_linear", "SELECT * FROM ring")["accuracy"]
    mlp = _evaluate(tmp_db, "ring_mlp", "SELECT * FROM ring")["accuracy"]
    assert mlp > 0.9 and mlp > linear + 0.1


def _scored(con, model: str, query: str):
    rows = con.execute(f"SELECT target, PREDICT_PROBA({model}) FROM ({query})").fetchall()
    return [row[0] for row in rows], [row[1] for row in rows]


@pytest.mark.parametrize("loader", [datasets.load_breast_cancer, datasets.load_wine], ids=["binary", "multiclass"])
def test_evaluate_matches_sklearn_classification_metrics(tmp_db, loader):
    _dataset_tables(tmp_db, loader, stratify=True)
    tmp_db.execute("CREATE MODEL clf PREDICT target FROM train USING mlp WITH (epochs = 5, hidden = [8])")
    truth, maps = _scored(tmp_db, "clf", "SELECT * FROM test")
    classes = sorted(maps[0], key=int)
    proba = np.array([[m[c] for c in classes] for m in maps])
    predicted = np.array([int(classes[i]) for i in proba.argmax(axis=1)])
    average = "binary" if len(classes) == 2 else "macro"
    result = _evaluate(tmp_db, "clf")
    assert result["accuracy"] == pytest.approx(metrics.accuracy_score(truth, predicted))
    assert result["precision"] == pytest.approx(metrics.precision_score(truth, predicted, average=average, zero_division=0))
    assert result["recall"] == pytest.approx(metrics.recall_score(truth, predicted, average=average, zero_division=0))
    assert result["f1"] == pytest.approx(metrics.f1_score(truth, predicted, average=average, zero_division=0))
    auc = metrics.roc_auc_score(truth, proba[:, 1]) if len(classes) == 2 else \
        metrics.roc_auc_score(truth, proba, multi_class="ovr", average="macro")
    assert result["roc_auc"] == pytest.approx(auc)
    assert result["log_loss"] == pytest.approx(metrics.log_loss(truth, proba, labels=[int(c) for c in classes]), rel=1e-6)


def test_evaluate_matches_sklearn_regression_metrics(tmp_db):
    _dataset_tables(tmp_db, datasets.load_diabetes, stratify=False)
    tmp_db.execute("CREATE MODEL reg PREDICT target FROM train USING mlp WITH (epochs = 5, hidden = [8])")
    rows = tmp_db.execute("SELECT target, PREDICT(reg) FROM test").fetchall()
    truth, predicted = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    result = _evaluate(tmp_db, "reg")
    assert result["mae"] == pytest.approx(metrics.mean_absolute_error(truth, predicted))
    assert result["mse"] == pytest.approx(metrics.mean_squared_error(truth, predicted))
    assert result["rmse"] == pytest.approx(metrics.mean_squared_error(truth, predicted) ** 0.5)
    assert result["r2"] == pytest.approx(metrics.r2_score(truth, predicted))
    assert result["rows"] == len(truth)


CUSTOMERS = """CREATE TABLE customers AS SELECT i AS id, (i % 60 + 18) AS age,
    ['basic', 'pro', 'max'][i % 3 + 1]::ENUM('basic', 'pro', 'max') AS plan,
    CASE WHEN i % 7 = 0 THEN NULL ELSE (i * 37 % 100)::DOUBLE END AS spend,
    DATE '2024-01-01' + INTERVAL (i % 365) DAY AS joined,
    [i % 5, (i * 3) % 7]::FLOAT[2] AS vec,
    CASE WHEN (i % 60 + 18) > 45 OR i % 3 = 2 THEN 'yes' ELSE 'no' END AS churned
    FROM range(1500) t(i)"""


def test_every_feature_kind_and_nulls(tmp_db):
    tmp_db.execute(CUSTOMERS)
    tmp_db.execute("CREATE MODEL churn PREDICT churned FROM (SELECT * EXCLUDE (id) FROM customers) "
                   "WITH (epochs = 40, lr = 0.05)")
    described = tmp_db.execute("DESCRIBE MODEL churn").fetchall()
    assert [(r[0], r[2], r[3]) for r in described] == [
        ("age", "standard", 1), ("plan", "onehot", 4), ("spend", "standard", 1),
        ("joined", "date", 5), ("vec", "vector", 2)]
    assert _evaluate(tmp_db, "churn", "SELECT * FROM customers")["accuracy"] > 0.9
    nulls = tmp_db.execute("SELECT PREDICT(churn, NULL, NULL, NULL, NULL, NULL), "
                           "PREDICT(churn, 70, 'max', NULL, NULL, NULL)").fetchone()
    assert nulls[0] in ("yes", "no") and nulls[1] == "yes"


def test_registry_api_and_persistence(db_path):
    con = mldb.connect(db_path)
    con.execute(CUSTOMERS)
    con.execute("CREATE MODEL churn PREDICT churned FROM (SELECT age, plan, spend, churned FROM customers) "
                "WITH (epochs = 10)")
    sql_predictions = [r[0] for r in con.execute("SELECT PREDICT(churn) FROM customers ORDER BY id").fetchall()]
    con.close()

    con = mldb.connect(db_path)
    model = load_model(con, "churn")
    assert (model.name, model.version, model.task, model.target, model.target_type) == \
        ("churn", 1, "binary", "churned", "VARCHAR")
    assert model.classes == ["no", "yes"]
    assert [(f["name"], f["encoding"]) for f in model.features] == [
        ("age", "standard"), ("plan", "onehot"), ("spend", "standard")]
    table = con.execute("SELECT * FROM customers ORDER BY id").arrow()
    assert model.predict(table).to_pylist() == sql_predictions
    positional = model.predict([table["age"], table["plan"], table["spend"]])
    assert positional.to_pylist() == sql_predictions
    assert con.execute("SELECT PREDICT(churn) FROM customers ORDER BY id").fetchall() == \
        [(p,) for p in sql_predictions]
    con.close()


def test_same_seed_same_model(tmp_db):
    tmp_db.execute(CUSTOMERS)
    source = "(SELECT age, plan, spend, churned FROM customers)"
    tmp_db.execute(f"CREATE MODEL a PREDICT churned FROM {source} USING mlp WITH (epochs = 4, seed = 3)")
    tmp_db.execute(f"CREATE MODEL b PREDICT churned FROM {source} USING mlp WITH (epochs = 4, seed = 3)")
    tmp_db.execute(f"CREATE MODEL c PREDICT churned FROM {source} USING mlp WITH (epochs = 4, seed = 4)")
    same = tmp_db.execute("SELECT count(*) FILTER (WHERE PREDICT_PROBA(a) = PREDICT_PROBA(b)), "
                          "count(*) FILTER (WHERE PREDICT_PROBA(a) = PREDICT_PROBA(c)), count(*) "
                          "FROM customers").fetchone()
    assert same[0] == same[2] and same[1] < same[2]


def test_versions_deploy_and_the_model_cache(tmp_db):
    tmp_db.execute("CREATE TABLE pts AS SELECT (i - 100) / 10.0 AS x, i > 100 AS up FROM range(201) t(i)")
    tmp_db.execute("CREATE MODEL side PREDICT up FROM pts WITH (epochs = 60, lr = 0.1)")
    tmp_db.execute("CREATE VIEW guess AS SELECT PREDICT(side) AS p FROM (SELECT 5.0 AS x)")
    assert tmp_db.execute("SELECT * FROM guess").fetchone() == (True,)
    tmp_db.execute("TRAIN side FROM (SELECT x, NOT up AS up FROM pts)")  # version 2 learns the opposite
    assert tmp_db.execute("SELECT * FROM guess").fetchone() == (False,)
    assert tmp_db.execute("SELECT PREDICT('side@1', 5.0), PREDICT('side@2', 5.0)").fetchone() == (True, False)
    tmp_db.execute("DEPLOY MODEL side VERSION 1")
    assert tmp_db.execute("SELECT * FROM guess").fetchone() == (True,)
    versions = tmp_db.execute("SHOW VERSIONS OF MODEL side").fetchall()
    assert [(row[0], row[5]) for row in versions] == [(1, True), (2, False)]
    shown = tmp_db.execute("SHOW MODELS").fetchall()
    assert [(r[0], r[1], r[2], r[5]) for r in shown] == [("side", 1, "binary", "deployed (newest: 2)")]


def test_training_log_and_early_stopping(tmp_db):
    tmp_db.execute("CREATE TABLE pts AS SELECT (i % 100) / 10.0 AS x, (i % 100) / 10.0 * 2 + 1 AS y FROM range(1000) t(i)")
    tmp_db.execute("CREATE MODEL line PREDICT y FROM pts USING linear WITH (epochs = 500, patience = 3, lr = 0.05)")
    log = tmp_db.execute("SELECT epoch, train_loss, valid_loss, metric_name FROM mldb.training_log "
                         "WHERE model = 'line' ORDER BY epoch").fetchall()
    assert 3 < len(log) < 500  # stopped early
    assert [row[0] for row in log] == list(range(1, len(log) + 1))
    assert log[-1][1] < log[0][1] and {row[3] for row in log} == {"r2"}
    r2 = tmp_db.execute("SELECT CAST(metrics->>'r2' AS DOUBLE) FROM mldb.model_versions").fetchone()[0]
    assert r2 > 0.99


def test_failed_statements_change_nothing(db_path):
    con = mldb.connect(db_path)
    con.execute("CREATE TABLE pts AS SELECT i AS x, i % 2 = 0 AS even FROM range(100) t(i)")
    con.execute("CREATE MODEL ev PREDICT even FROM pts WITH (epochs = 2)")
    before = con.execute("SELECT version, fingerprint, weights FROM mldb.model_versions").fetchall()
    with pytest.raises(mldb.ProgrammingError, match="model 'ev' already exists"):
        con.execute("CREATE MODEL ev PREDICT even FROM pts")
    with pytest.raises(mldb.DataError, match="model 'ev': target 'even' has one class"):
        con.execute("TRAIN ev FROM (SELECT x, true AS even FROM pts)")
    with pytest.raises(mldb.ProgrammingError, match="model 'ev' has no version 5"):
        con.execute("DEPLOY MODEL ev VERSION 5")
    con.close()
    con = mldb.connect(db_path)
    assert con.execute("SELECT version, fingerprint, weights FROM mldb.model_versions").fetchall() == before
    assert con.execute("SELECT deployed_version, latest_version FROM mldb.models").fetchall() == [(1, 1)]
    con.close()


def test_training_inside_a_user_transaction_rolls_back(tmp_db):
    tmp_db.execute("CREATE TABLE pts AS SELECT i AS x, i % 2 = 0 AS even FROM range(100) t(i)")
    cursor = tmp_db.cursor()
    cursor.execute("BEGIN")
    cursor.execute("CREATE MODEL ev PREDICT even FROM pts WITH (epochs = 2)")
    assert cursor.execute("SELECT count(*) FROM mldb.model_versions").fetchone() == (1,)
    cursor.execute("ROLLBACK")
    assert tmp_db.execute("SELECT count(*) FROM mldb.models").fetchone() == (0,)


def test_a_rolled_back_train_is_not_served(tmp_db):
    tmp_db.execute("CREATE TABLE pts AS SELECT (i - 100) / 10.0 AS x, i > 100 AS up FROM range(201) t(i)")
    tmp_db.execute("CREATE MODEL side PREDICT up FROM pts WITH (epochs = 60, lr = 0.1)")
    cursor = tmp_db.cursor()
    cursor.execute("BEGIN")
    cursor.execute("TRAIN side FROM (SELECT x, NOT up AS up FROM pts)")
    assert cursor.execute("SELECT PREDICT(side, 5.0)").fetchone() == (False,)
    cursor.execute("ROLLBACK")
    assert tmp_db.execute("SELECT PREDICT(side, 5.0)").fetchone() == (True,)
    assert tmp_db.execute("SELECT max(version) FROM mldb.model_versions").fetchone() == (1,)


def test_readme_tour_runs(db_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("<!-- section: models -->")[1].split("<!-- /section: models -->")[0]
    tour = section.split("```sql")[1].split("```")[0]
    con = mldb.connect(db_path)
    con.execute(tour)
    assert con.execute("SELECT deployed_version, latest_version FROM mldb.models").fetchall() == [(1, 2)]
    assert con.execute("SELECT algorithm FROM mldb.model_versions ORDER BY version").fetchall() == \
        [("mlp",), ("logistic",)]
    con.close()
    con = mldb.connect(db_path)
    at_risk = con.execute("SELECT count(*) FROM at_risk").fetchone()[0]
    churned = con.execute("SELECT count(*) FROM customers WHERE churned").fetchone()[0]
    assert abs(at_risk - churned) < 0.1 * churned
    con.close()


def test_long_text_goes_through_embed(tmp_db):
    good = ["the staff were friendly and helpful", "a wonderful stay with a lovely view",
            "great food and a very comfortable bed", "excellent service, we will come back"]
    bad = ["the room was dirty and smelled awful", "rude staff and a broken shower",
           "terrible noise all night, no sleep", "cold food and a filthy bathroom"]
    places = ["in Paris", "in Rome", "by the sea", "in the mountains", "downtown", "near the station",
              "at the airport", "in the old town", "on the lake", "in Berlin"]
    rows = [(f"{text} {place}", label) for place in places
            for texts, label in ((good, "positive"), (bad, "negative")) for text in texts]
    tmp_db.execute("CREATE TABLE reviews(body VARCHAR, mood VARCHAR)")
    tmp_db.executemany("INSERT INTO reviews VALUES (?, ?)", rows)
    tmp_db.execute("CREATE MODEL mood PREDICT mood FROM reviews USING logistic WITH (epochs = 30)")
    feature = tmp_db.execute("DESCRIBE MODEL mood").fetchone()
    assert feature[:4] == ("body", "VARCHAR", "embed", 384)
    guesses = tmp_db.execute("SELECT PREDICT(mood, 'lovely friendly staff and a great view in Madrid'), "
                             "PREDICT(mood, 'a dirty room and rude people in Madrid')").fetchone()
    assert guesses == ("positive", "negative")


def test_grammar_nodes():
    from mldb.frontend import parse, split_statements
    from mldb.frontend import models as grammar

    def tree(sql):
        return parse(split_statements(sql)[0])

    create = tree("CREATE OR REPLACE MODEL IF NOT EXISTS c PREDICT y FROM (SELECT a, y FROM t) "
                  "USING mlp WITH (hidden = [8, 4], lr = 0.1, device = 'cpu')")
    assert isinstance(create, grammar.CreateModel) and create.this == "c"
    assert create.args["replace"] and create.args["exists"] and create.args["algorithm"].name == "mlp"
    from mldb.models.statements import options_of

    assert options_of(create) == {"hidden": [8, 4], "lr": 0.1, "device": "cpu"}
    train = tree("TRAIN c FROM SNAPSHOT VERSION 2")
    assert isinstance(train, grammar.TrainModel) and train.args["snapshot_version"].name == "2"
    assert isinstance(tree("SHOW VERSIONS OF MODEL c"), grammar.ShowVersions)
    assert isinstance(tree("DEPLOY MODEL c VERSION 3"), grammar.DeployModel)
    assert isinstance(tree("DROP MODEL IF EXISTS c"), grammar.DropModel)
    assert not isinstance(tree("DESCRIBE model"), grammar.DescribeModel)  # a table called model
    select = tree("SELECT (SELECT PREDICT_PROBA(c)['x'] FROM t) FROM PREDICT(c, (SELECT * FROM t))")
    assert {type(n).__name__ for n in select.find_all(grammar.Predict, grammar.PredictProba)} == \
        {"Predict", "PredictProba"}


def test_explain_shows_the_rewrite_and_whole_batches(tmp_db):
    tmp_db.execute("CREATE TABLE pts AS SELECT i / 100.0 AS x, i % 2 = 0 AS even FROM range(10000) t(i)")
    tmp_db.execute("CREATE MODEL ev PREDICT even FROM pts WITH (epochs = 1)")
    plan = "\n".join(str(row) for row in tmp_db.execute("EXPLAIN SELECT PREDICT(ev) FROM pts").fetchall())
    assert "mldb_predict_boolean" in plan and "model ev@1 (logistic, binary)" in plan
    rewritten = tmp_db.execute("SELECT PREDICT(ev) FROM pts").fetchall()
    # the rewritten call by hand: the pinned version, and 0 for "no statement to log for"
    assert tmp_db.execute("SELECT mldb_predict_boolean('ev@1', 0, x) FROM pts").fetchall() == rewritten
    calls, rows = tmp_db.execute("SELECT calls, rows FROM mldb.prediction_log WHERE model = 'ev' "
                                 "ORDER BY logged_at LIMIT 1").fetchone()
    assert rows / calls >= 1000  # whole DuckDB vectors (2048 rows) per call, never one call per row


def test_parameters_inside_model_calls(tmp_db):
    tmp_db.execute("CREATE TABLE people AS SELECT (i % 80 + 10)::INTEGER AS age, ['a', 'b'][i % 2 + 1] AS grp, "
                   "(i % 80 + 10) > 50 AS old FROM range(400) t(i)")
    tmp_db.execute("CREATE MODEL m PREDICT old FROM people USING logistic WITH (epochs = 100, lr = 0.05)")
    assert tmp_db.execute("SELECT PREDICT(m, ?, ?), PREDICT(m, ?, ?)", [85, "a", 12, "b"]).fetchone() == (True, False)
    by_name = tmp_db.execute("SELECT count(*) FROM people WHERE age > ? AND PREDICT(m)", [60]).fetchone()
    table = tmp_db.execute("SELECT count(*) FROM PREDICT(m, (SELECT * FROM people WHERE age > ?)) "
                           "WHERE prediction", [60]).fetchone()
    assert by_name == table == tmp_db.execute("SELECT count(*) FROM people WHERE age > 60").fetchone()
    assert tmp_db.execute("SELECT \"rows\" FROM EVALUATE(m, (SELECT * FROM people WHERE age > ?))",
                          [30]).fetchone() == (295,)
