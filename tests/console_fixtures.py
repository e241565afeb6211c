"""Fixtures the console's test modules share (``from tests.console_fixtures import path, site, sql``):
the test database (tests/console_db.py), built once per test process, served by a real console per module,
and plain DuckDB on the same file, read-only, to check the pages against."""

from __future__ import annotations

import duckdb
import pytest

from console_db import build
from console_http import console


@pytest.fixture(scope="session")
def console_db(tmp_path_factory) -> str:
    return build(str(tmp_path_factory.mktemp("console") / "console.db"))


@pytest.fixture(scope="module")
def path(console_db) -> str:
    return console_db


@pytest.fixture(scope="module")
def site(path):
    with console(path) as served:
        yield served


@pytest.fixture(scope="module")
def sql(path, site):
    con = duckdb.connect(path, read_only=True)
    yield lambda text, params=None: con.execute(text, params or []).fetchall()
    con.close()
