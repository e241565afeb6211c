"""EXPLAIN_PREDICT and FEATURE_IMPORTANCE on really trained models: additivity, folding, top_k, importances,
persistence, DESCRIBE MODEL, the plot helper, the frontends and bad input."""

from __future__ import annotations

import math
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mldb  # noqa: E402
from mldb import plot  # noqa: E402
from mldb.models.registry import load_model  # noqa: E402

# a: informative; noise: pure noise; c: a category (one-hot, 3 values) that matters too
DATA = """CREATE TABLE t AS SELECT i AS id, (i * 7919 % 1000) / 100.0 AS a, ((i * 104729 + 13) % 997) / 99.7 AS noise,
    ['x', 'y', 'z'][i % 3 + 1] AS c FROM range(800) t(i)"""
LABELS = """CREATE TABLE d AS SELECT *, a + CASE c WHEN 'x' THEN 3 ELSE 0 END > 6.5 AS y,
    CASE WHEN a + CASE c WHEN 'y' THEN 2 ELSE 0 END < 4 THEN 'lo'
         WHEN a + CASE c WHEN 'y' THEN 2 ELSE 0 END < 8 THEN 'mid' ELSE 'hi' END AS k,
    2.0 * a + CASE c WHEN 'z' THEN 3.0 ELSE 0.0 END + 10.0 AS r FROM t"""
FEATURES = "a, noise, c"
PROBE = f"(SELECT id, {FEATURES} FROM d WHERE id < 60)"
MODELS = {  # name: (target, algorithm)
    "b": ("y", "logistic"), "k": ("k", "logistic"), "r": ("r", "linear"),
    "mb": ("y", "mlp"), "mk": ("k", "mlp"), "mr": ("r", "mlp"),
}


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return str(tmp_path_factory.mktemp("explain") / "explain.db")


@pytest.fixture(scope="module")
def con(path):
    connection = mldb.connect(path)
    connection.execute(DATA)
    connection.execute(LABELS)
    for name, (target, algorithm) in MODELS.items():
        options = "epochs = 60, lr = 0.05, seed = 3" + (", hidden = [16, 16]" if algorithm == "mlp" else "")
        connection.execute(f"CREATE MODEL {name} PREDICT {target} FROM (SELECT {FEATURES}, {target} FROM d) "
                           f"USING {algorithm} WITH ({options})")
    yield connection
    connection.close()


def explained(con, model: str, extra: str = "") -> list[dict]:
    cursor = con.execute(f"SELECT * FROM EXPLAIN_PREDICT({model}, {PROBE}{extra}) ORDER BY id")
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def total(row: dict) -> float:
    return row["baseline"] + sum(row["contributions"].values())


def log_odds(con, model: str) -> list[float]:
    rows = con.execute(f"SELECT PREDICT_PROBA({model}) FROM {PROBE} ORDER BY id").fetchall()
    return [math.log(p["true"] / p["false"]) for (p,) in rows]


# -- additivity ---------------------------------------------------------------------------------
def test_logistic_binary_adds_up_to_the_log_odds_of_predict_proba(con):
    rows = explained(con, "b")
    assert [row["id"] for row in rows] == list(range(60))
    assert [total(row) for row in rows] == pytest.approx(log_odds(con, "b"), abs=1e-4)
    predicted = [p for (p,) in con.execute(f"SELECT PREDICT(b) FROM {PROBE} ORDER BY id").fetchall()]
    assert [row["prediction"] for row in rows] == predicted
    assert len({row["baseline"] for row in rows}) == 1  # one baseline input for every row


def logits(con, model):
    """The module's own logits for the probe rows (not mldb's explanation code)."""
    import torch

    table = con.execute(f"SELECT * FROM {PROBE} ORDER BY id").arrow()
    with torch.no_grad():
        return model.module(torch.from_numpy(np.array(model.encoder([table[n] for n in model.feature_names]))))


