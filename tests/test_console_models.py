"""The console's model pages over real HTTP: the list and a model's page (HTML and their JSON twins) agree with
the catalog read by plain SQL, charts are SVG with the expected axes, unknown names are 404s, hostile names
are escaped and round-trip, and a file from before monitors and shadows still shows its models."""

from __future__ import annotations

import json
import shutil
from urllib.parse import quote

import duckdb
import pytest

import mldb
from tests.console_db import build
from tests.console_http import console

HOSTILE = "<img src=x onerror=alert(1)>"
SPACED = "my model/v2 & co"
CHARTS = ("training", "volume", "drift", "importance")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build(str(tmp_path_factory.mktemp("console") / "console.db"))


@pytest.fixture(scope="module")
def catalog(db):
    """What the pages should say, read with plain SQL from the same file (read-only) before the console opens it."""
    con = duckdb.connect(db, read_only=True)
    try:
        def rows(sql, params=None):
            result = con.execute(sql, params or [])
            names = [column[0] for column in result.description]
            return [dict(zip(names, row)) for row in result.fetchall()]
        return {
            "models": {row["name"]: row for row in rows(
                "SELECT name, task, deployed_version, latest_version, "
                "(SELECT count(*) FROM mldb.alerts a WHERE a.model = m.name AND NOT a.acknowledged) AS open_alerts, "
                "(SELECT coalesce(sum(rows), 0) FROM mldb.prediction_log p WHERE p.model = m.name "
                " AND p.shadow_of IS NULL AND p.logged_at >= now()::TIMESTAMP - INTERVAL 1 DAY) AS predictions_1d "
                "FROM mldb.models m")},
            "versions": rows("SELECT model, version, metrics, fingerprint, rows FROM mldb.model_versions "
                             "ORDER BY model, version"),
            "deployments": {row["model"]: row["n"] for row in rows(
                "SELECT model, count(*) AS n FROM mldb.deployments GROUP BY model")},
            "runs": {row["model"]: row["n"] for row in rows(
                "SELECT model, count(*) AS n FROM mldb.monitor_runs GROUP BY model")},
        }
    finally:
        con.close()


@pytest.fixture(scope="module")
def site(db, catalog):
    with console(db) as site:
        yield site


def _url(name: str) -> str:
    return "/models/" + quote(name, safe="")


def _number(value) -> str:
    """As the page's ``number`` filter writes a metric."""
    return f"{value:.4g}" if isinstance(value, float) else f"{value:,}"


# -- the list -------------------------------------------------------------------------------------
def test_the_list_says_what_the_catalog_says(site, catalog):
    listed = {model["name"]: model for model in site.json("/api/models")["models"]}
    assert set(listed) == set(catalog["models"]) == {"churn", "spend_model", "plan_model"}
    for name, expected in catalog["models"].items():
        model = listed[name]
        assert model["task"] == expected["task"]
        assert model["deployed_version"] == expected["deployed_version"]
        assert model["latest_version"] == expected["latest_version"]
        assert model["open_alerts"] == expected["open_alerts"]
        assert model["predictions_1d"] == expected["predictions_1d"]
        assert model["url"] == _url(name)
    assert listed["churn"]["open_alerts"] == 1 and listed["churn"]["latest_version"] == 2
    assert listed["churn"]["deployed_version"] == 1  # (rolled back from 2 by churn_quality)


def test_the_list_names_the_deployed_versions_key_metric(site, catalog):
    listed = {model["name"]: model for model in site.json("/api/models")["models"]}
    deployed = {(row["model"], row["version"]): json.loads(row["metrics"]) for row in catalog["versions"]}
    churn = deployed[("churn", 1)]
    assert listed["churn"]["metric"] == {"name": "accuracy", "value": churn["accuracy"]}
    assert listed["plan_model"]["metric"] == {"name": "accuracy", "value": deployed[("plan_model", 2)]["accuracy"]}
    assert listed["spend_model"]["metric"] == {"name": "r2", "value": deployed[("spend_model", 1)]["r2"]}


