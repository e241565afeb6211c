"""Result: what ``Session.execute`` returns to every frontend, a stream of rows.

Rows stay inside DuckDB until a frontend asks for them: ``cursor`` is the DuckDB
connection positioned on the result, and every fetch (tuples, Arrow batches, polars,
pandas) pulls from DuckDB's streaming result, so memory is bounded by what the
client holds, not by the result's size. When the rows run out, or the result is
closed or replaced, the statement's ``Execution`` finishes (its prediction log row is
written then). Statements that return no rows have ``cursor = None`` and a ``rowcount``.

A rewritten SELECT (``Result.stream``) runs as an Arrow stream (DuckDB's Arrow from a
DB-API result is a copy of every row, so the choice is made when it starts): Arrow
batches go to ``arrow_reader`` as they are computed, and tuples are read from each
batch through a private in-memory DuckDB, cast back to the statement's column types,
so they are the values DuckDB itself returns. The first batch is computed at once:
errors in it reach ``execute`` as they would from DuckDB.

Cursors of one connection share its DuckDB connection, which holds one open result at
a time: before another statement runs there, a result a cursor still reads is
``spill``ed (its remaining rows computed into Arrow and served from a private
in-memory DuckDB), as sqlite3 keeps each cursor's rows readable. A result read to its end
(or closed) lets go of that connection at once: read again, it answers as DuckDB does for a
spent result (``_SPENT``), never with the rows of a statement another cursor ran there since.
"""

from __future__ import annotations

import contextlib
import warnings

import duckdb

from mldb import errors

STREAM_BATCH = 64 * 1024  # rows per Arrow batch of a streamed statement
_STREAMED = frozenset({"SELECT", "WITH", "FROM", "VALUES"})
# types Arrow does not carry exactly (a BIT's bits, a TIMETZ's offset): such results are read as rows
_NOT_STREAMED = ("BIT", "TIME WITH TIME ZONE", "BIGNUM", "VARINT")


