"""The list of feature grammars the mldb dialect is built from.

Each feature module in ``GRAMMARS`` may define any of:

- ``STATEMENTS``: ``{FIRST_WORD: (parse_fn, ...)}``; ``parse_fn(parser)`` is called
  with the parser positioned on FIRST_WORD and returns an expression, or ``None``
  (the parser retreats and tries the next rule, then sqlglot's own grammar).
- ``FUNCTIONS``: sqlglot function builders (``{NAME: builder(args)}``).
- ``FUNCTION_PARSERS``: ``{NAME: fn(parser)}`` for functions with custom argument syntax.
- ``TRIGGERS``: upper-case words; a statement whose tokens hold none of them skips
  parsing altogether and goes straight to DuckDB (the fast path).

Adding a feature's syntax means adding its module here; nothing else changes.
"""

from __future__ import annotations

import importlib

GRAMMARS = (
    "mldb.frontend.models",
    "mldb.frontend.vectors",
    "mldb.frontend.lifecycle",
)


def load_grammars() -> list:
    modules = []
    for name in GRAMMARS:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as error:
            if error.name != name:  # a real import error inside the module
                raise
    return modules