def test_the_list_shows_drift_from_the_newest_drift_run(site):
    listed = {model["name"]: model for model in site.json("/api/models")["models"]}
    drift = listed["churn"]["drift"]
    # the newest drift run: churn_predictions' last, which found 2 drifted features and raised alert 2
    assert drift["status"] == "drifted" and drift["monitor"] == "churn_predictions"
    assert drift["drifted_features"] == 2
    assert listed["spend_model"]["drift"]["status"] == "no drift monitor"


def test_the_list_page_links_every_model(site, catalog):
    html = site.html("/models")
    for name in catalog["models"]:
        assert f'<a href="{_url(name)}">{name}</a>' in html
    assert "drifted" in html and "no drift monitor" in html and "accuracy" in html and "r2" in html


# -- a model's page ---------------------------------------------------------------------------------
def test_a_models_page_shows_every_versions_metrics(site, catalog):
    for row in catalog["versions"]:
        html = site.html(_url(row["model"]))
        assert f'<th id="v{row["version"]}">{row["version"]}' in html
        assert row["fingerprint"] in html
        for name, value in json.loads(row["metrics"]).items():
            if name != "rows":
                assert f"<th>{name}</th>" in html
                assert _number(value) in html, (row["model"], row["version"], name)


def test_a_models_json_twin_has_the_same_facts(site, catalog):
    for name, expected in catalog["models"].items():
        page = site.json("/api" + _url(name))
        assert page["model"]["name"] == name and page["model"]["task"] == expected["task"]
        versions = [row for row in catalog["versions"] if row["model"] == name]
        assert page["versions_total"] == len(versions)
        assert [version["version"] for version in page["versions"]] == sorted(
            (row["version"] for row in versions), reverse=True)
        for version in page["versions"]:
            stored = next(row for row in versions if row["version"] == version["version"])
            metrics = {key: value for key, value in json.loads(stored["metrics"]).items() if key != "rows"}
            assert version["metrics"] == metrics
            assert version["fingerprint"] == stored["fingerprint"] and version["rows"] == stored["rows"]
            assert version["deployed"] == (version["version"] == expected["deployed_version"])
        assert page["deployments"]["total"] == catalog["deployments"].get(name, 0)
        assert page["monitor_runs"]["total"] == catalog["runs"].get(name, 0)
        assert page["alerts"]["open"] == expected["open_alerts"]
        assert page["predictions"]["last_day"]["predictions"] == expected["predictions_1d"]


def test_a_models_page_shows_its_story(site):
    html = site.html("/models/churn")
    assert "rollback" in html and "churn_quality" in html and "churn_predictions" in html  # deployments, monitors
    assert "SELECT age, plan, spend, churned FROM audited" in html  # the deploy decision's holdout
    page = site.json("/api/models/churn")
    assert [row["reason"] for row in page["deployments"]["rows"]] == ["rollback", "deploy", "train"]
    assert page["feature_stats"]["version"] == 1
    stats = {row["feature"]: row for row in page["feature_stats"]["rows"]}
    assert stats["age"]["kind"] == "numeric" and stats["age"]["count"] == 400
    assert {top["value"] for top in stats["plan"]["top"]} == {"basic", "plus", "pro"}
    assert [row["feature"] for row in page["feature_importance"]["rows"]][0] == "age"
    assert {monitor["name"] for monitor in page["monitors"]} == {"churn_drift", "churn_quality", "churn_predictions"}
    assert page["alerts"]["total"] == 2 and page["alerts"]["open"] == 1
    shadow = [row for row in page["predictions"]["by_version"] if row["shadow"]]
    assert shadow and shadow[0]["version"] == 2


def test_source_data_changes_agree_with_show_versions(site, db, tmp_path):
    copy = str(tmp_path / "copy.db")
    shutil.copy(db, copy)
    con = mldb.connect(copy)
    try:
        for name in ("churn", "spend_model", "plan_model"):
            shown = {row[0]: row[-1] for row in con.execute(f"SHOW VERSIONS OF MODEL {name}").fetchall()}
            page = site.json("/api" + _url(name))
            for version in page["versions"]:
                state = version["source_data"]["state"]
                assert version["source_data"]["how"] == "fingerprint"
                assert state == ("changed" if shown[version["version"]] else "unchanged"), (name, version)
    finally:
        con.close()
    churn = {version["version"]: version["source_data"] for version in site.json("/api/models/churn")["versions"]}
    assert churn[1]["detail"] == "rows changed: 400 -> 2400"  # trained on every customer of day 1


