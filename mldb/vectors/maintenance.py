"""Keep FAISS indexes in step with INSERT, UPDATE, DELETE (and COPY, TRUNCATE, MERGE, ALTER, DROP).

The session runs a write that names an indexed table inside one transaction (the
user's, or one of its own) and calls ``on_write``:

- ``check``: does the statement name a table with an index? (in memory, no query)
- ``before``: take each such index's write lock for the transaction (it is held until
  the transaction ends, so changes of one index commit one at a time; a write that
  cannot get it within ``store.LOCK_TIMEOUT`` fails with SQLSTATE 40001);
- ``after``: compare the table as the transaction now sees it with the committed index,
  by (key, hash(vector)) or by key alone when the write cannot have moved a vector, and
  note the keys that differ; the committed index is untouched until ``on_commit``
  publishes the change (``on_rollback`` forgets it). See ``mldb.vectors.store``.

If a new row cannot be indexed (a duplicate key, NaN, another length), the statement
fails and its transaction can no longer commit: DuckDB rolls it back.
"""

from __future__ import annotations

import contextlib

from sqlglot.tokens import TokenType

from mldb import errors
from mldb.vectors import rows, store

_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "TRUNCATE", "ALTER", "DROP", "CREATE"})


def on_write(session, statement, phase) -> bool:
    if phase == "check":
        return bool(_targets(session, statement))
    vectors = store.vector_state(session)
    if phase == "before":
        session.release_result()  # (the session's BEGIN result must not outlive a failing write)
        for entry in _targets(session, statement):
            vectors.lock_for_write(session, entry)
        return True
    try:
        for entry in _targets(session, statement):
            if vectors.holds(session, entry):
                _follow(session, vectors, statement, entry)
    except errors.Error as error:
        _poison(session, error)
        raise
    return True


def on_commit(session) -> None:
    store.vector_state(session).committed(session)


def on_rollback(session) -> None:
    store.vector_state(session).rolled_back(session)


def _targets(session, statement) -> list[store.IndexEntry]:
    """Indexes on the tables the statement names (an over-approximation: any name token that matches)."""
    if statement.first_word == "WITH" and not statement.words & _WRITES:
        return []  # a query with CTEs: it reads
    if not store.catalog_ready(session):
        return []
    vectors = store.vector_state(session)
    tables = vectors.table_names()
    if not tables:
        return []
    names = {token.text.lower() for token in statement.tokens
             if token.token_type not in (TokenType.STRING, TokenType.NUMBER)}
    if not names & tables:
        return []
    return vectors.on_tables(session, names & tables)


def _follow(session, vectors: store.VectorState, statement, entry: store.IndexEntry) -> None:
    info = entry.info
    if not _still_there(session, info):
        vectors.drop(session, entry)  # its table or column was dropped
        return
    changed = _vectors_changed(statement, info)
    if changed is None:
        return  # an UPDATE of other columns
    vectors.follow(session, entry, changed)


def _poison(session, error: errors.Error) -> None:
    """The write happened but the index cannot follow it: make the transaction fail to
    commit (DuckDB refuses every statement of an aborted transaction but ROLLBACK)."""
    with contextlib.suppress(errors.Error):
        session.sql("SELECT error(?)", [f"mldb: the index cannot follow this write: {error}"])


def _vectors_changed(statement, info: store.IndexInfo) -> bool | None:
    """Can the write have changed the vector (or key) of a row that already existed?

    False for plain INSERT, DELETE, TRUNCATE, COPY (rows come and go: keys suffice);
    None for an UPDATE that sets neither the vector nor the key (nothing to do);
    True otherwise (UPDATE of them, upserts, MERGE, ALTER, ...).
    """
    first, words = statement.first_word, statement.words
    if first == "INSERT":
        return bool({"CONFLICT", "REPLACE"} & words)
    if first in ("DELETE", "TRUNCATE", "COPY"):
        return False
    if first == "UPDATE":
        assigned = _assigned_columns(statement)
        if assigned is not None and not assigned & {info.column.lower(), info.key.lower()}:
            return None
    return True


def _assigned_columns(statement) -> set[str] | None:
    """Lower-case names of the columns an UPDATE sets; None when sqlglot cannot read it."""
    import sqlglot
    from sqlglot import exp

    try:
        update = sqlglot.parse_one(statement.text, read="duckdb")
    except sqlglot.errors.ParseError:
        return None
    if not isinstance(update, exp.Update):
        return None
    return {assignment.this.name.lower() for assignment in update.expressions if isinstance(assignment, exp.EQ)}


def _still_there(session, info: store.IndexInfo) -> bool:
    columns = {name.lower() for name in rows.column_types(session, info.schema, info.table)}
    return info.column.lower() in columns and info.key.lower() in columns
