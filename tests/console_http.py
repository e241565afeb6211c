"""A real console (uvicorn on a free loopback port, in this process) for the tests, and a client for it.

    with console(path) as site:               # the file opened read-only, as `mldb ui` does
        status, headers, body = site.get("/models")
        data = site.json("/api/models")        # asserts 200
"""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.error
import urllib.request

from mldb.console.cli import start_beside
from mldb.database import open_database
from mldb.server.auth import Secret


class Site:
    def __init__(self, port: int, password: str | None):
        self.base = f"http://127.0.0.1:{port}"
        self.password = password

    def get(self, path: str, password: str | None = None, method: str = "GET") -> tuple[int, dict, str]:
        """(status, headers with lower-case names, body as text) of one request; ``password`` overrides the site's."""
        request = urllib.request.Request(self.base + path, method=method)
        password = self.password if password is None else password
        if password is not None:
            token = base64.b64encode(f"user:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, _headers(response), response.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            return error.code, _headers(error), error.read().decode("utf-8")

    def json(self, path: str):
        status, headers, body = self.get(path)
        assert status == 200, (path, status, body[:500])
        assert headers["content-type"].startswith("application/json"), headers
        return json.loads(body)

    def html(self, path: str) -> str:
        status, headers, body = self.get(path)
        assert status == 200, (path, status, body[:500])
        assert headers["content-type"].startswith("text/html"), headers
        return body


def _headers(response) -> dict:
    return {name.lower(): value for name, value in response.headers.items()}


@contextlib.contextmanager
def console(path: str, password: str | None = None, database=None):
    """The console over ``path`` opened read-only (or over an already open ``database``)."""
    own = database is None
    database = open_database(path, read_only=True) if own else database
    server = start_beside(database, "127.0.0.1", 0, Secret(password) if password else None)
    try:
        yield Site(server.port, password)
    finally:
        server.should_exit = True
        server.thread.join(timeout=30)
        if own:
            database.release()
