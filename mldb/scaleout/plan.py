"""Which statements go out to Ray, recognised on the fully rewritten tree (the last rule).

A statement goes out when its work is row-wise over one file scan, so that running the same
SQL per file and putting the outputs together gives what DuckDB gives over the whole glob:

    SELECT id, mldb_predict_boolean('churn@1', ...) AS p FROM read_parquet('ev/*.parquet') WHERE kind = 'a'
        -> rows      (optionally with a root LIMIT n: every piece stops at n, DuckDB keeps n)
    SELECT count(*), avg(mldb_predict_...::INT) FROM 'ev/*.parquet'
        -> partials  (split_aggregates: one partial row per file, combined by DuckDB here)
    COPY (SELECT ... FROM read_parquet(...)) TO 'dir' (FORMAT parquet)
        -> copy      (every worker writes its files into the directory)

``qualify`` returns the ``Shape`` of such a statement, or a short reason why it stays here
("the query joins events and customers"), which EXPLAIN shows (``explain``). Nothing here connects to Ray
or changes the tree: the rule only records what it found on the planner (``planner.scaleout``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import duckdb
from sqlglot import exp

from mldb import errors
from mldb.frontend.dialect import MLDB
from mldb.plan import template
from mldb.scaleout import settings, shipping
from mldb.scaleout.aggregates import (
    aggregate_name,
    aggregate_types,
    aggregates_of,
    output_names,
    split_aggregates,
)
from mldb.scaleout.scan import (
    READER_WORDS,
    Scan,
    copy_target,
    list_files,
    reader_of_name,
    scan_of,
)

PIECE = "__mldb_piece"  # the relation a worker reads: one file, cast to the glob's schema
_STATEFUL = ("nextval", "currval", "setseed", "getvariable", "query", "query_table")
_SHIPPED = ("mldb_predict_", "mldb_embed_")  # mldb's functions a worker has too (PREDICT, PREDICT_PROBA, EMBED)
_HERE_ONLY = {"mldb_explain_": "EXPLAIN_PREDICT / EVALUATE run here", "mldb_evaluate_": "EXPLAIN_PREDICT / "
              "EVALUATE run here"}
_ROW_WISE = {"group": "GROUP BY", "having": "HAVING", "qualify": "QUALIFY", "distinct": "DISTINCT",
             "order": "ORDER BY", "limit": "LIMIT", "offset": "OFFSET", "sample": "a SAMPLE"}


@dataclass(frozen=True)
class Shape:
    """A statement that goes out: ``fragment`` is what a worker runs over ``__mldb_piece``."""

    kind: str  # 'rows' | 'partials' | 'copy'
    scan: Scan
    fragment: exp.Expression  # the statement's query (partials: the partial query) over PIECE
    combine: exp.Expression | None = None  # partials: the query over PARTIALS giving the result
    aggregates: tuple[str, ...] = ()  # partials: what each piece returns, for EXPLAIN ("count(*)", "sum", ...)
    limit: int | None = None  # rows: the root's LIMIT
    target: str | None = None  # copy: the directory written
    models: tuple[str, ...] = ()  # pinned model references the fragment calls ('churn@2')
    udfs: tuple[str, ...] = field(default=())  # user functions the fragment calls (they ship as code)
    columns: tuple[tuple[str, str], ...] = ()  # rows: (name, DuckDB type) of the local statement's result


# -- the rule ------------------------------------------------------------------------------------
def rewrite_scaleout(tree: exp.Expression, planner) -> exp.Expression:
    """Record on ``planner.scaleout`` where the statement would run (unchanged tree).

    Under the default executor nothing is looked at (``planner.scaleout`` stays None)."""
    if settings.executor(planner.session) != settings.LOCAL:
        planner.scaleout = qualify(tree, planner)
    return tree


def may_go_out(session, statement) -> bool:
    """A token test for a statement without mldb's words: worth parsing, as it reads files
    and the executor is not local."""
    if settings.executor(session) == settings.LOCAL:
        return False
    if not READER_WORDS.isdisjoint(statement.words):
        return True
    return any(reader_of_name(token.text) for token in statement.tokens)


# -- qualify -------------------------------------------------------------------------------------
def qualify(tree: exp.Expression, planner) -> Shape | str:
    """The statement's ``Shape``, or why it runs here (a short clause for EXPLAIN)."""
    root, target = tree, None
    if isinstance(tree, exp.Copy):
        target = copy_target(tree)
        if not isinstance(target, tuple):
            return target
        target, root = target[0], tree.this.this
    elif not isinstance(tree, exp.Select):
        return f"{_statement_kind(tree)} runs here (only SELECT and COPY ... TO go out)"
    if tree.find(exp.With):
        return "its WITH clause (CTE) runs here"
    chain = find_scan(root)
    if isinstance(chain, str):
        return chain
    table = chain[-1]
    reason = (_other_relations(tree, chain) or _function_refusal(tree, planner.session)
              or shipping.embed_refusal(tree))
    if reason:
        return reason
    scan = scan_of(table, planner.params)
    if isinstance(scan, str):
        return scan
    files = list_files(planner.session, scan)
    if isinstance(files, str):
        return files
    scan = Scan(scan.reader, scan.function, scan.patterns, scan.options, scan.text, files)
    return _shape(tree, root, table, scan, target, planner)


