"""EXPLAIN's executor lines under a Ray executor: where the statement runs and why.

    scale-out: 4 files of READ_PARQUET('ev/*.parquet') (1.2 MB), one piece per file -> Ray Data actor pool, ...
    executor: ray (local cluster of this process, not connected yet)
or
    executor: local (this process): mldb_executor is 'ray', but ORDER BY needs all rows (only LIMIT goes out)

Under the default executor the one line is ``executor: local (this process)``, as before.
EXPLAIN does not connect to Ray: the cluster's CPUs are not known here yet.
"""

from __future__ import annotations

import os

from mldb.scaleout import settings, shipping
from mldb.scaleout.plan import Shape
from mldb.scaleout.scan import Scan


def explain_notes(planner, analyze: bool = False) -> list[str]:
    """The executor lines EXPLAIN ends with: where the statement runs and, under Ray, why."""
    found = getattr(planner, "scaleout", None)
    if found is None:
        return ["executor: local (this process)"]
    chosen = settings.effective(planner.session)
    if analyze:
        return [(f"executor: local (this process): mldb_executor is '{chosen['mldb_executor']}', but EXPLAIN "
                "ANALYZE runs the statement here")]
    if isinstance(found, str):
        return [f"executor: local (this process): mldb_executor is '{chosen['mldb_executor']}', but {found}"]
    return [describe(found, chosen), _executor_line(chosen["mldb_executor"])]


def describe(shape: Shape, chosen: dict) -> str:
    """One line: the pieces, the pool, what ships and what comes back."""
    scan, count = shape.scan, len(shape.scan.files)
    size = _size_text(scan)
    cpus = chosen["mldb_ray_cpus_per_worker"]
    workers = chosen["mldb_ray_workers"]
    pool = (f"{min(workers, count)} worker{'s' * (min(workers, count) != 1)}" if workers
            else f"workers = min({count}, cluster CPUs / {cpus})")
    text = (f"scale-out: {count} file{'s' * (count != 1)} of {scan.text} ({size}), one piece per file -> Ray Data "
            f"actor pool, {pool} x {cpus} CPU, each runs DuckDB + mldb on its files")
    if shape.models:
        text += f"; models shipped: {', '.join(shape.models)}"
    if shape.udfs:
        text += f"; functions shipped: {', '.join(shape.udfs)}"
    if embedding := shipping.embed_note(shape.fragment):
        text += f"; {embedding}"
    return text + "; " + _output_text(shape, chosen)


def _output_text(shape: Shape, chosen: dict) -> str:
    if shape.kind == "partials":
        return f"partial aggregates {', '.join(shape.aggregates)} per file, combined here by DuckDB"
    if shape.kind == "copy":
        name = os.path.basename(os.path.normpath(shape.target))
        return (f"COPY writes up to {len(shape.scan.files)} parquet files into directory '{shape.target}' "
                f"(staged in '.{name}.mldb-<id>', committed by rename)")
    order = "row order preserved" if chosen["mldb_ray_preserve_order"] else "row order not preserved"
    text = f"rows streamed back in Arrow batches of {chosen['mldb_ray_batch_rows']:,}; {order}"
    return text + (f"; LIMIT {shape.limit}: each piece stops at {shape.limit} rows" if shape.limit is not None
                   else "")


def _size_text(scan: Scan) -> str:
    total = sum(os.path.getsize(path) for path in scan.files if os.path.exists(path))
    return _bytes(total)


def _bytes(count: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _executor_line(executor: str) -> str:
    if executor.startswith("ray://"):
        return f"executor: ray at {executor} (Ray Client), not connected yet"
    address = os.environ.get("RAY_ADDRESS")
    if address:
        return f"executor: ray at {address} (RAY_ADDRESS), not connected yet"
    return "executor: ray (local cluster of this process, not connected yet)"
