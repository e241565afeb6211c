"""Column names as the user wrote them.

DuckDB names an unaliased column after its expression, printed its own way
(``SELECT x::int`` -> ``CAST(x AS INTEGER)``, ``LOWER( y )`` -> ``lower(y)``). A rewritten
statement is SQL that sqlglot generated, with mldb's functions replaced, so DuckDB would
name ``PREDICT(m)`` after the internal call. Before the rules run, each top-level
projection of every SELECT that holds one of mldb's functions, or whose text sqlglot
prints differently, gets an alias: DuckDB's own name for the text the user wrote, read
with DuckDB's parser (``duckdb.SQLExpression``). mldb's function names keep the case they
were written in (the SPEC's ``PREDICT(m)``; DuckDB would lower it, as it lowers every
function name).

    SELECT PREDICT(churn), x::int = 1 FROM c
    -> SELECT PREDICT(churn) AS "PREDICT(churn)", CAST(x AS INT) = 1 AS "(CAST(x AS INTEGER) = 1)" FROM c
"""

from __future__ import annotations

import re

import duckdb
from sqlglot import exp

from mldb.frontend.dialect import FUNCTION_NAMES, MLDB, SPAN
from mldb.frontend.expressions import MldbFunction

# projections DuckDB names otherwise (a column by its name) or that expand to several columns
_KEEP = (exp.Alias, exp.Column, exp.Star, exp.Unnest, exp.Columns, exp.Placeholder)
_CALLS = re.compile(r"\b(" + "|".join(sorted(FUNCTION_NAMES, key=len, reverse=True)) + r")\s*\(", re.IGNORECASE)


def name_projections(tree: exp.Expression) -> None:
    """Alias every projection whose DuckDB name would change once rewritten (see the module)."""
    for select in tree.find_all(exp.Select):
        for projection in list(select.expressions):
            written = projection.meta.get(SPAN)
            if not isinstance(written, str) or isinstance(projection, _KEEP):
                continue
            if projection.find(exp.Star, exp.Unnest, exp.Columns) is not None:
                continue
            name = _name(projection, written)
            if name is not None:  # (built around the node, not a copy: copies cost more than the rest)
                alias = exp.Alias(alias=exp.to_identifier(name, quoted=True))
                projection.replace(alias)
                alias.set("this", projection)


def _name(projection: exp.Expression, written: str) -> str | None:
    """The name DuckDB gives ``written``, or None when the rewritten SQL gets the same one."""
    if projection.find(MldbFunction) is not None:
        name = duckdb_name(written)
        return " ".join(written.split()) if name is None else _with_written_case(name, written)
    generated = projection.sql(dialect=MLDB)
    if generated == written:
        return None
    name = duckdb_name(written)  # (a bare word is left alone: as an alias DuckDB would read it as a column)
    return name if name is not None and name != duckdb_name(generated) and not name.isidentifier() else None


def duckdb_name(text: str) -> str | None:
    """DuckDB's column name for an expression's text (its parser's ``ToString``)."""
    try:
        return duckdb.SQLExpression(text).get_name()
    except (duckdb.Error, RuntimeError, ValueError):
        return None


def _with_written_case(name: str, written: str) -> str:
    """``predict(m)`` (DuckDB lowers function names) -> ``PREDICT(m)`` as written. The calls
    are matched in order; a string literal holding such a name is the same on both sides."""
    spelled = [found.group(1) for found in _CALLS.finditer(written)]
    lowered = list(_CALLS.finditer(name))
    if not spelled or len(spelled) != len(lowered):
        return name
    for found, text in sorted(zip(lowered, spelled), key=lambda pair: -pair[0].start()):
        name = name[: found.start(1)] + text + name[found.end(1):]
    return name
