"""USING lightgbm: gradient-boosted trees trained with LightGBM, served by PREDICT and the rest like any model.

One table, ``shop``, holds a numeric column and a text column with NULLs, a vector and a date, and four
targets whose signal a tree can only find if the tree form is right: ``flag`` is true where ``spend`` is
NULL (missing must stay missing, not be imputed), ``vip`` depends on the category ``plan`` alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mldb
from mldb.models import boosting, train
from mldb.models.registry import load_model

ROWS = 3000
SHOP = f"""
CREATE TABLE shop AS SELECT *,
    spend IS NULL OR spend > 8 AS flag,
    coalesce(plan IN ('gold', 'silver'), false) AS vip,
    CASE WHEN spend IS NULL THEN 'none' WHEN spend > 6 THEN 'high' WHEN spend > 3 THEN 'mid' ELSE 'low' END AS tier,
    3 * coalesce(spend, 12) + CASE plan WHEN 'gold' THEN 10 WHEN 'silver' THEN 5 ELSE 0 END + noise / 100 AS amount,
    hash(id + 99) % 2 = 0 AS coin
FROM (SELECT i AS id,
    CASE WHEN i % 9 = 0 THEN NULL ELSE (hash(i) % 1000) / 100.0 END AS spend,
    CASE WHEN i % 13 = 0 THEN NULL
         ELSE ['gold', 'silver', 'bronze', 'tin', 'iron'][(hash(i + 7) % 5 + 1)::BIGINT] END AS plan,
    (hash(i + 11) % 100)::DOUBLE AS noise,
    CASE WHEN i % 17 = 0 THEN NULL
         ELSE [(hash(i + 3) % 10)::FLOAT, (hash(i + 5) % 10)::FLOAT, 1.0]::FLOAT[3] END AS vec,
    DATE '2024-01-01' + (hash(i + 13) % 300)::INTEGER AS seen
    FROM range({ROWS}) t(i))
"""
HOLDOUT = "(SELECT * EXCLUDE (id) FROM shop WHERE id % 5 = 0)"


def training(target: str) -> str:
    """The training query: the feature columns and ``target``, four rows in five (the fifth is the holdout)."""
    return f"(SELECT spend, plan, noise, vec, seen, {target} FROM shop WHERE id % 5 <> 0)"


@pytest.fixture
def shop(tmp_path):
    con = mldb.connect(str(tmp_path / "shop.db"))
    con.execute(SHOP)
    yield con
    if not con.closed:
        con.close()


def rows(con, sql: str) -> list:
    return con.execute(sql).fetchall()


def evaluate(con, model: str, query: str = HOLDOUT) -> dict:
    cursor = con.execute(f"SELECT * FROM EVALUATE({model}, {query})")
    return dict(zip([column[0] for column in cursor.description], cursor.fetchone()))


def shown(con, statement: str, *columns: str) -> list[tuple]:
    """Some columns of a SHOW statement's rows."""
    cursor = con.execute(statement)
    names = [column[0] for column in cursor.description]
    return [tuple(row[names.index(column)] for column in columns) for row in cursor.fetchall()]


def version_row(con, model: str, version: int = 1) -> dict:
    cursor = con.execute("SELECT * FROM mldb.model_versions WHERE model = ? AND version = ?", [model, version])
    return dict(zip([column[0] for column in cursor.description], cursor.fetchone()))


# -- the three tasks ---------------------------------------------------------------------------
def test_binary_boolean_target_learns_that_missing_is_a_signal(shop):
    summary = rows(shop, f"CREATE MODEL m PREDICT flag FROM {training('flag')} USING lightgbm")
    assert summary[0][:4] == ("m", 1, "binary", "lightgbm")
    assert evaluate(shop, "m")["accuracy"] >= 0.99
    # spend IS NULL -> true: imputing NULL as the mean (about 5) would predict false for every such row
    assert rows(shop, "SELECT bool_and(PREDICT(m)), count(*) FROM shop WHERE spend IS NULL") == [(True, 334)]
    assert rows(shop, "SELECT typeof(PREDICT(m)) FROM shop LIMIT 1") == [("BOOLEAN",)]
    spend = next(f for f in version_features(shop, "m") if f["name"] == "spend")
    assert spend["encoding"] == "raw" and "mean" not in spend


