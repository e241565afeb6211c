"""Whole-input aggregates split into a per-file partial query and a combine query.

count, sum, min and max combine by adding / taking the min or max of the pieces' values; avg
travels as a sum and a count. Every piece returns its one row even when no row of it is left
(count 0, sum NULL), so empty files and filters that remove whole files combine right. Each
combined value is cast to the type the local statement gives it (DuckDB's sum of counts is a
HUGEINT, the local count a BIGINT), and the result keeps the local column names.
"""

from __future__ import annotations

from sqlglot import exp

from mldb.plan import template

PARTIALS = "__mldb_partials"  # the partial rows of every piece, read by the combine query
_COMBINABLE = (exp.Count, exp.Sum, exp.Min, exp.Max, exp.Avg)


def aggregates_of(select: exp.Select) -> list[exp.AggFunc]:
    """The aggregate calls of ``select``'s own projections, in order."""
    found = []
    for projection in select.expressions:
        found.extend(node for node in projection.walk() if isinstance(node, exp.AggFunc))
    return found


def aggregate_types(session, select: exp.Select, params) -> list[str]:
    """DuckDB's type of each aggregate of ``select`` as the local statement computes it."""
    probe = select.copy()
    probe.set("expressions", [node.copy() for node in aggregates_of(select)])
    for key in ("order", "limit", "offset", "group", "having"):
        probe.set(key, None)
    sql, bound = template.plain(probe, params)
    rows = session.sql(f"DESCRIBE {sql}", bound).fetchall()
    return [row[1] for row in rows]


def output_names(session, select: exp.Select, params) -> list[str]:
    """The column names DuckDB gives ``select``'s result (the combine keeps them)."""
    sql, bound = template.plain(select, params)
    return [row[0] for row in session.sql(f"DESCRIBE {sql}", bound).fetchall()]


def split_aggregates(select: exp.Select, types: list[str], names: list[str] | None = None
                     ) -> tuple[exp.Select, exp.Select] | str:
    """(partial, combine): ``partial`` runs per piece and returns one row even for an empty one
    (count 0, sum NULL); ``combine`` runs over every piece's row (``__mldb_partials``) here.

        SELECT count(*) * 2, avg(x) FROM f WHERE k      (types: BIGINT, DOUBLE)
        -> partial  SELECT count(*) AS __p0, sum(x) AS __p1, count(x) AS __p2 FROM f WHERE k
        -> combine  SELECT CAST(sum(__p0) AS BIGINT) * 2 AS "(count_star() * 2)",
                           CAST(CAST(sum(__p1) AS DOUBLE) / sum(__p2) AS DOUBLE) AS "avg(x)" FROM __mldb_partials
    ``types``: each aggregate's type in the local run; ``names``: the local result's column names.
    """
    for key, words in (("group", "GROUP BY"), ("having", "HAVING"), ("distinct", "DISTINCT"),
                       ("qualify", "QUALIFY"), ("order", "ORDER BY")):
        if select.args.get(key):
            return f"{words} with aggregates runs here (only whole-input aggregates go out)"
    combine = select.copy()
    aggregates = aggregates_of(combine)
    if len(aggregates) != len(types):
        return "its aggregates could not be typed"
    partials: list[exp.Expression] = []
    for node, local_type in zip(aggregates, types):
        reason = _not_combinable(node, local_type)
        if reason:
            return reason
        node.replace(_combined(node, local_type, partials))
    made = {f"__p{index}" for index in range(len(partials))}
    if any(isinstance(node, exp.Column) and node.name not in made
           for projection in combine.expressions for node in projection.walk()):
        return "a column outside the aggregates needs GROUP BY"
    partial = select.copy()
    partial.set("expressions", partials)
    for key in ("limit", "offset"):
        partial.set(key, None)
    if names is not None:
        combine.set("expressions", [exp.alias_(projection.unalias(), name, quoted=True)
                                    for projection, name in zip(combine.expressions, names)])
    combine.set("from_", exp.From(this=exp.to_table(PARTIALS)))
    combine.set("where", None)
    return partial, combine


def _not_combinable(node: exp.AggFunc, local_type: str) -> str | None:
    name = aggregate_name(node)
    if not isinstance(node, _COMBINABLE):
        return f"{name}(...) cannot be combined from partials"
    if node.find(exp.Distinct):
        return f"{name}(DISTINCT ...) cannot be combined from partials"
    if isinstance(node.parent, exp.Filter):
        return f"{name}(...) FILTER (...) runs here"
    if node.find(exp.Order):
        return f"{name}(... ORDER BY ...) runs here"
    if isinstance(node, exp.Avg) and not local_type.upper().startswith(("DOUBLE", "FLOAT", "DECIMAL")):
        return f"avg of a {local_type} cannot be combined from partials"
    return None


def _combined(node: exp.AggFunc, local_type: str, partials: list) -> exp.Expression:
    """The combine expression standing for ``node``; its partial columns appended to ``partials``."""
    def partial(expression: exp.Expression) -> exp.Column:
        name = f"__p{len(partials)}"
        partials.append(exp.alias_(expression, name))
        return exp.column(name)

    if isinstance(node, exp.Avg):
        total = partial(exp.Sum(this=node.this.copy()))
        count = partial(exp.Count(this=node.this.copy()))
        combined = exp.Div(this=exp.cast(exp.Sum(this=total), "DOUBLE"), expression=exp.Sum(this=count))
    elif isinstance(node, (exp.Min, exp.Max)):
        combined = type(node)(this=partial(node.copy()))
    else:  # count, sum: add the pieces' numbers
        combined = exp.Sum(this=partial(node.copy()))
    return exp.cast(combined, exp.DataType.build(local_type, dialect="duckdb"))


def aggregate_name(node: exp.AggFunc) -> str:
    name = node.sql_name().lower() if not isinstance(node, exp.Anonymous) else node.name.lower()
    if isinstance(node, exp.Count) and isinstance(node.this, exp.Star):
        return "count(*)"
    return name


def partial_of(select: exp.Select) -> exp.Select:
    """The per-piece partial query of ``select`` alone, as ``split_aggregates`` makes it (the driver builds
    it again from the statement as written, whose aggregates are the planned ones in the same order)."""
    partials: list[exp.Expression] = []
    for node in aggregates_of(select.copy()):
        _combined(node, "DOUBLE", partials)  # (the type only shapes the combine, not the partial)
    partial = select.copy()
    partial.set("expressions", partials)
    for key in ("limit", "offset"):
        partial.set(key, None)
    return partial
