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
  Any failure removes the staging directory, so a failed job leaves no output behind.

Ray is imported only inside functions: mldb works without it.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa

from mldb import errors
from mldb.scaleout import worker

_CONNECT_LOCK = threading.Lock()
LOCAL_CPUS = 2  # the private local cluster's size (the settings half will make it configurable)
RETRIES = 3  # actor restarts and task retries (Ray Data's default is -1: a crashing piece would loop forever)


@dataclass
class Request:
    """One statement's work as the planner hands it over."""

    fragment: str  # SQL over __mldb_piece
    files: list  # absolute paths, one piece each
    models: list = field(default_factory=list)  # refs the fragment calls: 'churn' or 'churn@2'
    params: list | None = None
    mode: str = "rows"  # 'rows' | 'copy'
    target: str | None = None  # copy: the directory to create
    workers: int | None = None  # actors (default: min(files, cluster CPUs))
    execution: object = None  # the driver's statement: its cancel, its prediction log (scaleout.lifecycle)


@dataclass
class Outcome:
    tables: Iterator[pa.Table] | None  # rows mode: the data, read lazily (reports fill as it is read)
    reports: list = field(default_factory=list)  # one dict per piece (rows, predictions, pid)
    rows: int = 0  # copy mode: rows written
    schema: pa.Schema | None = None  # rows mode: the data's schema, known from the first batch (data or meta)


def connect() -> None:
    """Start Ray once per process: RAY_ADDRESS if set, else a private local cluster."""
    import ray

    with _CONNECT_LOCK:
        if ray.is_initialized():
            return
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=LOCAL_CPUS, include_dashboard=False, log_to_driver=False)


def build_job(session, request: Request, staging: str | None = None) -> worker.Job:
    return worker.Job(fragment=request.fragment, params=request.params, mode=request.mode,
                      columns=glob_columns(session, request.files), catalog=shipped_catalog(session, request.models),
                      staging=staging, versions=worker.versions())


def glob_columns(session, files: list) -> list:
    """[(name, type)] of all the files read together, as DuckDB's glob read would type them."""
    listed = ", ".join(worker.literal(path) for path in files)
    rows = session.sql(f"DESCRIBE SELECT * FROM read_parquet([{listed}])").fetchall()
    return [(row[0], row[1]) for row in rows]


def shipped_catalog(session, refs: list) -> dict:
    """The mldb.models / mldb.model_versions rows (weights included) of the called models, as Arrow IPC."""
    from mldb.models import registry, shadow

    if not refs:
        return {}
    pairs = set()
    for ref in refs:
        ref, pinned_shadow = shadow.split(ref)  # ('churn@2+3': a pinned shadow version ships too)
        name, version = registry.resolve(session, ref)
        if pinned_shadow is not None:
            pairs.add((name, pinned_shadow))
        pairs.add((name, version))
        deployed_shadow = registry.shadow_version(session, name)
        if deployed_shadow is not None:
            pairs.add((name, deployed_shadow))
    names = sorted({name for name, _ in pairs})
    marks = ", ".join("?" for _ in names)
    models = _arrow(session, f"SELECT * FROM mldb.models WHERE name IN ({marks})", names)
    wanted = " OR ".join("(model = ? AND version = ?)" for _ in pairs)
    flat = [value for pair in sorted(pairs) for value in pair]
    versions = _arrow(session, f"SELECT * FROM mldb.model_versions WHERE {wanted}", flat)
    # (mldb.snapshots carries each version's log_sample rate: workers sample as this database would)
    snapshots = _arrow(session, f"SELECT * FROM mldb.snapshots WHERE model IN ({marks})", names)
    return {"mldb.models": worker.to_ipc(models), "mldb.model_versions": worker.to_ipc(versions),
            "mldb.snapshots": worker.to_ipc(snapshots)}


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
    connect()
    if request.mode == "rows":
        outcome = Outcome(tables=None)
        outcome.tables = _stream(_dataset(build_job(session, request), request), outcome, request)
        return outcome
    return _copy(session, request)


def _dataset(job: worker.Job, request: Request):
    """The pipeline: one item per file, mapped by a pool of PieceWorker actors."""
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    pieces = [{"piece": index, "path": path} for index, path in enumerate(request.files)]
    workers = pool_size(request)
    return ray.data.from_items(pieces, override_num_blocks=len(pieces)).map_batches(
        worker.PieceWorker, fn_constructor_kwargs={"job": ray.put(job)}, batch_size=1,
        batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
        max_restarts=RETRIES, max_task_retries=RETRIES)  # as **ray_remote_args: Ray 2.60 deprecates both this
    # and ray_remote_args_fn (removal announced for 2.64) and names no replacement; see the report of issue 17


def pool_size(request: Request) -> int:
    """The actors of the job's pool: as asked, else one per file up to the cluster's CPUs."""
    import ray

    return request.workers or max(1, min(len(request.files), int(ray.cluster_resources().get("CPU", 1))))


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
    os.makedirs(staging)
    try:
        outcome = Outcome(tables=None)
        job = build_job(session, request, staging)
        for _ in _stream(_dataset(job, request), outcome, request):
            pass
        _keep_reported(staging, outcome.reports, len(request.files))
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    outcome.rows = sum(report["rows"] for report in outcome.reports)
    return outcome


def _keep_reported(staging: str, reports: list, pieces: int) -> None:
    """Every piece reported once; the staging directory holds exactly their files (temps removed)."""
    reported = {report["piece"] for report in reports}
    if reported != set(range(pieces)):
        raise errors.InternalError(f"scale-out COPY: pieces {sorted(set(range(pieces)) - reported)} never reported")
    expected = {f"data_{piece:05d}.parquet" for piece in reported}
    for name in os.listdir(staging):
        if name not in expected:
            os.remove(os.path.join(staging, name))
    missing = expected - set(os.listdir(staging))
    if missing:
        raise errors.InternalError(f"scale-out COPY: {sorted(missing)} missing from the staging directory")
