"""Deployment policies of TRAIN / CREATE MODEL: deploy = 'if_better' | 'always' | 'never' (SPEC section 11).

Real databases on disk and real (tiny) trained models: a champion trained on good data keeps serving
when a challenger trained on meaningless labels loses on the holdout, a better challenger takes over,
each decision is a row of mldb.deploy_decisions whose values EVALUATE gives too, and a bad holdout
fails the TRAIN with nothing written."""

from __future__ import annotations

import pytest

import mldb

# x, y spread over [-1, 1] without randomness; 'good' labels follow x + y, 'bad' ones a pattern unrelated to them
_POINTS = "SELECT ((i * 7919) % 1000) / 500.0 - 1 AS x, ((i * 104729) % 997) / 498.5 - 1 AS y, i FROM range({n}) r(i)"
_FAST = "USING logistic WITH (epochs = 15, seed = 1"


@pytest.fixture
def cur(tmp_path):
    con = mldb.connect(str(tmp_path / "policy.db"))
    cur = con.cursor()
    cur.execute(f"CREATE TABLE good AS SELECT x, y, x + y > 0 AS label FROM ({_POINTS.format(n=400)})")
    cur.execute(f"CREATE TABLE bad AS SELECT x, y, (i * 31) % 7 < 3 AS label FROM ({_POINTS.format(n=400)})")
    cur.execute("CREATE TABLE hold AS SELECT x + 0.001 AS x, y - 0.002 AS y, x + y > 0 AS label, "
                "CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END AS grp FROM (" + _POINTS.format(n=300) + ") WHERE i > 37")
    yield cur
    con.close()


def one(cur, sql: str):
    cur.execute(sql)
    return cur.fetchall()


def summary(cur, sql: str) -> dict:
    cur.execute(sql)
    names = [column[0] for column in cur.description]
    rows = cur.fetchall()
    assert len(rows) == 1
    return dict(zip(names, rows[0]))


def decisions(cur, model: str = "m") -> list[tuple]:
    return one(cur, "SELECT version, champion_version, metric, value, champion_value, holdout, holdout_rows, deployed "
                    f"FROM mldb.deploy_decisions WHERE model = '{model}' ORDER BY version")


def serving(cur, model: str = "m") -> int:
    return one(cur, f"SELECT deployed_version FROM mldb.models WHERE name = '{model}'")[0][0]


def evaluated(cur, ref: str, query: str) -> dict:
    return summary(cur, f"SELECT * FROM EVALUATE('{ref}', ({query}))")


def history(cur) -> list[tuple]:
    return one(cur, "SELECT version, previous_version, reason FROM mldb.deployments WHERE model = 'm' ORDER BY rowid")


def test_a_worse_challenger_loses_and_the_champion_keeps_serving(cur):
    cur.execute(f"CREATE MODEL m PREDICT label FROM good {_FAST})")
    before = one(cur, "SELECT PREDICT(m) FROM hold ORDER BY x, y")
    result = summary(cur, "TRAIN m FROM (SELECT * FROM bad) WITH (deploy = 'if_better', holdout = 'hold')")
    assert list(result)[:8] == ["model", "version", "task", "algorithm", "rows", "metric", "value", "seconds"]
    assert result["version"] == 2 and result["deployed"] is False and result["champion_version"] == 1
    assert serving(cur) == 1
    assert one(cur, "SELECT PREDICT(m) FROM hold ORDER BY x, y") == before
    champion, challenger = (evaluated(cur, ref, "SELECT * FROM hold") for ref in ("m@1", "m@2"))
    assert champion["accuracy"] > 0.9 and challenger["accuracy"] < champion["accuracy"]
    assert decisions(cur) == [(2, 1, "accuracy", challenger["accuracy"], champion["accuracy"], "SELECT * FROM hold",
                               champion["rows"], False)]
    assert (result["holdout_value"], result["champion_value"]) == (challenger["accuracy"], champion["accuracy"])
    assert history(cur) == [(1, None, "train")]  # nothing changed: nothing recorded


