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


@pytest.fixture(scope="module")
def runtime(_ray_at_exit):
    """The Ray runtime of this pytest process, connected by mldb as a session's first job would
    (a private local cluster). Every Ray module runs on one xdist worker (``xdist_group("ray")``,
    ``--dist loadgroup``), so they share it rather than starting one each; stopped at the end."""
    import ray

    from mldb.scaleout import executor

    if not ray.is_initialized():
        executor.connect("ray")
    return ray


@pytest.fixture(scope="session")
def _ray_at_exit():
    yield
    import sys

    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()
