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
("the query joins events and customers"), which EXPLAIN shows. Nothing here connects to Ray
or changes the tree: the rule only records what it found on the planner (``planner.scaleout``).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field

import duckdb
from sqlglot import exp

from mldb import errors
from mldb.frontend.dialect import MLDB
from mldb.plan import template
from mldb.scaleout import settings

PIECE = "__mldb_piece"  # the relation a worker reads: one file, cast to the glob's schema
PARTIALS = "__mldb_partials"  # the partial rows of every piece, read by the combine query
READERS = {"read_parquet": "parquet", "parquet_scan": "parquet", "read_csv": "csv", "read_csv_auto": "csv"}
_FILE_ENDINGS = {".parquet": "parquet", ".csv": "csv", ".csv.gz": "csv", ".tsv": "csv"}
_READER_WORDS = frozenset(name.upper() for name in READERS)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_REFUSED_OPTIONS = ("union_by_name", "encryption_config")
_STATEFUL = ("nextval", "currval", "setseed", "getvariable", "query", "query_table")
_SHIPPED = ("mldb_predict_", "mldb_embed_")  # mldb's functions a worker has too (PREDICT, PREDICT_PROBA, EMBED)
_HERE_ONLY = {"mldb_explain_": "EXPLAIN_PREDICT / EVALUATE run here", "mldb_evaluate_": "EXPLAIN_PREDICT / "
              "EVALUATE run here"}
_ROW_WISE = {"group": "GROUP BY", "having": "HAVING", "qualify": "QUALIFY", "distinct": "DISTINCT",
             "order": "ORDER BY", "limit": "LIMIT", "offset": "OFFSET", "sample": "a SAMPLE"}
_COMBINABLE = (exp.Count, exp.Sum, exp.Min, exp.Max, exp.Avg)


@dataclass(frozen=True)
class Scan:
    """The one file scan of a statement, as written: ``read_parquet('ev/*.parquet', hive_partitioning = true)``."""

    reader: str  # 'parquet' or 'csv'
    function: str  # read_parquet, parquet_scan, read_csv, read_csv_auto (a file name: read_parquet / read_csv)
    patterns: tuple[str, ...]
    options: tuple[str, ...]  # each "name = value" as SQL, re-applied to every file
    text: str  # the scan as DuckDB reads it
    files: tuple[str, ...] = ()  # absolute paths, in DuckDB's order (glob's, per pattern)


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
    if not _READER_WORDS.isdisjoint(statement.words):
        return True
    return any(_reader_of_name(token.text) for token in statement.tokens)


# -- qualify -------------------------------------------------------------------------------------
def qualify(tree: exp.Expression, planner) -> Shape | str:
    """The statement's ``Shape``, or why it runs here (a short clause for EXPLAIN)."""
    root, target = tree, None
    if isinstance(tree, exp.Copy):
        target = _copy_target(tree)
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
    reason = _other_relations(tree, chain) or _function_refusal(tree, planner.session)
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
    if _aggregates_of(root) or root.args.get("group"):
        if target is not None:
            return "COPY of an aggregate runs here"
        session, params = planner.session, planner.params
        split = split_aggregates(root, aggregate_types(session, root, params), output_names(session, root, params))
        if isinstance(split, str):
            return split
        partial, combine = split
        partial = _over_piece(partial, partial.args["from_"].this)
        names = tuple(_aggregate_name(node) for node in _aggregates_of(root))
        return Shape("partials", scan, partial, combine, names, models=models, udfs=udfs)
    reason = _root_refusal(root)
    if isinstance(reason, str):
        return reason
    limit = reason
    if target is not None and limit is not None:
        return "COPY of a LIMIT runs here"
    fragment = tree.this.this.copy() if target is not None else tree.copy()
    fragment = _over_piece(fragment, _same_node(fragment, root, table))
    kind = "copy" if target is not None else "rows"
    return Shape(kind, scan, fragment, limit=limit, target=target, models=models, udfs=udfs)


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
    if _aggregates_of(select):
        return "an aggregate in a subquery needs all rows"
    return None


