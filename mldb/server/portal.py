"""Prepared statements and portals: what Parse and Bind create, and how a result becomes rows.

A ``Prepared`` is a statement text with its ``$n`` parameters (types given by the
client or inferred on demand) and, once described, its result columns. A ``Portal``
is a prepared statement with bound values; running it keeps the mldb ``Result`` and
streams its rows as DataRow messages, in the formats the client asked for.
"""

from __future__ import annotations

import warnings

from mldb.server import describe, protocol, types
from mldb.server.columns import data_rows
from mldb.server.types import PgType, pg_type

_BATCH = 256  # rows fetched as Python tuples first: small results never pay for Arrow
_ARROW_BATCH = 16_384
_READ_ONLY = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "FROM", "SHOW", "DESCRIBE", "SUMMARIZE", "("})
_SELECT_TAGS = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "FROM", "(", "SUMMARIZE", "PIVOT", "UNPIVOT",
                          "CALL", "PRAGMA"})
_COUNTED = frozenset({"UPDATE", "DELETE", "MERGE", "COPY"})
_TAG_NOISE = frozenset({"OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE", "IF", "NOT", "EXISTS", "PERSISTENT"})
# DuckDB types to describe a parameter whose type the client gave
_DUCKDB_NAMES = {types.BOOL: "BOOLEAN", types.INT2: "SMALLINT", types.INT4: "INTEGER", types.INT8: "BIGINT",
                 types.FLOAT4: "FLOAT", types.FLOAT8: "DOUBLE", types.NUMERIC: "DOUBLE", types.DATE: "DATE",
                 types.TIMESTAMP: "TIMESTAMP", types.TIMESTAMPTZ: "TIMESTAMPTZ", types.BYTEA: "BLOB",
                 types.UUID: "UUID", types.INTERVAL: "INTERVAL", types.TIME: "TIME"}
_UNSET = object()
# DuckDB warns that Arrow from a DB-API result copies the rows; the copy is what we want here
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)


class Prepared:
    def __init__(self, sql: str, spans: list[describe.Span], given_oids: list[int]):
        self.sql = sql
        self.first_word = _first_word(sql)
        self.spans = spans
        self.param_count = len(given_oids)
        self.given_oids = given_oids
        self._oids: list[int] | None = None if 0 in given_oids else given_oids
        self._duckdb_types: list[str | None] = [_DUCKDB_NAMES.get(oid) for oid in given_oids]
        self._columns = _UNSET

    @classmethod
    def create(cls, sql: str, oids: list[int]) -> Prepared:
        spans = describe.scan_parameters(sql) if "$" in sql else []
        count = max(describe.parameter_count(spans), len(oids))
        return cls(sql, spans, (list(oids) + [0] * count)[:count])

    def param_oids(self, session) -> list[int]:
        """The parameter types: the client's, else inferred from the statement (text if unknown)."""
        if self._oids is None:
            inferred = describe.infer_types(session, self.sql, self.spans)
            for i, given in enumerate(self.given_oids):
                if not given and inferred[i]:
                    self._duckdb_types[i] = inferred[i]
            self._oids = [given or (pg_type(kind).oid if kind else types.TEXT)
                          for given, kind in zip(self.given_oids, inferred)]
        return self._oids

    def columns(self, session) -> list[tuple[str, str]] | None:
        """(name, DuckDB type) of the result columns without running the statement; None: no rows."""
        if self._columns is _UNSET:
            self.param_oids(session)
            self._columns = None
            if describe.returns_rows(self.first_word, self.sql):
                self._columns = describe.result_columns(session, self.sql, self.spans, self._duckdb_types)
                if self._columns is None and self.first_word in _READ_ONLY:
                    self._columns = self._run_for_columns(session)
                if self._columns is not None:
                    self._columns = catalog_typed(self.sql, self._columns)
        return self._columns

    def _run_for_columns(self, session) -> list[tuple[str, str]] | None:
        """mldb queries DuckDB cannot DESCRIBE (they need rewriting): run them with NULL parameters."""
        sql = describe.substitute(self.sql, self.spans, lambda n: "NULL")
        result = session.execute(sql)
        return [(column[0], str(column[1])) for column in result.description or []] or None

    @property
    def described_columns(self) -> list[tuple[str, str]] | None:
        """The columns a Describe already told the client (rows must then use those types)."""
        return None if self._columns is _UNSET else self._columns


