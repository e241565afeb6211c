"""A monitor's check: the values it measures and its WHEN condition over them.

- ``CHECK DRIFT (query)`` runs DRIFT's own code (``mldb.lifecycle.drift``) on the query's rows against
  the deployed version's training statistics and sums it up as ``drifted_features`` (features with a
  drifted statistic), ``max_psi``, ``max_ks`` (over the features), ``prediction_psi`` (the model's
  outputs) and ``rows``.
- ``CHECK EVALUATE (query)`` is ``SELECT * FROM EVALUATE(model, (query))``: every metric column of the
  model's task (``accuracy ... rows`` or ``mae ... rows``).

A condition is a SQL expression over those names, evaluated by DuckDB over a one-row relation of the
values, so it means what it would in a WHERE clause (NULL, e.g. a metric of no rows, does not hold).
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa
from sqlglot import exp

from mldb import errors
from mldb.frontend import MLDB
from mldb.frontend.reads import one_query, parsed
from mldb.lifecycle import drift
from mldb.models import evaluate, registry, rules

DRIFT_VALUES = {"drifted_features": "BIGINT", "max_psi": "DOUBLE", "max_ks": "DOUBLE", "prediction_psi": "DOUBLE",
                "rows": "BIGINT"}
DEFAULT_CONDITION = {"drift": "drifted_features >= 1"}  # (EVALUATE has no sensible default: WHEN is required)


def value_types(kind: str, task: str) -> dict[str, str]:
    """The names a check of ``kind`` measures for a model of ``task``, with their SQL types."""
    if kind == "drift":
        return DRIFT_VALUES
    names = evaluate.REGRESSION if task == "regression" else evaluate.CLASSIFICATION
    return {name: "BIGINT" if name == "rows" else "DOUBLE" for name in names}


def measure(session, kind: str, model: str, query: str) -> dict:
    """The check's values now, over the deployed version of ``model``."""
    return _drift(session, model, query) if kind == "drift" else _evaluate(session, model, query)


def _drift(session, model: str, query: str) -> dict:
    version = registry.load_model(session, model)
    result = session.execute(query)
    rules.check_columns(version, {column[0]: str(column[1]) for column in result.description})  # (42703, 42804)
    table = result.arrow()
    if table.num_rows == 0:  # nothing new to compare: no value, so no condition holds
        return {name: None for name in DRIFT_VALUES} | {"rows": 0}
    saved = drift.saved_stats(session.con, version.name, version.version)
    rows = drift.drift_rows(saved, table, version.predict, drift.thresholds({})).to_pylist()  # (one per statistic)
    features = [row for row in rows if row["feature"] != drift.PREDICTION]
    return {"drifted_features": len({row["feature"] for row in features if row["drifted"]}),
            "max_psi": _largest(features, "psi"), "max_ks": _largest(features, "ks"),
            "prediction_psi": _largest([row for row in rows if row["feature"] == drift.PREDICTION], "psi"),
            "rows": table.num_rows}


def _largest(rows: list[dict], statistic: str) -> float | None:
    values = [row["value"] for row in rows if row["statistic"] == statistic]
    return max(values) if values else None


def _evaluate(session, model: str, query: str) -> dict:
    result = session.execute(f"SELECT * FROM EVALUATE({_string(model)}, ({query}))")
    table: pa.Table = result.arrow()
    return {name: table.column(name)[0].as_py() for name in table.column_names}


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- the stored texts, read again ----------------------------------------------------------------
def stored(monitor):
    """``monitor`` with each stored text parsed again and written back as the SQL that will run: each query
    one query that only reads, the condition one expression (42601 otherwise). ``mldb.monitors`` is a plain
    table that a client may write; a text CREATE MONITOR did not write (``SELECT 1)); DROP TABLE t; --``)
    must not run as statements of its own inside ``EVALUATE(m, (...))`` or ``TRAIN m FROM (...)``."""
    queries = {field: one_query(getattr(monitor, field), f"{where} of this monitor") for field, where in
               (("check_query", "the check query"), ("train_query", "THEN TRAIN FROM"),
                ("holdout_query", "DEPLOY IF BETTER ON")) if getattr(monitor, field) is not None}
    return dataclasses.replace(monitor, condition=_one_expression(monitor.condition).sql(dialect=MLDB), **queries)


def _one_expression(text: str) -> exp.Expression:
    trees = parsed(text, "WHEN of this monitor")
    if len(trees) != 1 or not isinstance(trees[0], exp.Condition) or isinstance(trees[0], exp.Query):
        raise errors.ProgrammingError(f"WHEN of this monitor is not one expression: {text}", sqlstate="42601")
    return trees[0]


