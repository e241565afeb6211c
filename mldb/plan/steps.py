"""Run an mldb statement node by the step it names (``MldbStatement.step``)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mldb import errors
from mldb.frontend.expressions import MldbStatement

if TYPE_CHECKING:
    from mldb.result import Result
    from mldb.session import Session


def run_step(session: "Session", node: MldbStatement, params) -> "Result":
    module_name, _, function = node.step.partition(":")
    if not module_name:
        raise errors.NotSupportedError(f"{type(node).__name__} has no step to run it")
    step = getattr(importlib.import_module(module_name), function)
    return step(session, node, params)
