"""The console's lineage page over real HTTP: the whole graph and the parts upstream / downstream of a node,
as HTML with an inline SVG, as JSON, and as an SVG chart; escaping of hostile names; a cycle."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import quote

import duckdb
import pytest

import mldb
from mldb.console import graph, lineage
from mldb.console.reader import Reader, for_page
from mldb.database import open_database
from console_fixtures import console_db, path, site, sql  # noqa: F401 - fixtures
from console_http import console

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>x</script>"
HOSTILE_MODEL = "<b>m&amp;</b>"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A table and a model with names made to break HTML, and a table written by a model trained on it."""
    path = str(tmp_path_factory.mktemp("hostile") / "hostile.db")
    con = mldb.connect(path)
    try:
        for statement in [
            f'CREATE TABLE "{HOSTILE}" AS SELECT range::DOUBLE AS x, (range * 2)::DOUBLE AS y FROM range(40)',
            f'CREATE MODEL "{HOSTILE_MODEL}" PREDICT y FROM "{HOSTILE}" USING linear WITH (epochs = 2, seed = 1)',
            "CREATE TABLE loop AS SELECT range::DOUBLE AS x, (range * 3)::DOUBLE AS y FROM range(40)",
            "CREATE MODEL looped PREDICT y FROM loop USING linear WITH (epochs = 2, seed = 1)",
            "INSERT INTO loop SELECT x, PREDICT(looped) FROM loop",
            f'CREATE VIEW gone AS SELECT x, y FROM "{HOSTILE}" WHERE x > 3',
            "CREATE MODEL from_gone PREDICT y FROM gone USING linear WITH (epochs = 2, seed = 1)",
            "DROP VIEW gone",
        ]:
            con.execute(statement).fetchall()
    finally:
        con.close()
    with console(path) as site:
        site.path = path
        yield site


def svg_of(html: str) -> ET.Element:
    start, end = html.index("<svg"), html.index("</svg>") + len("</svg>")
    return ET.fromstring(html[start:end])


def labels(svg: ET.Element) -> set[str]:
    """The bold first line of each node box."""
    return {text.text for text in svg.iter(SVG + "text") if text.get("font-weight") == "600"}


def links(svg: ET.Element) -> set[str]:
    return {a.get("href") for a in svg.iter(SVG + "a")}


def ids(data: dict) -> set[str]:
    return {node["id"] for node in data["nodes"]}


def test_whole_graph_svg_has_every_node_and_links_to_its_page(site):
    svg = svg_of(site.html("/lineage"))
    assert {"customers", "recent_customers", "churn@1", "churn@2", "spend_model@1", "plan_model@1",
            "scored"} <= labels(svg)
    assert {"/models/spend_model", "/models/churn", "/tables/customers", "/tables/scored",
            "/tables/recent_customers"} <= links(svg)
    assert len(list(svg.iter(SVG + "path"))) >= 8  # the edges (and the arrowheads)


def test_chart_is_the_same_svg_alone(site):
    status, headers, body = site.get("/charts/lineage.svg")
    assert status == 200 and headers["content-type"].startswith("image/svg+xml")
    svg = ET.fromstring(body)
    assert svg.tag == SVG + "svg"
    assert {"customers", "churn@2", "scored"} <= labels(svg)
    assert body == site.get("/charts/lineage.svg")[2]  # deterministic


def test_json_edges_are_the_lineage_rows(site, path):
    data = site.json("/api/lineage")
    with duckdb.connect(path, read_only=True) as con:
        rows = con.execute("SELECT DISTINCT source, source_version, target, target_version, kind, via "
                           "FROM mldb.lineage").fetchall()
    expected = {(_id(source, sv), _id(target, tv), kind, via) for source, sv, target, tv, kind, via in rows}
    recorded = {(e["source"], e["target"], e["kind"], e["via"]) for e in data["edges"] if e["kind"] != "view"}
    assert recorded == expected
    assert ("customers", "spend_model@1", "training", "recent_customers") in recorded
    # the view's own dependency is derived, and drawn instead of the edge through it
    assert {"source": "customers", "target": "recent_customers", "kind": "view"}.items() <= \
        next(e for e in data["edges"] if e["kind"] == "view").items()
    through = next(e for e in data["edges"] if e["via"] == "recent_customers")
    assert through["drawn"] is False and through["created_at"].startswith("20")
    assert all(edge["source"] in ids(data) and edge["target"] in ids(data) for edge in data["edges"])


