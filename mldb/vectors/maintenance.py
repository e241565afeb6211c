"""Keep FAISS indexes in step with INSERT, UPDATE, DELETE (and COPY, TRUNCATE, MERGE, ALTER, DROP).

The session runs a write that names an indexed table inside one transaction and calls
``on_write`` after it: each index on that table then catches up with the table by
comparing (key, hash(vector)) pairs, or keys alone when the write cannot have moved a
vector (``store.sync``), marks removed and changed rows dead, adds new and changed rows,
and records a new version in the same transaction.
If the write or the index update fails, both roll back together.
"""

from __future__ import annotations

from sqlglot.tokens import TokenType

from mldb.vectors import faiss as fx
from mldb.vectors import store

_TRANSACTION_ENDS = frozenset({"COMMIT", "ROLLBACK", "ABORT", "END"})


def on_write(session, statement, phase) -> bool:
    if phase == "check":
        if statement.first_word in _TRANSACTION_ENDS:
            store.transaction_ended(session)
            return False
        return bool(_indexed_targets(session, statement))
    if phase == "after":
        for table in _indexed_targets(session, statement):
            _refresh(session, statement, table)
    return True


def _indexed_targets(session, statement) -> set[str]:
    """Indexed tables the statement names (an over-approximation: any name token that matches)."""
    if not store.catalog_ready(session):
        return set()
    indexed = store.indexed_tables(session)
    if not indexed:
        return set()
    names = {token.text.lower() for token in statement.tokens
             if token.token_type not in (TokenType.STRING, TokenType.NUMBER)}
    return indexed & names


def _refresh(session, statement, table: str) -> None:
    for info in store.for_table(session, None, table) or _any_schema(session, table):
        if not _still_there(session, info):
            store.delete(session, info)  # its table or column was dropped
            continue
        changed = _vectors_changed(statement, info)
        if changed is None:
            continue  # an UPDATE of other columns
        fresh = store.vector_state(session).cached(info.build_id, info.version) is None
        state = store.current_state(session, info)
        if store.sync(session, info, state, changed) or fresh:
            store.save(session, info, state)


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


def _any_schema(session, table: str) -> list[store.IndexInfo]:
    rows = session.sql("SELECT DISTINCT schema_name FROM mldb.indexes WHERE lower(table_name) = ?", [table]).fetchall()
    return [info for (schema,) in rows for info in store.for_table(session, schema, table)]


def _still_there(session, info: store.IndexInfo) -> bool:
    columns = {name.lower() for name in store.column_types(session, info.schema, info.table)}
    return info.column.lower() in columns and info.key.lower() in columns
