"""Steps of the vector statements: CREATE INDEX ... USING FAISS, DROP INDEX, LOAD UDFS."""

from __future__ import annotations

import math

from sqlglot import exp

from mldb import errors
from mldb.frontend.expressions import value_of
from mldb.vectors import faiss as fx
from mldb.vectors import rows, store
from mldb.result import Result


def create_index(session, node, params) -> Result:
    """Build the index from the table as the transaction sees it and store it with the
    transaction. While it is built, writes to the table wait for it (they look at the
    table's indexes, this one included, in ``maintenance``), and a write already under way
    cannot commit: the statement first rewrites the table's comment with its own value,
    a change of the table's catalog entry that makes DuckDB refuse to commit a concurrent
    change of the table (SQLSTATE 40001). Writes committed before that are caught up with
    when the index is published (``VectorState.committed``)."""
    name = node.this.name
    if not name.strip():
        raise errors.ProgrammingError("an index needs a name; found an empty one", sqlstate="42602")
    options = _options(node.args.get("options"), name)
    max_memory = options.pop("max_memory", None)  # (for this statement only: not stored)
    table = node.args["table"]
    vectors = store.vector_state(session)
    with session.transaction():
        if vectors.find(session, name) is not None or _duckdb_index_exists(session, name):
            if node.args.get("exists"):
                return Result.done("CREATE INDEX")
            raise errors.ProgrammingError(f"index {name} already exists", sqlstate="42P07")
        schema, table_name = rows.resolve_table(session, table.db or None, table.name)
        info = _describe(session, name, schema, table_name, node.args["column"].name, options)
        _check_build(session, info, max_memory)
        entry = vectors.create(session, info)
        try:
            _hold_table(session, schema, table_name)
            state = rows.build_state(session, info)
            info.dim = state.dim
            vectors.store_created(session, entry, state)
        except BaseException:
            vectors.abandon(session, entry)
            raise
    return Result.done("CREATE INDEX")


def _hold_table(session, schema: str, table: str) -> None:
    """Rewrite the table's comment with its own value (see ``create_index``)."""
    row = store.one(session, "SELECT comment FROM duckdb_tables() WHERE schema_name = ? AND table_name = ? "
                      "AND database_name = current_database()", [schema, table])
    comment = row[0] if row else None
    value = "NULL" if comment is None else "'" + comment.replace("'", "''") + "'"
    session.sql(f"COMMENT ON TABLE {_quoted(schema)}.{_quoted(table)} IS {value}")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _describe(session, name: str, schema: str, table: str, column: str, options: dict) -> store.IndexInfo:
    types = rows.column_types(session, schema, table)
    found = next((c for c in types if c.lower() == column.lower()), None)
    if found is None:
        raise errors.ProgrammingError(f"column {column} does not exist in {table}", sqlstate="42703")
    dim = rows.vector_length(types[found])
    if dim is None:
        raise errors.ProgrammingError(f"column {found} of {table} is {types[found]}, not a vector; "
                                      "a FAISS index needs FLOAT[n] (e.g. the result of EMBED)", sqlstate="42804")
    key, options["unique_key"] = rows.key_column(session, schema, table, types, options.pop("key", None))
    metric, kind = options.pop("metric"), options.pop("type")
    return store.IndexInfo(name, schema, table, found, key, metric, kind, options, dim, store.new_build_id())


def _options(node: exp.Tuple | None, name: str) -> dict:
    """``WITH (metric = 'cosine', type = 'hnsw', m = 32, ...)`` -> the options checked by
    ``fx.OPTIONS``, with defaults. An option of another index type (``m`` with ``type = 'flat'``)
    is refused rather than ignored. HNSW's ``ef_construction`` (the candidates each vector's
    ``m`` links are chosen from) may not be below ``m`` (fewer candidates than links leaves
    the graph poorly connected); left out, it is ``max(64, m)``."""
    where = f"index {name}"
    given = {}
    for item in node.expressions if node is not None else []:
        if not isinstance(item, exp.EQ):
            raise errors.ProgrammingError(f"{where}: options are name = value pairs, got {item.sql()}",
                                          sqlstate="42601")
        key = item.this.name.lower()
        if key in given:
            raise errors.ProgrammingError(f"{where}: option {key} given twice", sqlstate="42601")
        given[key] = value_of(item.expression, f"{where}: option values")
    options = fx.OPTIONS.complete(given, where)
    kind, takes = options["type"], fx.APPLIES[options["type"]]
    foreign = sorted(set(given) & set(fx.TUNING) - set(takes))
    if foreign:
        takes_text = ", ".join(takes) if takes else "no tuning options"
        raise errors.ProgrammingError(f"{where}: type '{kind}' takes {takes_text}; remove {', '.join(foreign)}",
                                      sqlstate="22023")
    if "ef_construction" not in given:
        options["ef_construction"] = max(options["ef_construction"], options["m"])
    elif options["ef_construction"] < options["m"]:
        raise errors.ProgrammingError(
            f"{where}: ef_construction ({options['ef_construction']}) must be at least m ({options['m']}): each "
            "vector's m links are chosen among ef_construction candidates", sqlstate="22023")
    return options