def _root_refusal(root: exp.Select) -> int | None | str:
    """None (no LIMIT), the root's LIMIT n, or why the root's extras need all rows."""
    if root.find(exp.Window):
        return "a window function needs all rows"
    for key, reason in (("order", "ORDER BY needs all rows (only LIMIT goes out)"), ("distinct", "DISTINCT "
                        "needs all rows"), ("offset", "OFFSET needs all rows in order"),
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
            if isinstance(table.this, exp.Identifier) and not _reader_of_name(table.name, table):
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
        kind = _function_kind(session, name)
        if kind is None:
            return f"it calls {name}, which this database does not have"
        if "macro" in kind:
            return f"it calls the macro {name}, defined in this database only"
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


def _function_kind(session, name: str) -> str | None:
    rows = session.sql("SELECT function_type FROM duckdb_functions() WHERE lower(function_name) = ?",
                       [name]).fetchall()
    return rows[0][0] if rows else None


# -- the scan ------------------------------------------------------------------------------------
def scan_of(table: exp.Table, params) -> Scan | str:
    """The ``Scan`` a FROM item reads, or why it is no file scan that goes out."""
    if table.args.get("sample"):
        return "a SAMPLE needs all rows"
    this = table.this
    if isinstance(this, exp.Identifier):
        reader = _reader_of_name(this.name, table)
        if reader is None:
            return f"it reads the table {table.sql(dialect=MLDB)} of this database"
        function = "read_parquet" if reader == "parquet" else "read_csv"
        return _checked_scan(reader, function, (this.name,), (), f"'{_quoted(this.name)}'")
    function = _function_name(this)
    if function not in READERS:
        return f"it reads {this.sql(dialect=MLDB)[:60]}"
    arguments = _arguments(this)
    if not arguments:
        return f"{function}() names no files"
    patterns = _patterns(arguments[0], params)
    if isinstance(patterns, str):
        return patterns
    options = []
    for option in arguments[1:]:
        if not isinstance(option, (exp.EQ, exp.PropertyEQ)):
            return f"{function}(...) option {option.sql(dialect=MLDB)} is not name = value"
        name = option.this.name.lower()
        if name in _REFUSED_OPTIONS and _truthy(option.expression):
            return f"{function}(..., {name} = {option.expression.sql(dialect=MLDB).lower()})"
        options.append(f"{name} = {option.expression.sql(dialect=MLDB)}")
    return _checked_scan(READERS[function], function, patterns, tuple(options), this.sql(dialect=MLDB))


def _checked_scan(reader, function, patterns, options, text) -> Scan | str:
    for pattern in patterns:
        if _URL.match(pattern):
            return f"'{pattern}' is not a local or shared path"
    return Scan(reader, function, tuple(patterns), tuple(options), text)


def _function_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.ReadParquet):
        return "read_parquet"
    if isinstance(node, exp.ReadCSV):
        return "read_csv"
    return node.sql_name().lower() if isinstance(node, exp.Func) else ""


def _arguments(node: exp.Expression) -> list:
    first = [node.this] if isinstance(node, exp.ReadCSV) and node.this is not None else []
    return first + list(node.expressions)


def _patterns(node: exp.Expression, params) -> tuple[str, ...] | str:
    if isinstance(node, exp.Placeholder):
        node = _bound(node, params)
        if isinstance(node, str):
            return node
    if isinstance(node, exp.Literal) and node.is_string:
        return (node.this,)
    if isinstance(node, (exp.Array, exp.List)) and node.expressions and all(
            isinstance(item, exp.Literal) and item.is_string for item in node.expressions):
        return tuple(item.this for item in node.expressions)
    return "the files are not written as a string or a list of strings"


def _bound(placeholder: exp.Placeholder, params) -> exp.Expression | str:
    """The parameter a numbered ``$n`` (or the only ``?``) stands for, as a literal."""
    name, value = placeholder.name, None
    if isinstance(params, dict):
        value = params.get(name)
    elif isinstance(params, (list, tuple)) and name.isdigit() and 0 < int(name) <= len(params):
        value = params[int(name) - 1]
    elif isinstance(params, (list, tuple)) and name in ("", "?") and len(params) == 1:
        value = params[0]
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, str) for item in value):
        return exp.Array(expressions=[exp.Literal.string(item) for item in value])
    return "the files are a parameter mldb cannot place (write them, or use $n)"


