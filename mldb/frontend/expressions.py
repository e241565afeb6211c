"""Base classes for mldb's own sqlglot nodes.

Each feature maps its statement classes to the steps that run them
(``Feature.statements``: ``step(session, node, params) -> Result``).
"""

from __future__ import annotations

from sqlglot import exp


class MldbStatement(exp.Expression):
    """An mldb statement (CREATE MODEL, TRAIN, CREATE INDEX ... USING FAISS, ...)."""

    arg_types = {"this": False}


class MldbFunction(exp.Expression, exp.Func):
    """An mldb function call (PREDICT, EMBED, ...) that a rewrite rule must replace.

    (``exp.Expression`` first: in sqlglot 30 ``exp.Func`` alone is an abstract base.)"""
