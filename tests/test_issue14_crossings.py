"""Where issue 14's three parts meet: USING auto with real LightGBM, searches over LightGBM's options,
explanations of LightGBM, auto and searched versions, and TRAIN / DEPLOY across algorithms.

Table ``g`` (3,000 rows) has two uniform numbers ``x1``, ``x2``, a noise column, a category ``color``
with NULLs and NULLs in ``x2``. Its targets are step functions a tree finds and a linear model cannot:
``flip`` ((x1 > 0.5) != (x2 > 0.5)), ``band`` (three classes cut on x1, one moved by color) and ``steps``
(a regression on thresholds of x1 and x2 plus a color offset)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import mldb
from mldb.models import search

ROWS = 3000
DATA = f"""
CREATE TABLE g AS SELECT *,
    (x1 > 0.5) != (coalesce(x2, 0.7) > 0.5) AS flip,
    CASE WHEN x1 < 0.3 THEN 'low' WHEN x1 < 0.6 AND coalesce(color, '') <> 'red' THEN 'mid' ELSE 'high' END AS band,
    10 * (x1 > 0.5)::INT + 5 * (coalesce(x2, 0) > 0.3)::INT
        + CASE color WHEN 'red' THEN 4 WHEN 'blue' THEN -2 ELSE 0 END + noise / 100 AS steps
FROM (SELECT i AS id,
    (hash(i) % 10000) / 10000.0 AS x1,
    CASE WHEN i % 11 = 0 THEN NULL ELSE (hash(i + 1) % 10000) / 10000.0 END AS x2,
    (hash(i + 2) % 100)::DOUBLE AS noise,
    CASE WHEN i % 7 = 0 THEN NULL ELSE ['red', 'blue', 'green'][(hash(i + 3) % 3 + 1)::BIGINT] END AS color
    FROM range({ROWS}) t(i))
