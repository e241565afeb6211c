"""Reading an indexed table: its keys, the DuckDB ``hash`` of each vector, the vectors,
and bringing a FAISS state in line with the table (``sync``), for ``mldb.vectors.store``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from mldb import errors
from mldb.vectors import faiss as fx

if TYPE_CHECKING:
    from mldb.vectors.store import IndexInfo

_VECTOR_TYPE = re.compile(r"^(FLOAT|DOUBLE|REAL|DECIMAL\(\d+,\d+\)|INTEGER|BIGINT|SMALLINT|TINYINT)\[(\d*)\]$")
_INLINE_KEYS = 4096  # up to this many keys are read with a constant IN list (DuckDB filters in the scan)
# Key types: the index keeps keys as BIGINT (a UBIGINT above 2^63 - 1 could not be read back)
_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}


def one(runner, sql: str, params=None):
    """The first row of an internal query (read to the end: a result left open on the
    session's connection would be in the way of its next statement)."""
    rows = runner.sql(sql, params).fetchall()
    return rows[0] if rows else None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- the table -------------------------------------------------------------------------------------

def resolve_table(session, schema: str | None, table: str) -> tuple[str, str]:
    row = one(session,
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE lower(table_name) = lower(?) "
        "AND lower(schema_name) = lower(coalesce(?, current_schema())) AND database_name = current_database()",
        [table, schema])
    if row is None:
        where = f"{schema}.{table}" if schema else table
        raise errors.ProgrammingError(f"table {where} does not exist", sqlstate="42P01")
    return row


def column_types(session, schema: str, table: str) -> dict[str, str]:
    rows = session.sql("SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? "
                       "AND table_name = ? AND database_name = current_database()", [schema, table]).fetchall()
    return dict(rows)


def relation_columns(session, schema: str | None, name: str) -> dict[str, str]:
    """Column -> type of the table or view ``name`` as a query resolves it (a temporary one
    first); empty when there is none."""
    rows = session.sql(
        "SELECT database_name, column_name, data_type FROM duckdb_columns() WHERE lower(table_name) = lower(?) "
        "AND lower(schema_name) = lower(coalesce(?, current_schema())) "
        "AND database_name IN (current_database(), 'temp') "
        "ORDER BY database_name = 'temp' DESC, column_index", [name, schema]).fetchall()
    return {column: data_type for database, column, data_type in rows if database == rows[0][0]}


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
        raise errors.ProgrammingError(f"key column {chosen} of {table} is {types[chosen]}, not an integer type "
                                      "that fits BIGINT (a FAISS index keeps keys as BIGINT)", sqlstate="42804")
    return chosen, chosen == constrained


def _primary_key(session, schema: str, table: str) -> str | None:
    rows = session.sql("SELECT constraint_column_names FROM duckdb_constraints() WHERE schema_name = ? "
                       "AND table_name = ? AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
                       [schema, table]).fetchall()
    single = [columns[0] for (columns,) in rows if len(columns) == 1]
    return single[0] if single else None


# -- reading the table -------------------------------------------------------------------------

def read_rows(session, info: IndexInfo, keys: np.ndarray | None = None,
              float_array: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, hashes, vectors) of the table's rows with a non-NULL vector (only ``keys`` if given).

    ``float_array``: the column is FLOAT[n], read as it is (Arrow's fixed-size list, whose values
    become the (rows, n) float32 matrix without a copy); other types are cast to FLOAT[] first."""
    key, column = _quote(info.key), _quote(info.column)
    vector = column if float_array else f"try_cast({column} AS FLOAT[])"
    sql = (f"SELECT {key}::BIGINT AS k, hash({column}) AS h, {vector} AS v "
           f"FROM {info.qualified_table} WHERE {column} IS NOT NULL")
    params = None
    if keys is not None and len(keys) <= _INLINE_KEYS:  # a constant list: a filter inside the scan
        sql += f" AND {key} IN ({', '.join(str(int(k)) for k in keys) or 'NULL'})"
    elif keys is not None:
        sql += f" AND {key} IN (SELECT unnest(?::BIGINT[]))"
        params = [keys.tolist()]
    table = _arrow(session, sql, params)
    if not float_array and table["v"].combine_chunks().flatten().null_count:  # NULL, or beyond float32's range
        _check_float32_range(session, info)
    _check_keys_present(table["k"], info)
    vectors = (_fixed_matrix(table["v"], info) if pa.types.is_fixed_size_list(table["v"].type)
               else _matrix(table["v"].combine_chunks(), info))
    return table["k"].to_numpy(), table["h"].to_numpy().astype(np.uint64), vectors


def is_float_array(session, info: IndexInfo) -> bool:
    """Whether the indexed column is FLOAT[n] (read without a cast by ``read_rows``)."""
    declared = column_types(session, info.schema, info.table).get(info.column, "")
    return declared.upper().startswith("FLOAT[") and vector_length(declared) not in (None, 0)


_FLOAT32_MAX = "3.4028234663852886e38"


def _check_float32_range(session, info: IndexInfo) -> None:
    """A DOUBLE vector beyond float32's range cannot be indexed (FAISS keeps float32): say
    which row holds one, rather than DuckDB's failed cast in mldb's own SQL."""
    key, column = _quote(info.key), _quote(info.column)
    row = one(session, f"SELECT {key}, {column}::VARCHAR FROM {info.qualified_table} "
                       f"WHERE greatest(list_max({column}::DOUBLE[]), -list_min({column}::DOUBLE[])) > {_FLOAT32_MAX} "
                       f"LIMIT 1")
    if row is not None:
        raise errors.DataError(f"index {info.name}: column {info.column} of {info.table} holds a value beyond "
                               f"float32's range (magnitude above 3.4e38) in the row with {info.key} = {row[0]} "
                               f"({_shortened(row[1])}); a FAISS index keeps float32 vectors", sqlstate="22003")


def _shortened(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def vector_count(session, info: IndexInfo) -> tuple[int, int]:
    """(rows with a vector, their length): the declared length, else the longest list's."""
    column = _quote(info.column)
    longest = "0" if info.dim else f"max(len({column}))"
    count, dim = one(session, f"SELECT count(*), {longest} FROM {info.qualified_table} WHERE {column} IS NOT NULL")
    return int(count), int(info.dim or dim or 0)


def _check_keys_present(keys, info: IndexInfo) -> None:
    """A row with a vector needs a key: the index finds rows by it."""
    if keys.null_count:
        raise errors.IntegrityError(
            f"index {info.name} needs a value in key column {info.table}.{info.key} for every row with a "
            f"vector in {info.column}; {keys.null_count} row{'s' if keys.null_count > 1 else ''} would have NULL",
            sqlstate="23502")


def _arrow(runner, sql: str, params=None):
    """An internal read as Arrow, on the session's (or reader's) connection and transaction.
    (Through the relation API: DuckDB warns that ``execute()`` + Arrow copies the rows.)"""
    release = getattr(runner, "release_result", None)
    if release is not None:
        release()  # a result a cursor still reads is kept readable
    try:
        return runner.con.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as error:
        raise errors.translate(error) from None


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


def _fixed_matrix(column: pa.ChunkedArray, info: IndexInfo) -> np.ndarray:
    """A FLOAT[n] column as a (rows, n) float32 matrix: a view of Arrow's values (NULL elements
    become NaN, refused later as not finite); chunks are joined in one copy."""
    dim = column.type.list_size
    if info.dim and dim != info.dim:
        raise errors.DataError(f"index {info.name} holds {info.dim}-dimensional vectors; "
                               f"column {info.column} now has {dim}")
    parts = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks]
    flat = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return flat.reshape(-1, dim)