def _truthy(node: exp.Expression) -> bool:
    return not (isinstance(node, exp.Boolean) and not node.this) and node.sql().lower() not in ("0", "'false'")


def _reader_of_name(name: str, table: exp.Table | None = None) -> str | None:
    """parquet / csv for a file name DuckDB's replacement scan reads (a quoted name ending .parquet ...)."""
    if table is not None and (not isinstance(table.this, exp.Identifier) or not table.this.quoted
                              or table.args.get("db")):
        return None
    lower = name.lower()
    return next((reader for ending, reader in _FILE_ENDINGS.items() if lower.endswith(ending)), None)


def list_files(session, scan: Scan) -> tuple[str, ...] | str:
    """Every file the scan reads, expanded by DuckDB's own ``glob()`` here (its search path and
    rules), absolute, in DuckDB's order; a reason when a pattern matches nothing."""
    files: list[str] = []
    for pattern in scan.patterns:
        try:
            found = [row[0] for row in session.sql("SELECT file FROM glob(?) ORDER BY file", [pattern]).fetchall()]
        except errors.Error as error:
            return f"DuckDB cannot list '{pattern}' ({error.summary})"
        if not found:
            return f"no file matches '{pattern}'"
        files.extend(os.path.abspath(path) for path in found)
    return tuple(dict.fromkeys(files))


def _copy_target(copy: exp.Copy) -> tuple[str] | str:
    """(the directory COPY writes,) or why the COPY runs here."""
    if copy.args.get("kind"):
        return "COPY FROM runs here"
    if not isinstance(copy.this, exp.Subquery) or not isinstance(copy.this.this, exp.Select):
        return f"it reads the table {copy.this.sql(dialect=MLDB)} of this database"
    files = copy.args.get("files") or []
    if len(files) != 1 or not isinstance(files[0], exp.Literal) or not files[0].is_string:
        return "COPY's target is not one path written as a string"
    target = files[0].this
    if _URL.match(target):
        return f"'{target}' is not a local or shared path"
    params = {param.this.name.upper(): param.expression for param in copy.args.get("params") or ()}
    fmt = params.get("FORMAT")
    fmt = fmt.name.lower() if fmt is not None else ("parquet" if target.lower().endswith(".parquet") else "csv")
    if fmt != "parquet":
        return f"COPY ... (FORMAT {fmt}) runs here (only FORMAT parquet goes out)"
    if "PARTITION_BY" in params:
        return "COPY ... (PARTITION_BY ...) runs here"
    return (target,)


# -- aggregates ----------------------------------------------------------------------------------
def _aggregates_of(select: exp.Select) -> list[exp.AggFunc]:
    """The aggregate calls of ``select``'s own projections, in order."""
    found = []
    for projection in select.expressions:
        found.extend(node for node in projection.walk() if isinstance(node, exp.AggFunc))
    return found


def aggregate_types(session, select: exp.Select, params) -> list[str]:
    """DuckDB's type of each aggregate of ``select`` as the local statement computes it."""
    probe = select.copy()
    probe.set("expressions", [node.copy() for node in _aggregates_of(select)])
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
    aggregates = _aggregates_of(combine)
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
    name = _aggregate_name(node)
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


def _aggregate_name(node: exp.AggFunc) -> str:
    name = node.sql_name().lower() if not isinstance(node, exp.Anonymous) else node.name.lower()
    if isinstance(node, exp.Count) and isinstance(node.this, exp.Star):
        return "count(*)"
    return name


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


def _over_piece(query: exp.Expression, table: exp.Table) -> exp.Expression:
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


def _quoted(text: str) -> str:
    return text.replace("'", "''")


# -- EXPLAIN -------------------------------------------------------------------------------------
def explain_notes(planner, analyze: bool = False) -> list[str]:
    """The executor lines EXPLAIN ends with: where the statement runs and, under Ray, why."""
    found = getattr(planner, "scaleout", None)
    if found is None:
        return ["executor: local (this process)"]
    chosen = settings.effective(planner.session)
    if analyze:
        return [f"executor: local (this process): mldb_executor is '{chosen['mldb_executor']}', but EXPLAIN "
                "ANALYZE runs the statement here"]
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
