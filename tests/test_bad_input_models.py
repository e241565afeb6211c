"""Bad input to the model statements that sql/errors/models.test cannot express: what depends on
the machine (a GPU or none), the memory guard's override, and a refused or cascaded DROP MODEL
inside a transaction. The SQL-level cases live in sql/errors/models.test and lifecycle.test."""

from __future__ import annotations

import json
import threading

import pytest
import torch

import mldb
from mldb.models import algorithms, train

_PEOPLE = ("CREATE TABLE people AS SELECT (i % 80 + 10)::INTEGER AS age, (i % 80 + 10) > 50 AS old "
           "FROM range(200) t(i)")
_CATALOG = ("SELECT (SELECT count(*) FROM mldb.models), (SELECT count(*) FROM mldb.model_versions), "
            "(SELECT count(*) FROM mldb.training_log), (SELECT count(*) FROM mldb.feature_stats)")


@pytest.fixture
def people(tmp_db):
    tmp_db.execute(_PEOPLE)
    return tmp_db


def _catalog(con) -> tuple:
    return con.execute(_CATALOG).fetchone()


def test_device_cuda_without_a_gpu_is_refused_and_with_one_trains_there(people):
    sql = "CREATE MODEL g PREDICT old FROM people WITH (device = 'cuda', epochs = 1)"
    if not torch.cuda.is_available():
        with pytest.raises(mldb.ProgrammingError) as caught:
            people.execute(sql)
        assert caught.value.sqlstate == "22023"
        assert "device = 'cuda' is not available: torch sees no CUDA GPU on this machine" in str(caught.value)
        assert "'auto' to train on a GPU when there is one" in str(caught.value)
        assert _catalog(people) == (0, 0, 0, 0)
    else:
        people.execute(sql)
        device = people.execute("SELECT device FROM mldb.model_versions WHERE model = 'g'").fetchone()[0]
        assert device == "cuda"


def test_a_gpu_index_the_machine_lacks_is_refused(people):
    with pytest.raises(mldb.ProgrammingError) as caught:
        people.execute("CREATE MODEL g PREDICT old FROM people WITH (device = 'cuda:99', epochs = 1)")
    assert caught.value.sqlstate == "22023" and "device = 'cuda:99' is not available: torch sees" in str(caught.value)
    assert _catalog(people) == (0, 0, 0, 0)


def test_device_auto_falls_back_to_the_cpu_silently(people):
    people.execute("CREATE MODEL g PREDICT old FROM people WITH (device = 'auto', epochs = 1)")
    device = people.execute("SELECT device FROM mldb.model_versions WHERE model = 'g'").fetchone()[0]
    assert device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_the_parameter_guard_counts_what_torch_would_allocate():
    hyper = {"algorithm": "mlp", "inputs": 3, "hidden": [5, 4], "outputs": 2, "dropout": 0.0}
    module = algorithms.build(hyper)
    assert algorithms.parameters(hyper) == sum(p.numel() for p in module.parameters()) == 4 * 5 + 6 * 4 + 5 * 2
    linear = hyper | {"algorithm": "logistic"}
    assert algorithms.parameters(linear) == sum(p.numel() for p in algorithms.build(linear).parameters())
    assert train.OPTIONS.defaults["max_parameters"] == train.MAX_PARAMETERS == 50_000_000


def test_max_parameters_is_overridable_per_statement(people):
    sql = "CREATE MODEL big PREDICT old FROM people USING mlp WITH (hidden = [300, 300], epochs = 1{})"
    with pytest.raises(mldb.OperationalError) as caught:  # 2*300 + 301*300 + 301*2 = 91,502 weights
        people.execute(sql.format(", max_parameters = 50000"))
    assert caught.value.sqlstate == "54000"
    assert "would have 91,502 parameters" in str(caught.value) and "max_parameters = 50,000" in str(caught.value)
    assert _catalog(people) == (0, 0, 0, 0)
    people.execute(sql.format(", max_parameters = 100000"))
    hyper = json.loads(people.execute("SELECT hyperparameters FROM mldb.model_versions WHERE model = 'big'").fetchone()[0])
    assert hyper["hidden"] == [300, 300] and hyper["algorithm"] == "mlp"
    stored = json.loads(people.execute("SELECT options FROM mldb.models WHERE name = 'big'").fetchone()[0])
    assert stored["max_parameters"] == 100000  # TRAIN keeps the statement's limit
    people.execute("TRAIN big WITH (epochs = 1)")
    assert people.execute("SELECT latest_version FROM mldb.models WHERE name = 'big'").fetchone()[0] == 2


