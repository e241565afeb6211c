"""Shared fixtures: real database files in a temporary directory; no network."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def db_path(tmp_path):
    """Path of a fresh database file on disk."""
    return str(tmp_path / "test.db")


@pytest.fixture
def tmp_db(db_path):
    """An mldb connection to a fresh database file, closed after the test."""
    import mldb

    connection = mldb.connect(db_path)
    yield connection
    if not connection.closed:
        connection.close()
