"""The ordered list of rewrite rules applied to a parsed statement.

A rule is ``rule(tree, context) -> tree``: a small function that replaces mldb
functions (or a pattern such as ``ORDER BY array_cosine_distance(...) LIMIT k`` on an
indexed column) with plain DuckDB SQL. A rule that rewrites something calls
``context.note("...")`` so ``EXPLAIN`` can show it and the session knows to run the
regenerated SQL instead of the original text. Rules are named by import path and
imported on first use, so ``import mldb`` stays light.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Callable

from sqlglot import exp

from mldb import errors
from mldb.frontend.expressions import MldbFunction

if TYPE_CHECKING:
    from mldb.session import Session

RULES: tuple[str, ...] = (
    "mldb.models.rewrite:rewrite_table_predict",
    "mldb.models.rewrite:rewrite_model_functions",
    "mldb.index.rewrite:rewrite_vector_search",
    "mldb.index.rewrite:rewrite_embed",
    "mldb.lifecycle.rewrite:rewrite_lifecycle",
)


@dataclass
class RewriteContext:
    session: "Session"
    params: object = None
    notes: list[str] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)  # run once the statement has executed

    def note(self, text: str) -> None:
        self.notes.append(text)

    def on_success(self, callback: Callable[[], None]) -> None:
        """Run ``callback()`` after the rewritten statement executed without error
        (e.g. write one ``mldb.prediction_log`` row, record a lineage edge)."""
        self.after.append(callback)


@cache
def _load(path: str) -> Callable | None:
    module_name, _, function = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            return None  # that feature is not built yet
        raise
    return getattr(module, function, None)


def rewrite(tree: exp.Expression, context: RewriteContext) -> exp.Expression:
    for path in RULES:
        rule = _load(path)
        if rule is not None:
            tree = rule(tree, context)
    leftover = next(iter(tree.find_all(MldbFunction)), None)
    if leftover is not None:
        raise errors.ProgrammingError(f"{leftover.sql_name()}(...) cannot be used here: {leftover.sql()}")
    return tree
