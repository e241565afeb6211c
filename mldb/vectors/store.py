"""FAISS indexes in the catalog: ``mldb.indexes`` (what each index covers) and
``mldb.index_data`` (the serialized index, a BLOB inside the database file).

Keeping the bytes in the database file means an index is written in the same DuckDB
transaction as the change it reflects: a crash or a failed statement leaves the last
committed index next to the last committed table, never a half-written side file.

Every change bumps ``mldb.indexes.version``; the process cache (``mldb.vectors.faiss``)
is keyed by (build_id, version). After a write the serialized index is rewritten when
it is small (``PERSIST_BYTES``); a larger one is marked ``stale`` instead and the next
process that opens it loads the last bytes and catches up with the table (``sync``),
comparing each row's key and ``hash(vector)`` with what the index holds.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
import warnings
import weakref
from dataclasses import dataclass

import numpy as np

from mldb import errors
from mldb.vectors import faiss as fx

PERSIST_BYTES = 32 * 1024 * 1024
_VECTOR_TYPE = re.compile(r"^(FLOAT|DOUBLE|REAL|DECIMAL\(\d+,\d+\)|INTEGER|BIGINT|SMALLINT|TINYINT)\[(\d*)\]$")
_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"}
_COLUMNS = ("name, schema_name, table_name, column_name, key_column, metric, kind, options, dimension, "
            "build_id, version, stale")


class VectorState:
    """Per database: the FAISS indexes loaded (by build_id, at a catalog version), a
    generation bumped by every index change (sessions re-read ``mldb.indexes`` when it
    moved), each session's last read of it, and whether the database has no index at all."""

    def __init__(self, database=None):
        self.lock = threading.Lock()
        self.indexes: dict[str, tuple[int, fx.IndexState]] = {}
        self.generation = 0
        self.unindexed = False
        self.read: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # Session -> (generation, rows)

    def cached(self, build_id: str, version: int) -> fx.IndexState | None:
        with self.lock:
            found = self.indexes.get(build_id)
        return found[1] if found and found[0] == version else None

    def remember(self, build_id: str, version: int, state: fx.IndexState) -> None:
        with self.lock:
            self.indexes[build_id] = (version, state)

    def forget(self, build_id: str) -> None:
        with self.lock:
            self.indexes.pop(build_id, None)

    def changed(self) -> None:
        with self.lock:
            self.generation += 1

    def close(self) -> None:
        with self.lock:
            self.indexes.clear()


def vector_state(session) -> VectorState:
    return session.database.state("vectors")


@dataclass
class IndexInfo:
    name: str
    schema: str
    table: str
    column: str
    key: str
    metric: str
    kind: str
    options: dict
    dim: int
    build_id: str
    version: int
    stale: bool

    @property
    def qualified_table(self) -> str:
        return f"{_quote(self.schema)}.{_quote(self.table)}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _info(row) -> IndexInfo:
    name, schema, table, column, key, metric, kind, options, dim, build_id, version, stale = row
    return IndexInfo(name, schema, table, column, key, metric, kind, json.loads(options), dim, build_id,
                     version, stale)


# -- lookups ---------------------------------------------------------------------------------

def find(session, name: str) -> IndexInfo | None:
    row = session.sql(f"SELECT {_COLUMNS} FROM mldb.indexes WHERE lower(name) = lower(?)", [name]).fetchone()
    return _info(row) if row else None


def for_table(session, schema: str | None, table: str) -> list[IndexInfo]:
    """Indexes on ``[schema.]table`` (unqualified: the current schema)."""
    rows = _catalog_rows(session)
    table = table.lower()
    return [_info(row[:-1]) for row in rows
            if row[2].lower() == table and row[1].lower() == (schema or row[-1]).lower()]


