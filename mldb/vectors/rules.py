"""Rewrite rules for vectors: EMBED, VECTOR_SEARCH and the indexed top-k pattern.

Order (see ``mldb.vectors.feature``): ``rewrite_vector_search`` first (the query vector
of an indexed search is computed by its operator when the statement runs), then
``rewrite_embed`` for every EMBED left. The rules only read the catalog: the FAISS
search and the query's embedding happen in the operator, never while planning.
"""

from __future__ import annotations

import numpy as np
import sqlglot
from sqlglot import exp

from mldb import errors
from mldb.frontend.dialect import MLDB
from mldb.frontend.vectors import Embed, VectorSearch
from mldb.plan.rules import written_at
from mldb.plan.template import EXECUTION, Filling, render
from mldb.vectors import embedding
from mldb.vectors import faiss as fx
from mldb.vectors import rows, store
from mldb.vectors.functions import ensure_embed_function

_DISTANCES = {function: metric for metric, function in fx.METRICS.items()}
_DISTANCES.update({function.replace("array_", "list_"): metric for function, metric in _DISTANCES.items()})


# -- EMBED -------------------------------------------------------------------------------------

def rewrite_embed(tree: exp.Expression, context) -> exp.Expression:
    """``EMBED(text [, model])`` -> the Arrow UDF for the model's dimension.

        SELECT EMBED(body) FROM docs
        -> SELECT mldb_embed_384(body, 'all-MiniLM-L6-v2', <statement>) FROM docs

    A constant text (``EMBED('plane tickets')``) is embedded once by an operator when the
    statement runs, which writes the vector into the statement; until then the call is
    ``mldb_embed_query_384``, a function DuckDB does not evaluate while planning, so an
    EXPLAIN computes no embedding.
    """
    embeds = list(tree.find_all(Embed))
    if any(not p.args.get("this") for node in embeds for p in node.this.find_all(exp.Placeholder)):
        _number_placeholders(tree)  # the text is read more than once (``_text_guard``): ``?`` must become ``$n``
    for node in embeds:
        with written_at(node):
            model, dim = _model(context.session, node.args.get("expression"))
            _check_text(node.this)
        if context.stored or not _is_text(node.this):
            function = ensure_embed_function(context.session.database, dim)
            node.replace(_udf_call(function, node.this, model, context.execution_argument()))
            context.operator(f"EMBED: model {model} ({dim} dimensions) -> {function}, Arrow batches")
            continue
        function = ensure_embed_function(context.session.database, dim, query=True)
        spot = context.hole(_udf_call(function, node.this, model, context.execution_argument()))
        node.replace(spot)
        context.operator(f"EMBED: model {model} ({dim} dimensions), the query text embedded once when the "
                         "statement runs", fill=_embed_once(spot.name, node.this.name, model, dim))
    return tree


def _udf_call(function: str, text: exp.Expression, model: str, execution: exp.Expression) -> exp.Expression:
    if not _is_text(text):
        text = _text_guard(text)
    return exp.Anonymous(this=function, expressions=[text, exp.Literal.string(model), execution])


# EMBED's text, typed when DuckDB binds it (a column, a parameter): VARCHAR as it is, an ENUM as
# its label, NULL as NULL, anything else an error (DuckDB folds typeof(), so this costs nothing)
_TEXT_CHECK = ("CASE WHEN typeof(mldb_text) IN ('VARCHAR', '\"NULL\"') OR typeof(mldb_text) LIKE 'ENUM(%' "
               "THEN mldb_text::VARCHAR ELSE error('mldb[ProgrammingError/42804] EMBED expects text (VARCHAR); ' "
               "|| {what} || ' is ' || typeof(mldb_text) || '; cast it to VARCHAR') END")


def _text_guard(text: exp.Expression) -> exp.Expression:
    what = text.sql(dialect=MLDB)
    if isinstance(text, (exp.Column, exp.Placeholder)):
        what = f"{'column' if isinstance(text, exp.Column) else 'parameter'} {what}"
    guard = sqlglot.parse_one(_TEXT_CHECK.format(what=exp.Literal.string(what).sql(dialect=MLDB)), dialect=MLDB)
    for column in [c for c in guard.find_all(exp.Column) if c.name == "mldb_text"]:
        column.replace(text.copy())
    return guard


def _is_text(node: exp.Expression) -> bool:
    return isinstance(node, exp.Literal) and node.is_string


def _embed_once(spot: str, text: str, model: str, dim: int):
    def fill(execution, filling) -> None:
        if not filling.has(spot):
            return  # an index search replaced the expression that held it
        vector = embedding.embed_texts([text], model, execution)[0]
        filling.fill(spot, _vector_literal(vector, f"FLOAT[{dim}]"))

    return fill