"""
FEATURES = "x1, x2, noise, color"
PROBE = "(SELECT id, x1, x2, noise, color FROM g WHERE id % 10 = 0 ORDER BY id LIMIT 200)"
LINEAR = ("CREATE TABLE lin AS SELECT a, b, 2 * a - 3 * b + (hash(i) % 7)::DOUBLE / 70 AS y, "
          "2 * a - 3 * b + (hash(i) % 7)::DOUBLE / 70 > 0 AS pos "
          "FROM (SELECT i, (hash(i + 5) % 200) / 100.0 - 1 AS a, (hash(i + 6) % 200) / 100.0 - 1 AS b "
          "FROM range(200) t(i))")
TRIALS = ("SELECT trial, algorithm, params, valid_metric, metric_name, chosen, status, error "
          "FROM mldb.trials WHERE model = ? AND version = ? ORDER BY trial")
CATALOG = ("SELECT (SELECT count(*) FROM mldb.models), (SELECT count(*) FROM mldb.model_versions), "
           "(SELECT count(*) FROM mldb.trials), (SELECT count(*) FROM mldb.feature_importance)")


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    connection = mldb.connect(str(tmp_path_factory.mktemp("crossings") / "g.db"))
    connection.execute(DATA)
    connection.execute(LINEAR)
    yield connection
    connection.close()


def create(con, name: str, target: str, using: str, features: str = FEATURES, table: str = "g") -> None:
    con.execute(f"CREATE OR REPLACE MODEL {name} PREDICT {target} FROM (SELECT {features}, {target} FROM {table}) "
                f"{using}")


def trials(con, model: str, version: int = 1) -> list[dict]:
    keys = ("trial", "algorithm", "params", "valid_metric", "metric_name", "chosen", "status", "error")
    return [dict(zip(keys, row)) | {"params": json.loads(row[2])}
            for row in con.execute(TRIALS, [model, version]).fetchall()]


def version(con, model: str, number: int | None = None) -> dict:
    where = "version = ?" if number else "version = (SELECT max(version) FROM mldb.model_versions WHERE model = ?)"
    cursor = con.execute(f"SELECT * FROM mldb.model_versions WHERE model = ? AND {where}",
                         [model, number or model])
    row = dict(zip([column[0] for column in cursor.description], cursor.fetchone()))
    return row | {"hyper": json.loads(row["hyperparameters"]), "metrics": json.loads(row["metrics"])}


def check_choice(con, model: str, number: int = 1) -> dict:
    """Exactly one trial chosen, the first with the best metric among the trained; it is the version."""
    rows = trials(con, model, number)
    assert rows and all(row["status"] in ("trained", "failed", "skipped", "stopped") for row in rows)
    chosen = [row for row in rows if row["chosen"]]
    assert len(chosen) == 1
    trained = [row for row in rows if row["status"] == "trained"]
    best = max(row["valid_metric"] for row in trained)
    assert chosen[0] is next(row for row in trained if row["valid_metric"] == best)
    stored = version(con, model, number)
    assert stored["algorithm"] == chosen[0]["algorithm"]
    assert stored["hyper"] == chosen[0]["params"]
    assert stored["metrics"][chosen[0]["metric_name"]] == pytest.approx(chosen[0]["valid_metric"])
    return chosen[0]


def explained(con, model: str, query: str = PROBE, extra: str = "") -> list[dict]:
    cursor = con.execute(f"SELECT * FROM EXPLAIN_PREDICT({model}, {query}{extra}) ORDER BY id")
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def total(row: dict) -> float:
    return row["baseline"] + sum(row["contributions"].values())


def log_odds(con, model: str, query: str = PROBE) -> list[float]:
    rows = con.execute(f"SELECT PREDICT_PROBA({model}) FROM {query} ORDER BY id").fetchall()
    return [math.log(p["true"] / p["false"]) for (p,) in rows]


def importance(con, model: str) -> dict:
    rows = con.execute(f"SELECT feature, importance, method FROM FEATURE_IMPORTANCE({model})").fetchall()
    assert sum(row[1] for row in rows) == pytest.approx(1.0)
    return {row[0]: (row[1], row[2]) for row in rows}


def check_additive(con, model: str, query: str = PROBE) -> list[dict]:
    """EXPLAIN_PREDICT adds up to the model's raw output (binary: log-odds; regression: the value)."""
    rows = explained(con, model, query)
    name, _, number = model.strip("'").partition("@")
    stored = version(con, name, int(number) if number else deployed(con, name))
    task = stored["task"]
    if task == "binary":
        expected = log_odds(con, model, query)
    elif task == "regression":
        expected = [p for (p,) in con.execute(f"SELECT PREDICT({model}) FROM {query} ORDER BY id").fetchall()]
    else:
        raise AssertionError(task)
    if stored["algorithm"] == "mlp":  # (integrated gradients: within 5% of raw - baseline)
        assert all(abs(total(row) - value) <= 0.05 * abs(value - row["baseline"]) + 1e-6
                   for row, value in zip(rows, expected))
    else:  # (exact: linear weights, TreeSHAP)
        assert [total(row) for row in rows] == pytest.approx(expected, abs=1e-4)
    return rows


def deployed(con, model: str) -> int:
    return con.execute("SELECT deployed_version FROM mldb.models WHERE name = ?", [model]).fetchone()[0]


# -- USING auto with real LightGBM --------------------------------------------------------------
def test_auto_chooses_lightgbm_where_trees_clearly_win(con):
    create(con, "auto_xor", "flip", "USING auto WITH (epochs = 20, time_budget = 600)")
    rows = trials(con, "auto_xor")
    searched = ["lightgbm"] * search.AUTO_SEARCH_TRIALS
    assert [row["algorithm"] for row in rows] == ["logistic", "mlp", "lightgbm"] + searched
    assert all(row["status"] == "trained" and row["metric_name"] == "accuracy" for row in rows)
    for row in rows[3:]:  # the short search stays in its space
        for name, (low, high) in search.AUTO_SEARCH_SPACE.items():
            assert low <= row["params"][name] <= high
    assert len({row["params"]["num_leaves"] for row in rows[3:]}) > 1
    chosen = check_choice(con, "auto_xor")
    assert chosen["algorithm"] == "lightgbm" and chosen["valid_metric"] > 0.95
    assert rows[0]["valid_metric"] < 0.7  # (no line separates flip)
    assert con.execute("SELECT algorithm FROM mldb.models WHERE name = 'auto_xor'").fetchone() == ("auto",)
    # explanations of the version auto chose
    check_additive(con, "auto_xor")
    found = importance(con, "auto_xor")
    assert {method for _, method in found.values()} == {"gain"}
    assert min(found["x1"][0], found["x2"][0]) > 5 * found["noise"][0]


