"""The session's side of a statement that goes out: its shape run on Ray, its rows a ``Result``.

The planner's ``Shape.fragment`` is the statement *after* mldb's rewrites (``mldb_predict_*`` calls
carrying this process's execution id), which a worker's fresh database could not run as it is. The
worker runs mldb SQL through its own session instead (``worker.run_piece``), so the fragment sent is
built from the statement as written (``original``, copied before the rewrite): its one file scan
replaced by ``__mldb_piece``, the same way ``plan`` builds ``Shape.fragment``. PREDICT is then
rewritten on each worker against the shipped catalog rows, whose deployed versions are the ones
this plan resolved (``executor.shipped_catalog``).

- ``rows``: the workers' Arrow tables stream into the ``Result`` as a ``RecordBatchReader``: rows
  are read as they arrive, and an error a worker raised comes out of the fetch as the mldb error it was.
- ``partials``: each piece returns its one row of partial aggregates; DuckDB combines them here
  (``Shape.combine``, cast to the local statement's types and named as its columns).
- ``copy``: the workers write a directory of ``data_<piece>.parquet`` files (locally DuckDB writes
  one file); the result is DuckDB's ``Count`` row.

The job's lifecycle (``scaleout.lifecycle``): the workers' prediction tallies are merged into this
statement's ``execution`` (one log row per model version, written when it finishes), a cancel or a
result closed early stops the job, a progress bar counts the pieces.
"""

from __future__ import annotations

import itertools
import os

import pyarrow as pa
from sqlglot import exp

from mldb import errors
from mldb.frontend import MLDB
from mldb.plan import template
from mldb.result import Result
from mldb.scaleout import aggregates, executor, plan, settings


def goes_out(session, shape, explain: str) -> bool:
    """Whether this statement runs on Ray now (EXPLAIN never starts a job)."""
    return not explain and isinstance(shape, plan.Shape) and settings.executor(session) != settings.LOCAL


def run(session, shape, original: exp.Expression, params, execution, holder) -> Result:
    """The statement's ``Result`` from the Ray job its shape asks for (rows, partials or copy)."""
    fragment, left = fragment_of(shape, original, params)
    request = executor.Request(fragment=fragment, files=list(shape.scan.files), models=list(shape.models),
                               params=left, function=shape.scan.function, options=shape.scan.options,
                               execution=execution, **executor.request_settings(settings.effective(session)))
    if shape.kind == "copy":
        return run_copy(session, shape, request, execution, holder)
    if shape.kind == "partials":
        return run_partials(session, shape, request, execution, holder)
    return run_rows(session, shape, request, execution, holder)


def fragment_of(shape, original: exp.Expression, params) -> tuple[str, object]:
    """The statement as written (COPY: its query; partials: the partial query) over ``__mldb_piece``,
    with the parameters it still uses, numbered from $1.

    The planner accepted the rewritten statement; the one written has the same single file scan
    (in the table form, inside PREDICT's subquery), so this cannot fail for a shape it made: if it
    does, that is a bug, and the statement must not quietly run here while EXPLAIN says it goes out."""
    tree = original.copy()
    values = _numbered(tree, params)
    table = _written_scan(tree, values)
    query = tree.this.this if isinstance(tree, exp.Copy) else tree
    if not isinstance(query, exp.Select) or not _contains(query, table):
        raise errors.InternalError(f"scale-out: no query over one file scan in {original.sql(dialect=MLDB)[:80]}")
    plan.over_piece(query, table)
    if shape.kind == "partials":
        query = aggregates.partial_of(query)
    used = _used(query, values)  # (renumbers the marks: before the text is made)
    return query.sql(dialect=MLDB), used


def _numbered(tree: exp.Expression, params):
    """``?`` marks become ``$1, $2, ...`` (a partial query may repeat or drop them); the values by number."""
    if params is None or isinstance(params, dict):
        return params
    marks = list(tree.find_all(exp.Placeholder, bfs=False))
    unnamed = [mark.name in ("", "?") for mark in marks]
    if any(unnamed):
        if not all(unnamed) or len(marks) != len(params):
            raise errors.ProgrammingError(f"the statement has {len(marks)} parameters, {len(params)} were given",
                                          sqlstate="07001")
        for number, mark in enumerate(marks, start=1):
            mark.set("this", str(number))
    return list(params)