def _vector_literal(vector, data_type: str) -> str:
    return f"[{', '.join(map(repr, np.asarray(vector, dtype=np.float64).tolist()))}]::{data_type}"


def _embed_calls(tree: exp.Expression, context) -> exp.Expression:
    """EMBED -> the UDF, for a query mldb runs itself at execution time (no operators)."""
    for node in list(tree.find_all(Embed)):
        model, dim = _model(context.session, node.args.get("expression"))
        _check_text(node.this)
        function = ensure_embed_function(context.session.database, dim)
        replacement = _udf_call(function, node.this, model, context.execution_argument())
        if node is tree:
            return replacement
        node.replace(replacement)
    return tree


def resolve_model(session, argument: exp.Expression | None) -> tuple[str, int]:
    """EMBED's model argument (None: the default) -> (the model as its UDF names it, its dimension)."""
    return _model(session, argument)


def _model(session, argument: exp.Expression | None) -> tuple[str, int]:
    if argument is None:
        return embedding.DEFAULT_MODEL, 384
    if not (isinstance(argument, exp.Literal) and argument.is_string):
        raise errors.ProgrammingError(f"the model of EMBED must be a string literal, got {argument.sql()}")
    name, row = argument.name, None
    if store.catalog_ready(session):
        row = store.one(session, "SELECT path FROM mldb.embedding_models WHERE lower(name) = lower(?) LIMIT 1",
                         [name])
        name = row[0] if row else name
    try:
        model = embedding.canonical(name, session.database.file_roots)
        return model, embedding.dimension(model)
    except embedding.UnknownModel as error:
        if row:
            raise errors.ProgrammingError(
                f"embedding model '{argument.name}' is registered in mldb.embedding_models with path '{name}', "
                "which is not a sentence-transformers model directory (no modules.json or config.json)",
                sqlstate="42704") from None
        raise errors.ProgrammingError(str(error).replace(name, argument.name), sqlstate="42704") from None
    except (OSError, ValueError) as error:
        raise errors.ProgrammingError(f"cannot load embedding model '{argument.name}': {error}",
                                      sqlstate="42704") from None


def _check_text(argument: exp.Expression) -> None:
    literal_non_text = isinstance(argument, exp.Literal) and not argument.is_string
    if literal_non_text or isinstance(argument, (exp.Boolean, exp.Array)):
        raise errors.ProgrammingError(f"EMBED expects text (VARCHAR), got {argument.sql()}", sqlstate="42804")


# -- VECTOR_SEARCH ---------------------------------------------------------------------------------

def rewrite_vector_search(tree: exp.Expression, context) -> exp.Expression:
    """``VECTOR_SEARCH`` sources, then indexed ``ORDER BY distance(col, q) LIMIT k``.

        SELECT * FROM VECTOR_SEARCH(docs, v, EMBED('flights'), 3)
        -> SELECT * FROM (SELECT docs.*, array_cosine_distance(v, <q>) AS distance FROM docs
                          ORDER BY array_cosine_distance(v, <q>) LIMIT 3) AS vector_search
        SELECT id FROM docs WHERE lang = 'en' ORDER BY array_cosine_distance(v, <q>) LIMIT 3
        -> SELECT id FROM docs WHERE lang = 'en' AND "docs"."id" IN (17, 4, 80)   -- FAISS top 3 with lang = 'en'
           ORDER BY list_position([17, 4, 80], "docs"."id") LIMIT 3

    The search is an operator that runs when the statement does (never for EXPLAIN): one
    DuckDB query evaluates the query vector (and the keys a WHERE lets through), FAISS
    finds the top k, and DuckDB then reads only those rows (a constant IN list becomes a
    filter inside its table scan).
    """
    searches = [table for table in tree.find_all(exp.Table) if isinstance(table.this, VectorSearch)]
    if searches and any(not p.args.get("this") for p in tree.find_all(exp.Placeholder)):
        _number_placeholders(tree)  # the query vector is used twice: ``?`` must become one ``$n``
    for table in searches:
        _replace_vector_search(table, context)
    if isinstance(tree, exp.Create) and tree.kind in ("VIEW", "MACRO", "FUNCTION"):
        return tree  # a stored query searches when it runs: DuckDB's exact search, never a frozen key list
    for select in list(tree.find_all(exp.Select)):
        _rewrite_top_k(select, context)
    return tree