def test_a_better_challenger_serves_and_the_change_has_the_policy_as_reason(cur):
    cur.execute(f"CREATE MODEL m PREDICT label FROM bad {_FAST})")
    result = summary(cur, "TRAIN m FROM (SELECT * FROM good) WITH (deploy = 'if_better', holdout = "
                          "'SELECT * FROM hold', metric = 'f1')")
    assert result["deployed"] is True and serving(cur) == 2
    champion, challenger = (evaluated(cur, ref, "SELECT * FROM hold") for ref in ("m@1", "m@2"))
    assert decisions(cur) == [(2, 1, "f1", challenger["f1"], champion["f1"], "SELECT * FROM hold", champion["rows"],
                               True)]
    assert history(cur) == [(1, None, "train"), (2, 1, "if_better")]
    assert one(cur, "SELECT PREDICT(m) = PREDICT('m@2') FROM hold") == [(True,)] * champion["rows"]


def test_a_tie_keeps_the_champion(cur):
    cur.execute("CREATE TABLE far AS SELECT * FROM good WHERE abs(x + y) > 0.5")
    cur.execute(f"CREATE MODEL m PREDICT label FROM good {_FAST})")
    result = summary(cur, "TRAIN m WITH (epochs = 15, seed = 2, deploy = 'if_better', holdout = 'far')")
    assert result["holdout_value"] == result["champion_value"] == 1.0  # both classify every far point
    assert result["deployed"] is False and serving(cur) == 1
    assert decisions(cur)[0][3:5] == (1.0, 1.0)


def test_regression_compares_rmse_lower_is_better(cur):
    cur.execute(f"CREATE TABLE r_good AS SELECT x, y, 3 * x - 2 * y + 1 AS v FROM ({_POINTS.format(n=400)})")
    cur.execute(f"CREATE TABLE r_bad AS SELECT x, y, ((i * 37) % 11) - 5.0 AS v FROM ({_POINTS.format(n=400)})")
    cur.execute("CREATE MODEL m PREDICT v FROM r_good USING linear WITH (epochs = 60, seed = 1)")
    worse = summary(cur, "TRAIN m FROM (SELECT * FROM r_bad) WITH (deploy = 'if_better', holdout = 'r_good', "
                         "metric = 'rmse')")
    assert worse["holdout_value"] > worse["champion_value"] and worse["deployed"] is False and serving(cur) == 1
    cur.execute("DEPLOY MODEL m VERSION 2")  # the bad one serves; the good data retrained beats it
    better = summary(cur, "TRAIN m FROM (SELECT * FROM r_good) WITH (deploy = 'if_better', holdout = 'r_good', "
                          "metric = 'rmse')")
    assert better["champion_version"] == 2 and better["holdout_value"] < better["champion_value"]
    assert better["deployed"] is True and serving(cur) == 3
    rmse = {ref: evaluated(cur, ref, "SELECT * FROM r_good")["rmse"] for ref in ("m@1", "m@2", "m@3")}
    assert [row[3:5] for row in decisions(cur)] == [(rmse["m@2"], rmse["m@1"]), (rmse["m@3"], rmse["m@2"])]
    default = summary(cur, "TRAIN m WITH (deploy = 'if_better', holdout = 'r_good')")
    assert decisions(cur)[-1][2] == "r2" and default["champion_version"] == 3


def test_always_serves_even_over_a_pinned_version_and_never_keeps_what_serves(cur):
    cur.execute(f"CREATE MODEL m PREDICT label FROM good {_FAST})")
    cur.execute("TRAIN m WITH (epochs = 2)")
    cur.execute("DEPLOY MODEL m VERSION 1")  # pinned: a plain TRAIN would not serve its version
    always = summary(cur, "TRAIN m WITH (deploy = 'always')")
    assert always["deployed"] is True and always["champion_version"] == 1 and always["holdout_value"] is None
    assert serving(cur) == 3
    never = summary(cur, "TRAIN m WITH (deploy = 'never')")
    assert never["deployed"] is False and never["champion_version"] == 3 and serving(cur) == 3
    assert history(cur) == [(1, None, "train"), (2, 1, "train"), (1, 2, "deploy"), (3, 1, "always")]
    assert decisions(cur) == []  # only if_better compares, and keeps a decision