def test_logistic_multiclass_adds_up_to_the_predicted_class_logit(con):
    import torch

    rows = explained(con, "k")
    model = load_model(con, "k")
    out = logits(con, model)
    best = out.argmax(dim=1)
    assert [row["prediction"] for row in rows] == [model.classes[i] for i in best.tolist()]
    assert len({row["prediction"] for row in rows}) == 3
    expected = out.double()[torch.arange(len(best)), best].tolist()
    assert [total(row) for row in rows] == pytest.approx(expected, abs=1e-4)


def test_linear_regression_adds_up_to_the_predicted_value(con):
    rows = explained(con, "r")
    predicted = [p for (p,) in con.execute(f"SELECT PREDICT(r) FROM {PROBE} ORDER BY id").fetchall()]
    assert [row["prediction"] for row in rows] == predicted
    assert [total(row) for row in rows] == pytest.approx(predicted, abs=1e-4)
    baseline = rows[0]["baseline"]  # the model's value for the average training row, in the target's units
    mean = con.execute("SELECT avg(r) FROM d").fetchone()[0]
    assert abs(baseline - mean) < 0.05 * abs(mean)


@pytest.mark.parametrize("model", ["mb", "mk", "mr"])
def test_mlp_integrated_gradients_add_up_within_five_percent(con, model):
    rows = explained(con, model)
    if model == "mb":
        raw = log_odds(con, model)
    elif model == "mk":
        out = logits(con, load_model(con, model)).double()
        raw = out.max(dim=1).values.tolist()
    else:
        raw = [p for (p,) in con.execute(f"SELECT PREDICT(mr) FROM {PROBE} ORDER BY id").fetchall()]
    for row, value in zip(rows, raw):
        assert abs(total(row) - value) <= 0.05 * abs(value - row["baseline"]) + 1e-4, (row, value)
    assert any(abs(value - row["baseline"]) > 1.0 for row, value in zip(rows, raw))  # the contributions explain much


# -- the map ------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(MODELS))
def test_one_key_per_original_feature_with_one_hot_folded(con, model):
    rows = explained(con, model)
    assert all(sorted(row["contributions"]) == ["a", "c", "noise"] for row in rows)
    assert [row["c"] for row in rows[:3]] == ["x", "y", "z"]  # the query's columns come first, unchanged
    assert list(rows[0])[-3:] == ["prediction", "baseline", "contributions"]


def test_a_category_contributes_against_its_training_frequencies(con):
    """The baseline input of a one-hot feature is its categories' frequencies in the training rows: for a
    linear model each category's contribution is its weight less the frequency-weighted mean weight, so
    the contributions, weighted by those frequencies, sum to 0."""
    means = con.execute("SELECT mean FROM mldb.explain_baselines WHERE model = 'r' AND version = 1 "
                        "AND feature = 'c'").fetchone()[0]
    categories = load_model(con, "r").features[2]["categories"]
    assert len(means) == len(categories) + 1 and means[-1] == 0.0  # (the last column: NULL / unseen)
    assert sum(means) == pytest.approx(1.0) and all(abs(m - 1 / 3) < 0.05 for m in means[:-1])
    rows = explained(con, "r")
    by_category = {value: {round(row["contributions"]["c"], 9) for row in rows if row["c"] == value}
                   for value in "xyz"}
    assert all(len(values) == 1 for values in by_category.values())  # one contribution per category
    weighted = sum(mean * next(iter(by_category[value])) for mean, value in zip(means, categories))
    assert weighted == pytest.approx(0.0, abs=1e-6)
    assert next(iter(by_category["z"])) > 1.5  # (r gets +3 for z)


def test_top_k_keeps_the_largest_contributions(con):
    full, top = explained(con, "b"), explained(con, "b", ", top_k => 2")
    for whole, kept in zip(full, top):
        ranked = sorted(whole["contributions"].items(), key=lambda item: -abs(item[1]))
        assert list(kept["contributions"]) == [name for name, _ in ranked[:2]]
        assert list(kept["contributions"].values()) == pytest.approx([value for _, value in ranked[:2]])
        assert kept["baseline"] == whole["baseline"] and kept["prediction"] == whole["prediction"]
    assert all(len(row["contributions"]) == 3 for row in explained(con, "b", ", top_k => 7"))