def _replace_vector_search(table: exp.Table, context) -> None:
    arguments = table.this.expressions
    if len(arguments) != 4:
        raise errors.ProgrammingError("VECTOR_SEARCH takes (table, column, query_vector, k)")
    source, column, query, k = arguments
    if not isinstance(source, (exp.Column, exp.Table)) or not isinstance(column, exp.Column):
        raise errors.ProgrammingError("VECTOR_SEARCH takes a table name and a column name first")
    parts = [part.name for part in source.parts]
    schema, name = (parts[-2] if len(parts) > 1 else None), parts[-1]
    alias = table.alias or "vector_search"
    catalog = parts[-3] if len(parts) > 2 else None
    info = _index_on(context.session, schema, name, column.name, None, catalog)
    column_type = _column_type(context.session, table, schema, name, column.name)
    function = fx.METRICS[info.metric if info else "cosine"]
    if column_type is not None and column_type.endswith("[]"):
        function = function.replace("array_", "list_")  # DuckDB's distance for FLOAT[]
    query, k = _checked_query(query, column.name, column_type, info is not None), _checked_k(k)
    distance = exp.Anonymous(this=function, expressions=[exp.column(column.name, table=alias), query])
    inner = (exp.select(f"{alias}.*").select(exp.alias_(distance.copy(), "distance"))
             .from_(exp.Table(this=exp.to_identifier(name), db=exp.to_identifier(schema) if schema else None,
                              catalog=exp.to_identifier(catalog) if catalog else None, alias=exp.TableAlias(this=exp.to_identifier(alias))))
             .order_by(exp.Ordered(this=distance, nulls_first=False)).limit(k))
    _push_filter(table, inner)
    outer = table.parent.parent if isinstance(table.parent, exp.From) else None
    subquery = exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias)))
    table.replace(subquery)
    if info is not None and _reads_only(outer, subquery, {info.key.lower(), "distance"}):
        inner.expressions[0].replace(exp.column(info.key, table=alias, quoted=True))  # (not ``alias.*``)
    context.note(f"VECTOR_SEARCH over {name}.{column.name}")


def _reads_only(outer, subquery: exp.Subquery, names: set[str]) -> bool:
    """Whether the query around VECTOR_SEARCH reads no column of it but ``names``."""
    if not isinstance(outer, exp.Select) or outer.args.get("joins"):
        return False
    inside = {id(node) for node in subquery.walk()}
    for node in outer.walk():
        if id(node) in inside:
            continue
        if isinstance(node, exp.Star) or (isinstance(node, exp.Column) and node.name.lower() not in names):
            return False
    return True


# What VECTOR_SEARCH checks when the statement runs (DuckDB's error() with an mldb class and
# SQLSTATE that ``errors.translate`` restores): a NULL query vector, or one with a NULL, NaN or
# infinite value, would give every row a NULL or NaN distance and so an arbitrary top k; one of
# another length, or (for a FLOAT column or a FAISS index) beyond float32's range, cannot be cast.
_QUERY_CHECK = (
    "(SELECT CASE WHEN q IS NULL THEN error('mldb[DataError/22004] VECTOR_SEARCH: the query vector is NULL') "
    "WHEN {length} <> 0 AND len(q::DOUBLE[]) <> {length} THEN error('mldb[DataError/22023] VECTOR_SEARCH: "
    "the query vector has ' || len(q::DOUBLE[]) || ' values; column ' || {column} || ' holds {length}-dimensional "
    "vectors') "
    "WHEN list_count(q::DOUBLE[]) < len(q::DOUBLE[]) OR NOT isfinite(list_max(q::DOUBLE[])) "
    "OR NOT isfinite(list_min(q::DOUBLE[])) THEN error('mldb[DataError/22023] VECTOR_SEARCH: the query vector "
    "holds NULL, NaN or infinite values; it needs finite numbers') "
    "WHEN {float32} AND greatest(list_max(q::DOUBLE[]), -list_min(q::DOUBLE[])) > 3.4028234663852886e38 "
    "THEN error('mldb[DataError/22003] VECTOR_SEARCH: the query vector holds values beyond float32''s range "
    "(magnitude above 3.4e38)') ELSE q END FROM (SELECT mldb_query AS q))")
_K_CHECK = (
    "(SELECT CASE WHEN k >= 1 AND k = floor(k) THEN k::BIGINT ELSE error('mldb[ProgrammingError/22023] "
    "VECTOR_SEARCH: k must be a positive integer; found ' || coalesce(k::VARCHAR, 'NULL')) END "
    "FROM (SELECT try_cast(mldb_k AS DOUBLE) AS k))")


