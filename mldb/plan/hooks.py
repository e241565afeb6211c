"""Hooks that run around plain DuckDB statements that write (to keep FAISS indexes in step).

A hook is ``hook(session, statement, phase)``. The session first calls it with phase
``"check"``; only hooks that answer truthy run, and then the write runs inside one
transaction with the hook called at ``"before"`` and ``"after"``, so the table and
what the hook maintains commit (or roll back) together. Hooks are named by import
path and only consulted for statements whose first word is in ``WRITE_WORDS``.
"""

from __future__ import annotations

from mldb.plan.rules import _load

WRITE_WORDS = frozenset({"INSERT", "UPDATE", "DELETE", "COPY", "TRUNCATE", "DROP", "ALTER", "CREATE", "WITH",
                         "MERGE", "COMMIT", "ROLLBACK", "ABORT", "END"})  # transaction ends: index caches re-read

HOOKS: tuple[str, ...] = ("mldb.index.hooks:on_write",)


def hooks_for(first_word: str) -> list:
    if first_word not in WRITE_WORDS:
        return []
    return [hook for hook in map(_load, HOOKS) if hook is not None]
