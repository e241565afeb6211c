"""SQLAlchemy's dialect compliance suite for mldb, loaded with ``-p plugin`` (what SQLAlchemy's
README.dialects.rst puts in a conftest.py: register the dialect, load SQLAlchemy's pytest plugin).
It is a plugin, not a conftest.py, so the main ``pytest tests`` run never loads it."""

import pytest
from sqlalchemy.dialects import registry

registry.register("mldb", "mldb.sqla", "MldbDialect")
registry.register("mldb.mldb", "mldb.sqla", "MldbDialect")  # the suite names each URL backend+driver
pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: E402,F401,F403

from sqlalchemy.testing.provision import temp_table_keyword_args  # noqa: E402


@temp_table_keyword_args.for_db("mldb")
def _temp_table_keyword_args(cfg, eng):
    return {"prefixes": ["TEMPORARY"]}

# Through `mldb serve` the suite runs SQLAlchemy's PostgreSQL provisioning, which installs the
# citext and hstore extensions; mldb has neither (DuckDB's types only), so that step is skipped.
import sqlalchemy.dialects.postgresql.provision  # noqa: E402,F401 - registered first, replaced below
from sqlalchemy.testing.provision import post_configure_engine  # noqa: E402


@post_configure_engine.for_db("postgresql")
def _no_extensions(url, engine, follower_ident):
    pass
