"""The features mldb is built from, and the small interface each one implements.

A feature (models, vectors, lifecycle) is a package whose ``feature`` module exports one
``Feature``: its rewrite rules, the steps that run its statements, the functions it
registers on a database, its per-database state and the events it listens to. They are
plain imports, so a missing or misspelled one fails when mldb is imported, and the
order here is the order rules apply in. Dependencies point one way:
scaleout -> monitors -> lifecycle -> models -> vectors -> core; the core calls features only through this interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Feature:
    name: str
    rules: tuple[Callable, ...] = ()  # rule(tree, planner) -> tree, pure: read the catalog, add operators
    statements: dict = field(default_factory=dict)  # statement node class -> step(session, node, params) -> Result
    register_functions: Callable | None = None  # (database) -> None: Arrow functions on the root connection
    make_state: Callable | None = None  # (database) -> per-database state, reached as database.state(name)
    on_write: Callable | None = None  # (session, statement, phase) around plain DuckDB writes; see Session
    on_commit: Callable | None = None  # (session) after a transaction committed
    on_rollback: Callable | None = None  # (session) after a transaction rolled back
    on_trained: Callable | None = None  # (session, model, version, table, features, sources, options)
    on_model_dropped: Callable | None = None  # (session, model)
    on_prediction: Callable | None = None  # (execution, model, rows, seconds, outputs, inputs()) per batch
    facts: dict = field(default_factory=dict)  # name -> fn(session, model, version): what a feature knows of a version


def _load() -> tuple[Feature, ...]:
    from mldb.lifecycle.feature import FEATURE as LIFECYCLE
    from mldb.models.feature import FEATURE as MODELS
    from mldb.monitors.feature import FEATURE as MONITORS
    from mldb.scaleout.feature import FEATURE as SCALEOUT
    from mldb.vectors.feature import FEATURE as VECTORS

    return (MODELS, VECTORS, LIFECYCLE, MONITORS, SCALEOUT)  # (scale-out last: it reads the rewritten tree)


FEATURES: tuple[Feature, ...] = _load()
RULES: tuple[Callable, ...] = tuple(rule for feature in FEATURES for rule in feature.rules)
STEPS: dict = {node: step for feature in FEATURES for node, step in feature.statements.items()}


def each(event: str):
    """The listeners features registered for ``event`` (e.g. ``"on_commit"``), in feature order."""
    return [listener for feature in FEATURES if (listener := getattr(feature, event)) is not None]


def fact(name: str, session, model: str, version: int):
    """What the feature that keeps ``name`` knows of a model version (e.g. ``"sources"``)."""
    for feature in FEATURES:
        if name in feature.facts:
            return feature.facts[name](session, model, version)
    raise LookupError(f"no feature provides the fact {name!r}")
