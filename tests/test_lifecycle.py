"""Lifecycle: training statistics, DRIFT, prediction log, lineage, snapshots, plots.

Everything runs on real database files with real (small, fast) models trained on
generated data written to Parquet.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mldb
from mldb.lifecycle import drift, stats

ROWS = 2000


def generated(seed: int, rows: int = ROWS, shift: float = 0.0, plans=(0.5, 0.3, 0.2)) -> pa.Table:
    rng = np.random.default_rng(seed)
    age = rng.normal(40 + shift, 10, rows)
    spend = rng.gamma(2.0, 20.0, rows)
    plan = rng.choice(["basic", "plus", "pro"], rows, p=plans)
    churned = (age > 45) ^ (rng.random(rows) < 0.1)
    return pa.table({"age": age, "plan": plan, "spend": spend, "churned": churned})


def load(cursor, name: str, table: pa.Table, folder) -> None:
    path = folder / f"{name}.parquet"
    pq.write_table(table, path)
    cursor.execute(f"CREATE TABLE {name} AS SELECT * FROM '{path}'")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A database with customers, a view over them, and model churn trained from the view."""
    folder = tmp_path_factory.mktemp("shop")
    con = mldb.connect(str(folder / "shop.db"))
    cur = con.cursor()
    load(cur, "customers", generated(1), folder)
    load(cur, "same_customers", generated(2), folder)
    load(cur, "older_customers", generated(3, shift=15, plans=(0.1, 0.2, 0.7)), folder)
    cur.execute("CREATE VIEW active AS SELECT * FROM customers WHERE spend >= 0")
    cur.execute("CREATE MODEL churn PREDICT churned FROM active USING logistic WITH (epochs = 30, snapshot = true)")
    yield con
    con.close()


def rows(con, sql: str, params=None) -> list[tuple]:
    return con.execute(sql, params).fetchall()


# -- statistics ------------------------------------------------------------------------------
def test_profile_matches_numpy():
    table = generated(0)
    nulls = pa.array([None if i % 10 == 0 else float(i) for i in range(ROWS)])
    table = table.append_column("sparse", nulls)
    saved = {row["feature"]: row for row in stats.profile("m", 1, table, [{"name": "age"}, {"name": "plan"},
                                                                         {"name": "sparse"}]).to_pylist()}
    age = table["age"].to_numpy()
    assert saved["age"]["kind"] == "numeric" and saved["age"]["role"] == "feature"
    assert saved["age"]["mean"] == pytest.approx(age.mean()) and saved["age"]["std"] == pytest.approx(age.std())
    assert saved["age"]["quantiles"][50] == pytest.approx(np.median(age))
    assert sum(saved["age"]["bin_counts"]) == ROWS and len(saved["age"]["bin_counts"]) == 10
    assert saved["sparse"]["nulls"] == ROWS // 10 and saved["sparse"]["count"] == ROWS
    assert saved["plan"]["kind"] == "categorical" and saved["plan"]["top_values"][0] == "basic"
    assert sum(saved["plan"]["top_counts"]) == ROWS and saved["plan"]["other_count"] == 0
    assert saved["churned"]["role"] == "target"


def test_training_statistics_saved_with_the_version(shop):
    found = rows(shop, "SELECT feature, role, kind, count FROM mldb.feature_stats WHERE model = 'churn' "
                       "AND version = 1 ORDER BY rowid")
    assert found == [("age", "feature", "numeric", ROWS), ("plan", "feature", "categorical", ROWS),
                     ("spend", "feature", "numeric", ROWS), ("churned", "target", "categorical", ROWS),
                     ("(prediction)", "prediction", "categorical", ROWS)]
    mean, = rows(shop, "SELECT mean FROM mldb.feature_stats WHERE model = 'churn' AND feature = 'age'")[0]
    assert mean == pytest.approx(generated(1)["age"].to_numpy().mean())


# -- drift -------------------------------------------------------------------------------------
def _saved():
    return stats.profile("m", 1, generated(0), [{"name": "age"}, {"name": "plan"}, {"name": "spend"}]).to_pylist()