def _id(name, version):
    return name if version is None else f"{name}@{version}"


def test_nodes_have_kinds_links_and_the_deployed_version(site):
    nodes = {node["id"]: node for node in site.json("/api/lineage")["nodes"]}
    assert nodes["customers"]["kind"] == "table" and nodes["customers"]["href"] == "/tables/customers"
    assert nodes["recent_customers"]["kind"] == "view"
    assert nodes["scored"]["kind"] == "output"
    churn = [nodes["churn@1"], nodes["churn@2"]]
    assert [node["kind"] for node in churn] == ["model_version", "model_version"]
    assert [node["deployed"] for node in churn] == [True, False]  # the monitors story rolled back to 1
    assert {node["href"] for node in churn} == {"/models/churn"}
    assert "plan_model@2" in nodes and nodes["plan_model@2"]["deployed"]


def test_upstream_of_scored(site):
    data = site.json("/api/lineage?node=scored&direction=up")
    assert {"scored", "customers", "recent_customers", "churn@1", "spend_model@1"} == ids(data)
    assert data["focus"] == {"node": "scored", "ids": ["scored"], "direction": "up", "depth": None}
    html = site.html("/lineage?node=scored&direction=up")
    assert "plan_model@1" not in labels(svg_of(html)) and "churn@1" in labels(svg_of(html))


def test_downstream_of_customers(site):
    data = site.json("/api/lineage?node=customers&direction=down")
    assert {"scored", "churn@1", "churn@2", "spend_model@1", "plan_model@2", "recent_customers"} <= ids(data)
    assert "scored" not in ids(site.json("/api/lineage?node=customers&direction=down&depth=1"))
    assert ids(site.json("/api/lineage?node=customers&direction=up")) == {"customers"}


def test_both_directions_of_a_model_version_and_of_a_model(site):
    data = site.json("/api/lineage?node=" + quote("churn@1"))
    assert ids(data) == {"churn@1", "customers", "scored"}
    model = site.json("/api/lineage?node=churn")  # a model's name stands for all its versions
    assert model["focus"]["ids"] == ["churn@1", "churn@2"]
    assert ids(model) == {"churn@1", "churn@2", "customers", "scored"}
    status, headers, body = site.get("/charts/lineage/churn.svg")
    assert status == 200 and labels(ET.fromstring(body)) == {"churn@1", "churn@2", "customers", "scored"}


def test_unknown_node_is_404(site):
    status, _, body = site.get("/lineage?node=nothing_here")
    assert status == 404 and "nothing_here" in body
    status, _, body = site.get("/api/lineage?node=nothing_here")
    assert status == 404 and "nothing_here" in body and '"error"' in body
    assert site.get("/api/lineage?node=churn@9")[0] == 404
    assert site.get("/charts/lineage/nothing_here.svg")[0] == 404


@pytest.mark.parametrize("query", ["node=scored&direction=sideways", "direction=UP", "node=scored&depth=0",
                                   "node=scored&depth=two", "depth=-1"])
def test_bad_parameters_are_400(site, query):
    assert site.get("/api/lineage?" + query)[0] == 400
    assert site.get("/lineage?" + query)[0] == 400