def version_features(con, model: str) -> list[dict]:
    return json.loads(version_row(con, model)["features"])


def test_multiclass_varchar_target(shop):
    rows(shop, f"CREATE MODEL tiers PREDICT tier FROM {training('tier')} USING lightgbm")
    result = evaluate(shop, "tiers")
    assert result["accuracy"] >= 0.98 and result["rows"] == ROWS // 5
    predicted = rows(shop, "SELECT DISTINCT PREDICT(tiers) FROM shop ORDER BY 1")
    assert predicted == [("high",), ("low",), ("mid",), ("none",)]
    sums = rows(shop, "SELECT min(s), max(s) FROM (SELECT list_sum(map_values(PREDICT_PROBA(tiers))) AS s FROM shop)")
    assert sums[0][0] == pytest.approx(1.0, abs=1e-9) and sums[0][1] == pytest.approx(1.0, abs=1e-9)
    keys = rows(shop, "SELECT map_keys(PREDICT_PROBA(tiers)) FROM shop LIMIT 1")[0][0]
    assert keys == ["high", "low", "mid", "none"]


def test_regression_in_the_targets_units(shop):
    rows(shop, f"CREATE MODEL amounts PREDICT amount FROM {training('amount')} USING lightgbm")
    result = evaluate(shop, "amounts")
    assert result["r2"] >= 0.97, result
    mean = rows(shop, f"SELECT avg(PREDICT(amounts)), avg(amount) FROM {HOLDOUT}")[0]
    assert mean[0] == pytest.approx(mean[1], rel=0.05)  # values, not standardised ones


def test_category_is_passed_as_categorical_and_a_category_only_signal_is_learnt(shop):
    rows(shop, f"CREATE MODEL vips PREDICT vip FROM {training('vip')} USING lightgbm")
    plan = next(f for f in version_features(shop, "vips") if f["name"] == "plan")
    assert plan["encoding"] == "category" and plan["width"] == 1
    assert sorted(plan["categories"]) == ["bronze", "gold", "iron", "silver", "tin"]
    weights = bytes(version_row(shop, "vips")["weights"])
    assert b"cat_threshold=" in weights  # LightGBM's categorical splits (a one-hot tree has none)
    assert evaluate(shop, "vips")["accuracy"] == 1.0
    # an unseen value and NULL are both 'not gold or silver'; neither is an error
    unseen = rows(shop, "SELECT PREDICT(vips, 5.0, 'platinum', 1.0, [1, 2, 1]::FLOAT[3], DATE '2024-02-01'), "
                        "PREDICT(vips, 5.0, NULL, 1.0, NULL, NULL), PREDICT(vips, NULL, 'gold', NULL, NULL, NULL)")
    assert unseen == [(False, False, True)]


def test_describe_model_shows_the_tree_form(shop):
    rows(shop, f"CREATE MODEL m PREDICT flag FROM {training('flag')} USING lightgbm")
    described = rows(shop, "DESCRIBE MODEL m")
    assert [row[:4] for row in described] == [
        ("spend", "DOUBLE", "raw", 1), ("plan", "VARCHAR", "category", 1), ("noise", "DOUBLE", "raw", 1),
        ("vec", "FLOAT[3]", "raw_vector", 3), ("seen", "DATE", "raw_date", 4)]


# -- training: early stopping, the log, seeds, cancel ----------------------------------------------
def test_early_stopping_on_the_validation_rows_and_one_log_row_per_round(shop):
    rows(shop, f"CREATE MODEL coin PREDICT coin FROM {training('coin')} USING lightgbm "
               "WITH (learning_rate = 0.3, num_iterations = 1000, early_stopping_rounds = 5)")
    hyper = json.loads(version_row(shop, "coin")["hyperparameters"])
    log = rows(shop, "SELECT epoch, train_loss, valid_loss, valid_metric, metric_name FROM mldb.training_log "
                     "WHERE model = 'coin' ORDER BY epoch")
    assert hyper["rounds_run"] < 1000 and len(log) == hyper["rounds_run"]
    assert [row[0] for row in log] == list(range(1, len(log) + 1))
    assert hyper["best_iteration"] == hyper["rounds_run"] - 5
    valid_loss = np.array([row[2] for row in log])
    assert int(valid_loss.argmin()) + 1 == hyper["best_iteration"]
    assert log[-1][1] < log[0][1]  # the training loss keeps falling on noise while the validation loss does not
    assert {row[4] for row in log} == {"accuracy"} and all(0 <= row[3] <= 1 for row in log)
    text = bytes(version_row(shop, "coin")["weights"]).decode()
    assert text.count("Tree=") == hyper["best_iteration"]  # the rounds after the best are not kept