def _checked_query(query: exp.Expression, column: str, column_type: str | None,
                   indexed: bool) -> exp.Expression:
    """``q`` -> ``CAST((SELECT CASE WHEN q IS NULL THEN error(...) ... ELSE q END ...) AS <column type>)``,
    see ``_QUERY_CHECK``: a list literal such as ``[1, 0]`` takes the column's type, so the exact
    search (DuckDB's) takes what FAISS takes. The guard remembers the cast ``q`` (``_unchecked``)
    so that an indexed search reads a parameter or ``EMBED('text')`` directly (``_search``
    checks the vector then)."""
    if isinstance(query, exp.Null):
        raise errors.DataError("VECTOR_SEARCH: the query vector is NULL", sqlstate="22004")
    length = rows.vector_length(column_type) if column_type else 0
    float32 = indexed or (column_type or "").upper().startswith(("FLOAT", "REAL"))
    guard = sqlglot.parse_one(_QUERY_CHECK.format(length=length or 0, column=exp.Literal.string(column).sql(),
                                                  float32="true" if float32 else "false"), dialect=MLDB)
    next(c for c in guard.find_all(exp.Column) if c.name == "mldb_query").replace(query)
    if column_type is not None:
        query, guard = exp.cast(query.copy(), column_type), exp.cast(guard, column_type)
    guard.meta["vector_query"] = query
    return guard


def _unchecked(query: exp.Expression) -> exp.Expression:
    return query.meta.get("vector_query", query) if query.meta else query


def _uncast(query: exp.Expression) -> exp.Expression:
    return query.this if isinstance(query, exp.Cast) else query


def _checked_k(k: exp.Expression) -> exp.Expression:
    """VECTOR_SEARCH's k must be a positive integer (LIMIT NULL would return the whole table,
    LIMIT 2.5 three rows): a literal is checked now, anything else when the statement runs."""
    if isinstance(k, exp.Literal) and k.is_int and int(k.name) >= 1:
        return k
    if isinstance(k, (exp.Literal, exp.Null, exp.Neg, exp.Boolean)):
        raise errors.ProgrammingError(f"VECTOR_SEARCH: k must be a positive integer; found {k.sql(dialect=MLDB)}",
                                      sqlstate="22023")
    guard = sqlglot.parse_one(_K_CHECK, dialect=MLDB)
    next(c for c in guard.find_all(exp.Column) if c.name == "mldb_k").replace(k)
    return guard


def _column_type(session, node: exp.Table, schema, table, column) -> str | None:
    """The vector column's DuckDB type, from the table or view ``table``; None when ``table``
    is a CTE or unknown (DuckDB judges). A missing or non-vector column is refused here."""
    if any(cte.alias_or_name.lower() == table.lower() for cte in node.root().find_all(exp.CTE)):
        return None
    types = rows.relation_columns(session, schema, table)
    if not types:
        return None
    found = {name.lower(): kind for name, kind in types.items()}.get(column.lower())
    if found is None:
        raise errors.ProgrammingError(f"VECTOR_SEARCH: column {column} does not exist in {table}; it has: "
                                      f"{', '.join(types)}", sqlstate="42703")
    if rows.vector_length(found) is None:
        raise errors.ProgrammingError(f"VECTOR_SEARCH: column {column} of {table} is {found}, not a vector "
                                      "(FLOAT[n], DOUBLE[n] or a list of numbers)", sqlstate="42804")
    return found


def _push_filter(table: exp.Table, inner: exp.Select) -> None:
    """Move the outer WHERE inside, so that a filter still yields k rows (when it does not use distance)."""
    outer = table.parent.parent if isinstance(table.parent, exp.From) else None
    if not isinstance(outer, exp.Select) or outer.args.get("joins") or outer.args.get("where") is None:
        return
    condition = outer.args["where"].this
    if any(c.name.lower() == "distance" for c in condition.find_all(exp.Column)):
        return
    outer.set("where", None)
    inner.where(condition, copy=False)


# -- ORDER BY distance(col, q) LIMIT k on an indexed column ------------------------------------------

def _rewrite_top_k(select: exp.Select, context) -> None:
    match = _top_k_pattern(select)
    if match is None:
        return
    table, call, column, query, metric, k = match
    info = _index_on(context.session, table.db or None, table.name, column, metric, table.catalog or None, context)
    if info is None:
        _explain_no_index(context, table, column, metric)
        return  # DuckDB searches exactly
    if _calls_aggregate(context.session, select, call):
        context.note("exact search (no FAISS): the SELECT list or ORDER BY calls an aggregate, a macro or a "
                     "volatile function over the table's rows")
        return
    if not _default_order(context.session):
        context.note("exact search (no FAISS): default_order / default_null_order make ORDER BY other than "
                     "ascending with NULLs last")
        return
    root = select.root()
    if any(not p.args.get("this") for p in root.find_all(exp.Placeholder)):
        _number_placeholders(root)  # the query is evaluated apart: ``?`` must become ``$n``
    types = {name.lower(): kind for name, kind in rows.relation_columns(context.session, table.db or None,
                                                                         table.name).items()}
    query = _typed_query(types.get(column.lower()), query)
    embedded = _embedded_model(context, query)
    subject = "VECTOR_SEARCH: the query vector" if query.meta.get("vector_query") is not None else None
    filtered = select.args.get("where") is not None
    source = _query_source(context, query)
    probe = None if source and source[0] == "literal" and not filtered else _probe(context, select, table, info, query)
    key = _key(table, info).sql(dialect=MLDB)
    spots, only_keys = _search_holes(select, call, table, info, context)
    only_keys = _key_type(types, table, info) if only_keys else None

    def search(execution, filling) -> None:
        """When the statement runs: the query vector (and the keys a WHERE lets through),
        then FAISS's top k, written into the statement's holes. When the index cannot
        answer for this statement's snapshot (see ``store.searchable``), the holes keep
        the statement as written and DuckDB searches exactly."""
        state = store.searchable(context.session, info)
        if state is None:
            return
        vector, allowed = _evaluate(context, None if filtered else source, probe, execution, filling)
        execution.check()
        keys, distances = _search(state, vector, k, allowed, subject)
        if len(keys[0]) < k:
            return  # fewer than k rows with a vector: DuckDB's exact search adds those without one (NULLs last)
        _use_results(filling, spots, key, keys[0], distances[0], only_keys)

    where = " with the WHERE's keys" if filtered else ""
    reads = "; reads only the keys found (index-only)" if only_keys else "; reads the rows found by key"
    context.operator(f"FAISS search: index {info.name} ({info.kind}, {info.metric}) on {info.table}.{info.column}, "
                     f"top {k}{where}{embedded}{reads}", fill=search)


