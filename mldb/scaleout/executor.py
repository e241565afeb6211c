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

import dataclasses
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from mldb import errors
from mldb.scaleout import cluster, settings, worker


@dataclass
class Request:
    """One statement's work as the planner hands it over."""

    fragment: str  # SQL over __mldb_piece
    files: list  # absolute paths, one piece each
    models: list = field(default_factory=list)  # refs the fragment calls: 'churn' or 'churn@2'
    params: list | None = None
    mode: str = "rows"  # 'rows' | 'copy'
    target: str | None = None  # copy: the directory to create
    workers: int | None = None  # actors (default: min(files, cluster CPUs / cpus_per_worker))
    cpus_per_worker: int | None = None  # Ray CPUs = MLDB_THREADS per actor (None: the session's setting)
    retries: int | None = None  # actor restarts and task retries (None: the session's mldb_ray_retries)


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
    from mldb.models import registry

    if not refs:
        return {}
    pairs = set()
    for ref in refs:
        name, version = registry.resolve(session, ref)
        pairs.add((name, version))
        shadow = registry.shadow_version(session, name)
        if shadow is not None:
            pairs.add((name, shadow))
    names = sorted({name for name, _ in pairs})
    marks = ", ".join("?" for _ in names)
    models = _arrow(session, f"SELECT * FROM mldb.models WHERE name IN ({marks})", names)
    wanted = " OR ".join("(model = ? AND version = ?)" for _ in pairs)
    flat = [value for pair in sorted(pairs) for value in pair]
    versions = _arrow(session, f"SELECT * FROM mldb.model_versions WHERE {wanted}", flat)
    return {"mldb.models": worker.to_ipc(models), "mldb.model_versions": worker.to_ipc(versions)}


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
        outcome.tables = _stream(_dataset(build_job(session, request), request), outcome)
        return outcome
    return _copy(session, request)


def _sized(session, request: Request) -> Request:
    """The request with the session's CPUs per worker and retries where it does not name its own."""
    chosen = settings.effective(session)
    return dataclasses.replace(
        request, cpus_per_worker=request.cpus_per_worker or chosen["mldb_ray_cpus_per_worker"],
        retries=chosen["mldb_ray_retries"] if request.retries is None else request.retries)


def _dataset(job: worker.Job, request: Request):
    """The pipeline: one item per file, mapped by a pool of PieceWorker actors."""
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    pieces = [{"piece": index, "path": path} for index, path in enumerate(request.files)]
    cpus = int(ray.cluster_resources().get("CPU", 1)) // request.cpus_per_worker
    workers = request.workers or max(1, min(len(pieces), cpus))
    return ray.data.from_items(pieces, override_num_blocks=len(pieces)).map_batches(
        worker.PieceWorker, fn_constructor_kwargs={"job": ray.put(job)}, batch_size=1,
        batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers),
        **cluster.actor_options(request.cpus_per_worker, request.retries))  # as **ray_remote_args: Ray 2.60 deprecates both this
    # and ray_remote_args_fn (removal announced for 2.64) and names no replacement; see the report of issue 17


def _stream(dataset, outcome: Outcome) -> Iterator[pa.Table]:
    """Data batches as they arrive; meta rows go to ``outcome.reports``; worker errors come out as mldb errors."""
    reports = outcome.reports
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            meta = batch.column(worker.META)
            is_data = pc.is_null(meta)
            reports.extend(json.loads(text) for text in pc.drop_null(meta).to_pylist())
            data = batch.filter(is_data).drop_columns([worker.META])
            if outcome.schema is None:
                outcome.schema = data.schema
            if data.num_rows:
                yield data
    except Exception as error:  # noqa: BLE001 - Ray wraps whatever the worker raised
        raise _unwrapped(error) from None
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
        for _ in _stream(_dataset(job, request), outcome):
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
