"""The console probed as a demanding user and as an attacker would: names matplotlib would read as
mathematics, training queries that predict or whose source grew, a foreign Host header (DNS
rebinding against a console on localhost without a password), an older catalog on the lineage pages."""

from __future__ import annotations

import http.client
import json
import shutil
import urllib.parse
from xml.etree import ElementTree

import duckdb
import pytest

from console_db import built_from
from console_http import console
from mldb.console import charts, models, tables
from test_console_models import _older_file

MATH = "m$\\frac{$"  # a model name matplotlib's mathtext cannot parse
ODD = "bell\x07 and noncharacter \uffff"  # characters XML cannot carry, even as references
LONG = "days_since_the_customer_last_opened_the_monthly_newsletter"  # a feature name
STATEMENTS = [
    'CREATE TABLE "t$x" AS SELECT i * 1.0 AS "$\\frac$", i % 3 AS "$x$", i % 5 AS ' + LONG + ', '
    'i * 2.0 + i % 3 AS y FROM range(60) r(i)',
    f'CREATE MODEL "{MATH}" PREDICT y FROM "t$x" USING linear WITH (epochs = 2, seed = 1)',
    f'SELECT count(*) FROM "t$x" WHERE PREDICT("{MATH}") > 1',
    f'CREATE TABLE "{ODD}" AS SELECT i * 1.0 AS "{ODD}", i * 2.0 AS y FROM range(40) r(i)',
    f'CREATE MODEL "{ODD}" PREDICT y FROM "{ODD}" USING linear WITH (epochs = 2, seed = 1)',
    f'SELECT count(*) FROM "{ODD}" WHERE PREDICT("{ODD}") > 1',
    'CREATE TABLE base AS SELECT i * 1.0 AS a, i * 3.0 + 1 AS b FROM range(50) r(i)',
    "CREATE MODEL scorer PREDICT b FROM base USING linear WITH (epochs = 2, seed = 1)",
    "CREATE VIEW predicted AS SELECT a, b, PREDICT(scorer) AS p FROM base",
    "CREATE MODEL from_view PREDICT b FROM predicted USING linear WITH (epochs = 2, seed = 1)",
    "CREATE MODEL from_query PREDICT b FROM (SELECT a, b, PREDICT(scorer) AS p FROM base) USING linear "
    "WITH (epochs = 2, seed = 1)",
    "CREATE MODEL base PREDICT b FROM base USING linear WITH (epochs = 2, seed = 1)",  # (a table's name)
    "CREATE TABLE grows AS SELECT i * 1.0 AS a, i * 2.0 AS b FROM range(50) r(i)",
    "CREATE MODEL grown PREDICT b FROM grows USING linear WITH (epochs = 2, seed = 1)",
    "INSERT INTO grows SELECT i * 1.0, i * 2.0 FROM range(50, 1000) r(i)",
    "CREATE VIEW endless AS SELECT a, b FROM base",
    "CREATE MODEL slow_source PREDICT b FROM endless USING linear WITH (epochs = 2, seed = 1)",
    # then the view is redefined to scan a trillion rows (hours): pages must give up on it, not hang
    "CREATE OR REPLACE VIEW endless AS SELECT a, b FROM base, range(1000000000000) r(i) WHERE hash(i, a) = 0",
]


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return built_from(str(tmp_path_factory.mktemp("probe") / "probe.db"), STATEMENTS)


@pytest.fixture(scope="module")
def site(path):
    with console(path) as served:
        yield served


def url(name: str) -> str:
    return urllib.parse.quote(name, safe="")


# -- charts: user text is text, never mathtext ------------------------------------------------------
@pytest.mark.parametrize("kind", ["training", "volume", "importance"])
def test_names_with_dollar_signs_are_drawn_as_written(site, kind):
    status, headers, body = site.get(f"/charts/models/{url(MATH)}/{kind}.svg")
    assert status == 200 and headers["content-type"].startswith("image/svg+xml"), body[:300]
    assert MATH in body  # the name itself, not typeset mathematics
    if kind == "importance":
        assert "$\\frac$" in body and "$x$" in body