def test_explain_predict_over_a_table_a_cte_and_a_join(con):
    direct = con.execute("SELECT count(*), sum(baseline) FROM EXPLAIN_PREDICT(b, d)").fetchone()
    assert direct[0] == 800
    joined = con.execute("WITH e AS (SELECT * FROM EXPLAIN_PREDICT('b@1', (SELECT id, a, noise, c FROM d)) AS x) "
                         "SELECT count(*) FROM e JOIN d USING (id) WHERE e.prediction = PREDICT(b, d.a, d.noise, d.c)"
                         ).fetchone()
    assert joined == (800,)


def test_a_view_of_explanations_follows_the_model_and_keeps_it(con):
    con.execute(f"CREATE VIEW ev AS SELECT * FROM EXPLAIN_PREDICT(b, {PROBE}, top_k => 1)")
    try:
        rows = con.execute("SELECT id, prediction, contributions FROM ev ORDER BY id").fetchall()
        assert [(i, p, c) for i, p, c in rows] == [(r["id"], r["prediction"], r["contributions"])
                                                   for r in explained(con, "b", ", top_k => 1")]
        with pytest.raises(mldb.ProgrammingError, match="view ev depends on it") as raised:
            con.execute("DROP MODEL b")
        assert raised.value.sqlstate == "2BP01"
    finally:
        con.execute("DROP VIEW ev")


def test_explain_shows_the_operator(con):
    plan = con.execute(f"EXPLAIN SELECT * FROM EXPLAIN_PREDICT(mb, {PROBE}, top_k => 2)").fetchall()
    text = "\n".join(str(row) for row in plan)
    assert "EXPLAIN_PREDICT: model mb@1 (mlp, binary), integrated gradients, top 2" in text
    plan = con.execute("EXPLAIN SELECT * FROM FEATURE_IMPORTANCE(r)").fetchall()
    assert "FEATURE_IMPORTANCE: model r@1 (linear), weight" in "\n".join(str(row) for row in plan)


# -- importances --------------------------------------------------------------------------------
@pytest.mark.parametrize("model, method", [("b", "weight"), ("k", "weight"), ("r", "weight"),
                                           ("mb", "permutation"), ("mk", "permutation"), ("mr", "permutation")])
def test_importance_sums_to_one_and_ranks_the_informative_feature_first(con, model, method):
    rows = con.execute(f"SELECT * FROM FEATURE_IMPORTANCE({model})").fetchall()
    assert [column[0] for column in con.execute(f"SELECT * FROM FEATURE_IMPORTANCE({model})").description] == \
        ["feature", "importance", "method"]
    assert sorted(row[0] for row in rows) == ["a", "c", "noise"]
    assert {row[2] for row in rows} == {method}
    assert sum(row[1] for row in rows) == pytest.approx(1.0)
    assert [row[1] for row in rows] == sorted((row[1] for row in rows), reverse=True)
    importance = {row[0]: row[1] for row in rows}
    assert importance["a"] > 5 * importance["noise"] and rows[0][0] == "a"


def test_linear_importance_is_weight_times_spread(con):
    import torch

    model = load_model(con, "r")
    table = con.execute("SELECT a, noise, c FROM d").arrow()
    x = np.array(model.encoder([table[n] for n in model.feature_names]), dtype=np.float64)
    weight = model.module.weight.detach().double().numpy()[0]
    assert isinstance(model.module, torch.nn.Linear)
    raw = np.abs(weight) * x.std(axis=0)  # (all rows: the training split's spread is close)
    expected = {"a": raw[0], "noise": raw[1], "c": raw[2:].sum()}
    expected = {name: value / sum(expected.values()) for name, value in expected.items()}
    found = dict(con.execute("SELECT feature, importance FROM FEATURE_IMPORTANCE(r)").fetchall())
    assert found == pytest.approx(expected, abs=0.02)


def test_describe_model_shows_importance(con):
    cursor = con.execute("DESCRIBE MODEL mb")
    names = [column[0] for column in cursor.description]
    described = {row[0]: row[names.index("importance")] for row in cursor.fetchall()}
    assert described == dict(con.execute("SELECT feature, importance FROM FEATURE_IMPORTANCE(mb)").fetchall())