def _catalog_rows(session) -> list[tuple]:
    """The rows of mldb.indexes as this session last read them, re-read after any index
    change in this process (``_changed``). A version read here that another session has
    since moved on is harmless: the state for it is loaded from this session's own view."""
    vectors = vector_state(session)
    generation, rows = vectors.read.get(session, (-1, None))
    if generation != vectors.generation or rows is None:
        rows = session.sql(f"SELECT {_COLUMNS}, current_schema() FROM mldb.indexes").fetchall()
        vectors.read[session] = (vectors.generation, rows)
    return rows


def transaction_ended(session) -> None:
    """A COMMIT or ROLLBACK may publish or undo index changes: sessions read the catalog again."""
    vector_state(session).changed()


def indexed_tables(session) -> set[str]:
    """Lower-case names of tables with a FAISS index (the write hook asks on every write).

    A database where no index was found or created in this process answers without a
    query: only this process can create one while it holds the file open for writing.
    """
    vectors = vector_state(session)
    if vectors.unindexed:
        return set()
    tables = {row[0] for row in session.sql("SELECT DISTINCT lower(table_name) FROM mldb.indexes").fetchall()}
    if not tables and not session.database.read_only:
        vectors.unindexed = True
    return tables


def expect_index(session) -> None:
    """Called before an index is created: the write hook must look at the catalog again."""
    vector_state(session).unindexed = False


def resolve_table(session, schema: str | None, table: str) -> tuple[str, str]:
    row = session.sql(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE lower(table_name) = lower(?) "
        "AND lower(schema_name) = lower(coalesce(?, current_schema())) AND database_name = current_database()",
        [table, schema]).fetchone()
    if row is None:
        where = f"{schema}.{table}" if schema else table
        raise errors.ProgrammingError(f"table {where} does not exist", sqlstate="42P01")
    return row


def column_types(session, schema: str, table: str) -> dict[str, str]:
    rows = session.sql("SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? "
                       "AND table_name = ? AND database_name = current_database()", [schema, table]).fetchall()
    return dict(rows)


def vector_length(data_type: str) -> int | None:
    """3 for FLOAT[3]; 0 for a list such as FLOAT[]; None when the type is not a vector."""
    match = _VECTOR_TYPE.match(data_type.upper())
    if match is None:
        return None
    return int(match.group(2) or 0)


def key_column(session, schema: str, table: str, types: dict[str, str], requested: str | None) -> tuple[str, bool]:
    """The integer column that identifies rows (``key`` option, a one-column primary key or
    ``id``) and whether a constraint keeps it unique."""
    by_lower = {name.lower(): name for name in types}
    constrained = _primary_key(session, schema, table)
    if requested is not None:
        chosen = by_lower.get(requested.lower())
        if chosen is None:
            raise errors.ProgrammingError(f"key column {requested} is not a column of {table}", sqlstate="42703")
    else:
        chosen = constrained or by_lower.get("id")
        if chosen is None:
            raise errors.ProgrammingError(
                f"a FAISS index needs an integer column that identifies the rows of {table} "
                f"(a primary key or a column named id); name one with WITH (key = 'column')")
    if types[chosen].upper() not in _INTEGER_TYPES:
        raise errors.ProgrammingError(f"key column {chosen} of {table} is {types[chosen]}, not an integer")
    return chosen, chosen == constrained


def _primary_key(session, schema: str, table: str) -> str | None:
    rows = session.sql("SELECT constraint_column_names FROM duckdb_constraints() WHERE schema_name = ? "
                       "AND table_name = ? AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
                       [schema, table]).fetchall()
    single = [columns[0] for (columns,) in rows if len(columns) == 1]
    return single[0] if single else None


# -- reading the table -------------------------------------------------------------------------

def read_rows(session, info: IndexInfo, keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, hashes, vectors) of the table's rows with a non-NULL vector (only ``keys`` if given)."""
    key, column = _quote(info.key), _quote(info.column)
    sql = (f"SELECT {key}::BIGINT AS k, hash({column}) AS h, {column}::FLOAT[] AS v "
           f"FROM {info.qualified_table} WHERE {column} IS NOT NULL")
    params = None
    if keys is not None:
        sql += f" AND {key} IN (SELECT unnest(?::BIGINT[]))"
        params = [keys.tolist()]
    table = _arrow(session, sql, params)
    return (table["k"].to_numpy(), table["h"].to_numpy().astype(np.uint64),
            _matrix(table["v"].combine_chunks(), info))