def test_the_validation_split_is_train_py_s(shop):
    rows(shop, f"CREATE MODEL m PREDICT flag FROM {training('flag')} USING lightgbm WITH (valid_fraction = 0.25)")
    version = version_row(shop, "m")
    total = ROWS - ROWS // 5
    train_idx, valid_idx = train._split("m", total, 0.25, 42)
    assert (version["train_rows"], version["valid_rows"]) == (len(train_idx), len(valid_idx))
    assert json.loads(version["metrics"])["rows"] == len(valid_idx)


def test_same_seed_same_model_other_seed_another(shop):
    options = "bagging_fraction = 0.7, bagging_freq = 1, feature_fraction = 0.7, num_iterations = 50"
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        rows(shop, f"CREATE MODEL {name} PREDICT amount FROM {training('amount')} USING lightgbm "
                   f"WITH ({options}, seed = {seed})")
    a, b, c = (np.array(rows(shop, f"SELECT PREDICT({name}) FROM shop ORDER BY id")) for name in "abc")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_cancel_is_checked_every_round(shop):
    table = shop.database.root.sql("SELECT spend, plan, flag FROM shop").to_arrow_table()
    calls = []

    class Stop(Exception):
        pass

    def check_cancel():
        calls.append(1)
        if len(calls) == 7:
            raise Stop

    with pytest.raises(Stop):
        train.fit("m", table, "flag", {"spend": "DOUBLE", "plan": "VARCHAR", "flag": "BOOLEAN"}, "lightgbm",
                  {"early_stopping_rounds": 0}, check_cancel=check_cancel)
    assert len(calls) == 7


# -- the registry: persistence, versions, DEPLOY ---------------------------------------------------
def test_stored_as_lightgbm_text_and_the_same_after_reopening(tmp_path):
    path = str(tmp_path / "x.db")
    con = mldb.connect(path)
    con.execute(SHOP)
    con.execute(f"CREATE MODEL m PREDICT tier FROM {training('tier')} USING lightgbm")
    weights = bytes(version_row(con, "m")["weights"])
    assert weights.startswith(b"tree\n") and b"pickle" not in weights
    before = rows(con, "SELECT PREDICT(m), PREDICT_PROBA(m) FROM shop ORDER BY id")
    con.close()
    con = mldb.connect(path)
    try:
        assert rows(con, "SELECT PREDICT(m), PREDICT_PROBA(m) FROM shop ORDER BY id") == before
    finally:
        con.close()


def test_versions_and_deploy_across_algorithms(shop):
    rows(shop, f"CREATE MODEL m PREDICT flag FROM {training('flag')} USING logistic WITH (epochs = 5)")
    rows(shop, "TRAIN m USING lightgbm WITH (num_leaves = 15)")  # (epochs, a logistic option, is not inherited)
    assert shown(shop, "SHOW VERSIONS OF MODEL m", "version", "algorithm", "deployed") == [
        (1, "logistic", False), (2, "lightgbm", True)]
    assert json.loads(version_row(shop, "m", 2)["hyperparameters"])["num_leaves"] == 15
    v1 = rows(shop, "SELECT PREDICT('m@1') FROM shop ORDER BY id")
    v2 = rows(shop, "SELECT PREDICT('m@2') FROM shop ORDER BY id")
    assert v1 != v2
    assert rows(shop, "SELECT PREDICT(m) FROM shop ORDER BY id") == v2
    shop.execute("DEPLOY MODEL m VERSION 1")
    assert rows(shop, "SELECT PREDICT(m) FROM shop ORDER BY id") == v1
    assert shown(shop, "SHOW MODELS", "version", "algorithm") == [(1, "logistic")]
    shop.execute("DEPLOY MODEL m VERSION 2")
    assert rows(shop, "SELECT PREDICT(m) FROM shop ORDER BY id") == v2
    rows(shop, "TRAIN m USING mlp WITH (epochs = 2)")  # (num_leaves, a lightgbm option, is not inherited)
    assert rows(shop, "SELECT algorithm FROM mldb.model_versions WHERE model = 'm' AND version = 3") == [("mlp",)]