def test_auto_on_a_small_linear_table_keeps_its_best_and_explains_it(con):
    create(con, "auto_lin", "y", "USING auto WITH (epochs = 30, time_budget = 600)", "a, b", "lin")
    rows = trials(con, "auto_lin")
    # 40 validation rows: the three candidates, no LightGBM search (its trials would differ by noise)
    assert [row["algorithm"] for row in rows] == ["linear", "mlp", "lightgbm"]
    assert len(rows) == 3 and all(row["status"] == "trained" for row in rows)
    assert rows[0]["metric_name"] == "r2" and rows[0]["valid_metric"] > 0.99
    chosen = check_choice(con, "auto_lin")
    assert chosen["valid_metric"] > 0.9
    check_additive(con, "auto_lin", "(SELECT row_number() OVER () AS id, a, b FROM lin)")
    found = importance(con, "auto_lin")
    assert set(found) == {"a", "b"} and found["b"][0] > found["a"][0]  # (|3| vs |2| on the same spread)


def test_auto_on_a_tiny_table_trains_one_candidate(con):
    create(con, "auto_tiny", "pos", "", "a, b", "(SELECT * FROM lin LIMIT 100)")
    rows = trials(con, "auto_tiny")
    assert [(row["algorithm"], row["status"]) for row in rows] == [
        ("logistic", "trained"), ("mlp", "skipped"), ("lightgbm", "skipped")]
    check_choice(con, "auto_tiny")


def test_retraining_an_auto_model_reruns_auto(con):
    create(con, "auto_re", "steps", "USING auto WITH (epochs = 5, time_budget = 600)")
    con.execute("TRAIN auto_re")
    second = trials(con, "auto_re", 2)
    assert [row["algorithm"] for row in second[:3]] == ["linear", "mlp", "lightgbm"]
    assert len(second) == 3 + search.AUTO_SEARCH_TRIALS
    chosen = check_choice(con, "auto_re", 2)
    assert chosen["algorithm"] == "lightgbm"  # (the steps are trees' shape)
    assert json.loads(con.execute("SELECT options FROM mldb.models WHERE name = 'auto_re'").fetchone()[0]) == {
        "epochs": 5, "time_budget": 600}
    check_additive(con, "auto_re")
    assert [p for p in con.execute(f"SELECT PREDICT('auto_re@2') FROM {PROBE}").fetchall()] == \
        [p for p in con.execute(f"SELECT PREDICT(auto_re) FROM {PROBE}").fetchall()]


# -- searches over LightGBM's options -----------------------------------------------------------
@pytest.mark.parametrize("kind", ["random", "grid", "tpe"])
def test_search_over_lightgbm_options(con, kind):
    name = f"s_{kind}"
    create(con, name, "flip", f"USING lightgbm WITH (search = '{kind}', trials = 4, num_iterations = 60, "
                             "num_leaves = [15, 63], learning_rate = [0.05, 0.2], min_data_in_leaf = [5, 10, 40])")
    rows = trials(con, name)
    assert len(rows) == 4 and all(row["status"] == "trained" and row["algorithm"] == "lightgbm" for row in rows)
    for row in rows:
        params = row["params"]
        assert params["num_iterations"] == 60
        if kind == "grid":  # (every list is a set of choices)
            assert params["num_leaves"] in (15, 63) and params["learning_rate"] in (0.05, 0.2)
        else:
            assert 15 <= params["num_leaves"] <= 63 and 0.05 <= params["learning_rate"] <= 0.2
        assert params["min_data_in_leaf"] in (5, 10, 40)
    points = {(row["params"]["num_leaves"], row["params"]["learning_rate"], row["params"]["min_data_in_leaf"])
              for row in rows}
    assert len(points) == 4
    chosen = check_choice(con, name)
    hyper = version(con, name)["hyper"]
    assert {key: hyper[key] for key in ("num_leaves", "learning_rate", "min_data_in_leaf")} == \
        {key: chosen["params"][key] for key in ("num_leaves", "learning_rate", "min_data_in_leaf")}
    # the chosen version explains itself
    check_additive(con, name)
    assert {method for _, method in importance(con, name).values()} == {"gain"}