def test_long_feature_names_are_shortened_to_fit_the_importance_chart(site):
    body = site.get(f"/charts/models/{url(MATH)}/importance.svg")[2]
    assert LONG not in body and LONG[:charts.FEATURE_LABEL - 1] + "…" in body
    assert "$\\frac$" in body  # (short names whole)


@pytest.mark.parametrize("chart", ["training", "volume", "importance", "drift", "lineage"])
def test_characters_xml_cannot_carry_do_not_break_the_svg(site, chart):
    address = f"/charts/lineage/{url(ODD)}.svg" if chart == "lineage" else f"/charts/models/{url(ODD)}/{chart}.svg"
    status, _, body = site.get(address)
    assert status == 200
    ElementTree.fromstring(body)  # (well-formed: a browser shows it, where it would show a broken image)
    assert "bell\ufffd and noncharacter \ufffd" in body


# -- source data: the model page re-runs training queries, so they must be safe and bounded ---------
@pytest.mark.parametrize("name", ["from_view", "from_query"])
def test_training_queries_that_predict_are_not_run_again(site, name):
    [version] = site.json(f"/api/models/{name}")["versions"]
    assert version["source_data"]["state"] == "unknown", version["source_data"]
    assert "PREDICT" in version["source_data"]["detail"]


def test_a_source_grown_past_the_fingerprint_limit_is_not_read_whole(site, monkeypatch):
    monkeypatch.setattr(models, "FINGERPRINT_ROWS", 100)  # (the console runs in this process)
    [version] = site.json("/api/models/grown")["versions"]
    assert version["source_data"] == {"state": "changed", "how": "row count",
                                      "detail": "rows changed: 50 -> more than 100"}


def test_a_training_query_that_runs_too_long_is_given_up(site):
    [version] = site.json("/api/models/slow_source")["versions"]
    assert version["source_data"] == {"state": "unknown", "how": None, "detail": "not compared: the training "
                                      f"query ran longer than {models.SOURCE_SECONDS:g} s"}


def test_a_view_that_runs_too_long_is_not_sampled(site):
    page = site.json("/api/tables/endless")
    assert page["columns"][0]["name"] == "a" and page["sample"]["rows"] == []
    assert page["sample"]["skipped"] == f"reading it took longer than {tables.SAMPLE_SECONDS:g} s"


@pytest.mark.parametrize("snapshot", [True, False])  # (compared by fingerprint, or by row count)
@pytest.mark.parametrize("form", ["{select}); {copy}; SELECT (1", "{select}; {copy}"])
def test_a_training_query_is_run_only_as_one_select(path, tmp_path, snapshot, form):
    """The training query is a catalog row anyone with SQL could have edited, and the console reads
    files it did not make: a second statement in it (COPY ... TO a file works even read-only) never runs."""
    doctored, target = str(tmp_path / "doctored.db"), tmp_path / "written.csv"
    shutil.copy(path, doctored)
    con = duckdb.connect(doctored)
    injected = form.format(select="SELECT a, b FROM base", copy=f"COPY (SELECT 'owned' AS x) TO '{target}'")
    con.execute("UPDATE mldb.model_versions SET training_query = ? WHERE model = 'scorer'", [injected])
    if not snapshot:
        con.execute("DELETE FROM mldb.snapshots WHERE model = 'scorer'")
    con.close()
    with console(doctored) as site:
        [version] = site.json("/api/models/scorer")["versions"]
    assert not target.exists()
    assert version["source_data"]["state"] == "unknown", version["source_data"]
    if ");" not in form:  # (the other is not even SQL alone)
        assert version["source_data"]["detail"] == "not compared: the recorded training query is not one SELECT"


# -- DNS rebinding: a page of another site must not read a console on localhost ---------------------
def raw_get(site, path: str, host: str) -> int:
    connection = http.client.HTTPConnection(site.base.removeprefix("http://"), timeout=60)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_a_foreign_host_header_is_refused_on_localhost(site):
    port = site.base.rsplit(":", 1)[1]
    assert raw_get(site, "/api/models", f"evil.example:{port}") == 400
    assert raw_get(site, "/models", "evil.example") == 400
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert raw_get(site, "/api/models", host) == 200