def _search_holes(select: exp.Select, call: exp.Expression, table: exp.Table, info, context):
    """Holes where the search writes its results: the WHERE (``AND <filter>``), the ORDER BY
    and every projection of the distance; and, when the statement reads nothing but the key
    and the distance (``_index_only``), the table and the whole WHERE. Until filled they
    hold the statement as written."""
    spots = {"filter": [], "rank": [], "distance": [], "table": [], "where": []}
    distances = [p for p in select.expressions if isinstance(p, exp.Alias) and _is_call(select, p.this, call)]
    only_keys = _index_only(select, distances, table, info.key)
    for projection in distances:
        spots["distance"].append(_hole_at(projection, "this", context))
    spots["rank"].append(_hole_at(select.args["order"].expressions[0], "this", context))
    spot = context.hole(exp.true())
    select.where(spot, copy=False)
    spots["filter"].append(spot.name)
    if only_keys:
        spots["where"].append(_hole_at(select.args["where"], "this", context))
        spots["table"].append(_hole_at(table.parent, "this", context))
    return spots, only_keys


def _hole_at(parent: exp.Expression, arg: str, context) -> str:
    spot = context.hole(parent.args[arg])
    parent.set(arg, spot)
    return spot.name


def _is_call(select: exp.Select, node: exp.Expression, call: exp.Expression) -> bool:
    return node == call or _aliased(select, node) == call


def _index_only(select: exp.Select, distances: list, table: exp.Table, key: str) -> bool:
    """Whether the statement needs nothing of the table but the key and the distance (both
    from the index): then the rows found are not read from the table at all."""
    if not isinstance(table.parent, exp.From) or table.args.get("db") or table.args.get("catalog"):
        return False
    for projection in select.expressions:
        if any(projection is d for d in distances):
            continue
        if projection.find(exp.Star, exp.Select) is not None:
            return False
        for column in projection.find_all(exp.Column):
            if column.name.lower() != key.lower() or column.table not in ("", table.alias_or_name):
                return False
    return True


def _use_results(filling, spots: dict[str, list[str]], key: str, keys, distances, only_keys) -> None:
    """WHERE key IN (found), ORDER BY the FAISS rank, and the distance from FAISS wherever
    the query selects it (so DuckDB reads only the rows found, and not their vectors); when
    only the key is read (``only_keys``: its type, name and the table's), the table is the
    list of keys found."""
    if len(keys) == 0:
        for name in spots["filter"]:
            filling.fill(name, "false")
        return
    found = ", ".join(map(str, keys.tolist()))
    values = ", ".join(map(repr, distances.astype(np.float64).tolist()))
    rank, distance = f"list_position([{found}], {key})", f"list_extract([{values}]::FLOAT[], {{rank}})"
    if only_keys:
        key_type, column, alias = only_keys
        for name in spots["where"]:
            filling.fill(name, "true")  # (the keys found already satisfy it)
        for name in spots["table"]:
            filling.fill(name, f"(SELECT unnest([{found}]::{key_type}[]) AS {column}, unnest([{values}]::FLOAT[]) AS "
                               f"mldb_distance, unnest(range(1, {len(keys) + 1})) AS mldb_rank) AS {alias}")
        rank, distance = f"{alias}.mldb_rank", f"{alias}.mldb_distance"
    for name in spots["filter"]:
        filling.fill(name, f"{key} IN ({found})")
    for name in spots["rank"]:
        filling.fill(name, rank)
    for name in spots["distance"]:
        filling.fill(name, distance.format(rank=rank))


