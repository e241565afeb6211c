"""Result: what ``Session.execute`` returns to every frontend, a stream of rows.

Rows stay inside DuckDB until a frontend asks for them: ``cursor`` is the DuckDB
connection positioned on the result, and every fetch (tuples, Arrow batches, polars,
pandas) pulls from DuckDB's streaming result, so memory is bounded by what the
client holds, not by the result's size. When the rows run out, or the result is
closed or replaced, the statement's ``Execution`` finishes (its prediction log row is
written then). Statements that return no rows have ``cursor = None`` and a ``rowcount``.

Cursors of one connection share its DuckDB connection, which holds one open result at
a time: before another statement runs there, a result a cursor still reads is
``spill``ed (its remaining rows computed into Arrow and served from a private
in-memory DuckDB), as sqlite3 keeps each cursor's rows readable.
"""

from __future__ import annotations

import warnings

import duckdb

from mldb import errors


class Result:
    def __init__(self, cursor, status: str, rowcount: int = -1, description=None, execution=None):
        self.cursor = cursor
        self.status = status  # the statement's kind, e.g. "SELECT", "INSERT", "CREATE MODEL"
        self.rowcount = rowcount
        self.description = description
        self.execution = execution  # the running statement, finished when the rows run out
        self.streaming = False  # True while the rows are read from the session's own connection

    @classmethod
    def from_duckdb(cls, con: duckdb.DuckDBPyConnection, status: str, execution=None) -> "Result":
        description = con.description
        rowcount = -1
        if status in _COUNTED and _is_count(description):
            rowcount = con.rowcount if con.rowcount is not None else -1
        result = cls(con, status, rowcount, description, execution)
        result.streaming = description is not None
        if description is None:
            result.finish()
        return result

    @classmethod
    def done(cls, status: str, rowcount: int = -1) -> "Result":
        return cls(None, status, rowcount, None)

    @property
    def has_rows(self) -> bool:
        return self.cursor is not None and self.description is not None

    # -- fetching -----------------------------------------------------------------------------
    def fetchone(self):
        row = self._fetch(lambda rows: rows.fetchone())
        if row is None:
            self.finish()
        return row

    def fetchmany(self, size: int):
        rows = self._fetch(lambda rows: rows.fetchmany(size))
        if len(rows) < size:
            self.finish()
        return rows

    def fetchall(self):
        return self._fetch_rest(lambda rows: rows.fetchall())

    def arrow(self):
        return self._fetch_rest(lambda rows: rows.to_arrow_table())

    def df(self):
        return self._fetch_rest(lambda rows: rows.df())

    def pl(self):
        import polars

        return polars.from_arrow(self.arrow())

    def fetchnumpy(self):
        return self._fetch_rest(lambda rows: rows.fetchnumpy())

    def arrow_reader(self, batch_size: int = 100_000):
        """The rows as a pyarrow RecordBatchReader; the statement finishes when it is read to the end."""
        import pyarrow as pa

        reader = self._fetch(lambda rows: rows.to_arrow_reader(batch_size))

        def batches():
            try:
                while True:
                    try:
                        batch = _guard(reader.read_next_batch)
                    except StopIteration:
                        break
                    yield batch
            except BaseException:
                self.finish(success=False)
                raise
            self.finish()

        return pa.RecordBatchReader.from_batches(reader.schema, batches())

    # -- the end of the statement -------------------------------------------------------------------
    def finish(self, success: bool = True) -> None:
        """The statement is done with: run its execution's callbacks (once)."""
        self.streaming = False
        execution, self.execution = self.execution, None
        if execution is not None:
            execution.finish(success)

    def close(self) -> None:
        self.finish()

    def drain(self) -> None:
        """Run the statement to its end, discarding the rows (batch by batch, in bounded memory)."""
        if self.streaming:
            for _ in self.arrow_reader():
                pass
        self.finish()

    def spill(self, holder: duckdb.DuckDBPyConnection) -> None:
        """Compute the remaining rows now and serve them from ``holder`` (the session's
        connection is about to run another statement, which would end this result)."""
        if not self.streaming:
            return
        table = self._fetch_rest(lambda rows: rows.to_arrow_table())
        if table is None:  # DuckDB already ended this result
            return
        held = holder.cursor()  # each held result on its own cursor: an earlier one may be unread
        held.register("held_result", table)
        held.execute("SELECT * FROM held_result")
        self.cursor = held

    def _rows(self) -> duckdb.DuckDBPyConnection:
        if self.cursor is None or self.description is None:
            raise errors.ProgrammingError(f"{self.status} returned no rows to fetch")
        return self.cursor

    def _fetch(self, fetch):
        rows = self._rows()
        try:
            return _guard(lambda: fetch(rows))
        except BaseException:
            self.finish(success=False)
            raise

    def _fetch_rest(self, fetch):
        rows = self._fetch(fetch)
        self.finish()
        return rows


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