def test_retraining_a_searched_lightgbm_model_repeats_its_search(con):
    create(con, "s_re", "steps", "USING lightgbm WITH (search = 'random', trials = 3, num_iterations = 40, "
                                 "num_leaves = [15, 63], learning_rate = [0.05, 0.2])")
    con.execute("TRAIN s_re")
    first, second = trials(con, "s_re", 1), trials(con, "s_re", 2)
    assert len(second) == 3
    assert [row["params"] for row in second] == [row["params"] for row in first]  # (seeded sampler, same data)
    check_choice(con, "s_re", 2)
    check_additive(con, "s_re")
    con.execute("TRAIN s_re WITH (num_leaves = 20)")  # one value: the space of num_leaves is gone
    third = trials(con, "s_re", 3)
    assert len(third) == 3 and {row["params"]["num_leaves"] for row in third} == {20}
    check_choice(con, "s_re", 3)


def test_a_repeated_value_in_a_grid_is_one_trial(con):
    create(con, "rep", "pos", "USING lightgbm WITH (search = 'grid', num_leaves = [15, 15, 31], "
                              "min_data_in_leaf = [5, 5.0])", "a, b", "lin")
    rows = trials(con, "rep")
    assert sorted(row["params"]["num_leaves"] for row in rows) == [15, 31]
    assert {row["params"]["min_data_in_leaf"] for row in rows} == {5}
    check_choice(con, "rep")


@pytest.mark.parametrize("options, message", [
    ("search = 'random', num_leaves = [1, 5]", "option num_leaves must be an integer in [2, 131072]; found 1"),
    ("search = 'random', num_leaves = [15, 63], lr = [0.01, 0.1]", "use learning_rate for lr"),
    ("search = 'grid', num_leaves = [15, 63], hidden = [[4], [8]]", "option hidden applies only to USING mlp and auto"),
    ("search = 'tpe', learning_rate = [0, 0.2]", "option learning_rate must be a number in (0, 10]"),
    ("search = 'random', feature_fraction = [0.5, 1.5]", "option feature_fraction must be a number in (0, 1]"),
    ("search = 'grid', min_data_in_leaf = []", "the search space of min_data_in_leaf is empty"),
    ("search = 'random', num_leaves = [63, 15]", "found low 63 above high 15"),
    ("search = 'random', seed = [1, 2]", "option seed cannot be searched"),
    ("num_leaves = [15, 63]", "is a search space"),
])
def test_bad_lightgbm_search_spaces_are_refused_and_nothing_written(tmp_path, options, message):
    with mldb.connect(str(tmp_path / "bad.db")) as fresh:
        fresh.execute(LINEAR)
        with pytest.raises(mldb.ProgrammingError) as caught:
            create(fresh, "bad", "pos", f"USING lightgbm WITH ({options})", "a, b", "lin")
        assert caught.value.sqlstate == "22023"
        assert message in str(caught.value)
        assert fresh.execute(CATALOG).fetchone() == (0, 0, 0, 0)


# -- explanations of LightGBM through SQL -------------------------------------------------------
@pytest.fixture(scope="module")
def gbm(con):
    create(con, "gb", "flip", "USING lightgbm WITH (num_iterations = 120)")
    create(con, "gk", "band", "USING lightgbm WITH (num_iterations = 120)")
    create(con, "gr", "steps", "USING lightgbm WITH (num_iterations = 120)")
    return con