def test_unknown_models_are_404(site):
    status, _, body = site.get("/models/nope")
    assert status == 404 and "no model named" in body
    status, headers, body = site.get("/api/models/nope")
    assert status == 404 and headers["content-type"].startswith("application/json")
    assert json.loads(body) == {"error": "no model named 'nope'"}
    for kind in CHARTS:
        assert site.get(f"/charts/models/nope/{kind}.svg")[0] == 404


# -- charts ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, texts", [
    ("training", ["churn@1: loss per epoch", "epoch", "validation loss"]),
    ("volume", ["churn: predictions per", "rows predicted", "version 1"]),
    ("drift", ["churn_drift on churn", "churn_predictions on churn", "max_psi", "run started"]),
    ("importance", ["churn@1: feature importance", "importance (weight)", "age"]),
])
def test_charts_are_svg_with_their_axes(site, kind, texts):
    status, headers, body = site.get(f"/charts/models/churn/{kind}.svg")
    assert status == 200 and headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in body
    for text in texts:
        assert f">{text}" in body, (kind, text)


def test_a_chart_with_nothing_to_draw_says_so(site):
    status, headers, body = site.get("/charts/models/spend_model/drift.svg")
    assert status == 200 and headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in body and "no data yet" in body


def test_the_page_embeds_its_charts(site):
    html = site.html("/models/churn")
    for kind in CHARTS:
        assert f'<img src="/charts/models/churn/{kind}.svg" width="640"' in html
    assert 'height="720"' in html  # the drift chart: a panel for each of the two drift monitors
    assert html.count(' alt="') >= len(CHARTS)


# -- hostile names, older files -------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("hostile") / "hostile.db")
    con = mldb.connect(path)
    con.execute("CREATE TABLE t AS SELECT i::DOUBLE AS x, i % 2 = 0 AS y FROM range(60) r(i)").fetchall()
    con.execute(f'CREATE MODEL "{HOSTILE}" PREDICT y FROM t USING logistic WITH (epochs = 2, seed = 1)').fetchall()
    con.execute(f'CREATE MODEL "{SPACED}" PREDICT x FROM t USING linear WITH (epochs = 2, seed = 1)').fetchall()
    con.execute(f"TRAIN \"{SPACED}\" WITH (epochs = 3, seed = 2, deploy = 'never')").fetchall()
    con.execute(f'DEPLOY MODEL "{SPACED}" VERSION 2 AS SHADOW')
    con.execute(f'SELECT PREDICT("{SPACED}") FROM t').fetchall()  # 60 rows served by version 1, 60 shadowed by 2
    con.close()
    with console(path) as site:
        yield site


def test_hostile_names_are_escaped_in_html(hostile):
    for path in ("/models", _url(HOSTILE)):
        html = hostile.html(path)
        assert HOSTILE not in html and "<img src=x" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert f'href="{_url(HOSTILE)}"' in hostile.html("/models")
    assert '<a href="/lineage?node=%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E">' in hostile.html(_url(HOSTILE))


def test_hostile_names_round_trip_in_json_and_charts(hostile):
    assert {model["name"] for model in hostile.json("/api/models")["models"]} == {HOSTILE, SPACED}
    page = hostile.json("/api" + _url(HOSTILE))
    assert page["model"]["name"] == HOSTILE
    assert page["charts"]["training"]["url"] == "/charts" + _url(HOSTILE) + "/training.svg"
    for kind in CHARTS:
        status, headers, body = hostile.get(page["charts"][kind]["url"])
        assert status == 200 and headers["content-type"].startswith("image/svg+xml")
        assert "<img" not in body and "&lt;img src=x onerror=alert(1)&gt;" in body, kind


def test_a_shadow_is_shown_and_its_rows_are_not_counted_as_served(hostile):
    listed = {model["name"]: model for model in hostile.json("/api/models")["models"]}
    spaced = listed[SPACED]
    assert (spaced["deployed_version"], spaced["shadow_version"], spaced["latest_version"]) == (1, 2, 2)
    assert spaced["predictions_1d"] == 60 and spaced["statements_1d"] == 1
    page = hostile.json("/api" + _url(SPACED))
    assert [(v["version"], v["deployed"], v["shadow"]) for v in page["versions"]] == [(2, False, True), (1, True, False)]
    assert {(row["version"], row["shadow"], row["predictions"]) for row in page["predictions"]["by_version"]} == {
        (1, False, 60), (2, True, 60)}
    html = hostile.html(_url(SPACED))
    assert '<span class="badge shadow">shadow</span>' in html and "version 2 in shadow" in html