def test_versions_keep_their_own_importances(con):
    con.execute("CREATE MODEL v PREDICT r FROM (SELECT a, noise, r FROM d) USING linear WITH (epochs = 40, lr = 0.05)")
    con.execute("TRAIN v FROM (SELECT a, noise, c, r FROM d)")
    assert sorted(f for (f,) in con.execute("SELECT feature FROM FEATURE_IMPORTANCE(v)").fetchall()) == \
        ["a", "c", "noise"]
    first = con.execute("SELECT feature FROM FEATURE_IMPORTANCE(v, 1)").fetchall()
    assert sorted(first) == [("a",), ("noise",)]
    assert con.execute("SELECT feature FROM FEATURE_IMPORTANCE('v@1')").fetchall() == first
    con.execute("DEPLOY MODEL v VERSION 1")
    assert con.execute("SELECT feature FROM FEATURE_IMPORTANCE(v)").fetchall() == first
    con.execute("CREATE VIEW vi AS SELECT * FROM FEATURE_IMPORTANCE(v)")  # a view follows DEPLOY
    assert len(con.execute("SELECT * FROM vi").fetchall()) == 2
    con.execute("DEPLOY MODEL v VERSION 2")
    assert len(con.execute("SELECT * FROM vi").fetchall()) == 3
    con.execute("DROP VIEW vi")
    con.execute("DROP MODEL v")
    left = con.execute("SELECT (SELECT count(*) FROM mldb.feature_importance WHERE model = 'v'), "
                       "(SELECT count(*) FROM mldb.explain_baselines WHERE model = 'v')").fetchone()
    assert left == (0, 0)


# -- the plot helper ----------------------------------------------------------------------------
def test_plot_helper_draws_one_bar_per_feature(con):
    try:
        ax = plot.feature_importance(con, "mr")
        rows = con.execute("SELECT feature, importance FROM FEATURE_IMPORTANCE(mr)").fetchall()
        labels = [label.get_text() for label in ax.get_yticklabels()]
        assert labels == [row[0] for row in reversed(rows)]  # the most important on top
        assert [bar.get_width() for bar in ax.patches] == pytest.approx([row[1] for row in reversed(rows)])
        assert ax.get_title() == "mr: feature importance" and "permutation" in ax.get_xlabel()
        assert len(plot.draw(con, "importance", "mr@1").patches) == 3
        with pytest.raises(mldb.ProgrammingError, match="model 'nope' does not exist"):
            plot.feature_importance(con.cursor(), "nope")
    finally:
        plt.close("all")


def test_plot_magic_shows_importances(con):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from mldb.magic import MldbMagic

    shell = InteractiveShell.instance()
    shell.register_magics(MldbMagic(shell=shell))
    shell.user_ns["explain_con"] = con
    try:
        shell.run_cell("%mldb --connect explain_con SELECT 1")
        with capture_output() as captured:
            result = shell.run_cell("%mldb --plot importance k")
        assert result.success and result.result is None
        assert [output.data["text/plain"] for output in captured.outputs] == ["<Figure size 640x360 with 1 Axes>"]
        assert plt.get_fignums() == []
    finally:
        shell.user_ns.pop("explain_con")


# -- bad input ------------------------------------------------------------------------------------
def _catalog_counts(con) -> tuple:
    return con.execute("SELECT (SELECT count(*) FROM mldb.feature_importance), "
                       "(SELECT count(*) FROM mldb.explain_baselines), (SELECT count(*) FROM mldb.model_versions), "
                       "(SELECT count(*) FROM mldb.prediction_log)").fetchone()


