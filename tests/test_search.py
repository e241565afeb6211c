"""Hyperparameter search (random, grid, tpe), USING auto and mldb.trials, on real database files."""

from __future__ import annotations

import itertools
import json

import duckdb
import pytest

import mldb

_POINTS = ("CREATE TABLE pts AS SELECT (i % 17)::DOUBLE AS a, ((i * 7) % 13)::DOUBLE AS b, "
           "(i % 17) + 0.7 * ((i * 7) % 13) + (hash(i) % 5)::DOUBLE > 14 AS up, "
           "(i % 17) * 1.5 - ((i * 7) % 13) * 0.5 + (hash(i) % 7)::DOUBLE / 10 AS v FROM range(300) t(i)")
_CLASSIFY = "CREATE MODEL m PREDICT up FROM (SELECT a, b, up FROM pts)"
_TRIALS = ("SELECT trial, algorithm, params, valid_metric, metric_name, chosen, status, error "
           "FROM mldb.trials WHERE model = ? AND version = ? ORDER BY trial")
_CATALOG = ("SELECT (SELECT count(*) FROM mldb.models), (SELECT count(*) FROM mldb.model_versions), "
            "(SELECT count(*) FROM mldb.trials)")


@pytest.fixture
def pts(tmp_db):
    tmp_db.execute(_POINTS)
    return tmp_db


def _trials(con, model: str = "m", version: int = 1) -> list[dict]:
    rows = con.execute(_TRIALS, [model, version]).fetchall()
    keys = ("trial", "algorithm", "params", "valid_metric", "metric_name", "chosen", "status", "error")
    return [dict(zip(keys, row)) | {"params": json.loads(row[2])} for row in rows]


def _version(con, model: str = "m", version: int = 1) -> dict:
    algorithm, hyper, metrics = con.execute(
        "SELECT algorithm, hyperparameters, metrics FROM mldb.model_versions WHERE model = ? AND version = ?",
        [model, version]).fetchone()
    return {"algorithm": algorithm, "hyper": json.loads(hyper), "metrics": json.loads(metrics)}


def _check_choice(con, trials: list[dict], model: str = "m", version: int = 1) -> dict:
    """Exactly one trial is chosen: the first with the best metric, and it is the version."""
    chosen = [trial for trial in trials if trial["chosen"]]
    assert len(chosen) == 1
    trained = [trial for trial in trials if trial["status"] == "trained"]
    best = max(trial["valid_metric"] for trial in trained)
    assert chosen[0] is next(trial for trial in trained if trial["valid_metric"] == best)
    stored = _version(con, model, version)
    assert chosen[0]["params"] == stored["hyper"]
    assert chosen[0]["algorithm"] == stored["algorithm"]
    assert stored["metrics"][chosen[0]["metric_name"]] == pytest.approx(chosen[0]["valid_metric"])
    return chosen[0]


def test_random_search_over_mlp_records_every_trial_and_keeps_the_best(pts):
    pts.execute(f"{_CLASSIFY} USING mlp WITH (search = 'random', trials = 4, epochs = 4, "
                "lr = [0.0005, 0.05], hidden = [[4], [8, 4]])")
    trials = _trials(pts)
    assert [trial["trial"] for trial in trials] == [1, 2, 3, 4]
    assert all(trial["status"] == "trained" and trial["metric_name"] == "accuracy" for trial in trials)
    assert all(0.0005 <= trial["params"]["lr"] <= 0.05 for trial in trials)
    assert {tuple(trial["params"]["hidden"]) for trial in trials} <= {(4,), (8, 4)}
    assert len({trial["params"]["lr"] for trial in trials}) == 4  # (a range is sampled, not its two ends)
    _check_choice(pts, trials)
    assert pts.execute("SELECT algorithm, options->>'search' FROM mldb.models").fetchone() == ("mlp", "random")


def test_grid_search_tries_every_combination_once(pts):
    pts.execute(f"{_CLASSIFY} USING logistic WITH (search = 'grid', epochs = 3, lr = [0.001, 0.1], "
                "weight_decay = [0, 0.01, 0.1])")
    trials = _trials(pts)
    tried = [(trial["params"]["lr"], trial["params"]["weight_decay"]) for trial in trials]
    assert sorted(tried) == sorted(itertools.product([0.001, 0.1], [0.0, 0.01, 0.1]))
    _check_choice(pts, trials)