def _top_k_pattern(select: exp.Select):
    """(table, call, column, query, metric, k) when ``select`` is a plain top-k by a vector distance."""
    order, limit = select.args.get("order"), select.args.get("limit")
    if order is None or limit is None or len(order.expressions) != 1 or order.expressions[0].args.get("desc"):
        return None
    if order.expressions[0].args.get("nulls_first") or (limit.args.get("limit_options") or exp.Expression()).args.get(
            "percent"):
        return None  # (rows without a vector first; LIMIT 2%: DuckDB's exact search)
    call = _aliased(select, order.expressions[0].this)
    metric = _DISTANCES.get(call.name.lower()) if isinstance(call, exp.Anonymous) else None
    source = select.args.get("from_") or select.args.get("from")
    table = source.this if source else None
    if metric is None or not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        return None
    if any(select.args.get(key) for key in ("joins", "group", "having", "distinct", "qualify", "windows", "sample")):
        return None
    if table.args.get("sample") or _over_rows(select):
        return None  # (TABLESAMPLE: the top k of the sample, not of the table)
    limit, offset = _integer(limit.expression), _integer((select.args.get("offset") or exp.Offset()).expression, 0)
    found = _column_and_query(call.expressions, table)
    if found is None or limit is None or offset is None:
        return None
    return table, call, found[0], found[1], metric, limit + offset


def _over_rows(select: exp.Select) -> bool:
    """Whether the SELECT list or ORDER BY computes over more than one row of the table: a
    window function (``count(*) OVER ()``), an aggregate (without GROUP BY the query is one
    row over the whole table) or a set-returning ``unnest``. Over the k rows found by an index
    it would give another result than DuckDB's exact search (subqueries are their own); so would a
    volatile function (``random()``, ``uuid()``; ``nextval`` in ``_calls_aggregate``), run once per row read."""
    nodes = [*select.expressions, *select.args["order"].expressions]
    for node in nodes:
        for found in node.find_all(exp.Window, exp.AggFunc, exp.Explode, exp.Unnest, exp.Rand, exp.Uuid):
            if found.find_ancestor(exp.Select) is select or found.find_ancestor(exp.Select) is None:
                return True
    return False


_VOLATILE = frozenset({"nextval", "currval", "random", "uuid", "gen_random_uuid", "setseed", "uuidv4", "uuidv7"})
_ORDER_SETTINGS = ("SELECT current_setting('default_order'), current_setting('default_null_order')")


def _default_order(session) -> bool:
    """Whether ``ORDER BY x`` means ascending with NULLs last here (``SET default_order = 'desc'``
    or ``default_null_order = 'nulls_first'`` change it, and move the catalog version: plans follow)."""
    try:
        order, nulls = store.one(session, _ORDER_SETTINGS, None)
    except errors.Error:
        return False
    return str(order).lower() in ("asc", "ascending") and str(nulls).lower() in ("nulls_last", "nulls last")


def _calls_aggregate(session, select: exp.Select, call: exp.Expression) -> bool:
    """Whether a function sqlglot does not know in the SELECT list or ORDER BY is one of DuckDB's
    aggregates (``mode(x)``, a user's aggregate), a macro (which may hold a window function or an
    aggregate: ``count(*) OVER ()``) or volatile (``nextval``): each runs over the rows DuckDB reads,
    which an index search cuts to k (see ``_over_rows``)."""
    nodes = [*select.expressions, *select.args["order"].expressions]
    names = {node.name.lower() for projection in nodes for node in projection.find_all(exp.Anonymous)
             if node.find_ancestor(exp.Select) is select and node != call}
    if not names:
        return False
    if names & _VOLATILE:
        return True
    try:
        row = store.one(session, "SELECT count(*) FROM duckdb_functions() WHERE function_type IN ('aggregate', "
                                 "'macro') AND lower(function_name) IN (SELECT unnest($1::VARCHAR[]))", [sorted(names)])
    except errors.Error:
        return True
    return bool(row and row[0])


def _aliased(select: exp.Select, ordered: exp.Expression) -> exp.Expression:
    """``ORDER BY d`` where the SELECT list has ``<distance> AS d``: the distance call."""
    if isinstance(ordered, exp.Column) and not ordered.table:
        for projection in select.expressions:
            if isinstance(projection, exp.Alias) and projection.alias == ordered.name:
                ordered = projection.this
    if isinstance(ordered, exp.EuclideanDistance):  # sqlglot's node for list_distance
        return exp.Anonymous(this="list_distance", expressions=[ordered.this, ordered.expression])
    return ordered


def _integer(node: exp.Expression | None, default=None):
    if node is None:
        return default
    if isinstance(node, exp.Literal) and node.is_int:
        return int(node.name)
    return None


