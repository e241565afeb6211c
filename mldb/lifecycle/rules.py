"""The lifecycle's rewrite rule; it runs after the models and vectors rules.

- ``DRIFT(model, (query) [, psi_threshold => x, ...])`` in FROM is an operator: when the
  statement runs, it computes the drift and its rows replace the call::

      SELECT * FROM DRIFT(churn, new_customers)
      -> SELECT * FROM (VALUES ('age', 'psi', 0.31, TRUE, 0.2), ...) AS drift(feature, statistic, value, drifted, threshold)

- ``LINEAGE(name)`` in FROM becomes a recursive query over ``mldb.lineage``: every
  edge upstream (what ``name`` was made from) and downstream (what was made from it).
- A ``CREATE TABLE/VIEW ... AS`` or ``INSERT ... SELECT`` that calls ``mldb_predict*`` or
  ``mldb_embed*`` (what PREDICT and EMBED became) records a lineage edge model -> table
  once the statement succeeded.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from mldb import errors
from mldb.frontend.lifecycle import Drift, Lineage
from mldb.lifecycle import drift, lineage
from mldb.models import registry

_PREDICT_PREFIX = "mldb_predict"
_EMBED_PREFIX = "mldb_embed"
_DEFAULT_EMBEDDING = "all-MiniLM-L6-v2"


def rewrite_lifecycle(tree: exp.Expression, context) -> exp.Expression:
    for node in list(tree.find_all(Drift)):
        _replace_drift(tree, node, context)
    for node in list(tree.find_all(Lineage)):
        _replace_lineage(node, context)
    calls = model_calls(tree)
    if calls:
        target = written_relation(tree)
        if target is not None:
            _record_outputs(context, calls, target)
    return tree


# -- DRIFT ------------------------------------------------------------------------------------
def _replace_drift(tree: exp.Expression, node: Drift, context) -> None:
    table = _table_function(node, "DRIFT")
    if isinstance(tree, exp.Create) and (tree.args.get("kind") or "").upper() == "VIEW":
        raise errors.NotSupportedError("DRIFT(...) cannot be stored in a view: it is computed when a statement runs")
    args = [a for a in node.expressions if not isinstance(a, (exp.Kwarg, exp.PropertyEQ, exp.EQ))]
    if len(args) != 2:
        raise errors.ProgrammingError("DRIFT takes a model and a query: DRIFT(model, (SELECT ...))")
    model, query, alias = _name(args[0], "model"), _query(args[1]), table.alias or "drift"
    options = drift.thresholds(_options(node))  # (a bad option is refused when planning, not running)
    placeholder = _values(drift.SCHEMA.empty_table(), alias)
    table.replace(placeholder)

    def compute(execution) -> None:
        placeholder.replace(_values(drift.evaluate(context.session, model, query, options), alias))

    context.operator(f"DRIFT: model {model} against a query, per-feature statistics", compute)


def _table_function(node: exp.Expression, name: str) -> exp.Table:
    if not isinstance(node.parent, exp.Table):
        raise errors.ProgrammingError(f"{name}(...) is a table function: use it in FROM, as SELECT * FROM {name}(...)")
    return node.parent


def _name(arg: exp.Expression, what: str) -> str:
    if isinstance(arg, exp.Literal) and arg.is_string:
        return arg.this
    if isinstance(arg, (exp.Column, exp.Table)):
        return ".".join(part.name for part in arg.parts).lower()
    raise errors.ProgrammingError(f"expected a {what} name, found {arg.sql()}")


def _query(arg: exp.Expression) -> str:
    from mldb.frontend import MLDB

    if isinstance(arg, exp.Subquery):
        return arg.this.sql(dialect=MLDB)
    return f"SELECT * FROM {exp.to_table(_name(arg, 'table')).sql(dialect=MLDB)}"


def _options(node: exp.Expression) -> dict:
    """The ``name => value`` arguments (checked by ``drift.OPTIONS`` when DRIFT runs)."""
    from mldb.frontend.expressions import value_of

    result = {}
    for arg in node.expressions:
        if not isinstance(arg, (exp.Kwarg, exp.PropertyEQ, exp.EQ)):
            continue
        key = arg.this.name.lower()
        if key in result:  # (as the models' WITH options: one would silently win)
            raise errors.ProgrammingError(f"DRIFT: option {key} given twice; give each option once",
                                          sqlstate="42710")
        result[key] = value_of(arg.expression, "DRIFT option values")
    return result


_NO_ROWS = ("NULL::VARCHAR AS feature, NULL::VARCHAR AS statistic, NULL::DOUBLE AS value, "
            "NULL::BOOLEAN AS drifted, NULL::DOUBLE AS threshold")


def _values(result, alias: str) -> exp.Expression:
    columns = result.column_names
    if result.num_rows == 0:  # only vector features: no statistic applies
        return sqlglot.parse_one(f"SELECT * FROM (SELECT {_NO_ROWS} WHERE FALSE) AS {alias}").args["from_"].this
    rows = [tuple(_literal(value) for value in row.values()) for row in result.to_pylist()]
    return exp.values(rows, alias=alias, columns=columns)


def _literal(value) -> exp.Expression:
    if isinstance(value, float):  # typed, or DuckDB would read 0.25 as a DECIMAL
        return exp.cast(exp.Literal.number(repr(value)), exp.DataType.Type.DOUBLE)
    return exp.convert(value)


# -- LINEAGE ----------------------------------------------------------------------------------
_LINEAGE_SQL = """(WITH RECURSIVE
  up(source, source_version, target, target_version, kind, via, depth) AS (
    SELECT source, source_version, target, target_version, kind, via, 1 FROM mldb.lineage WHERE target = {name}
    UNION
    SELECT l.source, l.source_version, l.target, l.target_version, l.kind, l.via, up.depth + 1
    FROM mldb.lineage l JOIN up ON l.target = up.source
     AND (up.source_version IS NULL OR l.target_version IS NULL OR l.target_version = up.source_version)
    WHERE up.depth < 32),
  down(source, source_version, target, target_version, kind, via, depth) AS (
    SELECT source, source_version, target, target_version, kind, via, 1 FROM mldb.lineage WHERE source = {name}
    UNION
    SELECT l.source, l.source_version, l.target, l.target_version, l.kind, l.via, down.depth + 1
    FROM mldb.lineage l JOIN down ON l.source = down.target
     AND (down.target_version IS NULL OR l.source_version IS NULL OR l.source_version = down.target_version)
    WHERE down.depth < 32)
  SELECT 'upstream' AS direction, source, source_version, target, target_version, kind, via, min(depth) AS depth
  FROM up GROUP BY ALL
  UNION ALL
  SELECT 'downstream', source, source_version, target, target_version, kind, via, min(depth)
  FROM down GROUP BY ALL) AS {alias}"""


def _replace_lineage(node: Lineage, context) -> None:
    from mldb.frontend import MLDB

    table = _table_function(node, "LINEAGE")
    if len(node.expressions) != 1:
        raise errors.ProgrammingError("LINEAGE takes one table, view or model name, or a path COPY wrote: "
                                      "LINEAGE(customers), LINEAGE('/data/scored')")
    name = _name(node.expressions[0], "table, view or model")
    name = lineage.path_name(name) if lineage.is_path(name) else name
    lineage.check_relation(context.session.con, name)
    sql = _LINEAGE_SQL.format(name=exp.Literal.string(name).sql(), alias=(table.alias or "lineage"))
    table.replace(sqlglot.parse_one(sql, read=MLDB))
    context.note(f"LINEAGE({name}): a recursive query over mldb.lineage")


# -- PREDICT / EMBED calls ----------------------------------------------------------------------
def model_calls(tree: exp.Expression) -> list[tuple[str, str]]:
    """``(kind, model reference)`` for each distinct mldb_predict* / mldb_embed* call."""
    calls = []
    for node in tree.find_all(exp.Anonymous):
        name = node.name.lower()
        args = node.expressions
        if name.startswith(_PREDICT_PREFIX) and args and _is_string(args[0]):
            call = ("prediction", args[0].this)
        elif name.startswith(_EMBED_PREFIX):
            call = ("embedding", args[1].this if len(args) > 1 and _is_string(args[1]) else _DEFAULT_EMBEDDING)
        else:
            continue
        if call not in calls:
            calls.append(call)
    return calls


def _is_string(node: exp.Expression) -> bool:
    return isinstance(node, exp.Literal) and node.is_string


def written_relation(tree: exp.Expression) -> str | None:
    """The table or view a CREATE ... AS / INSERT ... SELECT writes, the absolute path a
    ``COPY (...) TO 'path'`` writes (a file, or a directory of files), else None."""
    if isinstance(tree, exp.Copy):
        return _copy_target(tree)
    creates = isinstance(tree, exp.Create) and (tree.args.get("kind") or "").upper() in ("TABLE", "VIEW")
    if not (creates or isinstance(tree, exp.Insert)):
        return None
    target = tree.this
    target = target.this if isinstance(target, exp.Schema) else target
    return lineage.qualified(target) if isinstance(target, exp.Table) else None


def _copy_target(tree: exp.Copy) -> str | None:
    files = tree.args.get("files") or []
    if tree.args.get("kind") or len(files) != 1 or not _is_string(files[0]):
        return None  # (COPY ... FROM reads; a path given as a parameter is not known here)
    return lineage.path_name(files[0].this)


def _record_outputs(context, calls: list[tuple[str, str]], target: str) -> None:
    session = context.session
    edges = [(kind, *_model_version(session, kind, ref)) for kind, ref in calls]

    def record() -> None:
        if session.database.read_only:
            return
        cursor = session.database.root.cursor()
        try:
            for kind, model, version in edges:
                lineage.record_output(cursor, model, version, target, kind)
        finally:
            cursor.close()

    context.on_finish(lambda execution: record())


def _model_version(session, kind: str, ref: str) -> tuple[str, int | None]:
    if kind != "prediction":
        return ref, None
    return registry.resolve(session, ref)