def test_a_grid_with_fewer_trials_takes_distinct_points_of_it(pts):
    pts.execute(f"{_CLASSIFY} USING logistic WITH (search = 'grid', trials = 3, epochs = 2, "
                "lr = [0.001, 0.01, 0.1, 0.3])")
    tried = [trial["params"]["lr"] for trial in _trials(pts)]
    assert len(tried) == 3 and len(set(tried)) == 3 and set(tried) <= {0.001, 0.01, 0.1, 0.3}


def test_tpe_samples_integer_and_log_ranges(pts):
    pts.execute(f"{_CLASSIFY} USING logistic WITH (search = 'tpe', trials = 6, epochs = [2, 6], lr = [0.001, 0.3])")
    trials = _trials(pts)
    assert len(trials) == 6
    assert all(isinstance(trial["params"]["epochs"], int) and 2 <= trial["params"]["epochs"] <= 6
               for trial in trials)
    assert all(isinstance(trial["params"]["lr"], float) and 0.001 <= trial["params"]["lr"] <= 0.3
               for trial in trials)
    _check_choice(pts, trials)


def test_a_seeded_search_is_reproducible(pts):
    search = "USING mlp WITH (search = 'tpe', trials = 4, epochs = 3, hidden = [[4], [6]], lr = [0.001, 0.1]"
    pts.execute(f"CREATE MODEL m PREDICT up FROM (SELECT a, b, up FROM pts) {search}, seed = 7)")
    pts.execute(f"CREATE MODEL n PREDICT up FROM (SELECT a, b, up FROM pts) {search}, seed = 7)")
    pts.execute(f"CREATE MODEL o PREDICT up FROM (SELECT a, b, up FROM pts) {search}, seed = 8)")

    def seen(model):
        return [(t["params"]["lr"], t["params"]["hidden"], t["valid_metric"], t["chosen"])
                for t in _trials(pts, model)]

    assert seen("m") == seen("n")
    assert [lr for lr, *_ in seen("m")] != [lr for lr, *_ in seen("o")]


def test_a_failed_trial_is_recorded_and_the_search_goes_on(pts):
    pts.execute(f"{_CLASSIFY} USING mlp WITH (search = 'grid', epochs = 2, hidden = [[4], [512, 512]], "
                "max_parameters = 1000)")
    trials = _trials(pts)
    failed = [trial for trial in trials if trial["status"] == "failed"]
    assert len(trials) == 2 and len(failed) == 1
    assert failed[0]["params"]["hidden"] == [512, 512] and "max_parameters" in failed[0]["error"]
    assert failed[0]["valid_metric"] is None and not failed[0]["chosen"]
    assert _check_choice(pts, trials)["params"]["hidden"] == [4]


def test_when_every_trial_fails_the_first_error_is_raised_and_nothing_written(pts):
    with pytest.raises(mldb.OperationalError) as caught:
        pts.execute(f"{_CLASSIFY} USING mlp WITH (search = 'grid', hidden = [[300, 300], [512]], "
                    "max_parameters = 1000)")
    assert caught.value.sqlstate == "54000" and "more than max_parameters = 1,000" in str(caught.value)
    assert pts.execute(_CATALOG).fetchone() == (0, 0, 0)


def test_a_plain_train_writes_one_chosen_trial(pts):
    pts.execute(f"{_CLASSIFY} USING logistic WITH (epochs = 3)")
    trials = _trials(pts)
    assert len(trials) == 1 and trials[0]["status"] == "trained" and trials[0]["algorithm"] == "logistic"
    _check_choice(pts, trials)


def test_train_repeats_the_stored_search_for_a_new_version(pts):
    pts.execute(f"{_CLASSIFY} USING logistic WITH (search = 'random', trials = 3, epochs = 2, lr = [0.01, 0.2])")
    pts.execute("TRAIN m")
    assert len(_trials(pts, "m", 2)) == 3
    assert [t["params"] for t in _trials(pts, "m", 2)] == [t["params"] for t in _trials(pts, "m", 1)]
    _check_choice(pts, _trials(pts, "m", 2), "m", 2)


