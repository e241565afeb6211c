"""The console's tables pages (/tables, /tables/{name} and their JSON twins under /api), over real HTTP,
checked against SQL on the same file; and hostile table names and values, which must come out escaped."""

from __future__ import annotations

import urllib.parse

import duckdb
import pytest

import mldb
from console_db import build
from console_http import console

# a tiny second database whose names and values are hostile (also used by the predictions tests)
HOSTILE = [
    r"""CREATE TABLE "<b>x</b>" AS SELECT CASE WHEN i % 3 = 0 THEN '<script>alert(1)</script>' ELSE 'plain' || (i % 5)
        END AS name, i * 0.5 AS v, i * 1.5 + 2 AS y, '\x00\xFF\x10'::BLOB AS raw, ['<a>', 'b'] AS tags,
        repeat('long ', 100) AS essay FROM range(60) t(i)""",
    "CREATE SCHEMA staging",
    "CREATE TABLE staging.events AS SELECT 1 AS id",
    """CREATE MODEL hostile PREDICT y FROM (SELECT name, v, y FROM "<b>x</b>") USING linear
       WITH (epochs = 2, seed = 1, log_sample = 1)""",
    """CREATE TABLE "<i>out</i>" AS SELECT name, PREDICT(hostile) AS p FROM "<b>x</b>" """
    """WHERE name <> '<script>alert(2)</script>'""",
    'CREATE VIEW scored_view AS SELECT name, PREDICT(hostile) AS p FROM "<b>x</b>"',
    """SELECT count(*) FROM "<b>x</b>" WHERE PREDICT(hostile) > 10""",
    """SELECT count(*) FROM "<b>x</b>" WHERE PREDICT(hostile) > 20""",
]
SCRIPT = "<script>alert(1)</script>"


def build_hostile(path: str) -> str:
    con = mldb.connect(path)
    try:
        for statement in HOSTILE:
            con.execute(statement).fetchall()
    finally:
        con.close()
    return path


def quoted(name: str) -> str:
    return urllib.parse.quote(name, safe="")


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return build(str(tmp_path_factory.mktemp("console") / "console.db"))


@pytest.fixture(scope="module")
def site(path):
    with console(path) as served:
        yield served


@pytest.fixture(scope="module")
def sql(path, site):
    con = duckdb.connect(path, read_only=True)
    yield lambda text, params=None: con.execute(text, params or []).fetchall()
    con.close()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    path = build_hostile(str(tmp_path_factory.mktemp("hostile") / "hostile.db"))
    with console(path) as served:
        yield served


def test_the_list_has_every_user_table_and_view_with_its_estimated_rows(site, sql):
    data = site.json("/api/tables")
    tables = {t["name"]: t for t in data["tables"]}
    expected = {name: rows for name, rows in sql(
        "SELECT table_name, estimated_size FROM duckdb_tables() WHERE schema_name = 'main'")}
    views = {name for (name,) in sql(
        "SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal")}
    assert set(tables) == set(expected) | views
    assert not any(t["schema"] == "mldb" for t in data["tables"])
    for name, rows in expected.items():
        assert tables[name]["rows"] == rows and tables[name]["kind"] == "table"
    assert tables["recent_customers"]["kind"] == "view" and tables["recent_customers"]["rows"] is None
    assert data["shown"] == data["total"] == len(tables)


def test_the_list_says_which_models_were_trained_from_each_table_and_which_wrote_into_it(site, sql):
    tables = {t["name"]: t for t in site.json("/api/tables")["tables"]}
    trained = {(model, version) for model, version in sql(
        "SELECT target, target_version FROM mldb.lineage WHERE kind = 'training' AND source = 'customers'")}
    assert {(m["model"], v) for m in tables["customers"]["trained"] for v in m["versions"]} == trained
    assert ("spend_model", 1) in trained  # read through the view recent_customers
    assert tables["recent_customers"]["trained"] == [{"model": "spend_model", "versions": [1]}]
    written = {(model, version) for model, version in sql(
        "SELECT source, source_version FROM mldb.lineage WHERE kind = 'prediction' AND target = 'scored'")}
    assert {(m["model"], v) for m in tables["scored"]["written_by"] for v in m["versions"]} == written
    assert written == {("churn", 1), ("spend_model", 1)}
    assert tables["audited"]["trained"] == [] and tables["audited"]["written_by"] == []


def test_the_list_page_links_each_table_and_model(site):
    html = site.html("/tables")
    for name in ("customers", "recent_customers", "scored", "audited"):
        assert f'href="/tables/{name}"' in html
    assert 'href="/models/spend_model"' in html and 'href="/models/churn"' in html
    assert "Showing 4 of 4" in html


def test_a_table_page_has_its_columns_exact_count_and_first_rows(site, sql):
    data = site.json("/api/tables/customers")
    columns = sql("SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = 'main' "
                  "AND table_name = 'customers' ORDER BY column_index")
    assert [(c["name"], c["type"]) for c in data["columns"]] == columns
    assert data["rows"] == sql("SELECT count(*) FROM customers")[0][0]
    first = sql("SELECT COLUMNS(*)::VARCHAR FROM customers LIMIT 10")
    assert data["sample"]["columns"] == [name for name, _ in columns]
    assert [tuple(row) for row in data["sample"]["rows"]] == first
    trained = sql("SELECT target, target_version, via FROM mldb.lineage WHERE kind = 'training' "
                  "AND source = 'customers' ORDER BY 1, 2")
    assert [(t["model"], t["version"], t["via"]) for t in data["trained"]] == trained
    html = site.html("/tables/customers")
    assert "<code>VARCHAR</code>" in html and "2,400 rows" in html
    assert 'href="/tables/recent_customers"' in html  # spend_model was trained through the view