def _shape(tree, root: exp.Select, table: exp.Table, scan: Scan, target, planner) -> Shape | str:
    models, udfs = _calls(tree, planner.session)
    if reason := shipping.model_embed_refusal(planner.session, models):
        return reason
    if aggregates_of(root) or root.args.get("group"):
        if target is not None:
            return "COPY of an aggregate runs here"
        session, params = planner.session, planner.params
        try:
            split = split_aggregates(root, aggregate_types(session, root, params),
                                     output_names(session, root, params))
        except errors.Error as error:  # (the statement itself will say it when it runs here)
            return f"its aggregates cannot be typed here ({error.summary})"
        if isinstance(split, str):
            return split
        if any(_outside_aggregates(mark) for projection in root.expressions
               for mark in projection.find_all(exp.Placeholder)):
            return "a parameter outside the aggregates runs here"
        partial, combine = split
        partial = over_piece(partial, partial.args["from_"].this)
        names = tuple(aggregate_name(node) for node in aggregates_of(root))
        return Shape("partials", scan, partial, combine, names, models=models, udfs=udfs)
    reason = _root_refusal(root)
    if isinstance(reason, str):
        return reason
    limit = reason
    if target is not None and limit is not None:
        return "COPY of a LIMIT runs here"
    fragment = tree.this.this.copy() if target is not None else tree.copy()
    fragment = over_piece(fragment, _same_node(fragment, root, table))
    if target is not None:
        return Shape("copy", scan, fragment, target=target, models=models, udfs=udfs)
    try:
        columns = _columns(planner.session, root, planner.params)
    except errors.Error as error:  # (the statement itself will say it when it runs here)
        return f"its columns cannot be typed here ({error.summary})"
    return Shape("rows", scan, fragment, limit=limit, models=models, udfs=udfs, columns=columns)


def _columns(session, select: exp.Select, params) -> tuple[tuple[str, str], ...]:
    """(name, DuckDB type) of each column the local statement returns: the rows that come back as
    Arrow are typed as these (Arrow carries a UUID as text, a HUGEINT as a DECIMAL)."""
    sql, bound = template.plain(select, params)
    return tuple((row[0], row[1]) for row in session.sql(f"DESCRIBE {sql}", bound).fetchall())


def _outside_aggregates(node: exp.Expression) -> bool:
    return node.find_ancestor(exp.AggFunc) is None


def find_scan(select: exp.Select) -> list | str:
    """The chain of SELECTs from the root down to the one file scan (its ``exp.Table`` last)."""
    chain, node = [], select
    while True:
        if isinstance(node, exp.SetOperation):
            return "it combines queries with UNION / INTERSECT / EXCEPT"
        if not isinstance(node, exp.Select):
            return f"it reads {node.sql(dialect=MLDB)[:60]}"
        if chain and (reason := _below_root(node)):
            return reason
        chain.append(node)
        if node.args.get("joins") or node.args.get("laterals"):
            return _join_reason(node)
        source = node.args.get("from_")
        if source is None:
            return "it reads no files"
        this = source.this
        if isinstance(this, exp.Subquery):
            node = this.this
            continue
        if isinstance(this, exp.Table):
            return [*chain, this]
        return f"it reads {this.sql(dialect=MLDB)[:60]}"


def _below_root(select: exp.Select) -> str | None:
    for key, words in _ROW_WISE.items():
        if select.args.get(key):
            return f"{words} in a subquery needs all rows"
    if aggregates_of(select):
        return "an aggregate in a subquery needs all rows"
    return None


def _root_refusal(root: exp.Select) -> int | None | str:
    """None (no LIMIT), the root's LIMIT n, or why the root's extras need all rows."""
    if root.find(exp.Window):
        return "a window function needs all rows"
    for key, reason in (("order", "ORDER BY needs all rows (only LIMIT goes out)"), ("distinct", ("DISTINCT "
                        "needs all rows")), ("offset", "OFFSET needs all rows in order"),
                        ("qualify", "QUALIFY needs all rows"), ("sample", "a SAMPLE needs all rows")):
        if root.args.get(key):
            return reason
    limit = root.args.get("limit")
    if limit is None:
        return None
    count = limit.args.get("expression")
    if not (isinstance(count, exp.Literal) and not count.is_string and count.this.isdigit()):
        return "a LIMIT that is not a number runs here"
    return int(count.this)