# -- conditions ----------------------------------------------------------------------------
_NOT_VALUES = (exp.Query, exp.Subquery, exp.Table, exp.Exists, exp.Placeholder, exp.Parameter)


def condition_sql(node: exp.Expression | None, kind: str, types: dict[str, str], session) -> str:
    """The WHEN condition as SQL, checked (``check_condition``) and a boolean (42804). Without WHEN: the
    check's default (DRIFT), or an error (EVALUATE)."""
    if node is None:
        if kind not in DEFAULT_CONDITION:
            raise errors.ProgrammingError(
                f"CHECK {kind.upper()} needs a WHEN condition over its values ({', '.join(types)}), "
                f"e.g. WHEN accuracy < 0.9", sqlstate="42601")
        return DEFAULT_CONDITION[kind]
    check_condition(node, kind, types)
    sql = node.sql(dialect=MLDB)
    _refuse_functions(session, node, sql)
    relation, params = _relation(types, {})
    found = session.sql(f"SELECT typeof(({sql})) FROM ({relation}) AS monitor_values", params).fetchall()[0][0]
    if found not in ("BOOLEAN", '"NULL"', "NULL"):
        raise errors.ProgrammingError(f"WHEN needs a boolean condition; {sql} is {found}", sqlstate="42804")
    return sql


def check_condition(node: exp.Expression, kind: str, types: dict[str, str]) -> None:
    """A condition is an expression over the check's values only: every name one of them (42703), and no
    query, table or parameter in it (42601): it is run again at every run, by whatever session runs the
    monitor (a server's monitor thread, ``mldb monitor``), and must read nothing else."""
    found = node.find(*_NOT_VALUES)
    if found is not None:
        raise errors.ProgrammingError(
            f"WHEN is an expression over the check's values ({', '.join(types)}); it cannot hold "
            f"{found.sql(dialect=MLDB)}", sqlstate="42601")
    unknown = sorted({column.sql(dialect=MLDB) for column in node.find_all(exp.Column)
                      if column.table or column.name.lower() not in types})
    if unknown:
        raise errors.ProgrammingError(
            f"WHEN names {', '.join(unknown)}; a CHECK {kind.upper()} has the values {', '.join(types)}",
            sqlstate="42703")


def _refuse_functions(session, node: exp.Expression, sql: str) -> None:
    """Only DuckDB's built-in functions, none whose result changes from call to call or that changes something
    (random, nextval): the same values must give the same verdict. A macro or a function of the user's is
    refused too: its body may read tables or files, and may be replaced after CREATE MONITOR (42601)."""
    names = sorted({function.sql(dialect=MLDB).split("(", 1)[0].strip().lower()
                    for function in node.find_all(exp.Func)})
    if not names:
        return
    refused = session.sql("SELECT lower(function_name), bool_or(stability = 'VOLATILE'), bool_or(NOT internal) "
                          "FROM duckdb_functions() WHERE lower(function_name) IN (SELECT unnest(?)) "
                          "GROUP BY ALL HAVING bool_or(stability = 'VOLATILE') OR bool_or(NOT internal) ORDER BY 1",
                          [names]).fetchall()
    if refused:
        volatile = [name for name, is_volatile, _ in refused if is_volatile]
        why = ("must give the same verdict for the same values" if volatile else
               "may call only DuckDB's built-in functions (a macro's body may read tables, and change)")
        raise errors.ProgrammingError(f"WHEN {why}; {sql} calls {', '.join(row[0] for row in refused)}",
                                      sqlstate="42601")


def holds(session, condition: str, kind: str, types: dict[str, str], values: dict) -> bool:
    """Whether ``condition`` is true of ``values`` (NULL: it does not hold). Checked again first: the model may
    have been replaced by one of another task since (no ``accuracy`` to compare), or the row written by an
    older mldb."""
    tree = _one_expression(condition)
    check_condition(tree, kind, types)
    _refuse_functions(session, tree, condition)
    relation, params = _relation(types, values)
    found = session.sql(f"SELECT CAST(({condition}) AS BOOLEAN) FROM ({relation}) AS monitor_values",
                        params).fetchall()[0][0]
    return bool(found)


def _relation(types: dict[str, str], values: dict) -> tuple[str, list]:
    columns = ", ".join(f"CAST(? AS {kind}) AS {exp.to_identifier(name, quoted=True).sql(dialect=MLDB)}"
                        for name, kind in types.items())
    return f"SELECT {columns}", [values.get(name) for name in types]
