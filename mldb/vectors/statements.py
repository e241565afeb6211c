"""Steps of the vector statements: CREATE INDEX ... USING FAISS, DROP INDEX, LOAD UDFS."""

from __future__ import annotations

from sqlglot import exp

from mldb import errors
from mldb.vectors import faiss as fx
from mldb.vectors import rows, store
from mldb.result import Result

_INTEGER_OPTIONS = ("m", "ef_construction", "ef_search", "nlist", "nprobe")


def create_index(session, node, params) -> Result:
    """Build the index from the table as the transaction sees it and store it with the
    transaction. While it is built, writes to the table wait for it (they look at the
    table's indexes, this one included, in ``maintenance``), and a write already under way
    cannot commit: the statement first rewrites the table's comment with its own value,
    a change of the table's catalog entry that makes DuckDB refuse to commit a concurrent
    change of the table (SQLSTATE 40001). Writes committed before that are caught up with
    when the index is published (``VectorState.committed``)."""
    name = node.this.name
    options = _options(node.args.get("options"))
    table = node.args["table"]
    vectors = store.vector_state(session)
    with session.transaction():
        if vectors.find(session, name) is not None or _duckdb_index_exists(session, name):
            if node.args.get("exists"):
                return Result.done("CREATE INDEX")
            raise errors.ProgrammingError(f"index {name} already exists", sqlstate="42P07")
        schema, table_name = rows.resolve_table(session, table.db or None, table.name)
        info = _describe(session, name, schema, table_name, node.args["column"].name, options)
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


def _options(node: exp.Tuple | None) -> dict:
    """``WITH (metric = 'cosine', type = 'hnsw', m = 32, ...)`` -> a checked dict with defaults."""
    options = dict(fx.DEFAULTS)
    for item in node.expressions if node is not None else []:
        if not isinstance(item, exp.EQ):
            raise errors.ProgrammingError(f"index options are name = value pairs, got {item.sql()}")
        key, value = item.this.name.lower(), item.expression
        if key not in options and key != "key":
            raise errors.ProgrammingError(f"unknown FAISS index option {key}; known: key, {', '.join(options)}")
        options[key] = _option_value(key, value)
    if options["metric"] not in fx.METRICS:
        raise errors.ProgrammingError(f"metric '{options['metric']}' is not supported by a FAISS index; "
                                      f"use one of: {', '.join(fx.METRICS)}", sqlstate="22023")
    if options["type"] not in fx.KINDS:
        raise errors.ProgrammingError(f"index type '{options['type']}' is not supported; "
                                      f"use one of: {', '.join(fx.KINDS)}", sqlstate="22023")
    return options


def _option_value(key: str, value: exp.Expression):
    text = value.name if isinstance(value, (exp.Literal, exp.Column, exp.Identifier)) else value.sql()
    if key in _INTEGER_OPTIONS:
        if not (isinstance(value, exp.Literal) and value.is_int and int(text) >= 0):
            raise errors.ProgrammingError(f"index option {key} must be a non-negative integer, got {value.sql()}",
                                          sqlstate="22023")
        return int(text)
    return text if key == "key" else text.lower()


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
            session.sql(f"DROP INDEX {'IF EXISTS ' if exists else ''}{node.this.sql(dialect='duckdb')}")
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
    specs = load_file(session.database.root, path)
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
        return params[placeholder.name]
    index = int(placeholder.name) - 1 if placeholder.name.isdigit() else 0
    values = list(params)
    if index >= len(values):
        raise errors.ProgrammingError("LOAD UDFS FROM ? needs a parameter: the file name")
    return values[index]
