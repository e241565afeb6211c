"""Base classes for mldb's own sqlglot nodes.

Each feature maps its statement classes to the steps that run them
(``Feature.statements``: ``step(session, node, params) -> Result``).
"""

from __future__ import annotations

import json

from sqlglot import exp

from mldb import errors


class MldbStatement(exp.Expression):
    """An mldb statement (CREATE MODEL, TRAIN, CREATE INDEX ... USING FAISS, ...)."""

    arg_types = {"this": False}


class MldbFunction(exp.Expression, exp.Func):
    """An mldb function call (PREDICT, EMBED, ...) that a rewrite rule must replace.

    (``exp.Expression`` first: in sqlglot 30 ``exp.Func`` alone is an abstract base.)
    ``usage`` is how it is called, for the syntax error of a call without its arguments."""

    usage = ""


def value_of(node: exp.Expression, where: str = "option values"):
    """The Python value of a literal option value: a number, a string, a boolean, NULL, a -number
    or a [list] of them; a bare word is its name (``device = cpu``)."""
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else json.loads(node.this)
    if isinstance(node, exp.Boolean):
        return node.this
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return -value_of(node.this)
    if isinstance(node, (exp.Array, exp.Tuple)):
        return [value_of(item, where) for item in node.expressions]
    if isinstance(node, (exp.Column, exp.Identifier, exp.Var)):
        return node.name
    raise errors.ProgrammingError(f"{where} are numbers, strings, booleans or [lists]; found {node.sql()}",
                                  sqlstate="22023")
