"""The driver side of a scale-out job: ship the models, run the pieces on a Ray actor pool, collect.

Given a SQL fragment over ``__mldb_piece``, its parameters, the input files and the models the
fragment calls, ``execute`` builds a ``worker.Job`` on the driver (the models' catalog rows read
through the session, so an uncommitted TRAIN ships what that session would use; the glob's column
types from DuckDB's own DESCRIBE), puts it in the object store once and runs

    ray.data.from_items(pieces).map_batches(PieceWorker, batch_size=1, batch_format="pyarrow",
                                            compute=ActorPoolStrategy(size=workers))

so each file is one call of one actor running DuckDB + mldb. Two modes:

- ``rows``: the workers' Arrow batches stream back (``Outcome.tables``, a generator); the in-band meta
  rows are split off into ``Outcome.reports``.
- ``copy``: the workers write ``data_<piece>.parquet`` into a hidden staging directory next to the
  target; when every piece has reported, the driver commits with one ``os.rename`` of the directory.
  Any failure removes the staging directory, so a failed job leaves no output behind. A piece with
  no rows writes no file; when no piece has rows, the directory holds one empty ``data_00000.parquet``
  with the schema, so ``read_parquet('dir/*.parquet')`` reads it as DuckDB reads an empty COPY.

The job's sizing comes from the session's settings (``request_settings``): actors, CPUs per actor (=
DuckDB threads there), rows per Arrow batch, retries, and whether Ray keeps the pieces' order.
CSV pieces are read with the glob's dialect and column types, fixed here (``scan.piece_reading``).

Ray is imported only inside functions: mldb works without it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from mldb import errors
from mldb.scaleout import cluster, settings, worker
from mldb.scaleout.scan import piece_reading


@dataclass
class Request:
    """One statement's work as the planner hands it over."""

    fragment: str  # SQL over __mldb_piece
    files: list  # absolute paths, one piece each
    models: list = field(default_factory=list)  # refs the fragment calls: 'churn', 'churn@2', 'churn@2+3'
    params: list | None = None
    mode: str = "rows"  # 'rows' | 'copy'
    target: str | None = None  # copy: the directory to create
    workers: int | None = None  # actors (default: min(files, cluster CPUs / cpus_per_worker))
    function: str = "read_parquet"  # the scan's reader and its options as written ("name = value")
    options: tuple = ()
    cpus_per_worker: int | None = None  # Ray CPUs = MLDB_THREADS = DuckDB threads per actor (None: the session's)
    batch_rows: int = 65_536
    retries: int | None = None  # actor restarts and task retries (None: the session's mldb_ray_retries)
    preserve_order: bool = False
    execution: object = None  # the driver's statement: its cancel, its prediction log (scaleout.lifecycle)


def request_settings(chosen: dict) -> dict:
    """The Request fields the session's settings (``scaleout.settings.effective``) decide."""
    return {"workers": chosen["mldb_ray_workers"], "cpus_per_worker": chosen["mldb_ray_cpus_per_worker"],
            "batch_rows": chosen["mldb_ray_batch_rows"], "retries": chosen["mldb_ray_retries"],
            "preserve_order": chosen["mldb_ray_preserve_order"]}


@dataclass
class Outcome:
    tables: Iterator[pa.Table] | None  # rows mode: the data, read lazily (reports fill as it is read)
    reports: list = field(default_factory=list)  # one dict per piece (rows, predictions, pid)
    rows: int = 0  # copy mode: rows written
    schema: pa.Schema | None = None  # rows mode: the data's schema, known from the first batch (data or meta)


def connect(executor: str = "ray") -> str:
    """This process's Ray connection (made once; see ``cluster``): the address in use."""
    return cluster.connect(executor)


def build_job(session, request: Request, staging: str | None = None) -> worker.Job:
    from mldb.scaleout import shipping

    columns, options = piece_reading(session, request.function, tuple(request.options), request.files)
    udfs, embed_models = shipping.payload(session, request.fragment)
    return worker.Job(fragment=request.fragment, params=request.params, mode=request.mode, columns=columns,
                      catalog=shipped_catalog(session, request.models), staging=staging,
                      batch_rows=request.batch_rows, versions=worker.versions(),
                      function="read_parquet" if request.function in ("read_parquet", "parquet_scan") else "read_csv",
                      options=options, threads=request.cpus_per_worker, udfs=udfs, embed_models=embed_models)


def glob_columns(session, files: list) -> list:
    """[(name, type)] of all the files read together, as DuckDB's glob read would type them."""
    return piece_reading(session, "read_parquet", (), files)[0]


