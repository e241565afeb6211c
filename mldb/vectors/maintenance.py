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
from dataclasses import dataclass

from sqlglot.tokens import TokenType

from mldb import errors
from mldb.frontend import split_statements
from mldb.vectors import rows, store

_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "TRUNCATE", "ALTER", "DROP", "CREATE"})
_READS = frozenset({"SELECT", "FROM", "VALUES", "TABLE", "(", "DESCRIBE", "SHOW", "SUMMARIZE"})


def on_write(session, statement, phase) -> bool:
    if statement.first_word == "EXECUTE":
        statement = _executed(session, statement)
    if phase == "check":
        return bool(_targets(session, statement))
    vectors = store.vector_state(session)
    if phase == "before":
        session.release_result()  # (the session's BEGIN result must not outlive a failing write)
        targets = _targets(session, statement)
        _check_alter(session, statement, targets)
        for entry in targets:
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


def _executed(session, statement):
    """``EXECUTE name(...)`` of a statement the user prepared: the statement it runs (DuckDB's
    text of it, from ``duckdb_prepared_statements()``), so that its write is followed as the
    same statement run directly would be. When that text cannot be read, the EXECUTE itself:
    ``_targets`` then takes it to write every indexed table (and ``_vectors_changed`` to
    change any vector)."""
    if len(statement.tokens) < 2:
        return statement
    try:
        row = store.one(session, "SELECT statement FROM duckdb_prepared_statements() WHERE lower(name) = lower(?) "
                                 "LIMIT 1", [statement.tokens[1].text])
    except errors.Error:
        return statement
    if not row or not row[0]:
        return statement  # (an unknown name: DuckDB's EXECUTE fails)
    parts = split_statements(row[0])
    if not parts or len(parts) != 1 or parts[0].first_word == "EXECUTE":
        return statement
    return parts[0]


def _targets(session, statement) -> list[store.IndexEntry]:
    """Indexes on the tables the statement names (an over-approximation: any name token that matches)."""
    if statement.first_word == "WITH" and not statement.words & _WRITES:
        return []  # a query with CTEs: it reads
    if statement.first_word in _READS:
        return []  # (a prepared SELECT run by EXECUTE)
    if not store.catalog_ready(session):
        return []
    vectors = store.vector_state(session)
    tables = vectors.table_names()
    if not tables:
        return []
    if statement.first_word == "EXECUTE":  # a prepared statement whose text is unknown: it may write any of them
        return vectors.on_tables(session, tables)
    names = {token.text.lower() for token in statement.tokens
             if token.token_type not in (TokenType.STRING, TokenType.NUMBER)}
    if not names & tables:
        return []
    return vectors.on_tables(session, names & tables)


def _follow(session, vectors: store.VectorState, statement, entry: store.IndexEntry) -> None:
    info = entry.info
    if not _still_there(session, info):
        _lost(session, vectors, statement, entry)
        return
    changed = _vectors_changed(statement, info)
    if changed is None:
        return  # an UPDATE of other columns
    vectors.follow(session, entry, changed)


def _lost(session, vectors: store.VectorState, statement, entry: store.IndexEntry) -> None:
    """The indexed table or column is gone: DROP TABLE drops the index with it, ALTER TABLE
    ... RENAME TO takes it along; any other ALTER that lost it is refused (nothing is lost silently)."""
    info = entry.info
    alter = _alter(statement)
    if statement.first_word != "ALTER":
        vectors.drop(session, entry)
    elif alter is not None and alter.action == "rename_table" and _names(alter, info):
        vectors.rename_table(session, entry, alter.target)
        if not _still_there(session, entry.info):
            raise _depends(info, info.column)
    else:
        raise _depends(info, info.column)


def _check_alter(session, statement, targets: list[store.IndexEntry]) -> None:
    """Before ALTER TABLE runs: refuse to rename, retype or drop a column an index uses."""
    alter = _alter(statement)
    if alter is None or alter.action not in ("rename_column", "retype", "drop_column"):
        return
    for entry in targets:
        info = entry.info
        if _names(alter, info) and alter.column.lower() in (info.column.lower(), info.key.lower()):
            raise _depends(info, alter.column)


def _depends(info: store.IndexInfo, column: str) -> errors.Error:
    role = "keys on" if column.lower() == info.key.lower() and column.lower() != info.column.lower() else "depends on"
    return errors.ProgrammingError(f"index {info.name} {role} column {column} of {info.table}; "
                                   f"DROP INDEX {info.name} first", sqlstate="2BP01")


@dataclass
class _Alter:
    schema: str | None
    table: str
    action: str  # rename_table, rename_column, retype, drop_column or other
    column: str = ""
    target: str = ""  # the new name of a RENAME


def _alter(statement) -> _Alter | None:
    """What an ALTER TABLE does, read from its tokens (sqlglot's parser misreads
    ``RENAME v TO w`` and ``DROP v``)."""
    tokens = [token for token in statement.tokens if token.token_type != TokenType.SEMICOLON]
    words = [token.text.upper() if token.token_type != TokenType.IDENTIFIER else "" for token in tokens]
    if words[:2] != ["ALTER", "TABLE"]:
        return None
    at = 4 if words[2:4] == ["IF", "EXISTS"] else 2
    parts = [tokens[at].text] if at < len(tokens) else []
    while at + 2 < len(tokens) and tokens[at + 1].token_type == TokenType.DOT:
        at += 2
        parts.append(tokens[at].text)
    rest, texts = words[at + 1:], [token.text for token in tokens[at + 1:]]
    if not parts or not rest:
        return None
    found = _Alter(parts[-2] if len(parts) > 1 else None, parts[-1], "other")
    if rest[:2] == ["RENAME", "TO"] and len(texts) > 2:
        found.action, found.target = "rename_table", texts[2]
    elif rest[0] in ("RENAME", "ALTER", "DROP"):
        skip = 1 + (rest[1:2] == ["COLUMN"])
        skip += 2 * (rest[skip:skip + 2] == ["IF", "EXISTS"])
        if skip < len(texts):
            found.column = texts[skip]
            found.action = {"RENAME": "rename_column", "DROP": "drop_column"}.get(rest[0], "other")
            if rest[0] == "ALTER" and "TYPE" in rest[skip + 1:]:
                found.action = "retype"
    return found


def _names(alter: _Alter, info: store.IndexInfo) -> bool:
    return (alter.table.lower() == info.table.lower()
            and (alter.schema is None or alter.schema.lower() == info.schema.lower()))


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