def _column_and_query(arguments: list[exp.Expression], table: exp.Table):
    if len(arguments) != 2:
        return None
    for column, query in (arguments, arguments[::-1]):
        if isinstance(column, exp.Column) and column.table in ("", table.alias_or_name) and _constant(query):
            return column.name, query
    return None


def _constant(node: exp.Expression) -> bool:
    """No column of the enclosing query (columns inside a subquery of ``node`` are fine)."""
    subqueries = {id(select) for select in node.find_all(exp.Select)}
    return all(id(column.find_ancestor(exp.Select)) in subqueries for column in node.find_all(exp.Column))


def _index_on(session, schema, table, column, metric, catalog=None, context=None) -> store.IndexInfo | None:
    if not store.catalog_ready(session):
        return None
    for info in store.for_table(session, schema, table):
        if info.column.lower() == column.lower() and (metric is None or info.metric == metric):
            hidden = _hidden(session, schema, table, catalog)
            if hidden is not None:
                if context is not None:
                    context.note(f"exact search (no FAISS): {hidden}; index {info.name} is on "
                                 f"{info.schema}.{info.table}")
                return None
            return info
    return None


def _hidden(session, schema, table, catalog) -> str | None:
    """Why the name does not mean the indexed table as DuckDB resolves it, or None.

    DuckDB looks for ``t`` and ``main.t`` in the connection's temporary catalog first: a
    ``CREATE TEMP TABLE t`` / ``TEMP VIEW t``, or a registered frame (``register('t', ...)``,
    a temporary view), hides the table of the index. ``db.schema.t`` names its database.
    (Plans are cached by the catalog version, which CREATE, DROP, register and unregister
    move.)"""
    try:
        if catalog:
            current = store.one(session, "SELECT current_database()")[0]
            return None if catalog.lower() == current.lower() else f"{catalog}.{schema}.{table} is in database {catalog}"
        if schema is not None and schema.lower() != "main":
            return None
        row = store.one(session, "SELECT kind FROM (SELECT 'table' AS kind FROM duckdb_tables() WHERE database_name = "
                                 "'temp' AND schema_name = 'main' AND lower(table_name) = lower($1) UNION ALL "
                                 "SELECT 'view' FROM duckdb_views() WHERE database_name = 'temp' AND schema_name = "
                                 "'main' AND lower(view_name) = lower($1)) LIMIT 1", [table])
    except errors.Error:
        return "the catalog cannot be read now"  # (DuckDB's exact search says why, if it fails too)
    return None if row is None else f"temporary {row[0]} {table} hides the table (DuckDB reads temp.{table})"


def _embedded_model(context, query: exp.Expression) -> str:
    """For EXPLAIN: the embedding model of an ``EMBED('text')`` query vector."""
    query = _uncast(_unchecked(query))
    if isinstance(query, Embed):
        model, _ = _model(context.session, query.args.get("expression"))
        return f"; query vector: EMBED with model {model}"
    return ""


def _query_source(context, query: exp.Expression):
    """How a search reads its query vector without DuckDB: ("parameter", name), ("literal",
    values) or ("embed", text, model); None when only DuckDB can evaluate it (``_probe``)."""
    query = _uncast(_unchecked(query))
    inner = _uncast(query)
    if isinstance(inner, exp.Placeholder):
        return "parameter", str(inner.args.get("this"))
    if isinstance(inner, exp.Array) and (values := _numbers(inner)) is not None:
        return "literal", values
    if isinstance(query, Embed) and isinstance(query.this, exp.Literal) and query.this.is_string:
        model, _ = _model(context.session, query.args.get("expression"))
        return "embed", query.this.name, model
    return None


def _probe(context, select: exp.Select, table: exp.Table, info, query: exp.Expression) -> str:
    """The SQL (with holes) that evaluates the query vector and the keys a WHERE lets
    through, in one DuckDB round trip: ``SELECT <q> AS q, <keys or NULL> AS allowed``."""
    allowed = exp.null()
    if select.args.get("where") is not None:
        keys = exp.select(f"list({_key(table, info).sql(dialect=MLDB)}::BIGINT)").from_(table.copy())
        allowed = exp.func("coalesce", exp.Subquery(this=keys.where(select.args["where"].this.copy())),
                           exp.cast(exp.Array(expressions=[]), "BIGINT[]"))
    probe = exp.select(exp.alias_(query.copy(), "q"), exp.alias_(allowed, "allowed"))
    return render(_embed_calls(probe, context))


def _evaluate(context, source, probe: str | None, execution, filling):
    """(query vector, keys the WHERE lets through or None) for this run: without DuckDB
    when the vector is a parameter or ``EMBED('text')`` and no WHERE filters (``source``)."""
    if source is not None:
        direct = _direct_vector(context, source, execution, filling.params)
        if direct is not None:
            return direct, None
    text = Filling(probe, filling.params)
    text.fill(EXECUTION, str(execution.id))
    sql, params = text.bind()
    return store.one(context.session, sql, params)


