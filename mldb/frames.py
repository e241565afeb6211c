"""Replacement scans: ``SELECT * FROM df`` reads a pandas, polars, pyarrow or NumPy object
named ``df`` in the caller's Python scope, as DuckDB's Python API does.

DuckDB's own replacement scan looks at the Python frame that called ``execute``: inside
mldb that is mldb's code, so it is turned off on each session's connection and done here
instead. The DB-API takes the first frame outside mldb (its locals, then its globals, as
DuckDB's default ``python_scan_all_frames = false``); ``%%mldb`` passes the notebook's
namespace. Before a statement runs, a name it reads a table from (FROM, JOIN, DESCRIBE,
SUMMARIZE, PIVOT, a model's FROM) that is bound in that scope to a frame and is not a
table or view DuckDB can see is registered on the session's connection as a temporary
view; the session drops those views before its next statement. A table of that name
wins, as in DuckDB. Statements naming no such variable are not parsed here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from sqlglot import exp

from mldb import errors

_READS = (exp.From, exp.Join, exp.Describe, exp.Summarize, exp.Pivot)  # where a name is read from
_FRAME_MODULES = frozenset({"pandas", "polars", "pyarrow", "numpy"})
SCANNED = ("pandas.DataFrame, polars DataFrame or LazyFrame, pyarrow Table, RecordBatch, Dataset or "
            "RecordBatchReader, a NumPy array or a dict of NumPy arrays")


@dataclass
class Scope:
    """Where table names are looked up: a frame's locals, then its globals."""

    locals: dict = field(default_factory=dict)
    globals: dict = field(default_factory=dict)
    where: str = ""  # shown in errors: the file and line (or "the notebook")

    def get(self, name: str):
        if name in self.locals:
            return self.locals[name]
        return self.globals.get(name, _MISSING)

    def __contains__(self, name: str) -> bool:
        return name in self.locals or name in self.globals


_MISSING = object()


def caller_scope() -> Scope:
    """The scope of the first frame outside mldb (the user's code calling the DB-API)."""
    frame = sys._getframe(1)
    while frame is not None and _is_mldb(frame.f_globals.get("__name__", "")):
        frame = frame.f_back
    if frame is None:
        return Scope()
    return Scope(frame.f_locals, frame.f_globals, f"{frame.f_code.co_filename}:{frame.f_lineno}")


def _is_mldb(module: str) -> bool:
    return module == "mldb" or module.startswith("mldb.")


def scannable(value):
    """What DuckDB can register for ``value`` (a NumPy structured array becomes a dict of its
    fields; mldb's relation, its Arrow table), or ``None`` if it is not a frame."""
    if isinstance(value, dict):
        return value if value and all(_module(item) == "numpy" for item in value.values()) else None
    if _module(value) not in _FRAME_MODULES:
        return _relation_table(value)
    if _module(value) == "numpy":
        names = getattr(getattr(value, "dtype", None), "names", None)
        if names:
            return {name: value[name] for name in names}
        return value if type(value).__name__ == "ndarray" else None
    return value if type(value).__name__ in _FRAME_TYPES else None


_FRAME_TYPES = frozenset({"DataFrame", "LazyFrame", "Table", "RecordBatch", "RecordBatchReader", "Dataset",
                          "FileSystemDataset", "UnionDataset", "InMemoryDataset", "Scanner"})


def _module(value) -> str:
    return type(value).__module__.split(".", 1)[0]


def _relation_table(value):
    from mldb.dbapi import Relation

    return value.arrow() if isinstance(value, Relation) else None


def candidates(tokens, scope: Scope | None) -> list[str]:
    """Names in the statement's tokens bound in ``scope`` to a frame (cheap: no parsing)."""
    if not scope:
        return []
    return [token.text for token in tokens if token.text in scope and scannable(scope.get(token.text)) is not None]


def read_names(tree: exp.Expression) -> set[str]:
    """Unqualified names the statement reads a table from, minus its CTEs."""
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    names = set()
    for table in tree.find_all(exp.Table):
        if table.args.get("db") or table.args.get("catalog") or table.name in ctes:
            continue
        if isinstance(table.parent, _READS) or table.arg_key == "source":
            names.add(table.name)
    return names


def unscannable(error: errors.Error, scope: Scope | None) -> errors.Error:
    """A missing table that names a variable mldb cannot scan: say so (else ``error`` as is)."""
    name = _missing_table(str(error))
    if scope is None or name is None or name not in scope:
        return error
    value = scope.get(name)
    if scannable(value) is not None:
        return error
    return errors.ProgrammingError(
        f'Python object "{name}" of type "{type(value).__name__}" found at {scope.where or "the caller"} '
        f"is not suitable for a replacement scan: there is no table {name!r} and the variable is not a "
        f"{SCANNED}", sqlstate="42P01")


def _missing_table(message: str) -> str | None:
    marker = "Table with name "
    start = message.find(marker)
    if start < 0:
        return None
    rest = message[start + len(marker):]
    end = rest.find(" does not exist")
    return rest[:end] if end > 0 else None

