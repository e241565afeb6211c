"""Base classes for mldb's own sqlglot nodes.

A statement node names the step that executes it with ``step = "module:function"``;
the function is imported only when such a statement runs (so ``import mldb`` stays
light) and is called as ``function(session, node, params) -> Result``.
"""

from __future__ import annotations

from sqlglot import exp


class MldbStatement(exp.Expression):
    """An mldb statement (CREATE MODEL, TRAIN, CREATE INDEX ... USING FAISS, ...)."""

    step: str = ""
    arg_types = {"this": False}


class MldbFunction(exp.Expression, exp.Func):
    """An mldb function call (PREDICT, EMBED, ...) that a rewrite rule must replace.

    (``exp.Expression`` first: in sqlglot 30 ``exp.Func`` alone is an abstract base.)"""