def _check_build(session, info: store.IndexInfo, max_memory: int | None) -> None:
    """Refuse, before anything is read, a build FAISS cannot do or that would not fit:
    vectors of no known or zero length, an IVF index with more lists than rows to train
    them on, or an estimated size (``fx.build_bytes``) above ``max_memory``."""
    count, dim = rows.vector_count(session, info)
    where = f"index {info.name} on {info.table}.{info.column}"
    if dim == 0:
        found = "vectors of length 0" if count else "no vectors yet, so their length is unknown"
        raise errors.ProgrammingError(f"{where}: the column holds {found}; declare it FLOAT[n] or create the "
                                      "index once it holds vectors", sqlstate="22023")
    nlist = info.options.get("nlist", 0)
    if info.kind == "ivf" and nlist > count:
        instead = f"use nlist <= {count}, or" if count else "create the index once the table has rows, or use"
        raise errors.ProgrammingError(
            f"{where}: nlist = {nlist} needs at least {nlist} rows to train its lists; the table has {count} "
            f"(FAISS advises 39 rows a list); {instead} nlist = 0 to choose it from the rows", sqlstate="22023")
    need = fx.build_bytes(count, dim, info.kind, info.options.get("m", 0))
    limit = max_memory or fx.memory_limit()
    if need > limit:
        default = "" if max_memory else " (half the machine's memory)"
        raise errors.OperationalError(
            f"{where}: building it would take about {_size(need)} ({count} rows of {dim} dimensions"
            f"{', HNSW graph with m = ' + str(info.options['m']) if info.kind == 'hnsw' else ''}); the limit is "
            f"{_size(limit)}{default}; raise it with WITH (max_memory = '{_rounded_up(need)}')",
            sqlstate="54000")


def _rounded_up(count: int) -> str:
    return f"{math.ceil(count / 10**9)}GB" if count >= 10**9 else f"{math.ceil(count / 10**6)}MB"


def _size(count: int) -> str:
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _duckdb_index_exists(session, name: str) -> bool:
    row = store.one(session, "SELECT count(*) FROM duckdb_indexes() WHERE lower(index_name) = lower(?)", [name])
    return bool(row[0])


def drop_index(session, node, params) -> Result:
    name = node.this.name
    exists = bool(node.args.get("exists"))
    vectors = store.vector_state(session)
    with session.transaction():
        entry = vectors.find(session, name)
        if entry is None:  # not ours: DuckDB drops its own index or says it does not exist
            behavior = f" {node.args['behavior']}" if node.args.get("behavior") else ""
            session.sql(f"DROP INDEX {'IF EXISTS ' if exists else ''}{node.this.sql(dialect='duckdb')}{behavior}",
                        client=True)  # (the client's own statement: checked as its)
            return Result.done("DROP INDEX")
        if not vectors.lock_for_write(session, entry):  # waits for a transaction changing it
            if exists:
                return Result.done("DROP INDEX")
            raise errors.ProgrammingError(f"index {name} does not exist", sqlstate="42704")
        vectors.drop(session, entry)
    return Result.done("DROP INDEX")


def load_udfs(session, node, params) -> Result:
    """``LOAD UDFS FROM 'file.py'``: one row per function registered (function, parameters, returns)."""
    import duckdb
    import pyarrow as pa

    from mldb.udf import load_file

    if not getattr(session, "load_udfs_allowed", True):  # e.g. a wire client: code would run on the server
        raise errors.ProgrammingError("LOAD UDFS is not allowed on this connection; load files when the "
                                      "server starts (mldb serve --udfs FILE)", sqlstate="42501")
    path = node.this
    path = _parameter(path, params) if isinstance(path, exp.Placeholder) else path.name
    specs = load_file(session.database.root, path, session.database.udf_sources)
    table = pa.table({"function": [s.name for s in specs],
                      "parameters": [", ".join(s.params) if s.params is not None else "ANY..." for s in specs],
                      "returns": [s.returns for s in specs]})
    holder = duckdb.connect()
    holder.register("loaded", table)
    holder.execute("SELECT * FROM loaded")
    return Result.from_duckdb(holder, "LOAD UDFS")


def _parameter(placeholder: exp.Placeholder, params):
    if params is None:
        raise errors.ProgrammingError("LOAD UDFS FROM ? needs a parameter: the file name")
    if isinstance(params, dict):
        if placeholder.name not in params:
            raise errors.ProgrammingError(f"LOAD UDFS FROM ${placeholder.name} needs a parameter "
                                          f"'{placeholder.name}': the file name")
        return params[placeholder.name]
    index = int(placeholder.name) - 1 if placeholder.name.isdigit() else 0
    values = list(params)
    if index >= len(values):
        raise errors.ProgrammingError("LOAD UDFS FROM ? needs a parameter: the file name")
    return values[index]