def test_binary_lightgbm_adds_up_to_the_log_odds_of_predict_proba(gbm):
    rows = check_additive(gbm, "gb")
    assert all(set(row["contributions"]) == {"x1", "x2", "noise", "color"} for row in rows)
    assert len({row["baseline"] for row in rows}) == 1
    predicted = [p for (p,) in gbm.execute(f"SELECT PREDICT(gb) FROM {PROBE} ORDER BY id").fetchall()]
    assert [row["prediction"] for row in rows] == predicted


def test_regression_lightgbm_adds_up_to_predict(gbm):
    rows = check_additive(gbm, "gr")
    red = [row["contributions"]["color"] for row in rows if row["color"] == "red"]
    blue = [row["contributions"]["color"] for row in rows if row["color"] == "blue"]
    assert min(red) > max(blue)  # (+4 against -2)


def test_multiclass_lightgbm_adds_up_to_the_boosters_raw_score_of_the_predicted_class(gbm):
    import lightgbm

    stored = version(gbm, "gk")
    booster = lightgbm.Booster(model_str=bytes(stored["weights"]).decode())
    names = [feature["name"] for feature in json.loads(stored["features"])]
    # numbers only: the category is the one feature whose codes are mldb's (given as the learnt codes' NULL)
    query = "(SELECT id, x1, x2, noise, NULL::VARCHAR AS color FROM g WHERE id % 10 = 3 ORDER BY id LIMIT 200)"
    table = gbm.execute(f"SELECT {', '.join(names)} FROM {query} ORDER BY id").arrow()
    x = np.column_stack([np.asarray(table[n].to_numpy(zero_copy_only=False), dtype=np.float64) for n in names])
    raw = booster.predict(x, raw_score=True)
    classes = json.loads(stored["classes"])
    rows = explained(gbm, "gk", query)
    picked = [raw[i, classes.index(row["prediction"])] for i, row in enumerate(rows)]
    assert [total(row) for row in rows] == pytest.approx(picked, abs=1e-4)
    assert all(raw[i].argmax() == classes.index(row["prediction"]) for i, row in enumerate(rows))


def test_categories_and_nulls_are_explained(gbm):
    query = ("(SELECT * FROM (VALUES (1, 0.7, NULL, 5.0, 'red'), (2, 0.2, 0.9, NULL, NULL), "
             "(3, NULL, NULL, NULL, 'purple')) v(id, x1, x2, noise, color))")
    for model in ("gb", "gr"):
        rows = check_additive(gbm, model, query)
        assert len(rows) == 3 and all(len(row["contributions"]) == 4 for row in rows)
        assert all(math.isfinite(value) for row in rows for value in row["contributions"].values())


def test_lightgbm_importance_is_gain_and_finds_the_signal(gbm):
    for model in ("gb", "gk", "gr"):
        found = importance(gbm, model)
        assert set(found) == {"x1", "x2", "noise", "color"} and {m for _, m in found.values()} == {"gain"}
        assert found["x1"][0] > 5 * found["noise"][0]
    assert importance(gbm, "gr")["color"][0] > importance(gbm, "gr")["noise"][0]


def test_top_k_on_lightgbm(gbm):
    full, top = explained(gbm, "gr"), explained(gbm, "gr", extra=", top_k => 2")
    for whole, kept in zip(full, top):
        ranked = sorted(whole["contributions"].items(), key=lambda item: -abs(item[1]))
        assert list(kept["contributions"]) == [name for name, _ in ranked[:2]]
        assert kept["baseline"] == whole["baseline"] and kept["prediction"] == whole["prediction"]


def test_lightgbm_explanations_persist_after_reopen(tmp_path):
    path = str(tmp_path / "reopen.db")
    with mldb.connect(path) as first:
        first.execute(DATA)
        create(first, "p", "flip", "USING lightgbm WITH (num_iterations = 50)")
        before = (explained(first, "p"), importance(first, "p"))
    with mldb.connect(path) as again:
        after = (explained(again, "p"), importance(again, "p"))
        check_additive(again, "p")
    assert after[1] == before[1]
    for new, old in zip(after[0], before[0]):
        assert new["prediction"] == old["prediction"] and new["baseline"] == old["baseline"]
        assert new["contributions"] == pytest.approx(old["contributions"], abs=1e-12)


