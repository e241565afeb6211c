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
wins, as in DuckDB. Statements naming no such variable are not parsed here. A statement
that stores a query (CREATE VIEW, CREATE MACRO) may not read a frame: the view it would
read through lives for one statement, so the stored object would break at once.
"""

from __future__ import annotations

import sys

from sqlglot import exp

from mldb import errors

_READS = (exp.From, exp.Join, exp.Describe, exp.Summarize, exp.Pivot)  # where a name is read from
_FRAME_MODULES = frozenset({"pandas", "polars", "pyarrow", "numpy"})
SCANNED = ("pandas.DataFrame, polars DataFrame or LazyFrame, pyarrow Table, RecordBatch, Dataset or "
            "RecordBatchReader, a NumPy array or a dict of NumPy arrays")


class Scope:
    """Where table names are looked up: a frame's locals, then its globals.

    A function's locals are read (``frame.f_locals``) only when a statement names one of
    them: before Python 3.13 that snapshot stays on the frame and would keep a variable the
    caller deletes afterwards alive (a forgotten connection would never close).
    """

    def __init__(self, locals: dict | None = None, globals: dict | None = None, where: str = "", frame=None):
        self._locals = locals if locals is not None else {}
        self.globals = globals if globals is not None else {}
        self.where = where  # shown in errors: the file and line (or "the notebook")
        self._frame = frame  # a function's frame whose locals are not read yet
        self._names = frozenset(_local_names(frame.f_code)) if frame is not None else self._locals
        self.seen: dict = {}  # the frames handed out, by name (a Relation keeps these to run again)

    def get(self, name: str):
        if name in self._names:
            if self._frame is not None:
                self._locals, self._frame = self._frame.f_locals, None
            if name in self._locals:
                return self._remember(name, self._locals[name])
        return self._remember(name, self.globals.get(name, _MISSING))

    def __contains__(self, name: str) -> bool:
        return name in self._names or name in self.globals

    def _remember(self, name: str, value):
        if is_frame(value):
            self.seen[name] = value
        return value

    def pinned(self) -> "Scope":
        """Only the frames handed out so far (no reference to the caller's frame)."""
        return Scope(dict(self.seen), where=self.where)


_MISSING = object()
_OPTIMIZED = 0x1  # CO_OPTIMIZED: a function's fast locals (a module or class body has a plain dict)


def caller_scope() -> Scope:
    """The scope of the first frame outside mldb (the user's code calling the DB-API)."""
    frame = sys._getframe(1)
    while frame is not None and _is_mldb(frame.f_globals.get("__name__", "")):
        frame = frame.f_back
    if frame is None:
        return Scope()
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
    if frame.f_code.co_flags & _OPTIMIZED:
        return Scope(globals=frame.f_globals, where=where, frame=frame)
    return Scope(frame.f_locals, frame.f_globals, where)


def _local_names(code) -> tuple:
    return code.co_varnames + code.co_cellvars + code.co_freevars


def _is_mldb(module: str) -> bool:
    return module == "mldb" or module.startswith("mldb.")


def is_frame(value) -> bool:
    """Whether ``value`` is an object a query can read as a table (a type check: runs nothing)."""
    if isinstance(value, dict):
        return bool(value) and all(_module(item) == "numpy" for item in value.values())
    if _module(value) in _FRAME_MODULES:
        return type(value).__name__ in _FRAME_TYPES or (_module(value) == "numpy" and type(value).__name__ == "ndarray")
    from mldb.dbapi import Relation

    return isinstance(value, Relation)


def scannable(value):
    """What DuckDB can register for ``value`` (a NumPy structured array becomes a dict of its
    fields; mldb's relation, its Arrow table, computed now), or ``None`` if it is not a frame."""
    if not is_frame(value):
        return None
    if _module(value) == "numpy" and value.dtype.names:
        return {name: value[name] for name in value.dtype.names}
    return value if _module(value) in _FRAME_MODULES or isinstance(value, dict) else value.arrow()


_FRAME_TYPES = frozenset({"DataFrame", "LazyFrame", "Table", "RecordBatch", "RecordBatchReader", "Dataset",
                          "FileSystemDataset", "UnionDataset", "InMemoryDataset", "Scanner"})


def _module(value) -> str:
    return type(value).__module__.split(".", 1)[0]


def candidates(tokens, scope: Scope | None) -> list[str]:
    """Names in the statement's tokens bound in ``scope`` to a frame (cheap: no parsing)."""
    if not scope:
        return []
    return [token.text for token in tokens if token.text in scope and is_frame(scope.get(token.text))]


def read_names(tree: exp.Expression, schema=None, database=None) -> set[str]:
    """Names the statement reads a table from, minus its CTEs: unqualified, or qualified by
    the default schema and database (``main.df``, ``memory.main.df``, as DuckDB's replacement
    scan). ``schema()`` / ``database()`` are asked only when a qualified name is met."""
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    names = set()
    for table in tree.find_all(exp.Table):
        if table.name in ctes:
            continue
        if table.args.get("catalog") and (database is None or table.catalog.lower() != database().lower()):
            continue
        if table.args.get("db") and (schema is None or table.db != schema()):
            continue
        if isinstance(table.parent, _READS) or table.arg_key == "source":
            names.add(table.name)
    return names


def without_database(statement, names: list[str], database):
    """``statement`` with ``database.`` dropped before ``database.schema.name`` of each frame
    name (its view is temporary: DuckDB finds it as ``schema.name``), or ``None`` if none.
    ``database()`` (the current database's name) is asked only when such a name is met."""
    from sqlglot.tokens import TokenType

    tokens, cut = statement.tokens, []
    for i in range(len(tokens) - 4):
        if (tokens[i + 1].token_type == TokenType.DOT and tokens[i + 3].token_type == TokenType.DOT
                and tokens[i + 4].text in names and tokens[i].text.lower() == database().lower()):
            cut.append((tokens[i].start - statement.offset, tokens[i + 1].end + 1 - statement.offset))
    if not cut:
        return None
    text = statement.text
    for start, end in reversed(cut):
        text = text[:start] + text[end:]
    return text


_STORED = frozenset({"VIEW", "MACRO", "FUNCTION", "TABLE MACRO"})  # objects kept that re-read their query


def stored_reader(tree: exp.Expression, names: list[str], scope: "Scope") -> errors.Error | None:
    """A statement storing a query (``CREATE VIEW``, ``CREATE MACRO``) that would read frames
    of ``scope``: the error refusing it. A frame is read through a view that lives for one
    statement, so the stored object would break at once (and stay broken in the file)."""
    if not names or not isinstance(tree, exp.Create) or str(tree.args.get("kind", "")).upper() not in _STORED:
        return None
    name = names[0]
    kind = str(tree.args.get("kind")).upper()
    return errors.ProgrammingError(
        f'CREATE {kind} cannot read the Python object "{name}" ({type(scope.get(name)).__name__}): '
        f"a stored {kind.lower()} would break once this statement ends. Copy it into a table first "
        f"(CREATE TABLE {name} AS SELECT * FROM {name}) or register it for this connection "
        f"(con.register({name!r}, {name}))", sqlstate="0A000")


def unscannable(error: errors.Error, scope: Scope | None) -> errors.Error:
    """A missing table that names a variable mldb cannot scan: say so (else ``error`` as is)."""
    name = _missing_table(str(error))
    if scope is None or name is None or name not in scope:
        return error
    value = scope.get(name)
    if is_frame(value):
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