# -- lineage -----------------------------------------------------------------------------------------
def test_a_models_lineage_is_the_models_even_when_a_table_has_its_name(site):
    link = site.json("/api/models/base")["lineage"]
    focus = site.json("/api" + link["url"] + "&direction=down&depth=1")
    assert focus["focus"]["ids"] == ["base@1"] and [node["id"] for node in focus["nodes"]] == ["base@1"]
    status, _, svg = site.get(link["chart"])
    assert status == 200 and ">base@1</text>" in svg and ">scorer@1</text>" not in svg  # (the table's other model)
    table = site.json("/api/lineage?node=base&direction=down&depth=1")  # the name alone: the table
    assert table["focus"]["ids"] == ["base"] and {"base@1", "scorer@1"} <= {node["id"] for node in table["nodes"]}


# -- numbers JSON cannot write ------------------------------------------------------------------------
def test_nan_and_infinity_in_the_catalog_are_null_in_json(path, tmp_path):
    doctored = str(tmp_path / "nan.db")
    shutil.copy(path, doctored)
    con = duckdb.connect(doctored)  # (DOUBLE columns hold NaN and infinities: a shadow scoring NaN, another writer)
    con.execute("UPDATE mldb.prediction_log SET seconds = 'NaN'::DOUBLE, rows = 1")
    con.execute("UPDATE mldb.feature_stats SET std = 'inf'::DOUBLE")
    con.close()
    with console(doctored) as site:
        assert {row["seconds"] for row in site.json("/api/predictions")["log"]} == {None}
        stats = site.json("/api/models/scorer")["feature_stats"]["rows"]
        assert stats and {row["std"] for row in stats} == {None}
        assert "scorer" in site.html("/models/scorer")


# -- an older catalog ------------------------------------------------------------------------------
def test_the_lineage_of_a_file_from_before_shadows(tmp_path):
    with console(_older_file(str(tmp_path / "old.db"), versions=2)) as site:
        assert {node["id"] for node in site.json("/api/lineage?node=old")["nodes"]} == {"old@1", "old@2"}
        assert "no lineage recorded yet" in site.html("/lineage")  # (no mldb.lineage in this file)
        status, _, body = site.get("/charts/lineage/old.svg")
        assert status == 200 and "old@2" in body


# -- mldb ui on a public address -------------------------------------------------------------------
def test_ui_refuses_a_public_address_without_a_password(path):
    from test_console_cli import free_port, mldb_command

    process = mldb_command("ui", path, "--host", "0.0.0.0", "--port", str(free_port()))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2 and "refusing to listen on 0.0.0.0 without a password" in stderr


# -- odd paths ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["/api", "/api/", "/api/nope", "/api/models/%00", "/api/tables/..%2F..%2Fetc%2Fpasswd"])
def test_unknown_api_paths_answer_json(site, address):
    status, headers, body = site.get(address)
    assert status == 404 and headers["content-type"].startswith("application/json"), (address, body[:200])
    assert "error" in json.loads(body)


# -- query parameters ------------------------------------------------------------------------------
@pytest.mark.parametrize("query", ["since=0001-01-01T00:00:00%2B14:00", "until=9999-12-31T23:59:59-14:00"])
def test_a_time_that_leaves_the_calendar_in_utc_is_400(site, query):
    for prefix in ("", "/api"):
        status, _, body = site.get(f"{prefix}/predictions?{query}")
        assert status == 400 and "UTC" in body, body[:300]


def test_ui_on_a_missing_file_says_so_without_blaming_mldb_serve(tmp_path):
    from test_console_cli import free_port, mldb_command

    process = mldb_command("ui", str(tmp_path / "missing.db"), "--port", str(free_port()))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and "database does not exist" in stderr
    assert "mldb serve" not in stderr and not (tmp_path / "missing.db").exists()
