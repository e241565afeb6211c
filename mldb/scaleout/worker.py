"""The worker side of a scale-out job: one Ray actor runs DuckDB + mldb over one file at a time.

Each actor of the Ray Data pool owns an in-memory ``Database`` (its own DuckDB with every mldb
function registered, exactly as a local session has them) and runs the *same SQL fragment* the
driver would run locally, over ``__mldb_piece``: a temporary view over ``read_parquet`` of one file,
with every column cast to the whole glob's schema so that every piece yields the same Arrow schema.

Models travel as catalog rows, not as paths: the driver reads the ``mldb.models`` and
``mldb.model_versions`` rows (weights included) of the models the fragment calls and ships them as
Arrow IPC bytes; the worker inserts them into its own catalog, so ``registry.load_model`` and every
PREDICT function run unchanged there.

Results travel in-band. ``PieceWorker.__call__`` (given to ``Dataset.map_batches`` with
``batch_size=1``, so one call is one file) yields the fragment's Arrow batches with one extra column,
``__mldb_meta`` (NULL on data rows), and ends each piece with one *meta row* (every data column NULL,
``__mldb_meta`` the piece's JSON report: rows, the prediction tallies the worker's own statement kept
for the driver instead of logging them (``tracking.keep_reports``), pid). A retried piece recomputes its batches and its report together, so the driver never counts a
piece twice. In ``copy`` mode the worker's DuckDB writes the piece's rows to
``<staging>/data_<piece>.parquet`` (``empty_<piece>.parquet`` when it has none; through a temporary
name and ``os.replace``: a retry overwrites the same file) and yields only the meta row.

The piece view reads one file with the scan's options; for CSV those are the driver's complete,
non-sniffing ``read_csv`` options (the glob's dialect and ``columns = {...}``), as DuckDB sniffs a
glob across several files and a file alone could be typed differently.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

META = "__mldb_meta"  # the in-band report column (NULL on data rows)
PIECE_VIEW = "__mldb_piece"
CATALOG_TABLES = ("mldb.models", "mldb.model_versions")  # what a shipped model needs in the worker's catalog


@dataclass(frozen=True)
class Job:
    """Everything a worker needs, in plain types (pickled once, ``ray.put`` once per statement)."""

    fragment: str  # SQL over __mldb_piece (mldb SQL: PREDICT(m) is rewritten on the worker as locally)
    params: list | None
    mode: str  # 'rows' | 'copy'
    columns: list  # [(name, DuckDB type)] of the whole glob: each piece is cast to it
    catalog: dict = field(default_factory=dict)  # table -> Arrow IPC stream bytes of its shipped rows
    staging: str | None = None  # copy: the directory the workers write into
    batch_rows: int = 65_536
    versions: tuple = ()  # (mldb, duckdb) of the driver: a worker with others refuses to run
    function: str = "read_parquet"  # the scan's reader: read_parquet | read_csv
    options: tuple = ()  # "name = value" SQL given to the reader with each file (CSV: the glob's dialect, columns)
    threads: int = 1  # DuckDB threads on the worker (mldb_ray_cpus_per_worker)
    udfs: tuple = ()  # ((path, source text, names), ...): LOAD UDFS files the fragment calls (shipping.py)
    embed_models: tuple = ()  # ((name as written or None, tar bytes or None), ...): models EMBED loads


def versions() -> tuple:
    import duckdb

    import mldb

    return (getattr(mldb, "__version__", "?"), duckdb.__version__)


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def open_worker_database(job: Job):
    """An in-memory mldb ``Database`` whose catalog holds the shipped model rows, with the shipped
    UDFs registered and the embedding models loaded (once per actor: before the first piece)."""
    from mldb.database import Database
    from mldb.scaleout import shipping

    database = Database(":memory:")
    con = database.root.cursor()
    try:
        for table, data in job.catalog.items():
            con.register("__mldb_shipped", from_ipc(data))
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM __mldb_shipped")
            con.unregister("__mldb_shipped")
    finally:
        con.close()
    shipping.install(database, job.udfs, job.embed_models)
    return database


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def piece_view_sql(path: str, columns: list, function: str = "read_parquet", options: tuple = (),
                   present: set | None = None) -> str:
    """The temp view one piece is read through: one file, read with the scan's options (CSV: the
    glob's dialect and column types, fixed by the driver), cast to the glob's column types.

    ``present``: the (lower-cased) columns this Parquet file has. A glob column the file lacks is an
    ``error(...)`` that DuckDB evaluates only where a statement reads that column: as locally, where a
    glob whose files lack a column the statement does not read is fine, and one it reads fails with
    DuckDB's Invalid Input Error (a plain cast would fail every statement at bind time)."""
    casts = ", ".join(_piece_column(path, name, kind, present) for name, kind in columns)
    arguments = ", ".join([literal(path), *options])
    return f"CREATE OR REPLACE TEMP VIEW {PIECE_VIEW} AS SELECT {casts} FROM {function}({arguments})"


def _piece_column(path: str, name: str, kind: str, present: set | None) -> str:
    if present is None or name.lower() in present:
        return f"CAST({_identifier(name)} AS {kind}) AS {_identifier(name)}"
    message = f'Failed to read file "{path}": schema mismatch in glob: column "{name}" could not be found in it'
    return f"CAST(error({literal(message)}) AS {kind}) AS {_identifier(name)}"