def test_options_are_stored_normalised(people):
    people.execute("CREATE MODEL n PREDICT old FROM people WITH (snapshot = 'yes', task = 'BINARY', device = 'CPU', "
                   "epochs = 1)")
    stored = json.loads(people.execute("SELECT options FROM mldb.models WHERE name = 'n'").fetchone()[0])
    assert stored == {"snapshot": True, "task": "binary", "device": "cpu", "epochs": 1}
    assert people.execute("SELECT stored FROM mldb.snapshots WHERE model = 'n'").fetchone()[0] is True


def test_drop_model_cascade_rolls_back_with_its_transaction(people):
    people.execute("CREATE MODEL m PREDICT old FROM people WITH (epochs = 1)")
    people.execute("CREATE VIEW scored AS SELECT PREDICT(m) AS p FROM people")
    before = _catalog(people)
    people.execute("BEGIN")
    people.execute("DROP MODEL m CASCADE")
    assert people.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'scored'").fetchone()[0] == 0
    people.execute("ROLLBACK")
    assert _catalog(people) == before
    assert people.execute("SELECT count(*) FROM scored WHERE p IS NOT NULL").fetchone()[0] == 200
    with pytest.raises(mldb.ProgrammingError) as caught:
        people.execute("DROP MODEL m")
    assert caught.value.sqlstate == "2BP01" and "view scored depends on it" in str(caught.value)
    assert _catalog(people) == before


def test_two_concurrent_create_model_of_one_name_one_wins_the_other_gets_42710(tmp_path):
    """Training runs unlocked; the name is looked at again under the lock, so the loser of the race
    fails as a second CREATE MODEL does instead of silently adding version 2 to the winner's model."""
    path = str(tmp_path / "race.db")
    with mldb.connect(path) as con:
        con.execute(_PEOPLE)
    barrier, outcomes = threading.Barrier(2), []

    def create():
        con = mldb.connect(path)
        barrier.wait()
        try:
            con.execute("CREATE MODEL n PREDICT old FROM people WITH (epochs = 2)")
            outcomes.append("ok")
        except mldb.Error as error:
            outcomes.append(error)
        finally:
            con.close()

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [outcome for outcome in outcomes if outcome != "ok"]
    assert outcomes.count("ok") == 1 and len(failed) == 1
    assert isinstance(failed[0], mldb.ProgrammingError) and failed[0].sqlstate == "42710"
    assert "model 'n' already exists" in str(failed[0])
    with mldb.connect(path) as con:
        assert con.execute("SELECT model, version FROM mldb.model_versions").fetchall() == [("n", 1)]
        assert _catalog(con)[:2] == (1, 1)


def test_deploy_of_a_version_with_another_signature_is_refused_while_views_call_the_model(people):
    """A TRAIN while an older version is deployed serves nothing new, so it may change the target;
    deploying that version would break the view, and is refused as such a TRAIN is (2BP01)."""
    people.execute("CREATE MODEL m PREDICT old FROM people WITH (epochs = 1)")
    people.execute("CREATE VIEW scored AS SELECT PREDICT(m) AS p FROM people")
    people.execute("TRAIN m WITH (epochs = 1)")
    people.execute("DEPLOY MODEL m VERSION 1")
    people.execute("TRAIN m PREDICT age WITH (epochs = 1)")
    before = _catalog(people)
    with pytest.raises(mldb.ProgrammingError) as caught:
        people.execute("DEPLOY MODEL m VERSION 3")
    assert caught.value.sqlstate == "2BP01"
    assert ("cannot DEPLOY MODEL m VERSION 3: view scored calls model 'm', whose deployed version predicts "
            "'old' (BOOLEAN) from age (INTEGER); the new version would predict 'age' (INTEGER) from old "
            "(BOOLEAN)") in str(caught.value)
    assert _catalog(people) == before
    assert people.execute("SELECT deployed_version FROM mldb.models").fetchone() == (1,)
    people.execute("DEPLOY MODEL m VERSION 2")
    assert people.execute("SELECT count(*) FROM scored WHERE p IS NOT NULL").fetchone() == (200,)