def shipped_catalog(session, refs: list) -> dict:
    """The mldb.models / mldb.model_versions rows (weights included) of the called models, as Arrow IPC.

    ``refs`` are the references the plan resolved ('churn@2', with a shadow 'churn@2+3'). The shipped
    ``mldb.models`` row of a name says the planned version (and shadow) is deployed, so a worker's
    ``PREDICT(churn)`` runs what the driver planned even when a DEPLOY came in between."""
    if not refs:
        return {}
    pairs, pins = _referenced(session, refs)
    names = sorted({name for name, _ in pairs})
    marks = ", ".join("?" for _ in names)
    models = _pinned(_arrow(session, f"SELECT * FROM mldb.models WHERE name IN ({marks})", names), pins)
    wanted = " OR ".join("(model = ? AND version = ?)" for _ in pairs)
    flat = [value for pair in sorted(pairs) for value in pair]
    versions = _arrow(session, f"SELECT * FROM mldb.model_versions WHERE {wanted}", flat)
    # (mldb.snapshots carries each version's log_sample rate: workers sample as this database would)
    snapshots = _arrow(session, f"SELECT * FROM mldb.snapshots WHERE model IN ({marks})", names)
    return {"mldb.models": worker.to_ipc(models), "mldb.model_versions": worker.to_ipc(versions),
            "mldb.snapshots": worker.to_ipc(snapshots)}


def _referenced(session, refs: list) -> tuple[set, dict]:
    """({(name, version)} to ship, {name: (deployed, shadow)} the plan resolved for unpinned calls).

    A planned unpinned call reads 'churn@2' (or 'churn@2+3' with its shadow); a name whose refs
    name one version (or one with a shadow) is pinned to it; a name also called with other
    explicit versions and no shadow is left as the catalog has it (its unpinned calls are ambiguous)."""
    from mldb.models import registry

    pairs, found = set(), {}
    for ref in refs:
        written, plus, shadow = str(ref).partition("+")
        name, version = registry.resolve(session, written)
        pairs.add((name, version))
        if plus:
            pairs.add((name, int(shadow)))
        found.setdefault(name, set()).add((version, int(shadow) if plus else None))
    pins = {}
    for name, planned in found.items():
        shadowed = [pair for pair in planned if pair[1] is not None]
        if len(shadowed) == 1 or len(planned) == 1:
            pins[name] = shadowed[0] if shadowed else next(iter(planned))
    return pairs, pins


def _pinned(models: pa.Table, pins: dict) -> pa.Table:
    """The models rows with the planned deployed/shadow versions."""
    if not pins or models.num_rows == 0:
        return models
    names = models.column("name").to_pylist()
    for column, at in (("deployed_version", 0), ("shadow_version", 1)):
        if column in models.column_names:
            old = models.column(column).to_pylist()
            new = [pins[name][at] if name in pins else value for name, value in zip(names, old)]
            index = models.column_names.index(column)
            models = models.set_column(index, column, pa.array(new, models.schema.field(column).type))
    return models


def _arrow(session, sql: str, params: list) -> pa.Table:
    """Catalog rows as Arrow, read in the session's transaction (as lifecycle.drift reads them)."""
    import duckdb

    try:
        return session.own_con.sql(sql, params=params).to_arrow_table()
    except duckdb.Error as error:
        raise errors.translate(error, sql) from None


def execute(session, request: Request) -> Outcome:
    if request.mode not in ("rows", "copy"):
        raise errors.ProgrammingError(f"scale-out mode must be 'rows' or 'copy', got {request.mode!r}",
                                      sqlstate="22023")
    if not request.files:
        raise errors.ProgrammingError("a scale-out job needs at least one input file", sqlstate="22023")
    request = _sized(session, request)
    connect(settings.executor(session))
    if request.mode == "rows":
        outcome = Outcome(tables=None)
        outcome.tables = _stream(_dataset(build_job(session, request), request), outcome, request)
        return outcome
    return _copy(session, request)


def _sized(session, request: Request) -> Request:
    """The request with the session's CPUs per worker and retries where it does not name its own."""
    chosen = settings.effective(session)
    return dataclasses.replace(
        request, cpus_per_worker=request.cpus_per_worker or chosen["mldb_ray_cpus_per_worker"],
        retries=chosen["mldb_ray_retries"] if request.retries is None else request.retries)


def _dataset(job: worker.Job, request: Request):
    """The pipeline: one item per file, mapped by a pool of PieceWorker actors.

    The actors' restart and retry budget can only be given as ``**ray_remote_args``, which Ray 2.60
    deprecates (removal announced for 2.64, hence the pin) without naming a replacement: its warning
    is kept off the user's screen (Ray Data's console lines: ``lifecycle._quiet_ray_data_console``)."""
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    pieces = [{"piece": index, "path": path} for index, path in enumerate(request.files)]
    dataset = ray.data.from_items(pieces, override_num_blocks=len(pieces))
    dataset.context.execution_options.preserve_order = bool(request.preserve_order)  # (this job's own copy)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        return dataset.map_batches(
            worker.PieceWorker, fn_constructor_kwargs={"job": ray.put(job)}, batch_size=1,
            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=pool_size(request)),
            **cluster.actor_options(request.cpus_per_worker, request.retries))


