"""The list of feature grammars the mldb dialect is built from.

Each feature's grammar module may define any of:

- ``STATEMENTS``: ``{FIRST_WORD: (parse_fn, ...)}``; ``parse_fn(parser)`` is called
  with the parser positioned on FIRST_WORD and returns an expression, or ``None``
  (the parser retreats and tries the next rule, then sqlglot's own grammar).
- ``FUNCTIONS``: sqlglot function builders (``{NAME: builder(args)}``).
- ``FUNCTION_PARSERS``: ``{NAME: fn(parser)}`` for functions with custom argument syntax.
- ``TRANSFORMS``: ``{node class: fn(generator, node) -> str}``, how a node is written back as SQL.
- ``TRIGGERS``: upper-case words; a statement whose tokens hold none of them skips
  parsing altogether and goes straight to DuckDB (the fast path).

Adding a feature's syntax means adding its module to ``load_grammars``.
"""

from __future__ import annotations


def load_grammars() -> list:
    """The grammar modules, in order (plain imports: a missing one fails at import time)."""
    from mldb.frontend import lifecycle, models, monitors, settings, vectors

    return [models, vectors, lifecycle, monitors, settings]