def test_shifted_feature_is_flagged_and_unshifted_is_not():
    limits = drift.thresholds({})
    same = drift.drift_rows(_saved(), generated(1), None, limits).to_pylist()
    assert not any(row["drifted"] for row in same)
    shifted = drift.drift_rows(_saved(), generated(2, shift=10), None, limits).to_pylist()
    flagged = {(row["feature"], row["statistic"]) for row in shifted if row["drifted"]}
    assert flagged == {("age", "psi"), ("age", "ks")}


def test_category_shift_is_flagged():
    changed = drift.drift_rows(_saved(), generated(2, plans=(0.1, 0.2, 0.7)), None, drift.thresholds({}))
    assert {r["feature"] for r in changed.to_pylist() if r["drifted"]} == {"plan"}


def test_small_sample_does_not_raise_ks_alarm():
    small = drift.drift_rows(_saved(), generated(4, rows=40), None, drift.thresholds({"psi_threshold": 10}))
    assert not any(row["drifted"] for row in small.to_pylist())


def test_thresholds_are_settable():
    mild = generated(2, shift=2)
    default = drift.drift_rows(_saved(), mild, None, drift.thresholds({})).to_pylist()
    strict = drift.drift_rows(_saved(), mild, None, drift.thresholds({"psi_threshold": 0.01})).to_pylist()
    assert not any(r["drifted"] for r in default if r["statistic"] == "psi")
    assert any(r["drifted"] for r in strict if r["feature"] == "age" and r["statistic"] == "psi")
    with pytest.raises(mldb.ProgrammingError, match="unknown option psi"):
        drift.thresholds({"psi": 0.1})


def test_drift_sql_flags_shift(shop):
    same = rows(shop, "SELECT feature, statistic, drifted FROM DRIFT(churn, (SELECT * FROM same_customers))")
    assert same and not any(drifted for _, _, drifted in same)
    assert {(f, s) for f, s, _ in same} == {("age", "psi"), ("age", "ks"), ("plan", "psi"), ("spend", "psi"),
                                           ("spend", "ks"), ("(prediction)", "psi")}
    shifted = rows(shop, "SELECT feature, statistic FROM DRIFT('churn@1', older_customers) WHERE drifted")
    assert {("age", "psi"), ("age", "ks"), ("plan", "psi"), ("(prediction)", "psi")} <= set(shifted)
    assert ("spend", "psi") not in shifted


def test_drift_named_threshold(shop):
    query = "SELECT drifted FROM DRIFT(churn, (SELECT * FROM older_customers), psi_threshold => {}) " \
            "WHERE feature = 'plan' AND statistic = 'psi'"
    assert rows(shop, query.format(0.2)) == [(True,)]
    assert rows(shop, query.format(100)) == [(False,)]


def test_drift_bad_input(shop):
    before = rows(shop, "SELECT count(*) FROM mldb.feature_stats")
    with pytest.raises(mldb.ProgrammingError, match="lacks feature plan; it has: age, spend"):
        shop.execute("SELECT * FROM DRIFT(churn, (SELECT age, spend FROM customers))")
    with pytest.raises(mldb.DataError, match="no rows"):
        shop.execute("SELECT * FROM DRIFT(churn, (SELECT * FROM customers WHERE age > 1000))")
    with pytest.raises(mldb.ProgrammingError, match="model 'nope' does not exist"):
        shop.execute("SELECT * FROM DRIFT(nope, customers)")
    with pytest.raises(mldb.ProgrammingError, match="table function"):
        shop.execute("SELECT DRIFT(churn, customers)")
    with pytest.raises(mldb.ProgrammingError, match="was trained as"):
        shop.execute("SELECT * FROM DRIFT(churn, (SELECT plan AS age, plan, spend FROM customers))")
    assert rows(shop, "SELECT count(*) FROM mldb.feature_stats") == before


# -- prediction log ----------------------------------------------------------------------------
def test_one_log_row_per_statement(shop):
    before = rows(shop, "SELECT count(*) FROM mldb.prediction_log")[0][0]
    shop.execute("SELECT PREDICT(churn) AS p FROM customers").fetchall()
    shop.execute("SELECT count(*) FROM customers WHERE PREDICT(churn)").fetchall()
    log = rows(shop, "SELECT model, version, rows, calls, seconds, query_fingerprint, summary FROM mldb.prediction_log "
                     "ORDER BY logged_at DESC, rowid DESC LIMIT 2")
    assert rows(shop, "SELECT count(*) FROM mldb.prediction_log")[0][0] == before + 2
    for model, version, count, calls, seconds, fingerprint, summary in log:
        assert (model, version, count) == ("churn", 1, ROWS)
        assert calls >= 1 and seconds > 0 and fingerprint
        counts = json.loads(summary)["counts"]
        assert sum(counts.values()) == ROWS and set(counts) <= {"true", "false"}


