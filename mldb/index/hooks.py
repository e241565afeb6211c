"""Keep FAISS indexes in step with INSERT, UPDATE, DELETE (and COPY, TRUNCATE, MERGE, ALTER, DROP).

The session runs a write that names an indexed table inside one transaction and calls
``on_write`` after it: each index on that table then catches up with the table by
comparing (key, hash(vector)) pairs (``store.sync``), marks removed and changed rows
dead, adds new and changed rows, and records a new version in the same transaction.
If the write or the index update fails, both roll back together.
"""

from __future__ import annotations

from sqlglot.tokens import TokenType

from mldb.index import faiss as fx
from mldb.index import store

_NAME_TOKENS = {TokenType.VAR, TokenType.IDENTIFIER, TokenType.TABLE}


def on_write(session, statement, phase) -> bool:
    if phase == "check":
        return bool(_indexed_targets(session, statement))
    if phase == "after":
        for table in _indexed_targets(session, statement):
            _refresh(session, table)
    return True


def _indexed_targets(session, statement) -> set[str]:
    """Indexed tables the statement names (an over-approximation: any name token that matches)."""
    if not store.catalog_ready(session):
        return set()
    indexed = store.indexed_tables(session)
    if not indexed:
        return set()
    names = {token.text.lower() for token in statement.tokens if token.token_type not in
             (TokenType.STRING, TokenType.NUMBER)}
    return indexed & names


def _refresh(session, table: str) -> None:
    for info in store.for_table(session, None, table) or _any_schema(session, table):
        if not _still_there(session, info):
            store.delete(session, info)  # its table or column was dropped
            continue
        fresh = fx.cached(info.build_id, info.version) is None
        state = store.current_state(session, info)
        if store.sync(session, info, state) or fresh:
            store.save(session, info, state)


def _any_schema(session, table: str) -> list[store.IndexInfo]:
    rows = session.sql("SELECT DISTINCT schema_name FROM mldb.indexes WHERE lower(table_name) = ?", [table]).fetchall()
    return [info for (schema,) in rows for info in store.for_table(session, schema, table)]


def _still_there(session, info: store.IndexInfo) -> bool:
    columns = {name.lower() for name in store.column_types(session, info.schema, info.table)}
    return info.column.lower() in columns and info.key.lower() in columns
