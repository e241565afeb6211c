"""Planned statements kept for the next run of the same statement shape.

A ``Plan`` is what planning a statement produced, as text: the rewritten SQL with holes
(``mldb.plan.template``), the operators that fill them, and EXPLAIN's notes. Running it
again needs no sqlglot: the operators fill the holes with strings (the statement's id,
the keys FAISS found, an embedded query vector) and DuckDB runs the text.

A session keeps its plans by (statement text, the parameters' shape, the current
schema, the catalog version). The catalog version is the database's: every statement
that may change what a rule reads (DDL, TRAIN, DEPLOY, CREATE/DROP INDEX, USE, SET, a
registered frame) moves it before and after it runs, and so does the end of a
transaction that ran one (its changes become visible to the others, or go away), so a
plan made before any of those is never run after it.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from sqlglot import exp

from mldb.plan.rules import Operator, Planner
from mldb.plan.template import EXECUTION, Filling, render

_SIZE = 256  # plans kept per session (least recently used go first)
_SMALL_LIMIT = 2048  # rows: a statement limited to this many is not worth an Arrow stream


@dataclass
class Plan:
    text: str  # the rewritten SQL with holes and parameter marks
    operators: list[Operator] = field(default_factory=list)  # each fills holes (``Operator.fill``)
    notes: list[str] = field(default_factory=list)
    stream: bool = True  # read as an Arrow stream (else a plain result: a few rows)

    def filled(self, execution, params) -> tuple[str, object]:
        """Run the operators: (DuckDB's SQL, its parameters) for this execution."""
        filling = Filling(self.text, params)
        filling.fill(EXECUTION, str(execution.id))
        for operator in self.operators:
            if operator.fill is not None:
                execution.check()
                operator.fill(execution, filling)
        return filling.bind()


def compile_plan(planner: Planner, tree: exp.Expression) -> Plan:
    """The plan of a rewritten tree (after any operator that changes the tree has run)."""
    return Plan(render(tree), [op for op in planner.operators if op.fill is not None], list(planner.notes),
                stream=not _small(tree))


def _small(tree) -> bool:
    """Whether the statement returns at most a few rows: a literal top-level LIMIT (a top-k
    search), or a plain SELECT over a subquery that has one (``VECTOR_SEARCH(..., k)``)."""
    limit = tree.args.get("limit") if isinstance(tree, exp.Query) else None
    count = getattr(limit, "expression", None)
    if isinstance(count, exp.Literal) and count.is_int and int(count.name) <= _SMALL_LIMIT:
        return True
    if not isinstance(tree, exp.Select) or any(tree.args.get(k) for k in ("joins", "group", "windows")):
        return False
    source = tree.args.get("from_") or tree.args.get("from")
    return source is not None and isinstance(source.this, exp.Subquery) and _small(source.this.this)


class CatalogVersion:
    """Per database: moves whenever what planning reads may have changed (see the module)."""

    def __init__(self):
        self._counter = itertools.count(1)
        self.value = 0
        self._lock = threading.Lock()

    def move(self) -> None:
        with self._lock:
            self.value = next(self._counter)


class PlanCache:
    """One session's plans, least recently used dropped first."""

    def __init__(self, size: int = _SIZE):
        self._plans: OrderedDict = OrderedDict()
        self._size = size

    def get(self, key) -> Plan | None:
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
        return plan

    def put(self, key, plan: Plan) -> None:
        self._plans[key] = plan
        self._plans.move_to_end(key)
        while len(self._plans) > self._size:
            self._plans.popitem(last=False)


def key(text: str, params, schema: str, version: int):
    """A plan's key: the rules read parameter names and counts (and types, to cast), never values."""
    if params is None:
        shape = None
    elif isinstance(params, dict):
        shape = ("dict", *sorted((name, type(value).__name__) for name, value in params.items()))
    else:
        shape = ("list", *(type(value).__name__ for value in params))
    return text, shape, schema, version
