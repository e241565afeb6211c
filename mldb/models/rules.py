"""Rewrite rules: PREDICT / PREDICT_PROBA / EVALUATE / EXPLAIN_PREDICT -> calls of the registered Arrow UDFs;
FEATURE_IMPORTANCE -> a query of ``mldb.feature_importance``.

The rewritten SQL names the model (not a version, unless pinned), so a view stays
valid after a reopen and follows DEPLOY. Features are bound by name from the query
scope (checked against DuckDB's schema for a clear error) or passed by position.
"""

from __future__ import annotations

from sqlglot import exp

from mldb import errors
from mldb.frontend import MLDB
from mldb.frontend.expressions import value_of
from mldb.frontend.models import Evaluate, ExplainPredict, FeatureImportance, Predict, PredictProba
from mldb.models import explain, registry, shadow
from mldb.plan.rules import written_at

_MODEL_FUNCTIONS = (Predict, PredictProba, Evaluate, ExplainPredict, FeatureImportance)


def rewrite_table_predict(tree: exp.Expression, context) -> exp.Expression:
    """Table forms in FROM / JOIN.

    ``SELECT * FROM PREDICT(churn, (SELECT * FROM c))`` ->
    ``SELECT * FROM (SELECT * EXCLUDE (__mldb_p), __mldb_p.prediction AS prediction,
    __mldb_p.probability AS probability FROM (SELECT *, mldb_predict_row_varchar('churn', age, plan)
    AS __mldb_p FROM (SELECT * FROM c) AS __mldb_in) AS __mldb_q) AS predict``

    ``SELECT * FROM EVALUATE(churn, (SELECT * FROM h))`` ->
    ``SELECT * FROM (SELECT UNNEST(mldb_evaluate_classification('churn', LIST(CAST(churned AS TEXT)),
    LIST(mldb_predict_proba('churn', age, plan)))) FROM (SELECT * FROM h) AS __mldb_in
    WHERE NOT churned IS NULL) AS evaluate``
    """
    for table in list(tree.find_all(exp.Table)):
        function = table.this
        if not isinstance(function, (Predict, Evaluate)):
            continue
        ref, model, query = _table_arguments(function, context)
        columns = _describe(context, query, quiet=context.params is not None,  # (?) cannot be described
                            unique=None if isinstance(function, Predict) else "EVALUATE's query")
        build = _predict_table if isinstance(function, Predict) else _evaluate_table
        select = build(ref, model, query, columns, context)
        alias = table.alias or ("predict" if isinstance(function, Predict) else "evaluate")
        table.replace(exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier(alias))))
        context.operator(f"{function.sql_name()}: model {model.ref} ({model.algorithm}, {model.task}) "
                         f"over a subquery, Arrow batches{shadow.described(ref)}")
    return tree


def rewrite_explanations(tree: exp.Expression, context) -> exp.Expression:
    """EXPLAIN_PREDICT and FEATURE_IMPORTANCE in FROM (innermost first: a query may hold another).

    ``SELECT * FROM EXPLAIN_PREDICT(churn, (SELECT * FROM c), top_k => 2)`` ->
    ``SELECT * FROM (SELECT * EXCLUDE (__mldb_x), __mldb_x.prediction AS prediction, __mldb_x.baseline AS
    baseline, __mldb_x.contributions AS contributions FROM (SELECT *, mldb_explain_varchar('churn@1', <statement>,
    2, age, plan) AS __mldb_x FROM (SELECT * FROM c) AS __mldb_in) AS __mldb_q) AS explain_predict``

    ``SELECT * FROM FEATURE_IMPORTANCE(churn)`` -> ``SELECT * FROM (SELECT feature, importance, method FROM
    mldb.feature_importance WHERE model = 'churn' AND version = 1 ORDER BY importance DESC, feature)
    AS feature_importance`` (in a view: the version deployed when the view is read)
    """
    for node in reversed(list(tree.find_all(ExplainPredict, FeatureImportance))):
        with written_at(node):
            if not isinstance(node.parent, exp.Table):
                raise errors.ProgrammingError(f"{node.sql_name()}(...) is a table function: use it in FROM, as "
                                              f"SELECT * FROM {node.usage.partition(', in FROM')[0]}")
            build = _explain_table if isinstance(node, ExplainPredict) else _importance_table
            select, description = build(node, context)
        table = node.parent
        alias = table.alias or node.sql_name().lower()
        table.replace(exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier(alias))))
        context.operator(description)
    return tree