# -- PREDICT's other forms, EVALUATE, DRIFT, the prediction log --------------------------------------
def test_table_form_and_evaluate_agree_with_predict(shop):
    rows(shop, f"CREATE MODEL tiers PREDICT tier FROM {training('tier')} USING lightgbm")
    table = rows(shop, "SELECT prediction, probability FROM PREDICT(tiers, (SELECT * FROM shop ORDER BY id))")
    scalar = rows(shop, "SELECT PREDICT(tiers), list_max(map_values(PREDICT_PROBA(tiers))) FROM shop ORDER BY id")
    assert [row[0] for row in table] == [row[0] for row in scalar]
    assert np.allclose([row[1] for row in table], [row[1] for row in scalar])
    result = evaluate(shop, "tiers")
    truth = rows(shop, f"SELECT avg((PREDICT(tiers) = tier)::INT), "
                       f"-avg(ln(greatest(PREDICT_PROBA(tiers)[tier], 2.220446049250313e-16))) FROM {HOLDOUT}")[0]
    assert result["accuracy"] == pytest.approx(truth[0]) and result["log_loss"] == pytest.approx(truth[1], rel=1e-6)
    assert set(result) == {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "rows"}
    metrics = json.loads(version_row(shop, "tiers")["metrics"])
    assert set(metrics) == set(result)


def test_drift_and_the_prediction_log(shop):
    rows(shop, f"CREATE MODEL m PREDICT flag FROM {training('flag')} USING lightgbm")
    drifted = rows(shop, "SELECT DISTINCT feature FROM DRIFT(m, (SELECT spend + 5 AS spend, plan, noise, vec, seen "
                         "FROM shop)) WHERE drifted ORDER BY 1")
    assert drifted == [("(prediction)",), ("spend",)]
    kinds = rows(shop, "SELECT feature, kind FROM mldb.feature_stats WHERE model = 'm' AND feature IN ('plan', 'spend') "
                       "ORDER BY 1")
    assert kinds == [("plan", "categorical"), ("spend", "numeric")]
    before = rows(shop, "SELECT count(*) FROM mldb.prediction_log")[0][0]
    rows(shop, "SELECT PREDICT(m) FROM shop")
    log = rows(shop, "SELECT model, version, rows FROM mldb.prediction_log ORDER BY logged_at DESC, rowid DESC LIMIT 1")
    assert rows(shop, "SELECT count(*) FROM mldb.prediction_log")[0][0] == before + 1
    assert log == [("m", 1, ROWS)]


# -- the explanation hooks ---------------------------------------------------------------------------
def feature_arrays(con, model, query: str) -> list:
    table = con.database.root.sql(query).to_arrow_table()
    return [table[name] for name in model.feature_names]


@pytest.mark.parametrize("target", ["flag", "tier", "amount"])
def test_contributions_add_up_to_the_raw_output(shop, target):
    rows(shop, f"CREATE MODEL m PREDICT {target} FROM {training(target)} USING lightgbm")
    model = load_model(shop, "m")
    arrays = feature_arrays(shop, model, "SELECT * FROM shop ORDER BY id LIMIT 500")
    raw, baseline, contributions = boosting.contributions(model, arrays)
    assert raw.dtype == baseline.dtype == contributions.dtype == np.float64
    assert raw.shape == baseline.shape == (500,) and contributions.shape == (500, 5)  # vec's 3 columns folded
    x = model.encoder(arrays)
    scores = model.booster.predict(x, raw_score=True)
    if target == "tier":
        predicted = model.forward(arrays).argmax(axis=1)
        scores = scores[np.arange(500), predicted]
    np.testing.assert_allclose(raw, scores, atol=1e-9)
    np.testing.assert_allclose(baseline + contributions.sum(axis=1), raw, atol=1e-6)
    # the expected raw output: one for every row (for multiclass, the predicted class's)
    assert len(np.unique(baseline)) == (1 if target != "tier" else len(np.unique(predicted)))
    importance = boosting.importance(model)
    assert importance.dtype == np.float64 and importance.shape == (5,)
    assert importance.sum() == pytest.approx(1.0) and (importance >= 0).all()
    assert model.feature_names[int(importance.argmax())] == "spend"


