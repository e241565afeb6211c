"""Grammar of models: CREATE MODEL / TRAIN / SHOW / DESCRIBE / DEPLOY / DROP and PREDICT et al.

Statements become ``MldbStatement`` nodes run by ``mldb.models.statements``; the functions
``PREDICT``, ``PREDICT_PROBA``, ``EVALUATE``, ``EXPLAIN_PREDICT`` and ``FEATURE_IMPORTANCE`` become
``MldbFunction`` nodes that the rules in ``mldb.models.rules`` replace with calls of the registered
Arrow UDFs (or, for FEATURE_IMPORTANCE, a query of ``mldb.feature_importance``).

    CREATE [OR REPLACE] MODEL [IF NOT EXISTS] churn PREDICT churned FROM customers
        [USING mlp] [WITH (epochs = 30, hidden = [64, 32])]
    TRAIN churn [PREDICT t] [FROM src] [USING alg] [WITH (...)]
    TRAIN churn FROM SNAPSHOT [VERSION n] [WITH (...)]
    SHOW MODELS | DESCRIBE MODEL m | SHOW VERSIONS OF MODEL m
    DEPLOY MODEL m VERSION n [AS SHADOW] | DROP MODEL [IF EXISTS] m [CASCADE | RESTRICT]
    SELECT * FROM EXPLAIN_PREDICT(m, (query) [, top_k => n]) | SELECT * FROM FEATURE_IMPORTANCE(m [, version])
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.tokens import TokenType

from mldb.frontend.expressions import MldbFunction, MldbStatement



# -- statement nodes -------------------------------------------------------------------
class CreateModel(MldbStatement):
    """``this``: model name; ``target``, ``source`` (Table or Subquery), ``algorithm``, ``options``."""

    arg_types = {"this": True, "target": True, "source": True, "algorithm": False, "options": False,
                 "replace": False, "exists": False}


class TrainModel(MldbStatement):
    arg_types = {"this": True, "target": False, "source": False, "algorithm": False, "options": False,
                 "snapshot": False, "snapshot_version": False}


class ShowModels(MldbStatement):
    arg_types = {}


class DescribeModel(MldbStatement):
    """DESCRIBE MODEL name."""


class ShowVersions(MldbStatement):
    """SHOW VERSIONS OF MODEL name."""


class DeployModel(MldbStatement):
    """``shadow``: AS SHADOW, the version is scored beside the deployed one (without it, the shadow is cleared)."""

    arg_types = {"this": True, "version": True, "shadow": False}


class DropModel(MldbStatement):
    """``cascade``: drop the views that call the model too (RESTRICT, the default, refuses)."""

    arg_types = {"this": True, "exists": False, "cascade": False}


# -- function nodes --------------------------------------------------------------------
class Predict(MldbFunction):
    """``PREDICT(model [, feature, ...])`` or, in FROM, ``PREDICT(model, (query))``."""

    arg_types = {"expressions": True}
    is_var_len_args = True
    _sql_names = ["PREDICT"]
    usage = "PREDICT(model [, feature, ...]), or in FROM: PREDICT(model, (query))"


class PredictProba(MldbFunction):
    arg_types = {"expressions": True}
    is_var_len_args = True
    _sql_names = ["PREDICT_PROBA"]
    usage = "PREDICT_PROBA(model [, feature, ...])"


class Evaluate(MldbFunction):
    arg_types = {"expressions": True}
    is_var_len_args = True
    _sql_names = ["EVALUATE"]
    usage = "EVALUATE(model, (query)), in FROM"


class ExplainPredict(MldbFunction):
    """``EXPLAIN_PREDICT(model, (query) [, top_k => n])`` in FROM: the query's rows with each prediction's
    baseline and per-feature contributions (``mldb.models.explain``)."""

    arg_types = {"expressions": True}
    is_var_len_args = True
    _sql_names = ["EXPLAIN_PREDICT"]
    usage = "EXPLAIN_PREDICT(model, (query) [, top_k => n]), in FROM"


class FeatureImportance(MldbFunction):
    arg_types = {"expressions": True}
    is_var_len_args = True
    _sql_names = ["FEATURE_IMPORTANCE"]
    usage = "FEATURE_IMPORTANCE(model [, version]), in FROM"


# -- parse rules -----------------------------------------------------------------------
def _model_name(parser) -> str:
    """A model name: an identifier (possibly dotted) or a string literal ('churn@2')."""
    if _at_end(parser):
        parser.raise_error(f"Expecting a model name after {parser._prev.text.upper()}")
    if parser._match(TokenType.STRING):
        return parser._prev.text
    table = parser._parse_table_parts()
    if table is None:
        parser.raise_error("Expecting a model name")
    return ".".join(part.name for part in table.parts)


def _source(parser) -> exp.Expression:
    """``FROM`` a table/view name or a parenthesised query."""
    if parser._match(TokenType.L_PAREN):
        query = parser._parse_select(nested=True)
        if query is None:
            parser.raise_error("Expecting a query after FROM (")
        parser._match_r_paren()
        return exp.Subquery(this=query)
    table = parser._parse_table_parts()
    if table is None:
        parser.raise_error("Expecting a table, a view or (query) after FROM")
    return table


def _options(parser) -> exp.Tuple | None:
    if not parser._match(TokenType.WITH):
        return None
    return exp.Tuple(expressions=parser._parse_wrapped_csv(parser._parse_assignment))


def _clauses(parser, node: exp.Expression) -> exp.Expression:
    """The optional ``PREDICT target FROM source USING algorithm WITH (...)`` clauses."""
    if parser._match_text_seq("PREDICT"):
        node.set("target", parser._parse_id_var(any_token=True))
    if parser._match(TokenType.FROM):
        if parser._match_text_seq("SNAPSHOT"):
            node.set("snapshot", exp.true())
            if parser._match_text_seq("VERSION"):
                node.set("snapshot_version", parser._parse_number())
                if node.args.get("snapshot_version") is None:
                    parser.raise_error("Expecting a version number after FROM SNAPSHOT VERSION")
        else:
            node.set("source", _source(parser))
    if parser._match(TokenType.USING):
        algorithm = None if _at_end(parser) else parser._parse_id_var(any_token=True)
        if algorithm is None:
            parser.raise_error("Expecting an algorithm after USING: linear, logistic, mlp, lightgbm or auto")
        node.set("algorithm", algorithm)
    node.set("options", _options(parser))
    return node


def _parse_create(parser) -> exp.Expression | None:
    if not parser._match_text_seq("CREATE"):
        return None
    replace = parser._match_text_seq("OR", "REPLACE")
    if not parser._match_text_seq("MODEL"):
        return None
    exists = parser._match_text_seq("IF", "NOT", "EXISTS")
    node = CreateModel(this=_model_name(parser), replace=replace or None, exists=exists or None)
    _clauses(parser, node)
    if node.args.get("target") is None or node.args.get("source") is None:
        parser.raise_error("CREATE MODEL needs PREDICT <target> FROM <table or (query)>")
    return node


def _parse_train(parser) -> exp.Expression | None:
    if not parser._match_text_seq("TRAIN"):
        return None
    return _clauses(parser, TrainModel(this=_model_name(parser)))


def _parse_show(parser) -> exp.Expression | None:
    if parser._match_text_seq("SHOW", "MODELS"):
        return ShowModels()
    if parser._match_text_seq("SHOW", "VERSIONS", "OF", "MODEL"):
        return ShowVersions(this=_model_name(parser))
    return None


def _parse_describe(parser) -> exp.Expression | None:
    if parser._match_text_seq("DESCRIBE", "MODEL") or parser._match_text_seq("DESC", "MODEL"):
        if _at_end(parser):  # ``DESCRIBE model``: a table that happens to be called model
            return None
        return DescribeModel(this=_model_name(parser))
    return None


def _at_end(parser) -> bool:
    return parser._curr is None or parser._curr.token_type in (TokenType.SENTINEL, TokenType.SEMICOLON)


def _parse_deploy(parser) -> exp.Expression | None:
    if not parser._match_text_seq("DEPLOY", "MODEL"):
        return None
    name = _model_name(parser)
    if not parser._match_text_seq("VERSION"):
        parser.raise_error("Expecting VERSION <n> after DEPLOY MODEL <name>")
    version = parser._parse_number()
    if version is None:
        parser.raise_error("Expecting a version number")
    shadow = parser._match_text_seq("AS")
    if shadow and not parser._match_text_seq("SHADOW"):
        parser.raise_error("Expecting SHADOW after DEPLOY MODEL <name> VERSION <n> AS")
    return DeployModel(this=name, version=version, shadow=shadow or None)


def _parse_drop(parser) -> exp.Expression | None:
    if not parser._match_text_seq("DROP", "MODEL"):
        return None
    exists = parser._match_text_seq("IF", "EXISTS")
    name = _model_name(parser)
    cascade = parser._match_text_seq("CASCADE")
    if not cascade:
        parser._match_text_seq("RESTRICT")
    return DropModel(this=name, exists=exists or None, cascade=cascade or None)


STATEMENTS = {
    "CREATE": (_parse_create,),
    "TRAIN": (_parse_train,),
    "SHOW": (_parse_show,),
    "DESCRIBE": (_parse_describe,),
    "DESC": (_parse_describe,),
    "DEPLOY": (_parse_deploy,),
    "DROP": (_parse_drop,),
}

FUNCTIONS = {
    "PREDICT": lambda args: Predict(expressions=args),
    "PREDICT_PROBA": lambda args: PredictProba(expressions=args),
    "EVALUATE": lambda args: Evaluate(expressions=args),
    "EXPLAIN_PREDICT": lambda args: ExplainPredict(expressions=args),
    "FEATURE_IMPORTANCE": lambda args: FeatureImportance(expressions=args),
}

TRIGGERS = {"MODEL", "MODELS", "TRAIN", "DEPLOY", "PREDICT", "PREDICT_PROBA", "EVALUATE", "EXPLAIN_PREDICT",
            "FEATURE_IMPORTANCE"}