def test_a_first_version_serves(cur):
    result = summary(cur, f"CREATE MODEL m PREDICT label FROM good {_FAST}, deploy = 'if_better', holdout = 'hold')")
    assert result["deployed"] is True and result["champion_version"] is None and result["champion_value"] is None
    value = evaluated(cur, "m@1", "SELECT * FROM hold")["accuracy"]
    assert decisions(cur) == [(1, None, "accuracy", value, None, "SELECT * FROM hold", 262, True)]
    assert serving(cur) == 1 and history(cur) == [(1, None, "train")]  # the policy chose nothing
    never = summary(cur, f"CREATE MODEL n PREDICT label FROM good {_FAST}, deploy = 'never')")
    assert never["deployed"] is True and serving(cur, "n") == 1  # nothing else could serve


def test_the_options_are_the_statements_not_the_models(cur):
    cur.execute(f"CREATE MODEL m PREDICT label FROM good {_FAST}, deploy = 'if_better', holdout = 'hold')")
    cur.execute("TRAIN m FROM (SELECT * FROM bad) WITH (deploy = 'if_better', holdout = 'hold')")
    options = one(cur, "SELECT options FROM mldb.models WHERE name = 'm'")[0][0]
    assert "deploy" not in options and "holdout" not in options and '"epochs": 15' in options
    cur.execute("DEPLOY MODEL m VERSION 2")
    plain = summary(cur, "TRAIN m")  # today's rule: version 2 was the newest, so version 3 serves
    assert "deployed" not in plain and serving(cur) == 3 and len(decisions(cur)) == 2


def test_drop_model_removes_its_decisions(cur):
    cur.execute(f"CREATE MODEL m PREDICT label FROM good {_FAST}, deploy = 'if_better', holdout = 'hold')")
    cur.execute(f"CREATE MODEL k PREDICT label FROM good {_FAST}, deploy = 'if_better', holdout = 'hold')")
    cur.execute("DROP MODEL m")
    assert decisions(cur) == [] and len(decisions(cur, "k")) == 1
    cur.execute(f"CREATE OR REPLACE MODEL k PREDICT label FROM good {_FAST})")
    assert decisions(cur, "k") == []


def test_a_quoted_query_as_holdout(cur):
    cur.execute(f"CREATE MODEL m PREDICT label FROM good {_FAST})")
    holdout = "SELECT * FROM hold WHERE grp = 'a'"
    quoted = holdout.replace("'", "''")
    cur.execute(f"TRAIN m FROM (SELECT * FROM bad) WITH (deploy = 'if_better', holdout = '{quoted}')")
    rows = evaluated(cur, "m@1", holdout)["rows"]
    assert rows < 262 and decisions(cur)[0][5:] == (holdout, rows, False)


def counts(cur) -> tuple:
    return one(cur, "SELECT (SELECT count(*) FROM mldb.model_versions), (SELECT count(*) FROM mldb.deploy_decisions), "
                    "(SELECT count(*) FROM mldb.deployments), (SELECT count(*) FROM mldb.training_log), "
                    "(SELECT deployed_version FROM mldb.models WHERE name = 'm')")[0]


BAD = [
    ("deploy = 'sometimes'", "22023", "deploy is one of 'if_better', 'always', 'never'"),
    ("deploy = 'if_better'", "22023", "needs holdout"),
    ("holdout = 'hold'", "22023", "holdout goes with deploy = 'if_better'"),
    ("deploy = 'always', metric = 'f1'", "22023", "metric goes with deploy = 'if_better'"),
    ("deploy = 'if_better', holdout = 'hold', metric = 'speed'", "22023", "accuracy, precision, recall, f1"),
    ("deploy = 'if_better', holdout = 'hold', metric = 'rmse'", "22023",
     "not one of a classification model's; they are: accuracy, precision, recall, f1, roc_auc, log_loss"),
    ("deploy = 'if_better', holdout = 'SELEC * FROM hold'", "42601", "holdout"),
    ("deploy = 'if_better', holdout = 'SELECT 1; DROP TABLE hold'", "42601", "one query"),
    ("deploy = 'if_better', holdout = 'DROP TABLE hold'", "42601", "one query"),
    ("deploy = 'if_better', holdout = 'no_such_table'", "42P01", "no_such_table"),
    ("deploy = 'if_better', holdout = 'SELECT x, y FROM hold'", "42703", "no target column 'label'"),
    ("deploy = 'if_better', holdout = 'SELECT * FROM hold WHERE x > 5'", "22023", "no row"),
    ("deploy = 'if_better', holdout = 'SELECT x, y, NULL::BOOLEAN AS label FROM hold'", "22023", "every 'label' NULL"),
    ("deploy = 'if_better', holdout = 'SELECT x, label FROM hold'", "42703", "y"),
    ("deploy = 'if_better', holdout = 'SELECT x, y, grp AS label FROM hold'", "42804", "label"),
]