class Result:
    lock = contextlib.nullcontext()  # the session's lock once ``Session.execute`` returns it

    def __init__(self, cursor, status: str, rowcount: int = -1, description=None, execution=None):
        self.cursor = cursor
        self.status = status  # the statement's kind, e.g. "SELECT", "INSERT", "CREATE MODEL"
        self.rowcount = rowcount
        self.description = description
        self.execution = execution  # the running statement, finished when the rows run out
        self.streaming = False  # True while the rows are read from the session's own connection (``cursor``)
        self._stream: _ArrowStream | None = None  # a statement started as an Arrow stream
        self._reader = None  # DuckDB's reader handed out by arrow_reader(), while it is read
        self._spilled_batches: list = []  # what was left in it when another statement came
        self.scaleout = None  # a statement run on Ray: its job's Outcome (mldb.scaleout.executor), reports per piece

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
    def stream(cls, con: duckdb.DuckDBPyConnection, sql: str, params, status: str, execution,
               holder) -> "Result | None":
        """Start a read statement as an Arrow stream on ``con`` (``None``: not one to stream;
        run it as usual). ``holder()`` gives the private connection tuples are read through."""
        if status not in _STREAMED:
            return None
        con.complete()  # a half-read result of an earlier execute() (internal reads) would refuse the stream
        relation = con.sql(sql, params=params) if params is not None else con.sql(sql)  # binds: errors now
        if relation is None:
            return None
        types = [str(column[1]) for column in relation.description]
        if any(word in kind for kind in types for word in _NOT_STREAMED):
            return None
        timezone = None
        if any("WITH TIME ZONE" in kind for kind in types):
            timezone = con.execute("SELECT current_setting('TimeZone')").fetchall()[0][0]
        reader = relation.to_arrow_reader(STREAM_BATCH)
        result = cls(con, status, -1, relation.description, execution)
        names = [column[0] for column in relation.description]
        result._stream = _ArrowStream(reader, names, types, holder, timezone)
        result.streaming = True
        try:
            result._stream.prime()
        except BaseException:
            result._stream.close()
            raise
        return result

    @classmethod
    def from_arrow(cls, con, reader, types: list[str], description, execution, holder) -> "Result":
        """A SELECT's rows from an Arrow ``reader`` made elsewhere (a scale-out job's stream), read as
        a streamed statement's are; ``types`` are the DuckDB types its tuples are cast back to."""
        result = cls(con, "SELECT", -1, description, execution)
        result._stream = _ArrowStream(reader, list(reader.schema.names), types, holder, None)
        result.streaming = True
        return result

    @classmethod
    def done(cls, status: str, rowcount: int = -1) -> "Result":
        return cls(None, status, rowcount, None)

    @property
    def has_rows(self) -> bool:
        return self.cursor is not None and self.description is not None

    # -- fetching -----------------------------------------------------------------------------
    def fetchone(self):
        rows = self.fetchmany(1)
        return rows[0] if rows else None

    def fetchmany(self, size: int):
        if self._stream is not None:
            rows = self._streamed(lambda stream: stream.fetchmany(size))
        else:
            rows = self._fetch(lambda rows: rows.fetchmany(size), arrow=False)
        if len(rows) < size:
            self.finish()
        return rows

    def fetchall(self):
        if self._stream is not None:
            return self._streamed_rest(lambda stream: stream.fetchmany(None))
        return self._fetch_rest(lambda rows: rows.fetchall(), arrow=False)

    def arrow(self):
        if self._stream is not None:
            return self._streamed_rest(lambda stream: stream.table())
        return self._fetch_rest(lambda rows: rows.to_arrow_table())

    def df(self):
        if self._stream is not None:
            return self._streamed_rest(lambda stream: stream.as_duckdb(stream.table()).df())
        return self._fetch_rest(lambda rows: rows.df())

    def pl(self):
        import polars

        return polars.from_arrow(intervals_as_durations(self.arrow()))

    def fetchnumpy(self):
        if self._stream is not None:
            return self._streamed_rest(lambda stream: stream.as_duckdb(stream.table()).fetchnumpy())
        return self._fetch_rest(lambda rows: rows.fetchnumpy())

    def arrow_reader(self, batch_size: int = 100_000):
        """The rows as a pyarrow RecordBatchReader; the statement finishes when it is read to the
        end, or when the reader is closed before (as a cursor closed early)."""
        import pyarrow as pa

        if self._stream is not None:
            stream = self._stream
            schema = stream.schema

            def read():
                return stream.batches(batch_size)
        else:
            with self.lock:  # (spill() reads the rest of it if another statement comes first)
                reader = self._reader = self._fetch(lambda rows: rows.to_arrow_reader(batch_size))
            schema = reader.schema

            def read():
                while self._reader is not None:
                    try:
                        yield _guard(reader.read_next_batch)
                    except StopIteration:
                        break
                yield from self._spilled_batches

        def batches():
            try:
                yield from _locked_iter(read(), self.lock)
            except GeneratorExit:  # the reader was closed or dropped half way
                self.finish()
                raise
            except duckdb.Error as error:
                self.finish(success=False)
                raise errors.translate(error) from None
            except BaseException:
                self.finish(success=False)
                raise
            self.finish()

        return pa.RecordBatchReader.from_batches(schema, batches())

    # -- the end of the statement -------------------------------------------------------------------
    def finish(self, success: bool = True) -> None:
        """The statement is done with: run its execution's callbacks (once)."""
        with self.lock:
            self._leave_connection()
            reader, self._reader = self._reader, None
            if reader is not None:
                reader.close()  # DuckDB's result ends now, not when the reader is collected
            if self._stream is not None:
                self._stream.close_source()  # stop DuckDB first: the log counts what it predicted
            execution, self.execution = self.execution, None
            if execution is not None:
                execution.finish(success)

    def close(self) -> None:
        with self.lock:
            if self._stream is not None:
                self._stream.close()
            self.finish()

    def drain(self) -> None:
        """Run the statement to its end, discarding the rows (batch by batch, in bounded memory)."""
        if self._stream is not None:
            self._streamed_rest(lambda stream: stream.drain())
        elif self.streaming:
            self._fetch_rest(_drain_rows)
        self.finish()

    def spill(self, holder: duckdb.DuckDBPyConnection) -> None:
        """Compute the remaining rows now and serve them from ``holder`` (the session's
        connection is about to run another statement, which would end this result)."""
        if not self.streaming:
            return
        if self._stream is not None:
            self._streamed(lambda stream: stream.spill())
            self.finish()
            return
        if self._reader is not None:  # an arrow_reader() is half read: it goes on from memory
            reader, self._reader = self._reader, None
            self._spilled_batches = self._reading(lambda: list(reader))
            reader.close()  # (an exhausted reader still holds DuckDB's result until it is closed)
            self._leave_connection()  # (the reader took every row: tuples read after it get none)
            return
        table = self._fetch_rest(lambda rows: rows.to_arrow_table())
        if table is None:  # DuckDB already ended this result
            return
        held = holder.cursor()  # each held result on its own cursor: an earlier one may be unread
        held.register("held_result", table)
        held.execute("SELECT * FROM held_result")
        self.cursor = held

    def _leave_connection(self) -> None:
        """The rows no longer come from the session's connection (read to the end, closed, or spilled):
        another cursor's statement runs there next, and this result must not read its rows."""
        if self.streaming and self._stream is None:
            self.cursor = _SPENT
        self.streaming = False

    def _rows(self) -> duckdb.DuckDBPyConnection:
        if self.cursor is None or self.description is None:
            raise errors.ProgrammingError(f"{self.status} returned no rows to fetch")
        return self.cursor

    def _fetch(self, fetch, arrow: bool = True):
        # (the cursor read under the lock: a spill moves it)
        return self._reading(lambda: fetch(self._rows()), arrow)

    def _fetch_rest(self, fetch, arrow: bool = True):
        rows = self._fetch(fetch, arrow)
        self.finish()
        return rows

    def _streamed(self, fetch):
        return self._reading(lambda: fetch(self._stream))

    def _streamed_rest(self, fetch):
        rows = self._streamed(fetch)
        self.finish()
        return rows

    def _reading(self, read, arrow: bool = True):
        """``read()`` with DuckDB's errors translated; a failed read ends the statement."""
        with self.lock:
            try:
                return _guard(read, arrow)
            except BaseException:
                self.finish(success=False)
                raise