def test_names_with_spaces_and_slashes_are_url_quoted(hostile):
    assert _url(SPACED) == "/models/my%20model%2Fv2%20%26%20co"
    assert f'href="{_url(SPACED)}"' in hostile.html("/models")
    assert hostile.json("/api" + _url(SPACED))["model"]["name"] == SPACED
    assert "my model/v2 &amp; co" in hostile.html(_url(SPACED))
    status, _, body = hostile.get("/charts" + _url(SPACED) + "/training.svg")
    assert status == 200 and "my model/v2 &amp; co@1: loss per epoch" in body


def _older_file(path: str, versions: int = 1) -> str:
    """A file from before monitors, shadows and the lifecycle's tables: only models and their versions;
    version 1 trained on ``SELECT 1 AS y``, every later one on a table since dropped."""
    con = duckdb.connect(path)
    con.execute("CREATE SCHEMA mldb")
    con.execute("CREATE TABLE mldb.models (name VARCHAR, target VARCHAR, task VARCHAR, algorithm VARCHAR, "
                "deployed_version INTEGER, latest_version INTEGER, training_query VARCHAR, options JSON, "
                "created_at TIMESTAMP, updated_at TIMESTAMP)")
    con.execute("CREATE TABLE mldb.model_versions (model VARCHAR, version INTEGER, algorithm VARCHAR, task VARCHAR, "
                "metrics JSON, hyperparameters JSON, training_query VARCHAR, source_tables VARCHAR[], rows BIGINT, "
                "train_rows BIGINT, valid_rows BIGINT, fingerprint VARCHAR, device VARCHAR, train_seconds DOUBLE, "
                "created_at TIMESTAMP)")
    con.execute("INSERT INTO mldb.models VALUES ('old', 'y', 'regression', 'linear', 1, ?, 'SELECT 1 AS y', '{}', "
                "now()::TIMESTAMP, now()::TIMESTAMP)", [versions])
    con.execute("INSERT INTO mldb.model_versions SELECT 'old', v, 'linear', 'regression', json_object('rmse', v + 1.5), "
                "'{}', CASE WHEN v = 1 THEN 'SELECT 1 AS y' ELSE 'SELECT y FROM gone' END, [], 1, 1, 0, 'fp' || v, "
                "'cpu', 0.1, now()::TIMESTAMP FROM range(1, ? + 1) r(v)", [versions])
    con.close()
    return path


def test_an_older_file_without_monitors_or_shadows(tmp_path):
    path = _older_file(str(tmp_path / "old.db"), versions=2)
    with console(path) as site:
        [model] = site.json("/api/models")["models"]
        assert model["metric"] == {"name": "rmse", "value": 2.5}
        assert model["drift"]["status"] == "no drift monitor" and model["open_alerts"] == 0
        assert model["shadow_version"] is None and model["predictions_1d"] == 0
        page = site.json("/api/models/old")
        assert page["monitors"] == [] and page["alerts"]["total"] == 0
        old, gone = (version["source_data"] for version in sorted(page["versions"], key=lambda v: v["version"]))
        assert old == {"state": "same row count", "how": "row count",
                       "detail": "the same number of rows (1); values not compared (no fingerprint recorded)"}
        assert gone["state"] == "changed" and "the training query fails now" in gone["detail"]
        assert "gone" in gone["detail"]
        assert "old" in site.html("/models/old")
        for kind in CHARTS:
            status, _, body = site.get(f"/charts/models/old/{kind}.svg")
            assert status == 200 and "no data yet" in body


def test_a_long_history_shows_the_newest_versions(tmp_path):
    with console(_older_file(str(tmp_path / "long.db"), versions=25)) as site:
        page = site.json("/api/models/old")
        assert page["versions_total"] == 25
        assert [version["version"] for version in page["versions"]] == list(range(25, 5, -1))
        assert "Showing 20 of 25 versions, newest first." in site.html("/models/old")
