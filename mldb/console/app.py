"""The console's web application: every page at its path (HTML) and under ``/api`` (JSON), its
charts under ``/charts``, behind HTTP basic auth when a password is set. GET and HEAD only."""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import json
import math
import threading
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from mldb.console.pages import BadRequest, NotFound, Page, served
from mldb.console.reader import Reader, for_page
from mldb.server.cli import is_loopback

# the modules whose functions are pages and charts (marked by mldb.console.pages.page / chart)
PAGE_MODULES = ("mldb.console.models", "mldb.console.charts", "mldb.console.lineage", "mldb.console.tables",
                "mldb.console.predictions")

LOCAL_NAMES = ["localhost", "127.0.0.1", "[::1]"]  # the Host a console on a loopback address answers
_BUILDERS = 4
_BUILDING = threading.BoundedSemaphore(_BUILDERS)
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def create_app(database, secret=None, host: str = "127.0.0.1"):
    """The console over ``database`` (an ``mldb.database.Database``); ``secret`` (an
    ``mldb.server.auth.Secret``) turns on HTTP basic auth (any user name, that password). Listening
    on a loopback ``host``, it answers only requests addressed to this machine by name (Host:
    localhost, 127.0.0.1, [::1]): a web page elsewhere cannot read it by rebinding its own name
    to 127.0.0.1 (DNS rebinding), which matters most without a password."""
    pages, charts = served(PAGE_MODULES)
    reader = Reader(database)
    templates = _templates()
    routes = [Route("/", lambda request: RedirectResponse("/models"), methods=["GET", "HEAD"])]
    for page in pages:
        routes.append(Route(page.path, _html(page, reader, templates), methods=["GET", "HEAD"]))
        routes.append(Route("/api" + page.path, _json(page, reader), methods=["GET", "HEAD"]))
    for chart in charts:
        routes.append(Route(chart.path, _svg(chart, reader), methods=["GET", "HEAD"]))
    app = Starlette(routes=routes, exception_handlers={404: _not_found(templates), 405: _not_allowed})
    app.state.reader = reader
    guarded = _Guard(app, secret)
    return TrustedHostMiddleware(guarded, allowed_hosts=LOCAL_NAMES) if is_loopback(host) else guarded


def _templates() -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    environment.filters["when"] = _when
    environment.filters["number"] = _number
    return environment


def _html(page: Page, reader: Reader, templates: jinja2.Environment):
    def endpoint(request: Request) -> Response:
        try:
            data = _built(page.build, reader, **_arguments(page, request))
        except NotFound as error:
            return _page_not_found(templates, str(error))
        except BadRequest as error:
            return HTMLResponse(_error_page(templates, 400, str(error)), status_code=400, headers=_HEADERS)
        html = templates.get_template(page.template).render(**data, request_path=request.url.path)
        return HTMLResponse(html, headers=_HEADERS)
    return endpoint


def _json(page: Page, reader: Reader):
    def endpoint(request: Request) -> Response:
        try:
            data = _built(page.build, reader, **_arguments(page, request))
        except NotFound as error:
            return _JSON({"error": str(error)}, status_code=404, headers=_HEADERS)
        except BadRequest as error:
            return _JSON({"error": str(error)}, status_code=400, headers=_HEADERS)
        return _JSON({key: value for key, value in data.items() if key not in page.html_only}, headers=_HEADERS)
    return endpoint


def _svg(chart, reader: Reader):
    def endpoint(request: Request) -> Response:
        try:
            svg = _built(chart.draw, reader, **request.path_params)
        except NotFound as error:
            return Response(str(error), status_code=404, media_type="text/plain", headers=_HEADERS)
        except BadRequest as error:
            return Response(str(error), status_code=400, media_type="text/plain", headers=_HEADERS)
        return Response(svg, media_type="image/svg+xml", headers=_HEADERS)
    return endpoint


def _built(build, reader: Reader, *args, **kwargs):
    """A page's or chart's data, at most ``_BUILDERS`` at once: beside ``mldb serve`` a crowd of browser
    tabs shares the process (and Python's lock) with the clients' statements and must not starve them."""
    with _BUILDING:
        return build(for_page(reader), *args, **kwargs)


def _arguments(page: Page, request: Request) -> dict:
    arguments = dict(request.path_params)
    for name in page.query:
        value = request.query_params.get(name)
        if value not in (None, ""):
            arguments[name] = value
    return arguments


def _page_not_found(templates, message: str) -> Response:
    return HTMLResponse(_error_page(templates, 404, message), status_code=404, headers=_HEADERS)


def _error_page(templates, status: int, message: str) -> str:
    return templates.get_template("error.html").render(status=status, message=message, request_path="")


def _not_found(templates):
    async def handler(request: Request, exc) -> Response:
        if request.url.path == "/api" or request.url.path.startswith("/api/"):
            return _JSON({"error": f"no such page: {request.url.path}"}, status_code=404, headers=_HEADERS)
        return _page_not_found(templates, f"no such page: {request.url.path}")
    return handler


async def _not_allowed(request: Request, exc) -> Response:
    return Response("the console is read-only: GET and HEAD only", status_code=405, media_type="text/plain",
                    headers={**_HEADERS, "Allow": "GET, HEAD"})


class _JSON(JSONResponse):
    def render(self, content) -> bytes:
        return json.dumps(_finite(content), default=_jsonable, allow_nan=False, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8")


def _finite(value):
    """NaN and infinities as null (JSON has no such numbers; a DOUBLE in the catalog may hold them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _jsonable(value):
    """What json cannot write itself: times as ISO text, intervals as seconds, decimals as numbers."""
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _when(value) -> str:
    """A timestamp as the page shows it (UTC, to the second)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


class _Guard:
    """HTTP basic auth in front of the whole console when a password is set (plain ASGI middleware)."""

    def __init__(self, app, secret):
        self.app, self.secret = app, secret
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.secret is not None and not self._allowed(scope):
            response = Response("a password is required", status_code=401, media_type="text/plain",
                                headers={**_HEADERS, "WWW-Authenticate": 'Basic realm="mldb console", charset="UTF-8"'})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope) -> bool:
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, encoded = header.partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            _, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return self.secret.matches(password)
