"""The console in a real browser: headless Chromium (tests/browser.py) loads every page of a real
console over the tests' database, the way a person would see it.

Each page's screenshot is saved as a test artifact ($MLDB_ARTIFACTS, or tests/artifacts/, under
console/) and must not be blank; the DOM Chromium built must hold the page's heading and its facts
(names from the catalog); the lineage graph must name its nodes; and every chart a page shows
(an ``<img>`` of an SVG) must load and draw something.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from pathlib import Path

import pytest

from mldb.console.app import PAGE_MODULES
from mldb.console.pages import served
import browser
from console_fixtures import console_db, path, site, sql  # noqa: F401 - fixtures
from console_http import console

ARTIFACTS = Path(os.environ.get("MLDB_ARTIFACTS") or Path(__file__).parent / "artifacts") / "console"
MIN_COLOURS = 24  # a blank page, or one flat colour with a little text, has fewer
MAX_FLAT_SHARE = 0.985  # no single colour covers (nearly) the whole screenshot
MAX_FLAT_CHART = 0.998  # a chart alone (thin lines on white, in an 800 x 600 window) has less ink

# page -> what its reader must see on it (names from tests/console_db.py's catalog)
PAGES = {
    "/models": ["churn", "spend_model", "plan_model"],
    "/models/churn": ["churn", "churn_drift", "churn_quality"],
    "/models/spend_model": ["spend_model", "linear"],
    "/lineage": ["customers", "churn", "scored"],
    "/lineage?node=scored": ["scored", "churn"],
    "/tables": ["customers", "scored"],
    "/tables/customers": ["customers", "churn"],
    "/predictions": ["churn", "plan_model"],
    "/predictions/{fingerprint}": ["{fingerprint}", "plan_model"],
}


@pytest.fixture(scope="module")
def catalog(path, sql):
    """The tests' database, and the fingerprint of the statement that ran plan_model (from its log)."""
    fingerprint = sql("SELECT query_fingerprint FROM mldb.prediction_log WHERE model = 'plan_model' "
                      "ORDER BY started_at DESC LIMIT 1")[0][0]
    return path, fingerprint


def artifact(name: str) -> Path:
    return ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip("/")) or "index")


def assert_not_blank(png: Path, max_flat: float = MAX_FLAT_SHARE) -> None:
    colours, flat = browser.distinct_colours(png), browser.commonest_share(png)
    assert colours > MIN_COLOURS, f"{png}: {colours} colours"
    assert flat < max_flat, f"{png}: {flat:.2%} of it one colour"


def heading(html: str) -> str:
    found = re.search(r"<h1[^>]*>(.*?)</h1>", html, flags=re.S)
    assert found, html[:500]
    return browser.visible_text(found.group(1))


@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_in_a_browser(site, catalog, page):
    fingerprint = catalog[1]
    path = page.format(fingerprint=urllib.parse.quote(fingerprint))
    served = site.html(path)  # 200, text/html
    png = artifact(path + ".png")
    dom = browser.render(site.base + path, png)
    seen = browser.visible_text(dom)
    assert heading(served) in seen
    for fact in PAGES[page]:
        assert fact.format(fingerprint=fingerprint) in seen, (path, fact, seen[:2000])
    assert "no such page" not in seen
    assert_not_blank(png)


def svg_text(site, dom: str) -> str:
    """The text of the SVG graphs a page holds: inline ``<svg>`` in its DOM, and each SVG ``<img>`` as
    Chromium parsed it (an SVG document's DOM)."""
    texts = [browser.visible_text(svg) for svg in re.findall(r"<svg.*?</svg>", dom, flags=re.S)]
    for src in browser.image_sources(dom):
        if src.startswith("/charts/"):
            texts.append(browser.visible_text(browser.dump_dom(site.base + src)))
    return " ".join(texts)


def test_lineage_graph_names_its_nodes(site):
    dom = browser.dump_dom(site.base + "/lineage")
    graph = svg_text(site, dom)
    for node in ("customers", "recent_customers", "churn@1", "churn@2", "spend_model@1", "plan_model@2", "scored"):
        assert node in graph, (node, graph[:2000])


def test_lineage_of_one_node_keeps_to_its_neighbourhood(site):
    graph = svg_text(site, browser.dump_dom(site.base + "/lineage?node=scored&direction=up"))
    for node in ("scored", "churn@1", "spend_model@1", "customers"):
        assert node in graph, (node, graph[:2000])
    assert "plan_model" not in graph  # plan_model wrote no table scored reads


def test_charts_load_and_draw(site, catalog):
    charts = []
    for page in ("/models/churn", "/models/plan_model", "/lineage"):
        charts += [src for src in browser.image_sources(browser.dump_dom(site.base + page)) if src not in charts]
    assert len(charts) >= 3, charts
    for src in charts:
        status, headers, body = site.get(src)
        assert status == 200 and headers["content-type"].startswith("image/svg+xml"), (src, status, body[:300])
        png = browser.screenshot(site.base + src, artifact("chart" + src + ".png"), width=800, height=600)
        assert_not_blank(png, MAX_FLAT_CHART)


def test_readme_screenshots(site):
    """The README's two pictures, from this run (``python -m tests.browser screenshots docs/img`` refreshes them)."""
    for name, (page, width, height) in browser.README_SHOTS.items():
        png = browser.screenshot(site.base + page, ARTIFACTS / name, width, height)
        assert browser.size(png) == (width, height)
        assert_not_blank(png)


def test_password_in_the_url(catalog):
    """Behind a password the browser sees the console only with the credentials (user:password@ in the URL)."""
    with console(catalog[0], password="hunter2 & co") as locked:
        host = locked.base.removeprefix("http://")
        allowed = browser.dump_dom(f"http://user:{urllib.parse.quote('hunter2 & co', safe='')}@{host}/models")
        refused = browser.dump_dom(f"http://user:wrong@{host}/models")
        anonymous = browser.dump_dom(f"http://{host}/models")
    assert "spend_model" in browser.visible_text(allowed)
    for dom in (refused, anonymous):
        assert "spend_model" not in dom


def test_docs_name_every_page_and_chart():
    """docs/console.md documents every page the console serves (with its /api twin and query
    parameters) and every chart; the README's console section names every page."""
    pages, charts = served(PAGE_MODULES)
    assert len(pages) >= 7 and len(charts) >= 6
    root = Path(__file__).resolve().parents[1]
    docs = (root / "docs" / "console.md").read_text()
    readme = (root / "README.md").read_text().split("<!-- section: console -->")[1].split("<!-- /section: console -->")[0]
    for page in pages:
        path = re.sub(r"\{(\w+):path\}", r"{\1}", page.path)
        assert f"`{path}`" in docs and f"`/api{path}`" in docs, path
        assert path in readme, path
        for parameter in page.query:
            assert f"`{parameter}`" in docs, (path, parameter)
    for chart in charts:
        path = re.sub(r"\{(\w+):path\}", r"{\1}", chart.path)
        assert f"`{path}`" in docs, path