# -- TRAIN and DEPLOY across algorithms -----------------------------------------------------------
def test_train_using_lightgbm_after_logistic_and_back(con):
    create(con, "x", "flip", "USING logistic WITH (epochs = 4, lr = 0.05, seed = 5)")
    con.execute("TRAIN x USING lightgbm WITH (num_leaves = 15, num_iterations = 50)")
    second = version(con, "x", 2)
    assert second["algorithm"] == "lightgbm"
    assert second["hyper"]["num_leaves"] == 15 and second["hyper"]["seed"] == 5  # (seed is shared)
    assert "lr" not in second["hyper"] and "epochs" not in second["hyper"]
    assert json.loads(con.execute("SELECT options FROM mldb.models WHERE name = 'x'").fetchone()[0]) == {
        "seed": 5, "num_leaves": 15, "num_iterations": 50}
    con.execute("TRAIN x USING logistic WITH (epochs = 3)")
    third = version(con, "x", 3)
    assert third["algorithm"] == "logistic" and third["hyper"]["epochs"] == 3 and third["hyper"]["seed"] == 5
    assert "num_leaves" not in third["hyper"]
    assert json.loads(con.execute("SELECT options FROM mldb.models WHERE name = 'x'").fetchone()[0]) == {
        "seed": 5, "epochs": 3}
    assert [row["algorithm"] for row in trials(con, "x", 3)] == ["logistic"]


def test_deploy_across_algorithms_and_explanations_follow(con):
    create(con, "d", "flip", "USING logistic WITH (epochs = 4)")
    con.execute("TRAIN d USING lightgbm WITH (num_iterations = 60)")
    assert {m for _, m in importance(con, "d").values()} == {"gain"}
    lightgbm_rows = check_additive(con, "d")
    con.execute("DEPLOY MODEL d VERSION 1")
    assert {m for _, m in importance(con, "d").values()} == {"weight"}
    logistic_rows = check_additive(con, "d")
    assert [row["baseline"] for row in logistic_rows] != [row["baseline"] for row in lightgbm_rows]
    assert explained(con, "'d@2'") == lightgbm_rows  # (a pinned version is not the deployed one)
    con.execute("CREATE VIEW dv AS SELECT * FROM EXPLAIN_PREDICT(d, " + PROBE + ")")
    try:
        assert sorted(con.execute("SELECT baseline FROM dv").fetchall()) == \
            sorted((row["baseline"],) for row in logistic_rows)
        con.execute("DEPLOY MODEL d VERSION 2")
        assert sorted(con.execute("SELECT baseline FROM dv").fetchall()) == \
            sorted((row["baseline"],) for row in lightgbm_rows)
        assert {m for _, m in importance(con, "d").values()} == {"gain"}
    finally:
        con.execute("DROP VIEW dv")


def test_auto_takes_a_torch_device_and_trains_lightgbm_on_the_cpu(con):
    create(con, "dev", "y", "USING auto WITH (device = 'cpu', epochs = 5, time_budget = 600)", "a, b", "lin")
    rows = trials(con, "dev")
    assert [(row["algorithm"], row["status"]) for row in rows] == [
        ("linear", "trained"), ("mlp", "trained"), ("lightgbm", "trained")]
    check_choice(con, "dev")
    # a GPU device is the torch candidates': LightGBM (auto's candidate, or TRAIN m USING lightgbm) drops it
    assert search.inherited("lightgbm", {"device": "cuda:1", "seed": 3, "epochs": 4}) == {"seed": 3}
    assert search.inherited("lightgbm", {"device": "cpu", "seed": 3}) == {"device": "cpu", "seed": 3}
    assert search._options_for("lightgbm", {"device": "cuda", "num_leaves": 7}) == {"num_leaves": 7}
    assert search._options_for("mlp", {"device": "cuda", "num_leaves": 7}) == {"device": "cuda"}