def pool_size(request: Request) -> int:
    """The actors of the job's pool: as asked, else as many as the cluster's CPUs hold, never more than files."""
    import ray

    cpus = request.cpus_per_worker
    return min(len(request.files), request.workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus))


def _stream(dataset, outcome: Outcome, request: Request) -> Iterator[pa.Table]:
    """Data batches as they arrive; meta rows go to ``outcome.reports`` (and the statement's log, its
    progress: ``lifecycle``); worker errors come out as mldb errors; a cancel as 57014."""
    from mldb.scaleout import lifecycle

    reports = outcome.reports
    run = lifecycle.start(dataset, request.execution, reports, len(request.files), pool_size(request))
    try:
        for data in run.batches():
            if outcome.schema is None:
                outcome.schema = data.schema
            if data.num_rows:
                yield data
    except Exception as error:  # noqa: BLE001 - Ray wraps whatever the worker raised
        raise _unwrapped(error) from None
    finally:
        run.close()  # (LIMIT reached, cursor closed, cancel: the pool's actors stop now)
    _check_pieces(reports)


def _check_pieces(reports: list) -> None:
    pieces = [report["piece"] for report in reports]
    if len(pieces) != len(set(pieces)):
        raise errors.InternalError(f"scale-out: a piece reported twice ({sorted(pieces)})")


def _unwrapped(error: BaseException) -> errors.Error:
    """The mldb error a worker raised, unwrapped from Ray's ``RayTaskError(<its class>)`` (whose
    ``cause`` is the original), else an error naming what Ray raised."""
    found, seen, current = None, set(), error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, errors.Error):
            found = current  # the deepest one is the worker's own (not Ray's dual-class copy)
        current = getattr(current, "cause", None) or current.__cause__
    return found or errors.OperationalError(f"the Ray job failed: {error}", sqlstate="58000")


def staging_dir(target: str) -> str:
    parent, name = os.path.split(os.path.abspath(target).rstrip(os.sep))
    return os.path.join(parent, f".{name}.mldb-{uuid.uuid4().hex}")


def _copy(session, request: Request) -> Outcome:
    """Write every piece into a staging directory, then commit it to the target by one rename."""
    target = os.path.abspath(request.target or "")
    if not request.target or os.path.lexists(target):
        raise errors.ProgrammingError(f"COPY target {target!r} already exists (scale-out writes a new directory)",
                                      sqlstate="42P07")
    staging = staging_dir(target)
    try:
        os.mkdir(staging)  # (not makedirs: as locally, COPY does not create the target's parent)
    except FileNotFoundError:
        raise errors.OperationalError(f"IO Error: Cannot open file {target!r}: its directory "
                                      f"{os.path.dirname(target)!r} does not exist", sqlstate="58030") from None
    try:
        outcome = Outcome(tables=None)
        job = build_job(session, request, staging)
        for _ in _stream(_dataset(job, request), outcome, request):
            pass
        _keep_reported(staging, outcome.reports, len(request.files))
        os.rename(staging, target)
    except BaseException:
        remove_staging(staging)
        raise
    outcome.rows = sum(report["rows"] for report in outcome.reports)
    return outcome


def remove_staging(staging: str) -> None:
    """Remove a failed job's staging directory. A piece still running elsewhere may create its temporary
    file in it while ``rmtree`` runs (the directory then stays, non-empty), so remove until it is gone:
    once it is, no worker can put it back (DuckDB's COPY does not create directories)."""
    for _ in range(1000):
        shutil.rmtree(staging, ignore_errors=True)
        if not os.path.lexists(staging):
            return


def _keep_reported(staging: str, reports: list, pieces: int) -> None:
    """Every piece reported once; the staging directory holds exactly the files of the pieces with
    rows (temporaries and empty pieces removed), or, when no piece had rows, one empty
    ``data_00000.parquet`` carrying the schema (so ``read_parquet('dir/*.parquet')`` still reads)."""
    reported = {report["piece"]: report["rows"] for report in reports}
    if set(reported) != set(range(pieces)):
        raise errors.InternalError(f"scale-out COPY: pieces {sorted(set(range(pieces)) - set(reported))} "
                                   "never reported")
    expected = {worker.copy_file_name(piece, rows) for piece, rows in reported.items() if rows}
    if not expected:
        os.rename(os.path.join(staging, worker.copy_file_name(0, 0)), os.path.join(staging, "data_00000.parquet"))
        expected = {"data_00000.parquet"}
    for name in os.listdir(staging):
        if name not in expected:
            os.remove(os.path.join(staging, name))
    missing = expected - set(os.listdir(staging))
    if missing:
        raise errors.InternalError(f"scale-out COPY: {sorted(missing)} missing from the staging directory")