def _written_scan(tree: exp.Expression, params) -> exp.Table:
    """The statement's one file scan (``read_parquet(...)``, ``'dir/*.parquet'``, ``read_csv(...)``)."""
    found = [table for table in tree.find_all(exp.Table) if not isinstance(plan.scan_of(table, params), str)]
    if len(found) != 1:
        raise errors.InternalError(f"scale-out: the statement as written has {len(found)} file scans, not one")
    return found[0]


def _contains(query: exp.Expression, node: exp.Expression) -> bool:
    while node is not None and node is not query:
        node = node.parent
    return node is query


def _used(query: exp.Expression, params):
    """The parameters ``query`` still uses: named ones by name, numbered ones renumbered from $1."""
    if params is None:
        return None
    marks = list(query.find_all(exp.Placeholder, bfs=False))
    if isinstance(params, dict):
        return {name: value for name, value in params.items() if any(mark.name == name for mark in marks)} or None
    if not all(mark.name.isdigit() and 0 < int(mark.name) <= len(params) for mark in marks):
        raise errors.ProgrammingError(f"a parameter of the statement is not one of the {len(params)} given",
                                      sqlstate="07001")
    numbers: dict[int, int] = {}  # $n as written -> $n in the fragment
    for mark in marks:
        mark.set("this", str(numbers.setdefault(int(mark.name), len(numbers) + 1)))
    return [params[number - 1] for number in numbers] or None


def run_partials(session, shape, request, execution, holder) -> Result:
    """One partial row per piece, combined here by DuckDB (``Shape.combine`` over ``__mldb_partials``):
    the local statement's columns, names and types."""
    outcome = executor.execute(session, request)
    tables = list(outcome.tables)
    if not tables:
        raise errors.InternalError("scale-out: no piece returned its partial aggregates")
    partials = pa.concat_tables(tables, promote_options="permissive")
    sql = template.plain(shape.combine, None)[0]
    cursor = holder().cursor()
    try:
        cursor.register(aggregates.PARTIALS, partials)
        relation = cursor.sql(sql)
        description, table = relation.description, relation.to_arrow_table()
    finally:
        cursor.close()
    types = [str(column[1]) for column in description]
    result = Result.from_arrow(session.con, table.to_reader(), types, description, execution, holder)
    result.scaleout = outcome
    return result


def run_copy(session, shape, request, execution, holder) -> Result:
    """COPY's workers write ``data_<piece>.parquet`` files into a new directory (committed by rename);
    the result is DuckDB's own for a COPY: one row, ``Count`` = the rows written."""
    request.mode, request.target = "copy", os.path.abspath(shape.target)
    if session.access is not None:  # a wire client: the workers write with no DuckDB file restrictions
        session.access.check_write_path(request.target)
    outcome = executor.execute(session, request)
    execution.finish()  # (committed: the COPY is done now, as DuckDB's is; its log rows and lineage are written)
    table = pa.table({"Count": pa.array([outcome.rows], pa.int64())})
    types, description = _described(table.schema, holder)
    result = Result.from_arrow(session.con, table.to_reader(), types, description, None, holder)
    result.status, result.rowcount, result.scaleout = "COPY", outcome.rows, outcome
    return result


def run_rows(session, shape, request, execution, holder) -> Result:
    """Run the request's fragment over the scan's files on Ray; the rows as a streamed ``Result`` (at
    most the root's LIMIT: each piece applies it too, the first rows to arrive are kept)."""
    outcome = executor.execute(session, request)
    first = next(outcome.tables, None)  # the job starts now: an error in its first piece belongs to execute
    schema = outcome.schema if outcome.schema is not None else pa.schema([])
    tables = itertools.chain([first] if first is not None else [], outcome.tables)
    reader = pa.RecordBatchReader.from_batches(schema, _limited(tables, shape.limit, outcome.tables))
    types, description = _described_as(shape.columns, holder) if shape.columns else _described(schema, holder)
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


def _described_as(columns, holder) -> tuple[list, list]:
    """The local statement's DuckDB types and DB-API description (``Shape.columns``)."""
    cursor = holder().cursor()
    try:
        nulls = ", ".join(f"CAST(NULL AS {kind}) AS {_quoted(name)}" for name, kind in columns)
        relation = cursor.sql(f"SELECT {nulls} LIMIT 0")
        return [str(kind) for kind in relation.types], relation.description
    finally:
        cursor.close()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