def test_query_fingerprint_ignores_literals():
    from mldb.lifecycle.log import query_fingerprint

    assert query_fingerprint("SELECT PREDICT(m) FROM t WHERE a > 1") == query_fingerprint(
        "select predict(m) from t where a > 25")
    assert query_fingerprint("SELECT PREDICT(m) FROM t") != query_fingerprint("SELECT PREDICT(m) FROM u")


def test_failed_statement_logs_nothing(shop):
    before = rows(shop, "SELECT count(*) FROM mldb.prediction_log")
    with pytest.raises(mldb.Error):
        shop.execute("SELECT PREDICT(churn) / 0 + 'x'::INTEGER FROM customers").fetchall()
    assert rows(shop, "SELECT count(*) FROM mldb.prediction_log") == before


# -- lineage -----------------------------------------------------------------------------------
def test_training_lineage_goes_through_views(shop):
    edges = rows(shop, "SELECT source, target, target_version, kind, via FROM mldb.lineage "
                       "WHERE kind = 'training' AND target = 'churn' ORDER BY source")
    assert edges == [("active", "churn", 1, "training", None), ("customers", "churn", 1, "training", "active")]
    affected = rows(shop, "SELECT DISTINCT target, target_version FROM mldb.lineage WHERE source = 'customers'")
    assert affected == [("churn", 1)]


def test_prediction_lineage_for_ctas_and_insert(shop):
    shop.execute("CREATE TABLE scored AS SELECT *, PREDICT(churn) AS p FROM same_customers")
    shop.execute("CREATE TABLE scored_later (age DOUBLE, p BOOLEAN)")
    shop.execute("INSERT INTO scored_later SELECT age, PREDICT('churn@1') FROM same_customers")
    written = rows(shop, "SELECT target FROM mldb.lineage WHERE source = 'churn' AND source_version = 1 "
                         "AND kind = 'prediction' ORDER BY target")
    assert written == [("scored",), ("scored_later",)]
    graph = rows(shop, "SELECT direction, source, target, depth FROM LINEAGE(scored) ORDER BY depth, source")
    assert ("upstream", "churn", "scored", 1) in graph and ("upstream", "customers", "churn", 2) in graph
    around_model = rows(shop, "SELECT direction, source, target FROM LINEAGE(churn) WHERE depth = 1")
    assert ("upstream", "customers", "churn") in around_model and ("downstream", "churn", "scored") in around_model


def test_lineage_of_missing_or_dropped_table(shop):
    shop.execute("CREATE TABLE gone AS SELECT *, PREDICT(churn) AS p FROM customers LIMIT 5")
    shop.execute("DROP TABLE gone")
    with pytest.raises(mldb.ProgrammingError, match="'gone' no longer exists"):
        shop.execute("SELECT * FROM LINEAGE(gone)")
    with pytest.raises(mldb.ProgrammingError, match="no table, view or model named 'never'"):
        shop.execute("SELECT * FROM LINEAGE(never)")


# -- snapshots ---------------------------------------------------------------------------------
def test_snapshot_reproduces_training_rows(tmp_path):
    con = mldb.connect(str(tmp_path / "snap.db"))
    load(con.cursor(), "customers", generated(5, rows=500), tmp_path)
    con.execute("CREATE MODEL churn PREDICT churned FROM customers USING logistic WITH (epochs = 2, snapshot = true)")
    assert rows(con, "SHOW VERSIONS OF MODEL churn")[0][-1] is False  # data_changed
    con.execute("DELETE FROM customers WHERE age > 40")
    assert rows(con, "SHOW VERSIONS OF MODEL churn")[0][-1] is True
    con.execute("TRAIN churn FROM SNAPSHOT")
    prints = rows(con, "SELECT version, rows, fingerprint FROM mldb.snapshots ORDER BY version")
    assert prints[0][1:] == prints[1][1:] == (500, prints[0][2])
    copied = rows(con, "SELECT count(*) FROM mldb.snapshot_churn_v1")
    assert copied == [(500,)]
    con.close()