def _explain_table(node: ExplainPredict, context) -> tuple[exp.Select, str]:
    positional = [argument for argument in node.expressions if not isinstance(argument, _NAMED)]
    top_k = _top_k(node)
    ref, model, query = _table_arguments(node, context, positional)
    columns = _describe(context, query, quiet=context.params is not None)
    if columns is not None:
        check_columns(model, columns)
    features = [exp.column(n, quoted=True) for n in model.feature_names]
    call = _call(f"mldb_explain_{model.output}", ref, [exp.Literal.number(top_k or 0), *features], context)
    inner = exp.select(exp.Star(), exp.alias_(call, "__mldb_x")).from_(query.subquery("__mldb_in"))
    outer = [exp.Star(except_=[exp.column("__mldb_x")])]
    outer += [exp.alias_(exp.Dot(this=exp.column("__mldb_x"), expression=exp.to_identifier(f)), f)
              for f in ("prediction", "baseline", "contributions")]
    method = {"lightgbm": "TreeSHAP", "mlp": "integrated gradients"}.get(model.algorithm, "exact linear")
    kept = f", top {top_k}" if top_k else ""
    return (exp.select(*outer).from_(inner.subquery("__mldb_q")),
            f"EXPLAIN_PREDICT: model {model.ref} ({model.algorithm}, {model.task}), {method}{kept}, Arrow batches")


_NAMED = (exp.Kwarg, exp.PropertyEQ)


def _top_k(node: ExplainPredict) -> int | None:
    """The ``top_k => n`` argument: a positive whole number (22023 otherwise), the only option."""
    top_k = None
    for argument in node.expressions:
        if not isinstance(argument, _NAMED):
            continue
        key = argument.this.name.lower()
        if key != "top_k":
            raise errors.ProgrammingError(f"EXPLAIN_PREDICT: unknown option {key}; its one option is top_k => n",
                                          sqlstate="22023")
        if top_k is not None:
            raise errors.ProgrammingError("EXPLAIN_PREDICT: top_k given twice; give it once", sqlstate="42710")
        value = value_of(argument.expression, "EXPLAIN_PREDICT option values")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise errors.ProgrammingError(f"EXPLAIN_PREDICT: top_k is the number of contributions kept per row, "
                                          f"a whole number of at least 1; found {value!r}", sqlstate="22023")
        top_k = value
    return top_k


def _importance_table(node: FeatureImportance, context) -> tuple[exp.Select, str]:
    arguments = node.expressions
    if not 1 <= len(arguments) <= 2:
        raise errors.ProgrammingError(f"FEATURE_IMPORTANCE takes (model [, version]); got {len(arguments)} "
                                      "arguments")
    name, pinned = registry.parse_ref(_written_ref(node))
    version = _version_argument(arguments[1], name, pinned) if len(arguments) == 2 else pinned
    model = registry.load_model(context.session, name if version is None else f"{name}@{version}")
    explain.check_recorded(context.session, model)
    if version is None and context.stored:  # a view shows the version deployed when it is read
        which = f"(SELECT deployed_version FROM mldb.models WHERE name = {exp.Literal.string(name).sql()})"
    else:
        which = str(model.version)
    select = exp.maybe_parse(
        "SELECT feature, importance, method FROM mldb.feature_importance "
        f"WHERE model = {exp.Literal.string(name).sql()} AND version = {which} ORDER BY importance DESC, feature",
        dialect=MLDB)
    method = {"lightgbm": "gain", "mlp": "permutation"}.get(model.algorithm, "weight")
    return select, f"FEATURE_IMPORTANCE: model {model.ref} ({model.algorithm}), {method}, from mldb.feature_importance"


def _version_argument(argument: exp.Expression, name: str, pinned: int | None) -> int:
    value = value_of(argument, "FEATURE_IMPORTANCE's version") if isinstance(argument, exp.Literal) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise errors.ProgrammingError(f"FEATURE_IMPORTANCE: a version is a positive whole number (as SHOW "
                                      f"VERSIONS lists); found {argument.sql(dialect=MLDB)}", sqlstate="22023")
    if pinned is not None and pinned != value:
        raise errors.ProgrammingError(f"FEATURE_IMPORTANCE: '{name}@{pinned}' and version {value} name two "
                                      "versions; give the version once", sqlstate="22023")
    return value