def test_a_table_written_with_predictions_names_the_versions_the_statement_and_its_trace(site, sql):
    data = site.json("/api/tables/scored")
    fingerprint, statement = sql("SELECT query_fingerprint, statement FROM mldb.prediction_log "
                                 "WHERE statement LIKE 'CREATE TABLE scored%' LIMIT 1")[0]
    assert {(w["model"], w["version"]) for w in data["written_by"]} == {("churn", 1), ("spend_model", 1)}
    for writer in data["written_by"]:
        assert writer["kind"] == "prediction" and writer["created_at"]
        assert writer["statement"] == statement and writer["fingerprint"] == fingerprint
    html = site.html("/tables/scored")
    assert f'href="/predictions/{fingerprint}"' in html and "CREATE TABLE scored AS" in html


def test_a_view_page_shows_its_definition_and_is_not_counted(site):
    data = site.json("/api/tables/recent_customers")
    assert data["kind"] == "view" and data["rows"] is None
    assert "FROM customers" in data["definition"]
    assert [(t["model"], t["version"]) for t in data["trained"]] == [("spend_model", 1)]
    assert len(data["sample"]["rows"]) == 10 and data["sample"]["skipped"] is None


def test_names_match_as_duckdb_does_without_case(site):
    assert site.json("/api/tables/CUSTOMERS")["name"] == "customers"


def test_unknown_tables_are_404_in_html_and_json(site):
    status, headers, body = site.get("/tables/no_such_table")
    assert status == 404 and headers["content-type"].startswith("text/html") and "no_such_table" in body
    status, headers, body = site.get("/api/tables/no_such_table")
    assert status == 404 and headers["content-type"].startswith("application/json")
    assert "no_such_table" in body and '"error"' in body
    assert site.get("/tables/mldb.models")[0] == 404  # mldb's catalog is not a user table


def test_a_table_outside_main_is_named_with_its_schema(hostile):
    listed = {t["name"]: t for t in hostile.json("/api/tables")["tables"]}
    assert listed["staging.events"]["schema"] == "staging" and listed["staging.events"]["relation"] == "events"
    data = hostile.json("/api/tables/staging.events")
    assert data["rows"] == 1 and data["sample"]["rows"] == [["1"]]
    assert 'href="/tables/staging.events"' in hostile.html("/tables")


def test_hostile_names_and_values_are_escaped_and_round_trip_in_json(hostile):
    html = hostile.html("/tables")
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "<i>out</i>" not in html and "&lt;i&gt;out&lt;/i&gt;" in html
    page = hostile.html("/tables/" + quoted("<b>x</b>"))
    assert SCRIPT not in page and "<b>x</b>" not in page and "<a>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;3 bytes&gt;" in page
    data = hostile.json("/api/tables/" + quoted("<b>x</b>"))
    assert data["name"] == "<b>x</b>"
    first = dict(zip(data["sample"]["columns"], data["sample"]["rows"][0]))
    assert first["name"] == SCRIPT and first["raw"] == "<3 bytes>" and first["tags"] == "[<a>, b]"
    assert first["essay"].endswith("…") and len(first["essay"]) == 201  # a long value is cut
    written = hostile.json("/api/tables/" + quoted("<i>out</i>"))["written_by"]
    assert [(w["model"], w["version"]) for w in written] == [("hostile", 1)]
    assert "<script>alert(2)</script>" in written[0]["statement"]
    page = hostile.html("/tables/" + quoted("<i>out</i>"))
    assert "<script>" not in page and "&lt;script&gt;alert(2)&lt;/script&gt;" in page


def test_a_view_that_predicts_is_not_run_for_its_sample(hostile):
    logged = hostile.json("/api/predictions")["total"]
    data = hostile.json("/api/tables/scored_view")
    assert data["kind"] == "view" and data["sample"]["rows"] == [] and "predict" in data["sample"]["skipped"]
    assert data["sample"]["columns"] == ["name", "p"]
    assert hostile.json("/api/predictions")["total"] == logged
    assert [(w["model"], w["version"]) for w in data["written_by"]] == [("hostile", 1)]


def test_a_plain_duckdb_file_without_mldb_catalog(tmp_path):
    path = str(tmp_path / "plain.duckdb")
    con = duckdb.connect(path)
    con.execute("CREATE TABLE notes AS SELECT 'hello' AS text")
    con.close()
    with console(path) as site:
        (listed,) = site.json("/api/tables")["tables"]
        assert listed["name"] == "notes" and listed["trained"] == [] and listed["written_by"] == []
        assert site.json("/api/tables/notes")["sample"]["rows"] == [["hello"]]
        assert site.json("/api/predictions")["log"] == []
        assert site.get("/api/predictions/0123456789abcdef")[0] == 404
