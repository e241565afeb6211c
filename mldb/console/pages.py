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
import importlib
import inspect
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


def page(path: str, template: str, query: tuple[str, ...] = (), html_only: tuple[str, ...] = ()):
    def mark(build):
        build.console_page = Page(path, template, build, query, html_only)
        return build
    return mark


@dataclasses.dataclass(frozen=True)
class Chart:
    path: str
    draw: Callable[..., str]  # (reader, **path parameters) -> an SVG document


def chart(path: str):
    """A chart served as ``image/svg+xml`` at ``path`` (under ``/charts/``), drawn by ``draw(reader, **params)``."""
    def mark(draw):
        draw.console_chart = Chart(path, draw)
        return draw
    return mark


def served(module_names) -> tuple[list[Page], list[Chart]]:
    """The pages and charts the named modules define (functions marked by ``@page`` / ``@chart``), in the
    order written."""
    pages, charts = {}, {}
    for name in module_names:
        for value in vars(importlib.import_module(name)).values():
            if inspect.isfunction(value):
                if isinstance(getattr(value, "console_page", None), Page):
                    pages[value] = value.console_page
                if isinstance(getattr(value, "console_chart", None), Chart):
                    charts[value] = value.console_chart
    return list(pages.values()), list(charts.values())