class Portal:
    def __init__(self, prepared: Prepared, params: list | None, result_formats: list[int]):
        self.prepared, self.params, self.result_formats = prepared, params, result_formats
        self.result = None
        self.done = False  # every row sent (or no rows)
        self.suspended = False  # Execute stopped at its row limit with rows left
        self.tag: str | None = None
        self.sent = 0
        self._buffer: list[tuple] = []
        self._types: list[PgType] = []
        self._names: list[str] = []
        self._detached = False

    def finish(self, result, tag: str | None = None) -> None:
        """Keep a statement's result; column types follow an earlier Describe of the statement."""
        self.result, self.tag = result, tag
        if not _has_rows(result):
            self.done = True
            return
        self._names = [column[0] for column in result.description]
        described = self.prepared.described_columns
        if described and len(described) == len(self._names):
            self._types = [kind if isinstance(kind, PgType) else pg_type(kind) for _, kind in described]
        else:
            columns = [(column[0], str(column[1])) for column in result.description]
            self._types = [pg_type(kind) for _, kind in catalog_typed(self.prepared.sql, columns)]

    def fields(self) -> list[tuple]:
        return row_fields(list(zip(self._names, self._types)), self.result_formats)

    def rows(self, max_rows: int):
        """DataRow messages, at most ``max_rows`` (0: all); sets ``suspended`` when rows are left."""
        self.suspended = False
        if self.done:
            return
        encoders = [kind.binary if fmt else kind.text for kind, fmt in zip(self._types, self._formats())]
        count = 0
        while True:
            want = _BATCH if not max_rows else min(_BATCH, max_rows - count)
            if want == 0:
                self.suspended = self._peek()
                self.done = not self.suspended
                return
            batch = self._fetch(want)
            for row in batch:
                yield protocol.data_row([None if v is None else enc(v) for enc, v in zip(encoders, row)])
            count += len(batch)
            self.sent += len(batch)
            if len(batch) < want:
                self.done = True
                return
            if not max_rows and not self._detached and self._types:
                yield from self._arrow_rows()
                return

    def _arrow_rows(self):
        """The rest of a large result in Arrow batches, encoded column by column (``columns``)."""
        formats = self._formats()
        for batch in self.result.arrow_reader(_ARROW_BATCH):
            if batch.num_rows:
                yield data_rows(batch, self._types, formats)
            self.sent += batch.num_rows
        self.done = True

    def _formats(self) -> list[int]:
        count = len(self._types)
        if not self.result_formats:
            return [0] * count
        return self.result_formats * count if len(self.result_formats) == 1 else self.result_formats

    def _fetch(self, size: int) -> list[tuple]:
        if self._buffer:
            batch, self._buffer = self._buffer[:size], self._buffer[size:]
            return batch + (self.result.fetchmany(size - len(batch)) if len(batch) < size and not self._detached
                            else [])
        return [] if self._detached else self.result.fetchmany(size)

    def _peek(self) -> bool:
        if not self._buffer and not self._detached:
            self._buffer = self.result.fetchmany(1)
        return bool(self._buffer)

    def detach(self) -> None:
        """Read the remaining rows now: the session's cursor is about to run another statement."""
        if self.result is not None and not self.done and not self._detached:
            self._buffer += self.result.fetchall()
            self._detached = True

    def close(self) -> None:
        self.result, self._buffer, self.done = None, [], True


def catalog_typed(sql: str, columns: list[tuple]) -> list[tuple]:
    """(name, DuckDB type) pairs, with PostgreSQL's own types where a catalog column has one
    DuckDB lacks: ``pg_index.indoption`` is an int2vector (pg8000 reads only that as a list)."""
    if not any(name == "indoption" for name, _ in columns) or not describe.is_catalog_query(sql):
        return columns
    return [(name, types.INT2VECTOR_TYPE if name == "indoption" else kind) for name, kind in columns]


def row_fields(columns, formats: list[int]) -> list[tuple]:
    """RowDescription fields for (name, PgType or DuckDB type name) pairs."""
    out = []
    for i, (name, kind) in enumerate(columns):
        kind = kind if isinstance(kind, PgType) else pg_type(kind)
        fmt = (formats[0] if len(formats) == 1 else formats[i]) if formats else 0
        out.append((name, kind.oid, kind.size, kind.modifier, fmt))
    return out


def _has_rows(result) -> bool:
    if result is None or not result.has_rows:
        return False
    description = result.description
    if len(description) == 1 and (description[0][0], str(description[0][1])) in (("Success", "BOOLEAN"),
                                                                              ("Count", "BIGINT")):
        return result.status in _SELECT_TAGS or result.status in ("SHOW", "DESCRIBE", "EXPLAIN")
    return True


def command_tag(portal: Portal) -> str:
    """CommandComplete's tag: ``SELECT 3``, ``INSERT 0 2``, ``UPDATE 1``, ``CREATE TABLE``, ..."""
    if portal.tag:
        return portal.tag
    status = portal.result.status if portal.result is not None else portal.prepared.first_word
    if portal.sent or _has_rows(portal.result):
        if status in _SELECT_TAGS:
            return f"SELECT {portal.sent}"
        if status == "INSERT":
            return f"INSERT 0 {portal.sent}"
        return f"{status} {portal.sent}" if status in _COUNTED else status
    count = max(portal.result.rowcount, 0) if portal.result is not None else 0
    if status == "INSERT":
        return f"INSERT 0 {count}"
    if status in _COUNTED:
        return f"{status} {count}"
    if " " in status or status not in ("CREATE", "DROP", "ALTER", "START"):
        return status
    words = [word for word in portal.prepared.sql.upper().split()[:8] if word not in _TAG_NOISE]
    return " ".join(words[:2])


def _first_word(sql: str) -> str:
    text = sql.lstrip()
    if text.startswith("("):
        return "("
    words = text.split(None, 1)
    return words[0].upper().rstrip(";") if words else ""
