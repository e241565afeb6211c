"""What mldb (DuckDB underneath) supports, for SQLAlchemy's compliance suite: every feature the
suite would test and mldb lacks is closed here with the reason."""

from sqlalchemy.testing import exclusions
from sqlalchemy.testing.requirements import SuiteRequirements


def _lacks(reason: str):
    """A closed requirement; ``reason`` is what pytest prints for each test it skips."""
    return exclusions.skip_if(lambda config: True, reason)


class Requirements(SuiteRequirements):
    @property
    def indexes_with_ascdesc(self):
        return _lacks("mldb's SQL frontend does not read ASC/DESC in CREATE INDEX (DuckDB ignores it)")

    @property
    def reflect_indexes_with_ascdesc(self):
        return _lacks("DuckDB indexes keep no ASC/DESC order")

    @property
    def reflect_indexes_with_ascdesc_as_expression(self):
        return _lacks("DuckDB indexes keep no ASC/DESC order")

    @property
    def identity_columns(self):
        return _lacks("DuckDB has no GENERATED ... AS IDENTITY columns (SERIAL and sequences work)")

    @property
    def identity_columns_standard(self):
        return _lacks("DuckDB has no GENERATED ... AS IDENTITY columns (SERIAL and sequences work)")

    @property
    def server_side_cursors(self):
        return _lacks("mldb serve has no DECLARE CURSOR (psycopg's named cursors); results stream anyway")