@pytest.mark.parametrize("options, sqlstate, words", BAD, ids=[case[0] for case in BAD])
def test_a_bad_policy_or_holdout_fails_the_train_and_writes_nothing(cur, options, sqlstate, words):
    cur.execute(f"CREATE MODEL m PREDICT label FROM good {_FAST})")
    cur.execute("TRAIN m FROM (SELECT * FROM bad) WITH (deploy = 'if_better', holdout = 'hold')")
    before = counts(cur)
    with pytest.raises(mldb.Error) as caught:
        cur.execute(f"TRAIN m WITH ({options})")
    assert caught.value.sqlstate == sqlstate and words in str(caught.value), str(caught.value)
    assert counts(cur) == before
    assert one(cur, "SELECT count(*) FROM hold") == [(262,)]


def test_a_holdout_the_new_version_cannot_score_rolls_the_train_back(cur):
    cur.execute("CREATE TABLE wide AS SELECT x, y, x - y AS z, label FROM good")
    cur.execute(f"CREATE MODEL m PREDICT label FROM good {_FAST})")
    before = counts(cur)
    with pytest.raises(mldb.ProgrammingError) as caught:  # the champion reads x, y; the new version also z
        cur.execute("TRAIN m FROM (SELECT * FROM wide) WITH (deploy = 'if_better', holdout = 'hold')")
    assert caught.value.sqlstate == "42703" and "z" in str(caught.value)
    assert counts(cur) == before
    cur.execute("TRAIN m FROM (SELECT * FROM wide) WITH (deploy = 'if_better', "
                "holdout = 'SELECT *, x - y AS z FROM hold')")
    assert counts(cur)[:2] == (before[0] + 1, before[1] + 1)


def test_a_regression_metric_for_a_classifier_is_refused_before_training(cur):
    with pytest.raises(mldb.ProgrammingError) as caught:
        cur.execute(f"CREATE MODEL m PREDICT label FROM good {_FAST}, deploy = 'if_better', holdout = 'hold', "
                    "metric = 'mae')")
    assert caught.value.sqlstate == "22023"
    assert one(cur, "SELECT count(*) FROM mldb.models") == [(0,)]


def test_a_train_of_a_missing_target_fails_as_without_a_policy(cur):
    cur.execute(f"CREATE MODEL m PREDICT label FROM good {_FAST})")
    before = counts(cur)
    with pytest.raises(mldb.ProgrammingError) as caught:
        cur.execute("TRAIN m FROM (SELECT x, y FROM good) WITH (deploy = 'if_better', holdout = 'hold')")
    assert caught.value.sqlstate == "42703" and "target column 'label' is not in the training query" in str(
        caught.value)
    assert counts(cur) == before


def test_a_rolled_back_transaction_keeps_no_decision(cur):
    cur.execute(f"CREATE MODEL m PREDICT label FROM bad {_FAST})")
    cur.execute("BEGIN")
    result = summary(cur, "TRAIN m FROM (SELECT * FROM good) WITH (deploy = 'if_better', holdout = 'hold')")
    assert result["deployed"] is True and serving(cur) == 2 and len(decisions(cur)) == 1
    cur.execute("ROLLBACK")
    assert serving(cur) == 1 and decisions(cur) == [] and history(cur) == [(1, None, "train")]
    assert one(cur, "SELECT PREDICT(m) = PREDICT('m@1') FROM hold LIMIT 1") == [(True,)]