def test_snapshot_bad_input(tmp_path):
    con = mldb.connect(str(tmp_path / "snap.db"))
    load(con.cursor(), "customers", generated(6, rows=300), tmp_path)
    con.execute("CREATE MODEL churn PREDICT churned FROM customers USING logistic WITH (epochs = 2)")
    with pytest.raises(mldb.ProgrammingError, match="snapshot"):
        con.execute("TRAIN churn FROM SNAPSHOT")
    assert rows(con, "SELECT count(*) FROM mldb.model_versions") == [(1,)]
    con.close()


def test_replacing_a_model_forgets_the_old_one(tmp_path):
    con = mldb.connect(str(tmp_path / "replace.db"))
    load(con.cursor(), "customers", generated(7, rows=300), tmp_path)
    con.execute("CREATE MODEL churn PREDICT churned FROM customers USING logistic WITH (epochs = 2, snapshot = true)")
    con.execute("TRAIN churn")
    con.execute("CREATE OR REPLACE MODEL churn PREDICT churned FROM (SELECT age, churned FROM customers) "
                "USING logistic WITH (epochs = 2)")
    assert rows(con, "SELECT DISTINCT version FROM mldb.feature_stats") == [(1,)]
    assert rows(con, "SELECT feature FROM mldb.feature_stats WHERE role = 'feature'") == [("age",)]
    assert rows(con, "SELECT version, stored FROM mldb.snapshots") == [(1, False)]
    assert rows(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'snapshot_churn%'") == [(0,)]
    con.close()


# -- sampling, read-only databases, plots ------------------------------------------------------
def test_log_sample_keeps_input_and_output_rows(tmp_path):
    con = mldb.connect(str(tmp_path / "sample.db"))
    load(con.cursor(), "customers", generated(8, rows=400), tmp_path)
    con.execute("CREATE MODEL churn PREDICT churned FROM customers USING logistic WITH (epochs = 2, log_sample = 1)")
    con.execute("CREATE MODEL plain PREDICT churned FROM customers USING logistic WITH (epochs = 2)")
    con.execute("SELECT PREDICT(churn), PREDICT(plain) FROM customers").fetchall()
    samples = rows(con, "SELECT model, count(*), count(DISTINCT query_fingerprint) FROM mldb.prediction_samples "
                        "GROUP BY model")
    assert samples == [("churn", 400, 1)]
    sample_input, output = rows(con, "SELECT input, output FROM mldb.prediction_samples LIMIT 1")[0]
    assert json.loads(output) in (True, False)
    assert set(json.loads(sample_input)) == {"age", "plan", "spend"}
    with pytest.raises(mldb.ProgrammingError, match="log_sample"):
        con.execute("CREATE MODEL bad PREDICT churned FROM customers WITH (log_sample = 2)")
    assert rows(con, "SELECT count(*) FROM mldb.models WHERE name = 'bad'") == [(0,)]
    con.close()


def test_read_only_database_predicts_without_logging(tmp_path):
    path = str(tmp_path / "ro.db")
    con = mldb.connect(path)
    load(con.cursor(), "customers", generated(9, rows=200), tmp_path)
    con.execute("CREATE MODEL churn PREDICT churned FROM customers USING logistic WITH (epochs = 2)")
    con.close()
    reader = mldb.connect(path, read_only=True)
    assert len(reader.execute("SELECT PREDICT(churn) FROM customers").fetchall()) == 200
    assert rows(reader, "SELECT count(*) FROM mldb.prediction_log") == [(0,)]
    assert rows(reader, "SELECT count(*) FROM DRIFT(churn, customers) WHERE drifted") == [(0,)]
    reader.close()


def test_plots(shop):
    import matplotlib

    matplotlib.use("Agg")
    from mldb import plot

    ax = plot.drift(shop, "churn", "SELECT * FROM older_customers")
    heights = {patch.get_x(): patch.get_height() for patch in ax.patches}
    assert len(heights) == 4 and max(heights.values()) > 0.2  # one PSI bar per feature and the prediction
    assert len(ax.figure.axes) >= 4  # the summary and one panel per feature
    shop.execute("SELECT PREDICT(churn) FROM customers").fetchall()
    volume = plot.prediction_volume(shop, "churn")
    assert sum(volume.lines[0].get_ydata()) >= ROWS
    with pytest.raises(mldb.ProgrammingError, match="no predictions"):
        plot.prediction_volume(shop, "nothing")


# -- the README's worked example ---------------------------------------------------------------
def _readme_example() -> str:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("<!-- section: lifecycle -->")[1].split("<!-- /section: lifecycle -->")[0]
    return section.split("```sql")[1].split("```")[0]


def test_readme_worked_example_runs(tmp_path):
    from mldb.frontend import split_statements

    con = mldb.connect(str(tmp_path / "readme.db"))
    for statement in split_statements(_readme_example()):
        con.execute(statement.text)
    drifted = {(row[0], row[1]) for row in rows(con, "SELECT * FROM DRIFT('churn@1', new_customers) WHERE drifted")}
    assert {("age", "psi"), ("age", "ks"), ("plan", "psi"), ("(prediction)", "psi")} <= drifted
    assert not any(feature == "spend" for feature, _ in drifted)
    versions = rows(con, "SHOW VERSIONS OF MODEL churn")
    assert [v[0] for v in versions] == [1, 2, 3] and versions[0][-1] is True  # data_changed for version 1
    assert rows(con, "SELECT deployed_version FROM mldb.models") == [(1,)]
    prints = rows(con, "SELECT version, fingerprint FROM mldb.snapshots ORDER BY version")
    assert prints[0][1] == prints[2][1] != prints[1][1]  # version 3 was trained on version 1's rows
    assert rows(con, "SELECT target FROM mldb.lineage WHERE source = 'churn' AND kind = 'prediction'") == [("scored",)]
    assert rows(con, "SELECT DISTINCT target_version FROM mldb.lineage WHERE source = 'customers' "
                     "ORDER BY 1") == [(1,), (2,)]
    assert rows(con, "SELECT source FROM mldb.lineage WHERE target_version = 3") == [("mldb.snapshot_churn_v1",)]
    assert rows(con, "SELECT count(*) FROM mldb.prediction_log WHERE model = 'churn'")[0][0] >= 1
    con.close()


def test_predictions_through_a_stored_view_are_logged_with_the_statement_that_read_it(shop):
    shop.execute("CREATE VIEW risky AS SELECT age, PREDICT(churn) AS p FROM customers")
    assert rows(shop, "SELECT source, target, kind FROM mldb.lineage WHERE target = 'risky'") == [
        ("churn", "risky", "prediction")]
    before = rows(shop, "SELECT count(*) FROM mldb.prediction_log")[0][0]
    assert rows(shop, "SELECT count(p) FROM risky") == [(ROWS,)]  # no mldb word: straight to DuckDB
    shop.execute("SELECT * FROM PREDICT(churn, (SELECT * FROM customers LIMIT 10))").fetchall()
    logged = rows(shop, "SELECT rows, statement, summary FROM mldb.prediction_log "
                        "ORDER BY rowid DESC LIMIT 2")
    assert rows(shop, "SELECT count(*) FROM mldb.prediction_log")[0][0] == before + 2
    assert sorted((n, statement) for n, statement, _ in logged) == [
        (10, "SELECT * FROM PREDICT(churn, (SELECT * FROM customers LIMIT 10))"),
        (ROWS, "SELECT count(p) FROM risky")]
    assert all(sum(json.loads(summary)["counts"].values()) == n for n, _, summary in logged)


def test_embedding_lineage(tmp_path):
    con = mldb.connect(str(tmp_path / "embed.db"))
    con.execute("CREATE TABLE docs AS SELECT 'cheap flights to Rome' AS body")
    con.execute("CREATE TABLE doc_vecs AS SELECT body, EMBED(body) AS v FROM docs")
    assert rows(con, "SELECT source, target, kind FROM mldb.lineage") == [
        ("all-MiniLM-L6-v2", "doc_vecs", "embedding")]
    con.close()


def test_text_dates_and_vectors_are_summarised():
    table = pa.table({
        "note": pa.array(["short", "a much longer note", None, "mid note"] * 50),
        "day": pa.array(np.arange("2024-01-01", "2024-07-19", dtype="datetime64[D]")),
        "vec": pa.array([[0.1, 0.2]] * 200, pa.list_(pa.float32(), 2)),
    })
    features = [{"name": "note", "encoding": "embed"}, {"name": "day", "encoding": "date"},
                {"name": "vec", "encoding": "vector"}]
    saved = stats.profile("m", 1, table, features).to_pylist()
    assert [row["kind"] for row in saved] == ["text", "numeric", "vector"]
    assert saved[0]["nulls"] == 50 and saved[0]["max"] == len("a much longer note")
    assert saved[1]["max"] - saved[1]["min"] == 199  # days
    longer = table.set_column(0, "note", pa.array(["a note that is far longer than any before it"] * 200))
    found = {(r["feature"], r["statistic"]): r["drifted"] for r in drift.drift_rows(saved, longer, None,
                                                                                  drift.thresholds({})).to_pylist()}
    assert found[("note", "psi")] and not found[("day", "psi")] and ("vec", "psi") not in found


def test_empty_training_set_with_snapshot_changes_nothing(tmp_path):
    con = mldb.connect(str(tmp_path / "empty.db"))
    load(con.cursor(), "customers", generated(10, rows=100), tmp_path)
    with pytest.raises(mldb.Error):
        con.execute("CREATE MODEL churn PREDICT churned FROM (SELECT * FROM customers WHERE age > 1000) "
                    "WITH (snapshot = true)")
    for table in ("models", "model_versions", "feature_stats", "snapshots", "lineage"):
        assert rows(con, f"SELECT count(*) FROM mldb.{table}") == [(0,)]
    con.close()


def test_regression_model_drift_and_sources(shop):
    from mldb.lifecycle import tracking as hooks

    shop.execute("CREATE MODEL spend_model PREDICT spend FROM (SELECT age, spend FROM active) "
                 "USING linear WITH (epochs = 5)")
    kinds = rows(shop, "SELECT kind FROM mldb.feature_stats WHERE model = 'spend_model' AND role = 'prediction'")
    assert kinds == [("numeric",)]
    found = rows(shop, "SELECT statistic FROM DRIFT(spend_model, older_customers) WHERE feature = '(prediction)'")
    assert sorted(found) == [("ks",), ("psi",)]
    shop.execute("SELECT PREDICT(spend_model) FROM customers").fetchall()
    summary = json.loads(rows(shop, "SELECT summary FROM mldb.prediction_log WHERE model = 'spend_model'")[0][0])
    assert summary["n"] == ROWS and summary["std"] >= 0
    session = shop.cursor()._session
    assert hooks.sources(session, "spend_model", 1) == ["active", "customers (via active)"]


def test_sampled_inputs_are_stored_as_json(tmp_path):
    con = mldb.connect(str(tmp_path / "inputs.db"))
    con.execute("CREATE TABLE t AS SELECT (range % 50)::DOUBLE AS age, CASE WHEN range % 3 = 0 THEN 'basic' "
                "ELSE 'pro' END AS plan, range % 50 > 25 AS y FROM range(300)")
    con.execute("CREATE MODEL direct PREDICT y FROM t USING logistic WITH (epochs = 2, log_sample = 1.0)")
    con.execute("SELECT PREDICT(direct) FROM (VALUES (30.0, 'basic'), (40.0, 'pro')) AS v(age, plan)").fetchall()
    found = rows(con, "SELECT version, input->>'plan', input->>'age' FROM mldb.prediction_samples ORDER BY 2")
    assert found == [(1, "basic", "30.0"), (1, "pro", "40.0")]
    assert rows(con, "SELECT rows, calls FROM mldb.prediction_log") == [(2, 1)]
    con.close()


def test_predictions_and_samples_stay_with_their_database(tmp_path):
    """Two open databases with the same model name: a view read in A logs in A only."""
    first, second = mldb.connect(str(tmp_path / "a.db")), mldb.connect(str(tmp_path / "b.db"))
    for con, sample in ((first, 1.0), (second, 0.0)):
        con.execute("CREATE TABLE t AS SELECT (range % 50)::DOUBLE AS x, range % 50 > 25 AS y FROM range(300)")
        con.execute(f"CREATE MODEL m PREDICT y FROM t USING logistic WITH (epochs = 2, log_sample = {sample})")
        con.execute("CREATE VIEW scored AS SELECT x, PREDICT(m) AS p FROM t")
    assert len(first.execute("SELECT * FROM scored").fetchall()) == 300
    first.close()
    second.execute("SELECT PREDICT(m) FROM (SELECT * FROM t LIMIT 5)").fetchall()
    assert rows(second, "SELECT rows FROM mldb.prediction_log") == [(5,)]
    assert rows(second, "SELECT count(*) FROM mldb.prediction_samples") == [(0,)]
    reopened = mldb.connect(str(tmp_path / "a.db"))
    assert rows(reopened, "SELECT rows, statement FROM mldb.prediction_log") == [(300, "SELECT * FROM scored")]
    assert rows(reopened, "SELECT count(*) FROM mldb.prediction_samples") == [(300,)]
    reopened.close()
    second.close()


def test_a_large_predict_is_logged_whole_even_when_read_later(tmp_path):
    """DuckDB computes lazily: the log row must count every batch, not the first one fetched."""
    con = mldb.connect(str(tmp_path / "log.db"))
    con.execute("CREATE TABLE p AS SELECT range AS id, (range % 50)::DOUBLE AS x, range % 50 > 25 AS y FROM range(10000)")
    con.execute("CREATE MODEL big PREDICT y FROM (SELECT x, y FROM p) USING logistic WITH (epochs = 2)")
    cursor = con.execute("SELECT id, PREDICT(big) FROM p; SELECT PREDICT(big) AS again FROM p WHERE id < 5000")
    assert len(cursor.fetchall()) == 5000
    logged = con.execute("SELECT rows FROM mldb.prediction_log WHERE model = 'big' ORDER BY started_at").fetchall()
    assert logged == [(10000,), (5000,)]
    con.close()


def test_describe_model_says_where_the_data_came_from(tmp_path):
    con = mldb.connect(str(tmp_path / "sources.db"))
    con.execute("CREATE TABLE customers AS SELECT range AS id, range % 2 = 0 AS y FROM range(100)")
    con.execute("CREATE VIEW active AS SELECT * FROM customers WHERE id > 10")
    con.execute("CREATE MODEL m PREDICT y FROM active WITH (epochs = 2)")
    cursor = con.execute("DESCRIBE MODEL m")
    names = [column[0] for column in cursor.description]
    rows = cursor.fetchall()
    assert rows[0][names.index("sources")] == ["active", "customers (via active)"]
    con.close()


def test_the_prediction_log_is_exact_per_statement_under_concurrency(tmp_path):
    """8 connections predict at once, each statement over its own number of rows: every
    log row carries its own statement and its own count (counters belong to the statement)."""
    import threading

    path = str(tmp_path / "busy.db")
    setup = mldb.connect(path)
    setup.execute("CREATE TABLE t AS SELECT range AS id, (range % 50)::DOUBLE AS x, range % 50 > 25 AS y "
                  "FROM range(20000)")
    setup.execute("CREATE MODEL m PREDICT y FROM (SELECT x, y FROM t) USING logistic WITH (epochs = 2)")
    failures = []

    def client(worker: int) -> None:
        con = mldb.connect(path)
        try:
            for round_ in range(5):
                limit = 1 + worker * 1000 + round_ * 37
                got = con.execute(f"SELECT count(PREDICT(m)) FROM (SELECT x FROM t WHERE id < {limit})").fetchall()
                assert got == [(limit,)]
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)
        finally:
            con.close()

    threads = [threading.Thread(target=client, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    logged = rows(setup, "SELECT statement, rows FROM mldb.prediction_log")
    assert len(logged) == 40
    for statement, count in logged:
        limit = int(statement.split("id < ")[1].rstrip(")"))
        assert count == limit, statement
    setup.close()


def test_explain_of_drift_computes_nothing(shop, monkeypatch):
    computed = []
    real = drift.evaluate
    monkeypatch.setattr(drift, "evaluate", lambda *args, **kwargs: computed.append(1) or real(*args, **kwargs))
    plan = rows(shop, "EXPLAIN SELECT * FROM DRIFT(churn, (SELECT * FROM older_customers))")
    assert computed == []
    assert any("DRIFT: model churn" in str(row) for row in plan)
    assert rows(shop, "SELECT count(*) > 0 FROM DRIFT(churn, (SELECT * FROM older_customers))") == [(True,)]
    assert computed == [1]
