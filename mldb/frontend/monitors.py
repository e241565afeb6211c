"""Grammar of monitors (SPEC section 11): checks over a model that act when their condition holds.

    CREATE [OR REPLACE] MONITOR [IF NOT EXISTS] churn_drift ON MODEL churn
        CHECK DRIFT (SELECT ...) | CHECK EVALUATE (SELECT ...)
        [EVERY INTERVAL 1 HOUR | EVERY INTERVAL '1 hour']
        [WHEN drifted_features >= 1]
        THEN TRAIN [FROM (SELECT ...)] [DEPLOY IF BETTER ON (SELECT ...)] | THEN ROLLBACK | THEN ALERT
    RUN MONITOR churn_drift
    SHOW MONITORS
    ALTER MONITOR churn_drift PAUSE | RESUME
    DROP MONITOR [IF EXISTS] churn_drift
    ACKNOWLEDGE ALERT 3

The nodes are run by ``mldb.monitors.statements``; each one generates its canonical text back
(``node.sql(dialect=MLDB)``: the ``TRANSFORMS`` below), which the tests round-trip.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.tokens import TokenType

from mldb.frontend.expressions import MldbStatement
from mldb.frontend.models import _at_end, _model_name, _source

ACTIONS = ("train", "rollback", "alert")
CHECKS = ("drift", "evaluate")


# -- statement nodes -------------------------------------------------------------------
class CreateMonitor(MldbStatement):
    """``this``: monitor name; ``model``; ``check`` ('drift' | 'evaluate') over ``query`` (a Subquery or a
    Table); ``every`` (an Interval); ``condition``; ``action`` ('train' | 'rollback' | 'alert'); for TRAIN
    its ``source`` and ``holdout`` (DEPLOY IF BETTER ON)."""

    arg_types = {"this": True, "model": True, "check": True, "query": True, "every": False, "condition": False,
                 "action": True, "source": False, "holdout": False, "replace": False, "exists": False}


class RunMonitor(MldbStatement):
    """RUN MONITOR name."""


class ShowMonitors(MldbStatement):
    arg_types = {}


class AlterMonitor(MldbStatement):
    """``paused``: True for PAUSE, False for RESUME."""

    arg_types = {"this": True, "paused": True}


class DropMonitor(MldbStatement):
    arg_types = {"this": True, "exists": False}


class AcknowledgeAlert(MldbStatement):
    """``this``: the alert's id (a number literal)."""

    arg_types = {"this": True}


# -- parse rules -----------------------------------------------------------------------
def _name(parser, what: str) -> str:
    if _at_end(parser):
        parser.raise_error(f"Expecting a {what} name after {parser._prev.text.upper()}")
    table = parser._parse_table_parts()
    if table is None:
        parser.raise_error(f"Expecting a {what} name")
    return ".".join(part.name for part in table.parts)


def _query(parser, after: str) -> exp.Expression:
    """A parenthesised query (or a table name) after CHECK DRIFT / CHECK EVALUATE / FROM / ON."""
    if _at_end(parser):
        parser.raise_error(f"Expecting (query) after {after}")
    return _source(parser)


def _parse_create(parser) -> exp.Expression | None:
    if not parser._match_text_seq("CREATE"):
        return None
    replace = parser._match_text_seq("OR", "REPLACE")
    if not parser._match_text_seq("MONITOR"):
        return None
    exists = parser._match_text_seq("IF", "NOT", "EXISTS")
    node = CreateMonitor(this=_name(parser, "monitor"), replace=replace or None, exists=exists or None)
    if not parser._match_text_seq("ON", "MODEL"):
        parser.raise_error("Expecting ON MODEL <name> after CREATE MONITOR <name>")
    node.set("model", _model_name(parser))
    _check(parser, node)
    if parser._match_text_seq("EVERY"):
        every = parser._parse_interval() if parser._curr and parser._curr.token_type == TokenType.INTERVAL else None
        if every is None:
            parser.raise_error("Expecting INTERVAL n UNIT or INTERVAL 'n unit' after EVERY")
        node.set("every", every)
    if parser._match(TokenType.WHEN):
        condition = parser._parse_disjunction()
        if condition is None:
            parser.raise_error("Expecting a condition after WHEN (e.g. WHEN drifted_features >= 1)")
        node.set("condition", condition)
    _action(parser, node)
    return node


def _check(parser, node: exp.Expression) -> None:
    if not parser._match_text_seq("CHECK"):
        parser.raise_error("Expecting CHECK DRIFT (query) or CHECK EVALUATE (query)")
    for check in CHECKS:
        if parser._match_text_seq(check.upper()):
            node.set("check", check)
            node.set("query", _query(parser, f"CHECK {check.upper()}"))
            return
    parser.raise_error("Expecting DRIFT or EVALUATE after CHECK")


