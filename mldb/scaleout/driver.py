"""The session's side of a statement that goes out: the ``rows`` shape run on Ray, its rows a ``Result``.

The planner's ``Shape.fragment`` is the statement *after* mldb's rewrites (``mldb_predict_*`` calls
carrying this process's execution id), which a worker's fresh database could not run as it is. The
worker runs mldb SQL through its own session instead (``worker.run_piece``), so the fragment sent is
built from the statement as written (``original``, copied before the rewrite): its one file scan
replaced by ``__mldb_piece``, the same way ``plan`` builds ``Shape.fragment``. PREDICT is then
rewritten on each worker against the shipped catalog rows.

The workers' Arrow tables stream into the ``Result`` as a ``RecordBatchReader``: rows are read as
they arrive, and an error a worker raised comes out of the fetch as the mldb error it was.

The job's lifecycle (``scaleout.lifecycle``): the workers' prediction tallies are merged into this
statement's ``execution`` (one log row per model version, written when it finishes), a cancel or a
result closed early stops the job, a progress bar counts the pieces.

Not yet here: the ``partials`` and ``copy`` shapes; ``ray://`` addresses (``executor.connect``
uses RAY_ADDRESS or a private local cluster).
"""

from __future__ import annotations

import itertools

import pyarrow as pa
from sqlglot import exp

from mldb.frontend import MLDB
from mldb.result import Result
from mldb.scaleout import executor, plan, settings


def goes_out(session, shape, explain: str) -> bool:
    """Whether this statement runs on Ray now (only the ``rows`` shape is wired so far)."""
    return (not explain and isinstance(shape, plan.Shape) and shape.kind == "rows"
            and settings.executor(session) != settings.LOCAL)


def fragment_of(original: exp.Expression, params) -> tuple[str, object] | None:
    """The statement as written over ``__mldb_piece``, with the parameters its scan did not use
    (``None``: it cannot be built here, and the statement runs locally)."""
    tree = original.copy()
    if not isinstance(tree, exp.Select):
        return None
    chain = plan.find_scan(tree)
    if isinstance(chain, str):
        return None
    table = chain[-1]
    left = _params_left(tree, table, params)
    if left is False:
        return None
    return plan.over_piece(tree, table).sql(dialect=MLDB), left


def _params_left(tree: exp.Expression, table: exp.Table, params):
    """The parameters of ``tree`` outside ``table``: ``?`` ones by position, ``$n`` ones renumbered in
    ``tree`` from 1 (False: they cannot be told apart)."""
    if params is None or isinstance(params, dict):
        return params
    marks = list(tree.find_all(exp.Placeholder, bfs=False))
    in_scan = {id(mark) for mark in table.find_all(exp.Placeholder)}
    if all(not mark.name for mark in marks):
        if len(marks) != len(params):
            return False
        return [value for mark, value in zip(marks, params) if id(mark) not in in_scan] or None
    if not all(mark.name.isdigit() and 0 < int(mark.name) <= len(params) for mark in marks):
        return False
    numbers: dict[int, int] = {}  # $n as written -> $n in the fragment
    for mark in marks:
        if id(mark) not in in_scan:
            mark.set("this", str(numbers.setdefault(int(mark.name), len(numbers) + 1)))
    return [params[number - 1] for number in numbers] or None


def run_rows(session, shape, fragment: str, params, execution, holder) -> Result:
    """Run ``fragment`` over the scan's files on Ray; the rows as a streamed ``Result`` (at most the
    root's LIMIT: each piece applies it too, the first rows to arrive are kept)."""
    request = executor.Request(fragment=fragment, files=list(shape.scan.files), models=list(shape.models),
                               params=params, execution=execution)
    outcome = executor.execute(session, request)
    first = next(outcome.tables, None)  # the job starts now: an error in its first piece belongs to execute
    schema = outcome.schema if outcome.schema is not None else pa.schema([])
    tables = itertools.chain([first] if first is not None else [], outcome.tables)
    reader = pa.RecordBatchReader.from_batches(schema, _limited(tables, shape.limit, outcome.tables))
    types, description = _described(schema, holder)
    result = Result.from_arrow(session.con, reader, types, description, execution, holder)
    result.scaleout = outcome
    return result


def _limited(tables, limit: int | None, job):
    """The tables' record batches, the first ``limit`` rows of them (all with None); at the limit
    the job's stream is closed (Ray stops the pipeline then, not when it is collected)."""
    if limit == 0:
        job.close()
        return
    left = limit
    for table in tables:
        for batch in table.to_batches():
            if left is not None:
                batch, left = batch.slice(0, left), left - min(left, batch.num_rows)
            yield batch
            if left == 0:
                job.close()
                return


def _described(schema: pa.Schema, holder) -> tuple[list, list]:
    """The DuckDB type names and the DB-API description of rows with ``schema``."""
    cursor = holder().cursor()
    try:
        relation = cursor.from_arrow(schema.empty_table())
        return [str(kind) for kind in relation.types], relation.description
    finally:
        cursor.close()