# -- found by the attacker probe -----------------------------------------------------------------
def test_an_untyped_null_is_encoded_as_a_null_text(con):
    """PREDICT(m, 5, NULL) took no one-hot slot at all (every column 0) where NULL::VARCHAR takes the NULL slot."""
    con.execute("CREATE OR REPLACE MODEL untyped PREDICT flip FROM (SELECT x1, color, flip FROM g) "
                "USING logistic WITH (epochs = 5)")
    untyped, typed = con.execute("SELECT PREDICT_PROBA(untyped, 0.2, NULL)['true'], "
                                 "PREDICT_PROBA(untyped, 0.2, NULL::VARCHAR)['true']").fetchone()
    assert untyped == typed
    sums = [row[0] for row in con.execute(
        "SELECT baseline + list_sum(map_values(contributions)) FROM EXPLAIN_PREDICT(untyped, (SELECT 0.2 AS x1, "
        "NULL AS color)) UNION ALL SELECT baseline + list_sum(map_values(contributions)) FROM "
        "EXPLAIN_PREDICT(untyped, (SELECT 0.2 AS x1, NULL::VARCHAR AS color))").fetchall()]
    assert sums[0] == pytest.approx(sums[1], abs=1e-9)
    assert sums[0] == pytest.approx(math.log(typed / (1 - typed)), abs=1e-4)


def test_a_train_with_options_of_its_own_ends_the_stored_search(con):
    con.execute("CREATE OR REPLACE MODEL ended PREDICT flip FROM (SELECT x1, x2, flip FROM g) USING lightgbm "
                "WITH (search = 'random', trials = 2, num_leaves = [7, 31], time_budget = 100)")
    con.execute("TRAIN ended WITH (num_leaves = 15)")
    assert json.loads(con.execute("SELECT options FROM mldb.models WHERE name = 'ended'").fetchone()[0]) == \
        {"num_leaves": 15}
    assert con.execute(TRIALS, ["ended", 2]).fetchall()[0][2] is not None
    assert len(con.execute(TRIALS, ["ended", 2]).fetchall()) == 1
    assert json.loads(con.execute("SELECT hyperparameters FROM mldb.model_versions WHERE model = 'ended' "
                                  "AND version = 2").fetchone()[0])["num_leaves"] == 15
    con.execute("TRAIN ended USING logistic WITH (epochs = 2)")  # (another algorithm: a plain version too)
    assert len(con.execute(TRIALS, ["ended", 3]).fetchall()) == 1
    con.execute("TRAIN ended USING lightgbm WITH (search = 'grid', num_leaves = [7, 15])")  # (a new search)
    assert len(con.execute(TRIALS, ["ended", 4]).fetchall()) == 2


def test_a_grid_too_big_to_list_is_refused_before_anything_runs(con):
    before = con.execute(CATALOG).fetchone()
    with pytest.raises(mldb.ProgrammingError) as caught:
        con.execute("CREATE MODEL huge PREDICT flip FROM g USING lightgbm WITH (search = 'grid', trials = 2, "
                    + ", ".join(f"{name} = {list(range(2, 12))}" for name in
                                ("num_leaves", "min_data_in_leaf", "max_bin", "bagging_freq", "max_depth")) + ")")
    assert caught.value.sqlstate == "54000" and "100,000 points" in str(caught.value)
    assert con.execute(CATALOG).fetchone() == before


def test_a_bagging_fraction_alone_bags(con):
    con.execute("CREATE OR REPLACE MODEL bagged PREDICT flip FROM (SELECT x1, x2, flip FROM g) USING lightgbm "
                "WITH (bagging_fraction = 0.5)")
    con.execute("CREATE OR REPLACE MODEL unbagged PREDICT flip FROM (SELECT x1, x2, flip FROM g) USING lightgbm")
    hyper = [json.loads(con.execute("SELECT hyperparameters FROM mldb.model_versions WHERE model = ?",
                                    [name]).fetchone()[0]) for name in ("bagged", "unbagged")]
    assert hyper[0]["bagging_freq"] == 1 and hyper[1]["bagging_freq"] == 0
    weights = [con.execute("SELECT weights FROM mldb.model_versions WHERE model = ?", [name]).fetchone()[0]
               for name in ("bagged", "unbagged")]
    assert weights[0] != weights[1]  # (bagging changed the trees)