@pytest.mark.parametrize("sql, sqlstate, message", [
    ("SELECT * FROM EXPLAIN_PREDICT(b, (SELECT a, c FROM d))", "42703",
     "model 'b' needs column 'noise' (DOUBLE); the query has: a, c"),
    ("SELECT * FROM EXPLAIN_PREDICT(b, (SELECT a, c AS noise, c FROM d))", "42804",
     "model 'b' needs feature 'noise' as DOUBLE (numeric); found VARCHAR"),
    ("SELECT * FROM EXPLAIN_PREDICT(nope, (SELECT * FROM d))", "42704", "model 'nope' does not exist"),
    ("SELECT * FROM EXPLAIN_PREDICT('b@7', (SELECT * FROM d))", "42704", "model 'b' has no version 7"),
    ("SELECT * FROM EXPLAIN_PREDICT(b, (SELECT * FROM d), top_k => 0)", "22023", "top_k is the number"),
    ("SELECT * FROM EXPLAIN_PREDICT(b, (SELECT * FROM d), top_k => 'x')", "22023", "top_k is the number"),
    ("SELECT * FROM EXPLAIN_PREDICT(b, (SELECT * FROM d), top_k => 1, top_k => 2)", "42710", "top_k given twice"),
    ("SELECT * FROM EXPLAIN_PREDICT(b, (SELECT * FROM d), depth => 2)", "22023", "unknown option depth"),
    ("SELECT * FROM EXPLAIN_PREDICT(b)", "42000", "EXPLAIN_PREDICT in FROM takes (model, (query))"),
    ("SELECT EXPLAIN_PREDICT(b, (SELECT * FROM d))", "42000", "is a table function"),
    ("SELECT * FROM FEATURE_IMPORTANCE(b, 9)", "42704", "model 'b' has no version 9"),
    ("SELECT * FROM FEATURE_IMPORTANCE('b@9')", "42704", "model 'b' has no version 9"),
    ("SELECT * FROM FEATURE_IMPORTANCE(nope)", "42704", "model 'nope' does not exist"),
    ("SELECT * FROM FEATURE_IMPORTANCE(b, 'one')", "22023", "a version is a positive whole number"),
    ("SELECT * FROM FEATURE_IMPORTANCE('b@1', 2)", "22023", "name two versions"),
    ("SELECT * FROM FEATURE_IMPORTANCE(b, 1, 2)", "42000", "FEATURE_IMPORTANCE takes (model [, version])"),
])
def test_bad_input_is_a_typed_error_and_writes_nothing(con, sql, sqlstate, message):
    before = _catalog_counts(con)
    with pytest.raises(mldb.ProgrammingError, match=re.escape(message)) as raised:
        con.execute(sql)
    assert raised.value.sqlstate == sqlstate
    assert _catalog_counts(con) == before


def test_a_wrong_type_found_only_at_run_time_is_a_typed_error(con):
    """A query DuckDB describes only when it runs (a parameter) is checked by the function itself."""
    with pytest.raises(mldb.ProgrammingError, match="model 'b' needs feature 'noise' as DOUBLE") as raised:
        con.execute("SELECT * FROM EXPLAIN_PREDICT(b, (SELECT a, ?::VARCHAR AS noise, c FROM d))", ["z"])
    assert raised.value.sqlstate is not None


def test_empty_query_gives_no_rows(con):
    assert con.execute("SELECT * FROM EXPLAIN_PREDICT(mb, (SELECT * FROM d WHERE false))").fetchall() == []


# -- the grammar and the other frontends ----------------------------------------------------------------
def test_grammar_parses_and_prints_both_functions_back():
    from mldb.frontend import MLDB, parse, split_statements
    from mldb.frontend import models as grammar

    for sql in ("SELECT * FROM EXPLAIN_PREDICT(m, (SELECT * FROM t), top_k => 2) AS e",
                "SELECT * FROM FEATURE_IMPORTANCE('m@2')", "SELECT * FROM FEATURE_IMPORTANCE(m, 2)"):
        tree = parse(split_statements(sql)[0])
        assert len(list(tree.find_all(grammar.ExplainPredict, grammar.FeatureImportance))) == 1
        printed = tree.sql(dialect=MLDB)
        assert printed == sql
        assert parse(split_statements(printed)[0]) == tree