def read_hashes(session, info: IndexInfo, vectors_changed: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Keys (and ``hash(vector)`` unless ``vectors_changed`` is False) of the indexed rows."""
    key, column = _quote(info.key), _quote(info.column)
    hashed = f", hash({column}) AS h" if vectors_changed else ""
    table = _arrow(session, f"SELECT {key}::BIGINT AS k{hashed} FROM {info.qualified_table} "
                          f"WHERE {column} IS NOT NULL")
    _check_keys_present(table["k"], info)
    keys = table["k"].to_numpy()
    _check_unique(keys, info)
    return keys, (table["h"].to_numpy().astype(np.uint64) if vectors_changed else None)


def _check_unique(keys: np.ndarray, info: IndexInfo) -> None:
    if info.options.get("unique_key"):
        return  # a primary key or UNIQUE constraint: DuckDB already refuses duplicates
    if len(np.unique(keys)) != len(keys):
        raise errors.IntegrityError(f"index {info.name} needs unique values in {info.table}.{info.key}; "
                                    "this change would duplicate a key", sqlstate="23505")




def check_finite(vectors: np.ndarray, info: IndexInfo) -> None:
    """New rows for an index: FAISS ranks NaN and infinite values arbitrarily."""
    if not np.isfinite(vectors).all():
        raise errors.DataError(f"column {info.column} of {info.table} would hold NaN or infinite values; "
                               f"index {info.name} needs finite numbers", sqlstate="22023")


def build_state(session, info: IndexInfo) -> fx.IndexState:
    keys, hashes, vectors = read_rows(session, info, float_array=is_float_array(session, info))
    _check_unique(keys, info)
    if not np.isfinite(vectors).all():
        raise errors.DataError(f"column {info.column} of {info.table} holds NaN or infinite values; "
                               "a FAISS index needs finite numbers", sqlstate="22023")
    return fx.build(info.name, keys, hashes, vectors, info.options | {"metric": info.metric, "type": info.kind},
                    check=session.check_cancel)


def _vectors_of(session, info: IndexInfo, keys: np.ndarray) -> np.ndarray:
    """The table's vectors for ``keys``, in that order (zeros for keys no longer there)."""
    found, _, vectors = read_rows(session, info, float_array=is_float_array(session, info))
    out = np.zeros((len(keys), info.dim), dtype=np.float32)
    if len(found):
        order = np.argsort(found, kind="stable")
        at = np.minimum(np.searchsorted(found[order], keys), len(found) - 1)
        hit = found[order][at] == keys
        out[hit] = vectors[order[at[hit]]]
    return out


def sync(session, info: IndexInfo, state: fx.IndexState, vectors_changed: bool = True) -> tuple[fx.IndexState, bool]:
    """``state`` brought in line with the table as ``session`` sees it, and whether anything changed.

    Rows are matched by key and ``hash(vector)``; when the write cannot have changed the
    vector of an existing row (INSERT, DELETE, TRUNCATE, COPY), by key alone, which
    spares hashing every vector of a large table.
    """
    keys, hashes = read_hashes(session, info, vectors_changed)
    live = np.flatnonzero(state.alive)
    live_hashes = state.hashes[live] if vectors_changed else None
    gone = live[~_same(state.keys[live], live_hashes, keys, hashes)]
    new = ~_same(keys, hashes, state.keys[live], live_hashes)
    state = fx.remove(state, gone)
    if new.any():
        new_keys, new_hashes, vectors = read_rows(session, info, keys[new])
        check_finite(vectors, info)
        state = fx.add(state, new_keys, new_hashes, vectors)
    return state, bool(len(gone) or new.any())


def _same(keys: np.ndarray, hashes, other_keys: np.ndarray, other_hashes) -> np.ndarray:
    """Per row of (keys, hashes): does the other side hold the same key (with the same hash)?"""
    if len(other_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    order = np.argsort(other_keys, kind="stable")
    sorted_keys = other_keys[order]
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    same = sorted_keys[at] == keys
    return same if hashes is None else same & (other_hashes[order][at] == hashes)
