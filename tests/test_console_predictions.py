"""The console's predictions pages (/predictions with its filters, /predictions/{fingerprint}: the trace of
one logged statement, and their JSON twins under /api), over real HTTP, checked against SQL on the same file."""

from __future__ import annotations

import datetime
import urllib.parse

import duckdb
import pytest

from console_db import build
from console_http import console
from test_console_tables import SCRIPT, build_hostile

LOG = "SELECT {columns} FROM mldb.prediction_log {where} ORDER BY logged_at DESC"


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


def query(**params) -> str:
    return "?" + urllib.parse.urlencode(params)


def test_the_log_newest_first_with_its_count_and_totals_per_model(site, sql):
    data = site.json("/api/predictions")
    expected = sql(LOG.format(columns="model, version, rows, query_fingerprint", where=""))
    assert [(r["model"], r["version"], r["rows"], r["query_fingerprint"]) for r in data["log"]] == expected
    assert data["total"] == data["shown"] == len(expected) == sql("SELECT count(*) FROM mldb.prediction_log")[0][0]
    totals = sql("SELECT model, count(*), sum(rows), sum(calls) FROM mldb.prediction_log GROUP BY model ORDER BY model")
    assert [(t["model"], t["entries"], t["rows"], t["calls"]) for t in data["totals"]] == totals
    assert data["models"] == ["churn", "plan_model", "spend_model"]
    assert data["filters"] == {"model": None, "version": None, "since": None, "until": None, "limit": 100}


def test_long_statements_are_shortened_in_the_log_and_whole_in_the_trace(site, sql):
    rows = site.json("/api/predictions")["log"]
    fingerprint, statement = sql("SELECT query_fingerprint, statement FROM mldb.prediction_log "
                                 "WHERE statement LIKE 'CREATE TABLE scored%' LIMIT 1")[0]
    shown = next(r for r in rows if r["query_fingerprint"] == fingerprint)
    assert len(statement) > 120 and shown["shortened"] and shown["statement"] == statement[:120]
    assert site.json(f"/api/predictions/{fingerprint}")["statement"] == statement
    html = site.html("/predictions")
    assert f'href="/predictions/{fingerprint}"' in html and statement[:120] + "…" in html


def test_filters_by_model_version_and_time(site, sql):
    data = site.json("/api/predictions" + query(model="churn", version=2))
    expected = sql(LOG.format(columns="rows, logged_at", where="WHERE model = 'churn' AND version = 2"))
    assert [(r["rows"], r["logged_at"]) for r in data["log"]] == [(n, t.isoformat()) for n, t in expected]
    assert data["total"] == len(expected) == 2 and {r["model"] for r in data["log"]} == {"churn"}
    assert [t["model"] for t in data["totals"]] == ["churn"]
    times = [t for (t,) in sql("SELECT logged_at FROM mldb.prediction_log ORDER BY logged_at")]
    since, until = times[2], times[6]
    data = site.json("/api/predictions" + query(since=since.isoformat(), until=until.isoformat()))
    between = sql("SELECT count(*) FROM mldb.prediction_log WHERE logged_at BETWEEN ? AND ?", [since, until])[0][0]
    assert data["total"] == between >= 5
    assert all(since.isoformat() <= r["logged_at"] <= until.isoformat() for r in data["log"])
    with_offset = site.json("/api/predictions" + query(since=since.isoformat() + "+02:00"))  # 2 h earlier in UTC
    assert with_offset["filters"]["since"] == (since - datetime.timedelta(hours=2)).isoformat()
    assert with_offset["total"] == 10
    assert site.json("/api/predictions" + query(model="no_such_model"))["total"] == 0


def test_limit_shows_the_newest_n_of_all(site, sql):
    data = site.json("/api/predictions" + query(limit=3))
    newest = sql(LOG.format(columns="logged_at", where="") + " LIMIT 3")
    assert [r["logged_at"] for r in data["log"]] == [t.isoformat() for (t,) in newest]
    assert data["shown"] == 3 and data["total"] == 10
    assert "Showing 3 of 10" in site.html("/predictions" + query(limit=3))


def test_the_page_has_a_get_form_with_the_models_and_the_shadow_comparison(site):
    html = site.html("/predictions" + query(model="churn"))
    assert '<form method="get" action="/predictions" class="filters">' in html
    assert '<option value="churn" selected>churn</option>' in html
    assert '<option value="plan_model">plan_model</option>' in html
    assert "of v1" in html and "agreement 0.15" in html  # churn v2 shadowed v1


@pytest.mark.parametrize("params", [
    {"version": "two"}, {"version": "1.5"}, {"since": "yesterday"}, {"until": "2026-13-01"},
    {"limit": "0"}, {"limit": "1001"}, {"limit": "ten"},
])
def test_malformed_filters_are_400(site, params):
    status, headers, body = site.get("/api/predictions" + query(**params))
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert list(params)[0] in body and '"error"' in body
    status, headers, body = site.get("/predictions" + query(**params))
    assert status == 400 and headers["content-type"].startswith("text/html") and "Bad request" in body