class _ArrowStream:
    """A statement's Arrow batches as DuckDB computes them, read as batches or as tuples.

    Tuples come from a private in-memory DuckDB reading one batch at a time, each column
    cast back to the statement's type (Arrow carries a UUID as text, a HUGEINT as a
    DECIMAL), so they are the values a DuckDB cursor returns.
    """

    def __init__(self, reader, names: list[str], types: list[str], holder, timezone: str | None):
        self.source = reader  # DuckDB's reader, None once read out, closed or spilled
        self.schema = reader.schema
        self.names = names
        self.types = types
        self.queued: list = []  # batches read from the source and not yet used
        self.batch = None  # the batch tuples are read from now, and how many rows of it are used
        self.used = 0
        self._holder = holder
        self._timezone = timezone
        self._cursor = None  # the private cursor the current batch's tuples come from
        self._open = False  # whether ``_cursor`` holds an unread result

    def prime(self) -> None:
        """Compute the first batch now (an error in it belongs to ``execute``)."""
        batch = self._read()
        if batch is not None:
            self.queued.append(batch)

    def _read(self):
        if self.source is None:
            return None
        try:
            return self.source.read_next_batch()
        except StopIteration:
            self.close_source()
            return None
        except OSError as error:  # (pyarrow.ArrowException is one) DuckDB's error, through the Arrow stream
            self.close_source()
            raise errors.duckdb_error(str(error)) from None

    def _next(self):
        return self.queued.pop(0) if self.queued else self._read()

    # -- Arrow ---------------------------------------------------------------------------------
    def batches(self, size: int):
        """The remaining rows as batches of at most ``size`` rows."""
        size = max(int(size), 1)
        rest = self._take_current()
        while True:
            batch = rest if rest is not None else self._next()
            rest = None
            if batch is None:
                return
            for start in range(0, batch.num_rows, size):
                yield batch.slice(start, size)

    def table(self):
        import pyarrow as pa

        return pa.Table.from_batches(list(self.batches(STREAM_BATCH)), schema=self.schema)

    def _take_current(self):
        """What tuples have not used of the current batch (reading switches to Arrow)."""
        batch, self.batch = self.batch, None
        self._open = False
        return batch.slice(self.used) if batch is not None and self.used < batch.num_rows else None

    # -- tuples --------------------------------------------------------------------------------
    def fetchmany(self, size: int | None) -> list:
        """Up to ``size`` rows (all that are left with ``None``) as DuckDB's tuples."""
        rows: list = []
        while size is None or len(rows) < size:
            if not self._open:
                batch = self._next()
                if batch is None:
                    break
                self._start(batch)
            want = None if size is None else size - len(rows)
            got = self._cursor.fetchall() if want is None else self._cursor.fetchmany(want)
            rows.extend(got)
            self.used += len(got)
            if want is None or len(got) < want:
                self._open = False
                self.batch = None
        return rows

    def _start(self, batch) -> None:
        cursor = self.as_duckdb(batch)
        self.batch, self.used, self._open = batch, 0, True
        self._cursor = cursor

    def as_duckdb(self, data) -> duckdb.DuckDBPyConnection:
        """A private cursor positioned on ``data`` (a batch or table of the stream) with the statement's types."""
        if self._cursor is None:
            self._cursor = self._holder().cursor()
            if self._timezone is not None:
                self._cursor.execute("SET TimeZone = ?", [self._timezone])
        names = [f"c{i}" for i in range(len(self.types))]
        self._cursor.register("mldb_stream", data.rename_columns(names))
        columns = ", ".join(f"CAST({name} AS {kind}) AS {_quoted(shown)}"
                            for name, kind, shown in zip(names, self.types, self.names))
        return self._cursor.execute(f"SELECT {columns} FROM mldb_stream")

    # -- the end -------------------------------------------------------------------------------
    def drain(self) -> None:
        self._take_current()
        while self._next() is not None:
            self.queued.clear()

    def spill(self) -> None:
        """Read the rest of the statement now (the session's connection is needed for another)."""
        while (batch := self._read()) is not None:
            self.queued.append(batch)

    def close_source(self) -> None:
        source, self.source = self.source, None
        if source is not None:
            source.close()

    def close(self) -> None:
        self.close_source()
        self.queued.clear()
        self.batch, self._open = None, False
        cursor, self._cursor = self._cursor, None
        if cursor is not None:
            try:
                cursor.close()
            except duckdb.Error:
                pass


