"""mldb.deployments: every change of the deployed version, written with the change."""

import pytest

import mldb
from mldb.models import deployments


@pytest.fixture
def cur(tmp_path):
    con = mldb.connect(str(tmp_path / "d.db"))
    cur = con.cursor()
    cur.execute("CREATE TABLE t AS SELECT i::DOUBLE AS x, (i % 2 = 0) AS y FROM range(200) r(i)")
    cur.execute("CREATE MODEL m PREDICT y FROM t USING logistic WITH (epochs = 2)")
    yield cur
    con.close()


def history(cur):
    cur.execute("SELECT version, previous_version, reason FROM mldb.deployments WHERE model = 'm' ORDER BY rowid")
    return cur.fetchall()


def test_train_and_deploy_are_recorded_and_previous_follows_them(cur):
    cur.execute("TRAIN m WITH (epochs = 2)")
    cur.execute("DEPLOY MODEL m VERSION 1")
    assert history(cur) == [(1, None, "train"), (2, 1, "train"), (1, 2, "deploy")]
    assert deployments.previous(cur.connection.session, "m") == 2


def test_a_train_while_pinned_and_a_redeploy_of_the_same_version_record_nothing(cur):
    cur.execute("DEPLOY MODEL m VERSION 1")  # already serving: nothing changes
    assert history(cur) == [(1, None, "train")]
    cur.execute("TRAIN m WITH (epochs = 2)")  # version 2 serves (version 1 followed the newest)
    cur.execute("DEPLOY MODEL m VERSION 1")  # pinned to 1 ...
    cur.execute("TRAIN m WITH (epochs = 2)")  # ... so version 3 does not serve
    assert history(cur) == [(1, None, "train"), (2, 1, "train"), (1, 2, "deploy")]


def test_a_failed_deploy_records_nothing_and_drop_forgets_the_history(cur):
    with pytest.raises(mldb.ProgrammingError):
        cur.execute("DEPLOY MODEL m VERSION 7")
    assert history(cur) == [(1, None, "train")]
    cur.execute("DROP MODEL m")
    assert history(cur) == []