def _parquet_columns(session, path: str, job: Job) -> set | None:
    """The lower-cased columns one Parquet file has when read with the scan's options (CSV: None,
    its ``columns = {...}`` option names them all)."""
    if job.function not in ("read_parquet", "parquet_scan"):
        return None
    arguments = ", ".join([literal(path), *job.options])
    rows = session.execute(f"DESCRIBE SELECT * FROM {job.function}({arguments})").fetchall()
    return {row[0].lower() for row in rows}


def run_piece(database, job: Job, piece: int, path: str) -> Iterator[pa.Table]:
    """The fragment over one file: data tables (rows mode), then the piece's meta row (with the
    piece's seconds, from its start to its report: the per-piece cost the benchmark extrapolates)."""
    started = time.perf_counter()
    session = database.session()
    try:
        present = _parquet_columns(session, path, job)
        session.execute(piece_view_sql(path, job.columns, job.function, job.options, present)).fetchall()
        if job.mode == "copy":
            rows, schema = _copy_piece(session, job, piece), pa.schema([])
        else:
            rows = 0
            reader = session.execute(job.fragment, job.params).arrow_reader(job.batch_rows)
            schema = reader.schema
            for batch in reader:
                rows += batch.num_rows
                yield _with_meta(pa.Table.from_batches([batch], schema), None)
        report = {"piece": piece, "path": path, "rows": rows, "pid": os.getpid(),
                  "seconds": round(time.perf_counter() - started, 6),
                  "predictions": _take_predictions(database), **where_it_ran()}
        yield meta_row(schema, report)
    finally:
        session.close()


def _copy_piece(session, job: Job, piece: int) -> int:
    """COPY the fragment's rows to the staging directory; a retry overwrites the same file name.

    A piece without rows is kept as ``empty_<piece>.parquet``: the driver drops it, unless no piece
    had rows (then one of them becomes ``data_00000.parquet``, so the directory still has the schema)."""
    temporary = os.path.join(job.staging, f".piece_{piece:05d}.{uuid.uuid4().hex}")
    result = session.execute(f"COPY ({job.fragment}) TO {literal(temporary)} (FORMAT parquet)", job.params)
    counted = result.fetchall()
    rows = counted[0][0] if counted and counted[0] else result.rowcount
    os.replace(temporary, os.path.join(job.staging, copy_file_name(piece, rows)))
    return rows


def copy_file_name(piece: int, rows: int) -> str:
    return f"data_{piece:05d}.parquet" if rows else f"empty_{piece:05d}.parquet"


def where_it_ran() -> dict:
    """The Ray node of this actor, the thread cap mldb's torch/FAISS calls get here (``MLDB_THREADS``,
    set per actor by ``PieceWorker``; None outside Ray) and torch's own thread count."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    cap = os.environ.get("MLDB_THREADS", "")
    torch = sys.modules.get("torch")  # loaded by a PREDICT of a torch model; never imported just for this
    return {"node": node, "mldb_threads": int(cap) if cap.isdigit() else None,
            "torch_threads": torch.get_num_threads() if torch is not None else None}


def _take_predictions(database) -> list[dict]:
    """The prediction tallies the worker's statements kept since the last piece (``tracking.keep_reports``:
    the driver merges them into its statement's, which writes the log row)."""
    from mldb.lifecycle import tracking

    return tracking.take_reports(database)


def _with_meta(table: pa.Table, report: str | None) -> pa.Table:
    return table.append_column(pa.field(META, pa.string()), pa.array([report] * table.num_rows, pa.string()))


def meta_row(schema: pa.Schema, report: dict) -> pa.Table:
    """One row with every data column NULL and the report as JSON in ``__mldb_meta``."""
    columns = {column.name: pa.nulls(1, column.type) for column in schema}
    columns[META] = pa.array([json.dumps(report, default=str)], pa.string())
    return pa.table(columns)


def _set_threads(database, threads: int) -> None:
    con = database.root.cursor()
    try:
        con.execute(f"SET threads = {int(threads)}")
    finally:
        con.close()


class PieceWorker:
    """The callable class given to ``Dataset.map_batches``: one actor, one worker database."""

    def __init__(self, job):
        import ray

        self.job = ray.get(job) if isinstance(job, ray.ObjectRef) else job
        # (this process is the actor's own: the cap mldb's torch/FAISS calls read, set here rather than as a
        # runtime_env, with which Ray could not hand the actor one of its already started worker processes)
        os.environ["MLDB_THREADS"] = str(self.job.threads)
        if self.job.versions and tuple(self.job.versions) != versions():
            from mldb import errors

            raise errors.OperationalError(f"this Ray worker runs mldb/duckdb {versions()}, the driver "
                                          f"{tuple(self.job.versions)}: install the same on every node",
                                          sqlstate="0A000")
        self.database = open_worker_database(self.job)
        _set_threads(self.database, self.job.threads)
        from mldb.lifecycle import tracking

        tracking.keep_reports(self.database)  # (the driver writes the job's prediction log rows)

    def __call__(self, pieces: pa.Table) -> Iterator[pa.Table]:
        for piece, path in zip(pieces.column("piece").to_pylist(), pieces.column("path").to_pylist()):
            yield from run_piece(self.database, self.job, piece, path)