def _arrow(session, sql: str, params=None):
    with warnings.catch_warnings():  # duckdb 2 warns that execute()+Arrow copies; these are internal reads
        warnings.simplefilter("ignore", UserWarning)
        return session.sql(sql, params).to_arrow_table()


def _matrix(lists, info: IndexInfo) -> np.ndarray:
    lengths = np.unique(lists.value_lengths().to_numpy(zero_copy_only=False)) if len(lists) else np.array([])
    if len(lengths) > 1:
        raise errors.DataError(f"column {info.column} of {info.table} holds vectors of mixed length "
                               f"({', '.join(map(str, lengths[:5]))}); a FAISS index needs one length")
    if len(lengths) and info.dim and lengths[0] != info.dim:
        raise errors.DataError(f"index {info.name} holds {info.dim}-dimensional vectors; "
                               f"column {info.column} now has {lengths[0]}")
    dim = int(lengths[0]) if len(lengths) else info.dim
    flat = lists.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(len(lists), dim)


def read_hashes(session, info: IndexInfo, vectors_changed: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Keys (and ``hash(vector)`` unless ``vectors_changed`` is False) of the indexed rows."""
    key, column = _quote(info.key), _quote(info.column)
    hashed = f", hash({column}) AS h" if vectors_changed else ""
    table = _arrow(session, f"SELECT {key}::BIGINT AS k{hashed} FROM {info.qualified_table} "
                          f"WHERE {column} IS NOT NULL")
    keys = table["k"].to_numpy()
    _check_unique(keys, info)
    return keys, (table["h"].to_numpy().astype(np.uint64) if vectors_changed else None)


def _check_unique(keys: np.ndarray, info: IndexInfo) -> None:
    if info.options.get("unique_key"):
        return  # a primary key or UNIQUE constraint: DuckDB already refuses duplicates
    if len(np.unique(keys)) != len(keys):
        raise errors.IntegrityError(f"index {info.name} needs unique values in {info.table}.{info.key}; "
                                    "this change would duplicate a key", sqlstate="23505")


def build_state(session, info: IndexInfo) -> fx.IndexState:
    keys, hashes, vectors = read_rows(session, info)
    _check_unique(keys, info)
    if np.isnan(vectors).any():
        raise errors.DataError(f"column {info.column} of {info.table} holds NaN values")
    return fx.build(info.name, keys, hashes, vectors, info.options | {"metric": info.metric, "type": info.kind},
                    check=session.check_cancel)


# -- the current state of an index -------------------------------------------------------------

def catalog_ready(session) -> bool:
    """False on a read-only database that mldb never opened for writing (no mldb.indexes)."""
    if not session.database.read_only:
        return True
    row = session.sql("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'mldb' "
                      "AND table_name = 'indexes'").fetchone()
    return bool(row[0])


def current_state(session, info: IndexInfo) -> fx.IndexState:
    """The index as of the catalog row ``info`` (from the process cache, the BLOB, or the table)."""
    vectors = vector_state(session)
    state = vectors.cached(info.build_id, info.version)
    if state is None:
        state = _load(session, info)
        vectors.remember(info.build_id, info.version, state)
    return state


def _load(session, info: IndexInfo) -> fx.IndexState:
    row = session.sql("SELECT data FROM mldb.index_data WHERE build_id = ?", [info.build_id]).fetchone()
    if row is None or row[0] is None:
        return build_state(session, info)
    state = fx.deserialize(info.name, row[0], info.metric, info.kind, info.options,
                           lambda keys: _vectors_of(session, info, keys))
    if info.stale:
        sync(session, info, state)
    return state


def _vectors_of(session, info: IndexInfo, keys: np.ndarray) -> np.ndarray:
    """The table's vectors for ``keys``, in that order (zeros for keys no longer there)."""
    found, _, vectors = read_rows(session, info)
    out = np.zeros((len(keys), info.dim), dtype=np.float32)
    if len(found):
        order = np.argsort(found, kind="stable")
        at = np.minimum(np.searchsorted(found[order], keys), len(found) - 1)
        hit = found[order][at] == keys
        out[hit] = vectors[order[at[hit]]]
    return out


def sync(session, info: IndexInfo, state: fx.IndexState, vectors_changed: bool = True) -> bool:
    """Bring ``state`` in line with the table; True when anything changed.

    Rows are matched by key and ``hash(vector)``; when the write cannot have changed the
    vector of an existing row (INSERT, DELETE, TRUNCATE, COPY), by key alone, which
    spares hashing every vector of a large table.
    """
    keys, hashes = read_hashes(session, info, vectors_changed)
    live = np.flatnonzero(state.alive)
    live_hashes = state.hashes[live] if vectors_changed else None
    gone = live[~_same(state.keys[live], live_hashes, keys, hashes)]
    new = ~_same(keys, hashes, state.keys[live], live_hashes)
    fx.remove(state, gone)
    if new.any():
        new_keys, new_hashes, vectors = read_rows(session, info, keys[new])
        if np.isnan(vectors).any():
            raise errors.DataError(f"column {info.column} of {info.table} would hold NaN values")
        fx.add(state, new_keys, new_hashes, vectors)
    return bool(len(gone) or new.any())


def _same(keys: np.ndarray, hashes, other_keys: np.ndarray, other_hashes) -> np.ndarray:
    """Per row of (keys, hashes): does the other side hold the same key (with the same hash)?"""
    if len(other_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    order = np.argsort(other_keys, kind="stable")
    sorted_keys = other_keys[order]
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    same = sorted_keys[at] == keys
    return same if hashes is None else same & (other_hashes[order][at] == hashes)


# -- writing the catalog -------------------------------------------------------------------------

def insert(session, info: IndexInfo, state: fx.IndexState) -> None:
    vector_state(session).changed()
    session.sql("INSERT INTO mldb.indexes (name, schema_name, table_name, column_name, key_column, metric, "
                "kind, options, dimension, row_count, build_id, version, stale) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, false)",
                [info.name, info.schema, info.table, info.column, info.key, info.metric, info.kind,
                 json.dumps(info.options), state.dim, state.live_count, info.build_id, info.version])
    session.sql("INSERT INTO mldb.index_data (build_id, data) VALUES (?, ?)", [info.build_id, fx.serialize(state)])
    vector_state(session).remember(info.build_id, info.version, state)
    vector_state(session).changed()


def save(session, info: IndexInfo, state: fx.IndexState) -> None:
    """Record a changed index: a new version, and its bytes when small enough (else ``stale``)."""
    vector_state(session).changed()
    if state.needs_compaction:
        state = build_state(session, info)
    version = info.version + 1
    stale = _estimated_bytes(state) > PERSIST_BYTES
    if not stale:
        session.sql("UPDATE mldb.index_data SET data = ? WHERE build_id = ?", [fx.serialize(state), info.build_id])
    session.sql("UPDATE mldb.indexes SET version = ?, stale = ?, row_count = ?, updated_at = now() "
                "WHERE build_id = ?", [version, stale, state.live_count, info.build_id])
    vector_state(session).remember(info.build_id, version, state)
    vector_state(session).changed()


def _estimated_bytes(state: fx.IndexState) -> int:
    links = 8 * int(state.options.get("m", 32)) if state.kind == "hnsw" else 0
    return len(state.keys) * (4 * state.dim + links + 17)


def delete(session, info: IndexInfo) -> None:
    vector_state(session).changed()
    session.sql("DELETE FROM mldb.index_data WHERE build_id = ?", [info.build_id])
    session.sql("DELETE FROM mldb.indexes WHERE build_id = ?", [info.build_id])
    vector_state(session).forget(info.build_id)
    vector_state(session).changed()


def new_build_id() -> str:
    return uuid.uuid4().hex