def test_hostile_names_are_escaped_and_round_trip(hostile):
    html = hostile.html("/lineage")
    assert HOSTILE not in html and HOSTILE_MODEL not in html and "&lt;script&gt;" in html
    svg = svg_of(html)  # well-formed: the parser reads the names back as text
    assert {HOSTILE, f"{HOSTILE_MODEL}@1"} <= labels(svg)
    assert "/tables/" + quote(HOSTILE, safe="") in links(svg)
    assert "/models/" + quote(HOSTILE_MODEL, safe="") in links(svg)
    body = hostile.get("/charts/lineage.svg")[2]
    assert HOSTILE not in body and HOSTILE in labels(ET.fromstring(body))
    data = hostile.json("/api/lineage?node=" + quote(HOSTILE))
    assert ids(data) == {HOSTILE, f"{HOSTILE_MODEL}@1", "gone", "from_gone@1"}
    assert (HOSTILE, f"{HOSTILE_MODEL}@1") in {(edge["source"], edge["target"]) for edge in data["edges"]}


def test_a_cycle_is_drawn(hostile):
    data = hostile.json("/api/lineage?node=loop")
    assert ids(data) == {"loop", "looped@1"}
    assert {(e["source"], e["target"], e["kind"]) for e in data["edges"]} == {
        ("loop", "looped@1", "training"), ("looped@1", "loop", "prediction")}
    assert "drawing" not in data  # (the page's coordinates: HTML only)
    database = open_database(hostile.path, read_only=True)  # (the console's own, already open)
    try:
        drawing = lineage.lineage(for_page(Reader(database)), node="loop")["drawing"]
    finally:
        database.release()
    boxes = {box["id"]: box for box in drawing["boxes"]}
    assert boxes["loop"]["x"] < boxes["looped@1"]["x"]  # the training edge is kept, left to right
    assert [curve["back"] for curve in drawing["curves"]] == [False, True]
    assert data["nodes"][0]["kind"] == "output"
    svg = svg_of(hostile.html("/lineage?node=loop&direction=down"))
    assert labels(svg) == {"loop", "looped@1"}


def test_layout_breaks_longer_cycles_and_is_deterministic():
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("a", "d")]
    places, bends = graph.layout(["d", "c", "b", "a"], edges)
    assert [places[node][0] for node in "abcd"] == [0, 1, 2, 3]
    assert len(bends[("a", "d")]) == 2 and ("c", "a") not in bends  # the last edge of the cycle is a loop
    nodes = [{"id": name, "label": name * 30, "kind": "table", "href": None} for name in "abcd"]
    picture = graph.drawing(nodes, [{"source": s, "target": t, "kind": "training"} for s, t in edges])
    assert picture == graph.drawing(nodes, [{"source": s, "target": t, "kind": "training"} for s, t in edges])
    box = picture["boxes"][0]
    assert box["label"] == "a" * (graph.MAX_LABEL - 1) + "…" and box["title"].startswith("a" * 30)
    ET.fromstring(graph.svg(picture))


def test_control_characters_cannot_break_the_svg():
    nodes = [{"id": "t\x01<&>", "label": "t\x01<&>", "kind": "table", "href": "/tables/t%01"}]
    svg = ET.fromstring(graph.svg(graph.drawing(nodes, [])))
    assert labels(svg) == {"t\ufffd<&>"}


def test_a_dropped_view_stays_in_the_graph_without_a_link(hostile):
    data = hostile.json("/api/lineage?node=from_gone@1&direction=up")
    assert ids(data) == {"from_gone@1", "gone", HOSTILE}
    gone = next(node for node in data["nodes"] if node["id"] == "gone")
    assert (gone["kind"], gone["exists"], gone["href"]) == ("view", False, None)
    assert {(e["source"], e["target"], e["kind"], e["drawn"]) for e in data["edges"]} == {
        ("gone", "from_gone@1", "training", True), (HOSTILE, "from_gone@1", "training", False),
        (HOSTILE, "gone", "view", True)}  # the view's dependency, from the edge recorded through it
    svg = svg_of(hostile.html("/lineage?node=from_gone@1&direction=up"))
    assert "gone" in labels(svg) and links(svg) == {"/tables/" + quote(HOSTILE, safe=""), "/models/from_gone"}
