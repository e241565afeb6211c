"""Result: what ``Session.execute`` returns to every frontend.

Rows stay inside DuckDB until a frontend asks for them: ``cursor`` is the DuckDB
connection positioned on the result, so DB-API fetches return exactly what DuckDB
returns, and Arrow/polars/pandas come straight from DuckDB's result. Statements that
return no rows have ``cursor = None`` and a ``rowcount``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import duckdb

from mldb import errors


@dataclass
class Result:
    cursor: duckdb.DuckDBPyConnection | None
    status: str  # the statement's kind, e.g. "SELECT", "INSERT", "CREATE MODEL"
    rowcount: int = -1
    description: list[tuple] | None = None

    @classmethod
    def from_duckdb(cls, con: duckdb.DuckDBPyConnection, status: str) -> "Result":
        description = con.description
        if status in _COUNTED and _is_count(description):
            count = con.rowcount
            return cls(con, status, count if count is not None else -1, description)
        return cls(con, status, -1, description)

    @classmethod
    def done(cls, status: str, rowcount: int = -1) -> "Result":
        return cls(None, status, rowcount, None)

    @property
    def has_rows(self) -> bool:
        return self.cursor is not None and self.description is not None

    def _rows(self) -> duckdb.DuckDBPyConnection:
        if self.cursor is None or self.description is None:
            raise errors.ProgrammingError(f"{self.status} returned no rows to fetch")
        return self.cursor

    def fetchone(self):
        return _guard(lambda: self._rows().fetchone())

    def fetchmany(self, size: int):
        return _guard(lambda: self._rows().fetchmany(size))

    def fetchall(self):
        return _guard(lambda: self._rows().fetchall())

    def arrow(self):
        return _guard(lambda: self._rows().to_arrow_table())

    def arrow_reader(self, batch_size: int = 100_000):
        return _guard(lambda: self._rows().to_arrow_reader(batch_size))


    def pl(self):
        import polars

        return polars.from_arrow(self.arrow())

    def df(self):
        return _guard(lambda: self._rows().df())


_COUNTED = frozenset({"INSERT", "UPDATE", "DELETE", "COPY", "MERGE"})


def _is_count(description) -> bool:
    return bool(description) and len(description) == 1 and description[0][0] == "Count"


def _guard(fetch):
    try:
        with warnings.catch_warnings():
            # DuckDB warns that Arrow from a DB-API result copies; the rows are already computed.
            warnings.simplefilter("ignore", UserWarning)
            return fetch()
    except duckdb.Error as error:
        raise errors.translate(error) from None
