"""The console's pages: each is a function of the catalog returning plain, JSON-ready data.

    @page("/models/{name}", "model.html")
    def model(reader, name: str) -> dict: ...

``mldb.console.app`` serves each page twice: at its path as HTML (the template gets the dict's
keys as variables) and at ``/api`` + its path as JSON (the same dict). Path parameters and query
parameters (``?model=churn``) arrive as keyword arguments (strings); a page raises ``NotFound``
for an unknown name and ``BadRequest`` for a malformed parameter.
"""

from __future__ import annotations

import dataclasses
from typing import Callable


class NotFound(Exception):
    """Unknown model, version, table, statement...: HTTP 404."""


class BadRequest(Exception):
    """A malformed parameter (a version that is not a number, a bad time): HTTP 400."""


@dataclasses.dataclass(frozen=True)
class Page:
    path: str
    template: str
    build: Callable[..., dict]
    query: tuple[str, ...]  # the query parameters the page takes
    html_only: tuple[str, ...]  # keys only the template needs (a drawing's coordinates): left out of the JSON


PAGES: list[Page] = []


def page(path: str, template: str, query: tuple[str, ...] = (), html_only: tuple[str, ...] = ()):
    def register(build):
        PAGES.append(Page(path, template, build, query, html_only))
        return build
    return register


@dataclasses.dataclass(frozen=True)
class Chart:
    path: str
    draw: Callable[..., str]  # (reader, **path parameters) -> an SVG document


CHARTS: list[Chart] = []


def chart(path: str):
    """A chart served as ``image/svg+xml`` at ``path`` (under ``/charts/``), drawn by ``draw(reader, **params)``."""
    def register(draw):
        CHARTS.append(Chart(path, draw))
        return draw
    return register