# -- USING auto ---------------------------------------------------------------------------------
def test_auto_records_its_candidates_and_keeps_the_best(pts):
    pts.execute(f"{_CLASSIFY} WITH (epochs = 5, time_budget = 600)")  # (auto is the default; a budget no busy
    # machine spends, so that every candidate trains)
    trials = _trials(pts)
    assert [trial["algorithm"] for trial in trials[:3]] == ["logistic", "mlp", "lightgbm"]
    assert trials[0]["status"] == trials[1]["status"] == "trained"
    assert trials[2]["status"] in ("trained", "failed")  # (failed where LightGBM is not an algorithm yet)
    _check_choice(pts, trials)
    assert pts.execute("SELECT algorithm FROM mldb.models WHERE name = 'm'").fetchone() == ("auto",)
    pts.execute("TRAIN m")
    assert [trial["algorithm"] for trial in _trials(pts, "m", 2)[:3]] == ["logistic", "mlp", "lightgbm"]


def test_auto_starts_with_linear_regression_for_a_numeric_target(pts):
    pts.execute("CREATE MODEL r PREDICT v FROM (SELECT a, b, v FROM pts) USING auto WITH (epochs = 5)")
    trials = _trials(pts, "r")
    assert [trial["algorithm"] for trial in trials[:2]] == ["linear", "mlp"]
    assert trials[0]["metric_name"] == "r2"
    _check_choice(pts, trials, "r")


def test_auto_within_a_spent_budget_keeps_its_first_candidate(pts):
    pts.execute(f"{_CLASSIFY} USING auto WITH (time_budget = 1e-9, epochs = 2)")
    trials = _trials(pts)
    assert [(t["algorithm"], t["status"], t["chosen"]) for t in trials] == [
        ("logistic", "trained", True), ("mlp", "skipped", False), ("lightgbm", "skipped", False)]
    assert trials[1]["error"] == "time budget spent"
    assert _version(pts)["algorithm"] == "logistic"


def test_auto_on_too_few_validation_rows_trains_only_its_first_candidate(pts):
    pts.execute("CREATE MODEL m PREDICT up FROM (SELECT a, b, up FROM pts LIMIT 100) WITH (epochs = 2)")
    trials = _trials(pts)
    assert [(t["algorithm"], t["status"]) for t in trials] == [
        ("logistic", "trained"), ("mlp", "skipped"), ("lightgbm", "skipped")]
    assert "20 validation rows are too few" in trials[1]["error"]


# -- the catalog --------------------------------------------------------------------------------
def test_trials_persist_and_go_with_the_model(db_path):
    con = mldb.connect(db_path)
    con.execute(_POINTS)
    con.execute(f"{_CLASSIFY} USING logistic WITH (search = 'grid', epochs = 2, lr = [0.01, 0.1])")
    before = _trials(con)
    con.close()
    con = mldb.connect(db_path)
    assert _trials(con) == before and len(before) == 2
    con.execute(f"CREATE OR REPLACE MODEL m PREDICT up FROM (SELECT a, b, up FROM pts) USING logistic "
                "WITH (epochs = 2)")
    assert len(_trials(con)) == 1
    con.execute("DROP MODEL m")
    assert con.execute("SELECT count(*) FROM mldb.trials").fetchone() == (0,)
    con.close()


def test_an_older_database_file_gets_the_trials_table_on_open(db_path):
    mldb.connect(db_path).close()  # (made by today's mldb, then the table taken away as before issue 14)
    old = duckdb.connect(db_path)
    old.execute("DROP TABLE mldb.trials")
    old.close()
    con = mldb.connect(db_path)
    con.execute(_POINTS)
    con.execute(f"{_CLASSIFY} USING logistic WITH (epochs = 2)")
    assert len(_trials(con)) == 1
    con.close()