def test_importance_finds_the_category(shop):
    rows(shop, f"CREATE MODEL vips PREDICT vip FROM {training('vip')} USING lightgbm")
    model = load_model(shop, "vips")
    importance = dict(zip(model.feature_names, boosting.importance(model)))
    assert importance["plan"] > 0.95, importance
    arrays = feature_arrays(shop, model, "SELECT * FROM shop WHERE plan = 'gold' LIMIT 50")
    _, _, contributions = boosting.contributions(model, arrays)
    assert (contributions[:, model.feature_names.index("plan")] > 0).all()  # gold pushes towards vip


# -- bad input: typed errors, nothing written ---------------------------------------------------------
@pytest.mark.parametrize("using, options, message", [
    ("lightgbm", "bogus = 1", "unknown option bogus"),
    ("lightgbm", "num_leaves = 1", "option num_leaves must be an integer in [2, 131072]; found 1"),
    ("lightgbm", "learning_rate = 0", "option learning_rate must be a number in (0, 10]"),
    ("lightgbm", "feature_fraction = 1.5", "option feature_fraction must be a number in (0, 1]"),
    ("lightgbm", "max_depth = -2", "option max_depth must be an integer >= 1, or -1 (or 0) for no limit"),
    ("lightgbm", "num_iterations = 'many'", "option num_iterations must be an integer"),
    ("lightgbm", "epochs = 10", "option epochs applies only to USING linear, logistic, mlp and auto, not USING "
                                "lightgbm; use num_iterations for epochs"),
    ("lightgbm", "hidden = [8], lr = 0.1", "options hidden, lr apply only to USING linear"),
    ("lightgbm", "device = 'cuda'", "option device must be one of 'auto', 'cpu'"),
    ("mlp", "num_leaves = 10", "option num_leaves applies only to USING lightgbm, not USING mlp"),
    ("logistic", "learning_rate = 0.1", "use lr for learning_rate"),
])
def test_bad_options_are_refused_and_nothing_is_written(shop, using, options, message):
    with pytest.raises(mldb.ProgrammingError) as caught:
        shop.execute(f"CREATE MODEL b PREDICT flag FROM {training('flag')} USING {using} WITH ({options})")
    assert caught.value.sqlstate == "22023" and message in str(caught.value), str(caught.value)
    assert rows(shop, "SELECT (SELECT count(*) FROM mldb.models), (SELECT count(*) FROM mldb.model_versions), "
                      "(SELECT count(*) FROM mldb.training_log)") == [(0, 0, 0)]


def test_train_with_a_bad_option_keeps_the_model_as_it_was(shop):
    rows(shop, f"CREATE MODEL m PREDICT flag FROM {training('flag')} USING lightgbm WITH (num_iterations = 20)")
    with pytest.raises(mldb.ProgrammingError) as caught:
        shop.execute("TRAIN m WITH (epochs = 3)")
    assert caught.value.sqlstate == "22023"
    assert rows(shop, "SELECT version FROM mldb.model_versions WHERE model = 'm'") == [(1,)]


def test_options_schema_per_algorithm():
    assert train.options_schema("lightgbm") is boosting.OPTIONS
    for algorithm in ("linear", "logistic", "mlp", "auto", None):
        assert train.options_schema(algorithm) is train.OPTIONS
    shared = {option.name for option in train.SHARED}
    assert shared <= set(boosting.OPTIONS.options) and shared <= set(train.OPTIONS.options)
    assert boosting.OPTIONS.check({"num_leaves": 63.0, "learning_rate": "0.1"}) == {"num_leaves": 63,
                                                                                     "learning_rate": 0.1}