def test_over_the_wire(tmp_path):
    import psycopg
    from conftest_server import start_server

    served = start_server(tmp_path)
    try:
        with psycopg.connect(served.dsn(), autocommit=True) as wire:
            wire.execute(DATA)
            wire.execute(LABELS)
            wire.execute(f"CREATE MODEL w PREDICT y FROM (SELECT {FEATURES}, y FROM d) USING logistic "
                         "WITH (epochs = 30, lr = 0.05)")
            rows = wire.execute(
                "SELECT e.id, map_keys(e.contributions), e.baseline + list_sum(map_values(e.contributions)), "
                "ln(PREDICT_PROBA(w, d.a, d.noise, d.c)['true'] / PREDICT_PROBA(w, d.a, d.noise, d.c)['false']) "
                f"FROM EXPLAIN_PREDICT(w, {PROBE}, top_k => 3) e JOIN d USING (id) ORDER BY e.id").fetchall()
            assert [row[0] for row in rows] == list(range(60))
            assert all(sorted(row[1]) == ["a", "c", "noise"] for row in rows)
            assert [row[2] for row in rows] == pytest.approx([row[3] for row in rows], abs=1e-4)
            importance = wire.execute("SELECT feature, importance, method FROM FEATURE_IMPORTANCE(w)").fetchall()
            assert importance[0][0] == "a" and sum(row[1] for row in importance) == pytest.approx(1.0)
            with pytest.raises(psycopg.Error) as raised:
                wire.execute("SELECT * FROM EXPLAIN_PREDICT(w, (SELECT a, c FROM d))")
            assert raised.value.sqlstate == "42703" and "needs column 'noise'" in str(raised.value)
            with pytest.raises(psycopg.Error) as raised:
                wire.execute("SELECT * FROM FEATURE_IMPORTANCE(w, 5)")
            assert raised.value.sqlstate == "42704"
    finally:
        served.stop()


def test_in_the_cli(tmp_path):
    import subprocess
    import sys

    path = str(tmp_path / "cli.db")  # (the module's database is held open by this process)
    with mldb.connect(path) as con:
        con.execute(DATA)
        con.execute(LABELS)
        con.execute(f"CREATE MODEL b PREDICT y FROM (SELECT {FEATURES}, y FROM d) USING logistic WITH (epochs = 20)")
        predicted = con.execute("SELECT PREDICT(b) FROM d WHERE id < 3 ORDER BY id").fetchall()
    query = ("SELECT id, prediction, cardinality(contributions) AS n FROM EXPLAIN_PREDICT(b, (SELECT * FROM d "
             "WHERE id < 3), top_k => 1) ORDER BY id; SELECT feature, method FROM FEATURE_IMPORTANCE(b) LIMIT 1")
    done = subprocess.run([sys.executable, "-m", "mldb.cli", path, "-csv", "-c", query], capture_output=True,
                          text=True, timeout=300)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == (["id,prediction,n"] + [f"{i},{str(p).lower()},1" for i, (p,) in
                                                              enumerate(predicted)] + ["feature,method", "a,weight"])


# -- persistence --------------------------------------------------------------------------------
def test_explanations_persist_after_reopen(tmp_path):
    path = str(tmp_path / "reopen.db")
    with mldb.connect(path) as con:
        con.execute(DATA)
        con.execute(LABELS)
        con.execute(f"CREATE MODEL p PREDICT k FROM (SELECT {FEATURES}, k FROM d) USING mlp "
                    "WITH (epochs = 20, lr = 0.05, hidden = [8])")
        before = (explained(con, "p"), con.execute("SELECT * FROM FEATURE_IMPORTANCE(p)").fetchall())
    with mldb.connect(path) as reopened:
        after = (explained(reopened, "p"), reopened.execute("SELECT * FROM FEATURE_IMPORTANCE(p)").fetchall())
    assert after[1] == before[1] and len(after[1]) == 3
    assert [row["prediction"] for row in after[0]] == [row["prediction"] for row in before[0]]
    for new, old in zip(after[0], before[0]):
        assert new["baseline"] == old["baseline"] != 0.0
        assert new["contributions"] == pytest.approx(old["contributions"], abs=1e-9)