# -- bad input: 22023, nothing written ------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ("USING mlp WITH (search = 'random', lrr = [0.01, 0.1])", "unknown option lrr; known: batch_size"),
    ("USING mlp WITH (search = 'random', lr = [0, 0.1])", "option lr must be a number in (0, 10]; found 0"),
    ("USING mlp WITH (search = 'tpe', dropout = [0.1, 1])", "option dropout must be a number in [0, 1); found 1"),
    ("USING mlp WITH (search = 'random', lr = [0.1, 0.01])", "range of lr is [low, high]; found low 0.1 above"),
    ("USING mlp WITH (search = 'random', lr = [])", "the search space of lr is empty"),
    ("USING mlp WITH (search = 'grid', epochs = [1.5, 3])", "option epochs must be an integer"),
    ("USING mlp WITH (search = 'grid', lr = ['a', 'b'])", "option lr must be a number"),
    ("USING mlp WITH (search = 'grid', hidden = [[8], 'x'])", "option hidden must be a list of positive integers"),
    ("USING mlp WITH (search = 'random', lr = 0.1)", "needs at least one option given as a list"),
    ("USING mlp WITH (search = 'random', trials = 0, lr = [0.01, 0.1])", "option trials must be an integer"),
    ("USING mlp WITH (search = 'random', trials = -2, lr = [0.01, 0.1])", "option trials must be an integer"),
    ("USING mlp WITH (search = 'bayes', lr = [0.01, 0.1])", "option search must be one of 'random'"),
    ("USING mlp WITH (search = 'random', seed = [1, 2])", "option seed cannot be searched"),
    ("USING mlp WITH (lr = [0.01, 0.1])", "is a search space; add search = 'random'"),
    ("USING mlp WITH (trials = 3)", "option trials applies to a search"),
    ("USING logistic WITH (search = 'grid', hidden = [[8], [16]])", "hidden applies only to USING mlp"),
    ("USING auto WITH (time_budget = 0)", "option time_budget must be a number in (0, "),
    ("WITH (time_budget = -5)", "option time_budget must be a number in (0, "),
    ("USING auto WITH (search = 'random', lr = [0.01, 0.1])", "USING auto runs its own search"),
    ("USING auto WITH (budget = 5)", "unknown option budget; known: "),
])
def test_bad_search_input_is_refused_before_training(pts, options, message):
    with pytest.raises(mldb.ProgrammingError) as caught:
        pts.execute(f"{_CLASSIFY} {options}")
    assert caught.value.sqlstate == "22023"
    assert message in str(caught.value)
    assert pts.execute(_CATALOG).fetchone() == (0, 0, 0)


def test_auto_lists_time_budget_among_its_options(pts):
    with pytest.raises(mldb.ProgrammingError) as caught:
        pts.execute(f"{_CLASSIFY} WITH (budget = 5)")
    assert "time_budget" in str(caught.value).partition("known: ")[2]


def test_train_using_another_algorithm_keeps_the_options_it_takes(pts):
    pts.execute(f"{_CLASSIFY} USING auto WITH (time_budget = 1e-9, epochs = 2)")
    pts.execute("TRAIN m USING mlp WITH (search = 'grid', hidden = [[4], [6]])")
    assert [t["params"]["hidden"] for t in _trials(pts, "m", 2)] in ([[4], [6]], [[6], [4]])
    assert all(t["params"]["epochs"] == 2 for t in _trials(pts, "m", 2))
    pts.execute("TRAIN m USING auto WITH (time_budget = 1e-9)")  # (the search and its hidden space stay behind)
    assert [t["algorithm"] for t in _trials(pts, "m", 3)] == ["logistic", "mlp", "lightgbm"]
    assert json.loads(pts.execute("SELECT options FROM mldb.models").fetchone()[0]) == {
        "time_budget": 1e-9, "epochs": 2}


def test_a_cancel_stops_a_search_and_writes_nothing(pts, monkeypatch):
    """The probe counts the trials train.fit is asked for (the real fit runs); the third cancels."""
    from mldb.models import train

    started, real_fit = [], train.fit

    def counted(*args, **kwargs):
        started.append(1)
        if len(started) == 3:
            pts.interrupt()
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(train, "fit", counted)
    with pytest.raises(mldb.OperationalError) as caught:
        pts.execute(f"{_CLASSIFY} USING logistic WITH (search = 'random', trials = 10000, epochs = 1, "
                    "lr = [0.01, 0.1])")
    assert caught.value.sqlstate == "57014"
    assert len(started) == 3
    assert pts.execute(_CATALOG).fetchone() == (0, 0, 0)


def test_a_search_with_a_spent_budget_keeps_its_first_trial(pts):
    pts.execute(f"{_CLASSIFY} USING logistic WITH (search = 'random', trials = 5, time_budget = 1e-9, epochs = 2, "
                "lr = [0.01, 0.1])")
    trials = _trials(pts)
    assert [(t["trial"], t["status"], t["chosen"]) for t in trials] == [(1, "trained", True)]