def rewrite_model_functions(tree: exp.Expression, context) -> exp.Expression:
    """Scalar calls.

    ``SELECT PREDICT(churn) FROM c``            -> ``SELECT mldb_predict_varchar('churn', age, plan) FROM c``
    ``SELECT PREDICT('churn@2', a, b) FROM c``  -> ``SELECT mldb_predict_varchar('churn@2', a, b) FROM c``
    ``SELECT PREDICT_PROBA(churn) FROM c``      -> ``SELECT mldb_predict_proba('churn', age, plan) FROM c``
    """
    for node in list(tree.find_all(Predict, PredictProba)):
        with written_at(node):
            ref, model = _model_of(node, context)
            arguments = _feature_arguments(node, model, context)
            if isinstance(node, PredictProba) and model.task == "regression":
                raise errors.ProgrammingError(f"PREDICT_PROBA: model '{model.name}' is a regression model; "
                                              "use PREDICT for its value")
        name = "mldb_predict_proba" if isinstance(node, PredictProba) else f"mldb_predict_{model.output}"
        node.replace(_call(name, ref, arguments, context))
        context.operator(f"{node.sql_name()}: model {model.ref} ({model.algorithm}, {model.task}) -> "
                         f"{name}, {len(arguments)} features, Arrow batches{shadow.described(ref)}")
    return tree


# -- the pieces --------------------------------------------------------------------------
def _model_of(node: exp.Expression, context) -> tuple[str, registry.ModelVersion]:
    """The model reference as written ('churn' or 'churn@2') and its loaded version."""
    name, version = registry.parse_ref(_written_ref(node))
    model = registry.load_model(context.session, name if version is None else f"{name}@{version}")
    if version is None and context.stored:
        return name, model  # a view follows DEPLOY: the function resolves the name when it runs
    if version is None and isinstance(node, (Predict, PredictProba)):
        return shadow.planned_ref(context.session, name, model), model  # ('churn@2+3': with its shadow)
    return model.ref, model  # a statement runs the version it was planned with


def _written_ref(node: exp.Expression) -> str:
    """The model as the call's first argument names it: ``churn`` or ``'churn@2'``."""
    first = node.expressions[0] if node.expressions else None
    if isinstance(first, exp.Literal) and first.is_string:
        return first.this
    if isinstance(first, (exp.Column, exp.Identifier)) and not getattr(first, "table", ""):
        return first.name
    shown = first.sql(dialect=MLDB) if first is not None else "nothing"
    raise errors.ProgrammingError(f"{node.sql_name()}: the first argument must be a model name; found {shown}")


def _feature_arguments(node, model: registry.ModelVersion, context) -> list[exp.Expression]:
    given = node.expressions[1:]
    if given:
        if len(given) != len(model.features):
            raise errors.ProgrammingError(
                f"{node.sql_name()}: model '{model.name}' takes {len(model.features)} features in this order: "
                f"{', '.join(model.feature_names)}; got {len(given)} arguments")
        return [argument.copy() for argument in given]
    scope = _scope_columns(node, context)
    if scope is not None:
        check_columns(model, scope)
    return [exp.column(feature, quoted=True) for feature in model.feature_names]


def check_columns(model: registry.ModelVersion, columns: dict[str, str]) -> None:
    """A clear error for a missing feature column or one of the wrong kind."""
    lowered = {name.lower(): sql_type for name, sql_type in columns.items()}
    missing = [name for name in model.feature_names if name.lower() not in lowered]
    if missing:
        raise errors.ProgrammingError(registry.missing_features(model, missing, list(columns)), sqlstate="42703")
    for feature in model.features:
        found = lowered[feature["name"].lower()]
        if sql_kind(found) not in (feature["kind"], "null", None):
            raise errors.ProgrammingError(
                f"model '{model.name}' needs feature '{feature['name']}' as {feature['type']} "
                f"({feature['kind']}); found {found}", sqlstate="42804")


def check_target(model: registry.ModelVersion, found: str) -> None:
    """EVALUATE compares the query's target with the model's labels or values: one of another type
    would match none of them and every metric would be NULL."""
    if sql_kind(found) == "null":
        return
    if model.task == "regression":
        fits = sql_kind(found) == "numeric"
    else:
        fits = registry.output_of(model.task, found) == model.output and sql_kind(found) == sql_kind(model.target_type)
    if not fits:
        raise errors.ProgrammingError(
            f"EVALUATE: model '{model.name}' predicts '{model.target}' as {model.target_type}; the query's "
            f"'{model.target}' is {found}; cast it (CAST({model.target} AS {model.target_type}))", sqlstate="42804")


def sql_kind(sql_type: str) -> str | None:
    """The encoder kind of a DuckDB type name ('numeric', 'text', 'date', 'vector')."""
    upper = sql_type.upper()
    if upper.endswith("]"):
        return "vector"
    if upper in ("VARCHAR", "TEXT", "STRING") or upper.startswith("ENUM"):
        return "text"
    if upper.startswith(("DATE", "TIMESTAMP")):
        return "date"
    if upper == '"NULL"' or upper == "NULL":
        return "null"
    numeric = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
               "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL", "BOOLEAN")
    return "numeric" if upper.startswith(numeric) else None