def test_a_statement_trace_names_each_version_its_training_data_and_the_table_it_wrote(site, sql):
    fingerprint, statement = sql("SELECT query_fingerprint, statement FROM mldb.prediction_log "
                                 "WHERE statement LIKE 'CREATE TABLE scored%' LIMIT 1")[0]
    data = site.json(f"/api/predictions/{fingerprint}")
    assert data["statement"] == statement and [t["statement"] for t in data["texts"]] == [statement]
    assert data["total"] == data["shown"] == 2 and {r["text"] for r in data["log"]} == {0}
    versions = {(v["model"], v["version"]): v for v in data["versions"]}
    assert set(versions) == {("churn", 1), ("spend_model", 1)}
    for (model, version), shown in versions.items():
        tables, training_query, fingerprint_ = sql(
            "SELECT source_tables, training_query, fingerprint FROM mldb.model_versions "
            "WHERE model = ? AND version = ?",
            [model, version])[0]
        assert shown["training"]["source_tables"] == tables and shown["training"]["training_query"] == training_query
        assert shown["training"]["fingerprint"] == fingerprint_
        rows, snapshot = sql("SELECT rows, fingerprint FROM mldb.snapshots WHERE model = ? AND version = ?",
                             [model, version])[0]
        assert shown["snapshot"]["rows"] == rows and shown["snapshot"]["fingerprint"] == snapshot
    assert versions[("spend_model", 1)]["training"]["source_tables"] == ["recent_customers"]
    assert versions[("spend_model", 1)]["sources"] == [{"table_name": "customers", "via": "recent_customers"},
                                                        {"table_name": "recent_customers", "via": None}]
    assert {(w["table_name"], w["model"], w["version"]) for w in data["written"]} == {
        ("scored", "churn", 1), ("scored", "spend_model", 1)}
    html = site.html(f"/predictions/{fingerprint}")
    assert 'href="/models/spend_model"' in html and 'href="/tables/recent_customers"' in html
    assert 'href="/tables/scored"' in html and versions[("churn", 1)]["training"]["fingerprint"] in html


def test_a_statement_that_wrote_nothing_and_one_logged_many_times(site, sql):
    (fingerprint,) = sql("SELECT query_fingerprint FROM mldb.prediction_log WHERE model = 'plan_model'")[0]
    data = site.json(f"/api/predictions/{fingerprint}")
    assert data["written"] == [] and [(v["model"], v["version"]) for v in data["versions"]] == [("plan_model", 2)]
    assert "It wrote no table." in site.html(f"/predictions/{fingerprint}")
    (fingerprint, count), = sql("SELECT query_fingerprint, count(*) FROM mldb.prediction_log "
                                "WHERE statement LIKE '%EVALUATE%' GROUP BY 1")
    data = site.json(f"/api/predictions/{fingerprint}")
    newest = sql("SELECT logged_at FROM mldb.prediction_log WHERE query_fingerprint = ? ORDER BY logged_at DESC",
                 [fingerprint])
    assert data["total"] == data["shown"] == count == 5
    assert [r["logged_at"] for r in data["log"]] == [t.isoformat() for (t,) in newest]
    assert [(t["statement"], t["entries"]) for t in data["texts"]] == [(data["statement"], 5)]


def test_texts_that_differ_only_in_literals_are_one_statement(hostile):
    rows = [r for r in hostile.json("/api/predictions")["log"] if r["statement"].startswith("SELECT count(*)")]
    assert len(rows) == 2 and rows[0]["query_fingerprint"] == rows[1]["query_fingerprint"]
    data = hostile.json(f"/api/predictions/{rows[0]['query_fingerprint']}")
    assert [t["statement"][-2:] for t in data["texts"]] == ["20", "10"]  # newest first
    assert [r["text"] for r in data["log"]] == [0, 1] and data["statement"] == data["texts"][0]["statement"]
    assert data["written"] == []


def test_unknown_statements_are_404(site):
    assert site.get("/predictions/0000000000000000")[0] == 404
    status, headers, body = site.get("/api/predictions/0000000000000000")
    assert status == 404 and '"error"' in body and "0000000000000000" in body


def test_sampled_rows_and_hostile_statements_are_escaped_and_round_trip(hostile):
    data = hostile.json("/api/predictions")
    (row,) = [r for r in data["log"] if r["statement"].startswith("CREATE TABLE")]
    assert "<script>alert(2)</script>" in row["statement"]
    html = hostile.html("/predictions")
    assert "<script>" not in html and "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    trace = hostile.json(f"/api/predictions/{row['query_fingerprint']}")
    assert len(trace["samples"]) == 20  # 60 rows sampled (log_sample = 1), the newest 20 shown
    inputs = [sample["input"] for sample in trace["samples"]]
    assert all(set(i) == {"name", "v"} for i in inputs) and SCRIPT in {i["name"] for i in inputs}
    assert all(isinstance(sample["output"], float) for sample in trace["samples"])
    assert [(w["table_name"], w["model"]) for w in trace["written"]] == [("<i>out</i>", "hostile")]
    assert trace["versions"][0]["training"]["source_tables"] == ['"<b>x</b>"']  # as the catalog holds it (SQL)
    assert trace["versions"][0]["sources"] == [{"table_name": "<b>x</b>", "via": None}]
    page = hostile.html(f"/predictions/{row['query_fingerprint']}")
    assert "<script>" not in page and "<b>x</b>" not in page and "<i>out</i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert 'href="/tables/%3Cb%3Ex%3C/b%3E"' in page