def _direct_vector(context, source, execution, params):
    """The query vector of a parameter (a list or an array; anything else DuckDB casts) or of ``EMBED('text')``."""
    if source[0] == "embed":
        return embedding.embed_texts([source[1]], source[2], execution)[0]
    if source[0] == "literal":
        return source[1]
    name = source[1]
    if isinstance(params, dict):
        value = params.get(name)
    elif params is not None and name.isdigit() and int(name) <= len(params):
        value = params[int(name) - 1]
    else:
        return None
    return value if isinstance(value, (list, tuple, np.ndarray)) else None


def _numbers(array: exp.Array) -> np.ndarray | None:
    """The values of a list literal of numbers (``[0.1, -2, 3e-5]``), else None."""
    values = []
    for item in array.expressions:
        negative = isinstance(item, exp.Neg)
        item = item.this if negative else item
        if not (isinstance(item, exp.Literal) and not item.is_string):
            return None
        values.append(-float(item.name) if negative else float(item.name))
    return np.asarray(values, dtype=np.float64)


def _typed_query(column_type: str | None, query: exp.Expression) -> exp.Expression:
    """A bare parameter or list as the query vector takes the column's type: DuckDB reads a
    Python list of floats as DOUBLE[] (a list literal as DECIMAL[]), which no distance
    function takes with a FLOAT[n] column."""
    if not isinstance(query, (exp.Placeholder, exp.Array)):
        return query
    if column_type is None or rows.vector_length(column_type) is None:
        return query
    typed = exp.Cast(to=exp.DataType.build(column_type, dialect=MLDB))
    query.replace(typed)
    typed.set("this", query)  # (no copy: a list literal of 384 numbers is costly to copy)
    return typed


def _key_type(types: dict[str, str], table: exp.Table, info) -> tuple[str, str, str] | None:
    """(the key's type, its quoted name, the table's quoted name) for an index-only read."""
    key_type = types.get(info.key.lower())
    if key_type is None:
        return None
    quoted = exp.to_identifier(info.key, quoted=True).sql(dialect=MLDB)
    return key_type, quoted, exp.to_identifier(table.alias_or_name, quoted=True).sql(dialect=MLDB)


def _explain_no_index(context, table: exp.Table, column: str, metric: str) -> None:
    """An index on the column with another metric cannot answer: EXPLAIN says so."""
    if not store.catalog_ready(context.session):
        return
    for info in store.for_table(context.session, table.db or None, table.name):
        if info.column.lower() == column.lower() and info.metric != metric:
            context.note(f"exact search (no FAISS): index {info.name} on {info.table}.{info.column} uses metric "
                         f"{info.metric}; the query orders by {fx.METRICS[metric]} ({metric})")
            return


def _number_placeholders(root: exp.Expression) -> None:
    """``?`` -> ``$1``, ``$2`` ... in text order, so that a copied WHERE reuses the same parameters."""
    for number, placeholder in enumerate(root.find_all(exp.Placeholder, bfs=False), start=1):
        placeholder.set("this", str(number))


def _key(table: exp.Table, info: store.IndexInfo) -> exp.Column:
    return exp.column(info.key, table=table.alias_or_name, quoted=True)


def _search(state, vector, k, allowed, subject: str | None = None):
    """FAISS's top k for a checked query vector; ``subject`` names it in errors (VECTOR_SEARCH's own words)."""
    subject = subject or f"the query vector for index {state.name}"
    if vector is None:
        raise errors.DataError(f"{subject} is NULL; it needs {state.dim} numbers",
                               sqlstate="22004")
    try:
        wide = np.asarray(vector, dtype=np.float64).reshape(1, -1)
    except (TypeError, ValueError):
        raise errors.DataError(f"{subject} is not a list of numbers") from None
    if wide.shape[1] != state.dim:
        raise errors.DataError(f"the query vector has {wide.shape[1]} values; index {state.name} "
                               f"holds {state.dim}-dimensional vectors", sqlstate="22023")
    if not np.isfinite(wide).all():  # (a NULL value reads as NaN)
        raise errors.DataError(f"{subject} holds NULL, NaN or infinite values; "
                               "it needs finite numbers", sqlstate="22023")
    if np.abs(wide).max() > np.finfo(np.float32).max:
        raise errors.DataError(f"{subject} holds values beyond float32's range "
                               "(magnitude above 3.4e38); FAISS keeps float32 vectors", sqlstate="22003")
    vector = wide.astype(np.float32)
    return fx.search(state, vector, k, None if allowed is None else np.asarray(allowed, dtype=np.int64))