class _Spent:
    """What DuckDB answers for a result read to its end: no rows, ``None`` for a table, frame or reader."""

    def fetchmany(self, size: int = 1) -> list:
        return []

    def fetchall(self) -> list:
        return []

    def to_arrow_table(self):
        return None

    def to_arrow_reader(self, batch_size: int = 1_000_000):
        return None

    def df(self):
        return None

    def fetchnumpy(self):
        return None


_SPENT = _Spent()


def _locked_iter(iterator, lock):
    """``iterator``'s items, each computed holding ``lock`` (a reader is read between other statements)."""
    while True:
        with lock:
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _drain_rows(rows) -> None:
    while len(rows.fetchmany(STREAM_BATCH)) == STREAM_BATCH:
        pass


_COUNTED = frozenset({"INSERT", "UPDATE", "DELETE", "COPY", "MERGE"})


def _is_count(description) -> bool:
    return bool(description) and len(description) == 1 and description[0][0] == "Count"


def _guard(fetch, arrow: bool = True):
    """``fetch()`` with DuckDB's errors translated (tuples: without the warnings filter, a few
    us of a cheap statement's fetch; only Arrow output warns)."""
    try:
        if not arrow:
            return fetch()
        with warnings.catch_warnings():
            # DuckDB warns that Arrow from a DB-API result copies; the rows are already computed.
            warnings.simplefilter("ignore", UserWarning)
            return fetch()
    except duckdb.Error as error:
        raise errors.translate(error) from None


def intervals_as_durations(table):
    """polars cannot import Arrow's month_day_nano intervals (DuckDB's INTERVAL, e.g. SHOW MONITORS' ``every``):
    ``pl()`` and the magic give durations instead, a month counted as 30 days as DuckDB's own ``.df()`` does."""
    import pyarrow

    for index, field in enumerate(table.schema):
        if field.type == pyarrow.month_day_nano_interval():
            chunks = [_as_duration(chunk) for chunk in table.column(index).chunks]
            column = pyarrow.chunked_array(chunks, type=pyarrow.duration("us"))
            table = table.set_column(index, pyarrow.field(field.name, pyarrow.duration("us")), column)
    return table


def _as_duration(chunk):
    """One interval array as microseconds (its 16-byte values read as months, days, nanoseconds)."""
    import numpy as np
    import pyarrow

    layout = np.dtype([("months", "<i4"), ("days", "<i4"), ("nanos", "<i8")])
    values = np.frombuffer(chunk.buffers()[1], dtype=layout)[chunk.offset:chunk.offset + len(chunk)]
    days = values["months"].astype(np.int64) * 30 + values["days"]
    micros = days * 86_400_000_000 + values["nanos"] // 1000
    return pyarrow.array(micros, type=pyarrow.duration("us"), mask=chunk.is_null().to_numpy(zero_copy_only=False))
