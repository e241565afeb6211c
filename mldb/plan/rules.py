"""Planning a statement: the ordered rewrite rules and what they produce.

A rule is ``rule(tree, planner) -> tree``: a small function that replaces mldb's
functions (or a pattern such as ``ORDER BY array_cosine_distance(...) LIMIT k`` on an
indexed column) with DuckDB SQL. Rules are pure: they read the catalog through
``planner.session`` but never search an index, embed text, compute DRIFT or write.
Work that must happen when the statement runs is added as an operator
(``planner.operator(description, fill=fill)``): ``fill(execution, filling)`` is called
after planning, before DuckDB executes the SQL, and fills the holes a rule left in the
statement (``mldb.plan.template``: a FAISS search writes the keys it found), so the plan
can be cached and run again without sqlglot (``mldb.plan.cache``). An operator given as
``run(execution)`` changes the tree instead; its statement is planned each time it runs.
``EXPLAIN`` lists every operator and runs none of them.

The rules come from the features (``mldb.features.RULES``), in feature order.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from sqlglot import exp

from mldb import errors
from mldb.frontend.expressions import MldbFunction
from mldb.frontend.names import name_projections
from mldb.plan.template import EXECUTION, Filling, hole

if TYPE_CHECKING:
    from mldb.execution import Execution
    from mldb.session import Session

EXECUTION_VARIABLE = "mldb_execution"  # the session variable a stored query's functions read their statement from


@dataclass
class Operator:
    description: str  # for EXPLAIN: "FAISS search: index docs_v (hnsw, cosine), top 10"
    run: Callable[["Execution"], None] | None = None  # changes the tree (the plan is not cached)
    fill: Callable[["Execution", Filling], None] | None = None  # fills the statement's holes


@dataclass
class Planner:
    session: "Session"
    params: object = None
    execution_id: int = 0  # the statement's id (see ``execution_argument``)
    notes: list[str] = field(default_factory=list)
    operators: list[Operator] = field(default_factory=list)
    finishers: list[tuple[Callable, bool]] = field(default_factory=list)
    tree: exp.Expression | None = None
    holes: int = 0  # holes made so far (each one gets its own name)
    scaleout: object = None  # under a Ray executor: the statement's scale-out Shape or why it stays here

    def note(self, text: str) -> None:
        """Record a rewrite (shown by EXPLAIN; a statement with none runs as written)."""
        self.notes.append(text)

    def operator(self, description: str, run: Callable[["Execution"], None] | None = None, *,
                 fill: Callable[["Execution", Filling], None] | None = None) -> None:
        """An ML operator of the plan: shown by EXPLAIN, ``run`` / ``fill`` when the statement executes."""
        self.operators.append(Operator(description, run, fill))
        self.notes.append(description)

    def hole(self, default: exp.Expression | None = None) -> exp.Expression:
        """A new hole in the statement, standing for ``default`` until an operator fills it."""
        self.holes += 1
        return hole(f"h{self.holes}", default)

    @property
    def cacheable(self) -> bool:
        """Whether the plan may run again as rendered: no operator changes the tree, and
        nothing is left to do once the statement finished (``mldb.plan.cache``)."""
        return (not self.finishers and self.scaleout is None  # (a scale-out plan depends on the files found)
                and all(operator.run is None for operator in self.operators))

    def on_finish(self, callback: Callable[["Execution"], None], *, always: bool = False) -> None:
        """Run ``callback(execution)`` once the statement's result is done (see ``Execution``)."""
        self.finishers.append((callback, always))

    @property
    def stored(self) -> bool:
        """True when the statement stores a query (CREATE VIEW / MACRO) that runs later."""
        tree = self.tree
        return isinstance(tree, exp.Create) and (tree.kind or "").upper() in ("VIEW", "MACRO", "FUNCTION")

    def execution_argument(self) -> exp.Expression:
        """The argument that tells an mldb function which statement calls it: this
        statement's id, or for a stored query the id the session sets when it runs."""
        if self.stored:
            self.session.database.stored_functions = True
            return exp.Anonymous(this="getvariable", expressions=[exp.Literal.string(EXECUTION_VARIABLE)])
        return hole(EXECUTION, exp.Literal.number(self.execution_id))


@contextlib.contextmanager
def written_at(node: exp.Expression):
    """An mldb error raised while a rule handles ``node`` (an mldb function call) remembers
    where the call was written, so the error can point at it (``frontend.positions``)."""
    try:
        yield
    except errors.Error as error:
        if error.position is None and error.origin is None:
            error.origin = node.meta.get("start")
        raise


def rewrite(tree: exp.Expression, planner: Planner) -> exp.Expression:
    from mldb.features import RULES

    planner.tree = tree
    name_projections(tree)  # columns keep the names DuckDB gives what the user wrote
    for rule in RULES:
        tree = rule(tree, planner)
        planner.tree = tree
    leftover = next(iter(tree.find_all(MldbFunction)), None)
    if leftover is not None:
        raise errors.ProgrammingError(f"{leftover.sql_name()}(...) cannot be used here: {leftover.sql()}")
    return tree
