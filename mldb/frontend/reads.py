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

import sqlglot
from sqlglot import exp

from mldb import errors
from mldb.frontend.dialect import MLDB

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


def one_query(text: str, where: str) -> str:
    """A stored or given query text parsed again as exactly one query that only reads, as the SQL
    regenerated from it (42601 otherwise): mldb's tables are plain tables that whoever has the file may write, and a
    hand-written ``q); DELETE FROM t; --`` must not run as statements of its own."""
    trees = parsed(text, where)
    if len(trees) != 1 or not isinstance(trees[0], exp.Query):
        raise errors.ProgrammingError(f"{where} is not one query: {text}", sqlstate="42601")
    return reads_only(trees[0], where).sql(dialect=MLDB)


def parsed(text: str, where: str) -> list[exp.Expression]:
    """The statements of ``text`` (42601 naming ``where`` when it does not parse)."""
    try:
        return [tree for tree in sqlglot.parse(text, dialect=MLDB) if tree is not None]
    except sqlglot.errors.SqlglotError as error:
        raise errors.ProgrammingError(f"{where} does not parse ({error}): {text}", sqlstate="42601") from None


def placeholders(tree: exp.Expression) -> bool:
    """Whether ``tree`` has a ``?`` / ``$1`` parameter (a stored query runs later, with no parameters)."""
    return tree.find(exp.Placeholder, exp.Parameter) is not None