def _action(parser, node: exp.Expression) -> None:
    if not parser._match(TokenType.THEN):
        parser.raise_error("Expecting THEN TRAIN, THEN ROLLBACK or THEN ALERT")
    for action in ACTIONS:
        if parser._match_text_seq(action.upper()):
            node.set("action", action)
            break
    else:
        parser.raise_error("Expecting TRAIN, ROLLBACK or ALERT after THEN")
    if action != "train":
        return
    if parser._match(TokenType.FROM):
        node.set("source", _query(parser, "THEN TRAIN FROM"))
    if parser._match_text_seq("DEPLOY"):
        if not parser._match_text_seq("IF", "BETTER", "ON"):
            parser.raise_error("Expecting DEPLOY IF BETTER ON (query)")
        node.set("holdout", _query(parser, "DEPLOY IF BETTER ON"))


def _parse_run(parser) -> exp.Expression | None:
    if not parser._match_text_seq("RUN", "MONITOR"):
        return None
    placeholder = parser._parse_placeholder()  # (RUN MONITOR ? with the name as a parameter)
    return RunMonitor(this=placeholder if placeholder is not None else _name(parser, "monitor"))


def _parse_show(parser) -> exp.Expression | None:
    if parser._match_text_seq("SHOW", "MONITORS"):
        return ShowMonitors()
    return None


def _parse_alter(parser) -> exp.Expression | None:
    if not parser._match_text_seq("ALTER", "MONITOR"):
        return None
    name = _name(parser, "monitor")
    if parser._match_text_seq("PAUSE"):
        return AlterMonitor(this=name, paused=True)
    if parser._match_text_seq("RESUME"):
        return AlterMonitor(this=name, paused=False)
    parser.raise_error("Expecting PAUSE or RESUME after ALTER MONITOR <name>")
    return None


def _parse_drop(parser) -> exp.Expression | None:
    if not parser._match_text_seq("DROP", "MONITOR"):
        return None
    exists = parser._match_text_seq("IF", "EXISTS")
    return DropMonitor(this=_name(parser, "monitor"), exists=exists or None)


def _parse_acknowledge(parser) -> exp.Expression | None:
    if not parser._match_text_seq("ACKNOWLEDGE", "ALERT"):
        return None
    number = parser._parse_number()
    if number is None:
        parser.raise_error("Expecting an alert id after ACKNOWLEDGE ALERT (as mldb.alerts lists)")
    return AcknowledgeAlert(this=number)


STATEMENTS = {
    "CREATE": (_parse_create,),
    "RUN": (_parse_run,),
    "SHOW": (_parse_show,),
    "ALTER": (_parse_alter,),
    "DROP": (_parse_drop,),
    "ACKNOWLEDGE": (_parse_acknowledge,),
}

TRIGGERS = {"MONITOR", "MONITORS", "ACKNOWLEDGE"}


# -- generating the canonical text back ---------------------------------------------------------
def _identifier(generator, name: str) -> str:
    return generator.sql(exp.to_identifier(name))


def _create_sql(generator, node: CreateMonitor) -> str:
    parts = ["CREATE", "OR REPLACE" if node.args.get("replace") else None, "MONITOR",
             "IF NOT EXISTS" if node.args.get("exists") else None, _identifier(generator, node.name),
             "ON MODEL", _identifier(generator, node.args["model"]),
             f"CHECK {node.args['check'].upper()}", generator.sql(node.args["query"])]
    if node.args.get("every") is not None:
        parts += ["EVERY", generator.sql(node.args["every"])]
    if node.args.get("condition") is not None:
        parts += ["WHEN", generator.sql(node.args["condition"])]
    parts += ["THEN", node.args["action"].upper()]
    if node.args.get("source") is not None:
        parts += ["FROM", generator.sql(node.args["source"])]
    if node.args.get("holdout") is not None:
        parts += ["DEPLOY IF BETTER ON", generator.sql(node.args["holdout"])]
    return " ".join(part for part in parts if part)


def _run_target(generator, node: RunMonitor) -> str:
    if isinstance(node.this, exp.Placeholder):
        return generator.sql(node.this)
    return _identifier(generator, node.name)


TRANSFORMS = {
    CreateMonitor: _create_sql,
    RunMonitor: lambda generator, node: f"RUN MONITOR {_run_target(generator, node)}",
    ShowMonitors: lambda generator, node: "SHOW MONITORS",
    AlterMonitor: lambda generator, node: (f"ALTER MONITOR {_identifier(generator, node.name)} "
                                           f"{'PAUSE' if node.args['paused'] else 'RESUME'}"),
    DropMonitor: lambda generator, node: (f"DROP MONITOR {'IF EXISTS ' if node.args.get('exists') else ''}"
                                          f"{_identifier(generator, node.name)}"),
    AcknowledgeAlert: lambda generator, node: f"ACKNOWLEDGE ALERT {generator.sql(node.this)}",
}
