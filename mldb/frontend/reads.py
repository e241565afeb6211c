"""Queries mldb keeps and runs again later must only read.

A training query (``CREATE MODEL ... FROM (q)``, ``TRAIN ... FROM (q)``), a holdout
(``WITH (holdout = 'q')``) and a monitor's queries are stored as text and run again: at every
later TRAIN, at every monitor run, on a server's monitor thread. DuckDB runs a data-modifying
common table expression at the top of a query (``WITH d AS (DELETE FROM t RETURNING *)
SELECT ...``), so a "query" there could delete or insert rows each time it is read. Such a
query is refused (42601) before anything runs; ``reads_only`` looks at the very tree whose SQL
is run, so what it checked is what DuckDB gets.
"""

from __future__ import annotations

from sqlglot import exp

from mldb import errors

_WRITES = (exp.DML, exp.Command, exp.Create, exp.Drop, exp.Alter)


def reads_only(tree: exp.Expression, where: str) -> exp.Expression:
    """``tree`` if nothing in it writes; else 42601 naming the statement found inside."""
    found = tree if isinstance(tree, _WRITES) else tree.find(*_WRITES)
    if found is not None:
        kind = found.key.upper() if not isinstance(found, exp.Command) else str(found.this).upper()
        raise errors.ProgrammingError(f"{where}: a query here only reads, and it holds a {kind} (a data-modifying "
                                      f"WITH runs again each time mldb reads the query); write the rows "
                                      f"first, then read them", sqlstate="42601")
    return tree


def placeholders(tree: exp.Expression) -> bool:
    """Whether ``tree`` has a ``?`` / ``$1`` parameter (a stored query runs later, with no parameters)."""
    return tree.find(exp.Placeholder, exp.Parameter) is not None