def _scope_columns(node: exp.Expression, context) -> dict[str, str] | None:
    """Columns visible to ``node``'s SELECT (its FROM and JOINs), or None when they cannot be probed."""
    select = node.find_ancestor(exp.Select)
    if select is None:
        return None
    source = select.args.get("from_")
    if source is None:
        return {}
    probe = exp.Select(expressions=[exp.Star()], from_=source.copy(),
                       joins=[join.copy() for join in select.args.get("joins") or []])
    ctes = [cte.copy() for ancestor in _ancestors(select) if ancestor.args.get("with_")
            for cte in ancestor.args["with_"].expressions]
    if ctes:
        probe.set("with_", exp.With(expressions=ctes))
    return _describe(context, probe, quiet=True)


def _ancestors(node: exp.Expression):
    while node is not None:
        yield node
        node = node.parent


def _describe(context, query: exp.Expression, quiet: bool = False, unique: str | None = None) -> dict[str, str] | None:
    """The query's columns and their types; with ``unique`` (what to call the query), two columns of
    one name are refused (42701), as in a training query."""
    if next(query.find_all(*_MODEL_FUNCTIONS), None) is not None:
        return None  # nested model calls are rewritten later; DuckDB checks the columns then
    try:
        rows = context.session.sql(f"DESCRIBE {query.sql(dialect=MLDB)}").fetchall()
    except errors.Error:
        if quiet:
            return None
        raise
    if unique is not None:
        from mldb.models.statements import _check_names

        _check_names(query.sql(dialect=MLDB), [row[0] for row in rows], unique)
    return {row[0]: row[1] for row in rows}


def _table_arguments(function, context, arguments: list | None = None):
    arguments = function.expressions if arguments is None else arguments
    if len(arguments) != 2:
        raise errors.ProgrammingError(f"{function.sql_name()} in FROM takes (model, (query)); "
                                      f"got {len(arguments)} arguments")
    ref, model = _model_of(function, context)
    query = arguments[1]
    if isinstance(query, exp.Subquery):
        query = query.this
    elif isinstance(query, (exp.Column, exp.Table)):
        query = exp.select("*").from_(exp.to_table(query.sql(dialect=MLDB)))
    if not isinstance(query, exp.Query):
        raise errors.ProgrammingError(f"{function.sql_name()}: the second argument must be (query) or a table")
    return ref, model, query.copy()


def _predict_table(ref: str, model, query: exp.Query, columns: dict | None, planner) -> exp.Select:
    if columns is not None:
        check_columns(model, columns)
    call = _call(f"mldb_predict_row_{model.output}", ref, [exp.column(n, quoted=True) for n in model.feature_names],
                 planner)
    inner = exp.select(exp.Star(), exp.alias_(call, "__mldb_p")).from_(query.subquery("__mldb_in"))
    fields = ["prediction"] if model.task == "regression" else ["prediction", "probability"]
    outer = [exp.Star(except_=[exp.column("__mldb_p")])]
    outer += [exp.alias_(exp.Dot(this=exp.column("__mldb_p"), expression=exp.to_identifier(f)), f) for f in fields]
    return exp.select(*outer).from_(inner.subquery("__mldb_q"))


def _evaluate_table(ref: str, model, query: exp.Query, columns: dict | None, planner) -> exp.Select:
    target = model.target
    if columns is not None:
        if target.lower() not in {name.lower() for name in columns}:
            raise errors.ProgrammingError(
                f"EVALUATE: model '{model.name}' needs the target column '{target}' in the query; "
                f"it has: {', '.join(columns)}", sqlstate="42703")
        check_columns(model, columns)
        check_target(model, next(t for n, t in columns.items() if n.lower() == target.lower()))
    feats = [exp.column(n, quoted=True) for n in model.feature_names]
    truth = exp.column(target, quoted=True)
    if model.task == "regression":
        labels = exp.cast(truth, "DOUBLE")
        predicted = _call("mldb_predict_double", ref, feats, planner)
        function = "mldb_evaluate_regression"
    else:
        labels = exp.cast(truth, "VARCHAR")
        predicted = _call("mldb_predict_proba", ref, feats, planner)
        function = "mldb_evaluate_classification"
    metrics = _call(function, ref, [exp.func("list", labels), exp.func("list", predicted)])
    return (exp.select(exp.Unnest(expressions=[metrics])).from_(query.subquery("__mldb_in"))
            .where(exp.Not(this=exp.Is(this=truth.copy(), expression=exp.Null()))))


def _call(name: str, ref: str, arguments: list[exp.Expression], planner=None) -> exp.Anonymous:
    """``name('ref', [execution,] args...)``: the predict functions also take the calling statement's id."""
    execution = [planner.execution_argument()] if planner is not None else []
    return exp.Anonymous(this=name, expressions=[exp.Literal.string(ref), *execution, *arguments])