def _join_reason(select: exp.Select) -> str:
    names = [_relation_name(select.args["from_"].this)]
    names += [_relation_name(join.this) for join in select.args.get("joins") or ()]
    if select.args.get("laterals"):
        return "it uses a LATERAL subquery"
    return f"the query joins {', '.join(names[:-1])} and {names[-1]}"


def _relation_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
        return node.name
    if isinstance(node, exp.Table):
        first = (node.this.expressions or [node.this.this])[0] if isinstance(node.this, exp.Func) else None
        if isinstance(first, exp.Literal):
            return f"'{first.this}'"
    return node.alias_or_name or "a subquery"


def _other_relations(tree: exp.Expression, chain: list) -> str | None:
    scan = chain[-1]
    for table in tree.find_all(exp.Table):
        if table is not scan:
            if isinstance(table.this, exp.Identifier) and not reader_of_name(table.name, table):
                return f"it reads the table {table.sql(dialect=MLDB)} of this database"
            return "it reads more than one relation"
    if sum(1 for _ in tree.find_all(exp.Select)) > len(chain) - 1:
        return "it has a subquery outside FROM"
    return None


def _function_refusal(tree: exp.Expression, session) -> str | None:
    known = _internal_functions(session)
    for call in tree.find_all(exp.Anonymous):
        name = call.name.lower()
        if name in _STATEFUL:
            return f"it calls {name}(), which reads this session's state"
        if name.startswith(_SHIPPED) or name in known:
            continue
        for prefix, reason in _HERE_ONLY.items():
            if name.startswith(prefix):
                return reason
        if name.startswith("mldb_"):
            return f"it calls {name}, which runs here only"
        kind, extension = _function_kind(session, name)
        if kind is None:
            return f"it calls {name}, which this database does not have"
        if "macro" in kind:
            return f"it calls the macro {name}, defined in this database only"
        if extension is None and (reason := shipping.udf_refusal(session, name)):
            return reason  # (a function from Python: LOAD UDFS ships its file's text, DuckDB's Python API nothing)
    return None


def _calls(tree: exp.Expression, session) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The pinned models and the user functions the statement calls."""
    models, udfs = [], []
    known = _internal_functions(session)
    for call in tree.find_all(exp.Anonymous):
        name = call.name.lower()
        first = call.expressions[0] if call.expressions else None
        if name.startswith("mldb_predict_") and isinstance(first, exp.Literal) and first.is_string:
            models.append(first.this)
        elif not name.startswith("mldb_") and name not in known:
            udfs.append(name)
    return tuple(dict.fromkeys(models)), tuple(dict.fromkeys(udfs))


def _internal_functions(session) -> frozenset[str]:
    """DuckDB's own function names (they run the same on a worker). Read from a fresh DuckDB, as
    a database's ``duckdb_functions()`` counts functions registered from Python as internal too."""
    return _duckdb_functions()


@functools.cache
def _duckdb_functions() -> frozenset[str]:
    """(A property of the installed DuckDB, the same for every database: kept per process.)"""
    with duckdb.connect() as fresh:
        rows = fresh.execute("SELECT DISTINCT function_name FROM duckdb_functions()").fetchall()
    return frozenset(row[0].lower() for row in rows)


def _function_kind(session, name: str) -> tuple[str | None, str | None]:
    """(function_type, extension_name) of a function of this database ((None, None): no such function)."""
    rows = session.sql("SELECT function_type, extension_name FROM duckdb_functions() WHERE lower(function_name) = ?",
                       [name]).fetchall()
    return rows[0] if rows else (None, None)

# -- fragments -----------------------------------------------------------------------------------
def _same_node(copy: exp.Expression, original_root: exp.Expression, original: exp.Expression) -> exp.Expression:
    """The node of ``copy`` at the place ``original`` has under ``original_root``."""
    path, node = [], original
    while node is not original_root:
        path.append((node.arg_key, node.index))
        node = node.parent
    found = copy
    for key, index in reversed(path):
        child = found.args[key]
        found = child[index] if isinstance(child, list) else child
    return found


def over_piece(query: exp.Expression, table: exp.Table) -> exp.Expression:
    """``query`` reading ``__mldb_piece`` where it read the scan (its alias kept)."""
    piece = exp.to_table(PIECE)
    if table.args.get("alias"):
        piece.set("alias", table.args["alias"].copy())
    table.replace(piece)
    return query


def piece_sql(shape: Shape, params=None) -> str:
    """The fragment a worker runs, as SQL with every hole at its default (for EXPLAIN and tests)."""
    return template.plain(shape.fragment, params)[0]


def _statement_kind(tree: exp.Expression) -> str:
    if isinstance(tree, exp.Create):
        return f"CREATE {(tree.kind or '').upper()}".strip() + (" AS" if tree.expression is not None else "")
    return tree.key.upper()
