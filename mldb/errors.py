"""The PEP 249 exception tree, each error carrying a SQLSTATE.

Every frontend raises these; DuckDB's exceptions are translated in one place,
:func:`translate`, so no ``duckdb.Error`` ever reaches a user.
"""

from __future__ import annotations

import re
import unicodedata

import duckdb


class Warning(Exception):  # noqa: A001 - the name PEP 249 requires
    """Important warnings, such as data truncation."""


class Error(Exception):
    """Base of every mldb error. ``sqlstate`` is the PostgreSQL error code."""

    sqlstate = "XX000"

    def __init__(self, message: str = "", *, sqlstate: str | None = None, position: int | None = None):
        super().__init__(message)
        if sqlstate:
            self.sqlstate = sqlstate
        self.position = position  # 1-based character offset in the statement (as PostgreSQL's), if known
        self.query: str | None = None  # the SQL DuckDB reported the error for (its ``LINE n:`` excerpt)
        self.span: tuple[int, int] | None = None  # (offset, length) in ``query`` that DuckDB pointed at
        self.origin: int | None = None  # where the mldb function call that failed was written (a token's start)

    @property
    def summary(self) -> str:
        """The message without the ``LINE n:`` excerpt (a PostgreSQL client draws its own from ``position``)."""
        return _CONTEXT.sub("", str(self))


class InterfaceError(Error):
    sqlstate = "08000"


class DatabaseError(Error):
    sqlstate = "XX000"


class DataError(DatabaseError):
    sqlstate = "22000"


class OperationalError(DatabaseError):
    sqlstate = "58000"


class IntegrityError(DatabaseError):
    sqlstate = "23000"


class InternalError(DatabaseError):
    sqlstate = "XX000"


class ProgrammingError(DatabaseError):
    sqlstate = "42000"


class NotSupportedError(DatabaseError):
    sqlstate = "0A000"


# DuckDB exception class name -> (mldb class, SQLSTATE). Checked by name along the MRO,
# so the most specific DuckDB class wins.
_DUCKDB_ERRORS: dict[str, tuple[type[Error], str]] = {
    "ParserException": (ProgrammingError, "42601"),
    "SyntaxException": (ProgrammingError, "42601"),
    "CatalogException": (ProgrammingError, "42P01"),
    "BinderException": (ProgrammingError, "42703"),
    "InvalidInputException": (ProgrammingError, "42000"),
    "InvalidTypeException": (ProgrammingError, "42804"),
    "ConversionException": (DataError, "22P02"),
    "OutOfRangeException": (DataError, "22003"),
    "TypeMismatchException": (DataError, "42804"),
    "ConstraintException": (IntegrityError, "23505"),
    "TransactionException": (OperationalError, "25P02"),
    "SerializationException": (OperationalError, "40001"),
    "IOException": (OperationalError, "58030"),
    "OutOfMemoryException": (OperationalError, "53200"),
    "InterruptException": (OperationalError, "57014"),
    "ConnectionException": (OperationalError, "08006"),
    "InternalException": (InternalError, "XX000"),
    "NotImplementedException": (NotSupportedError, "0A000"),
    "DependencyException": (ProgrammingError, "2BP01"),
    "PermissionException": (ProgrammingError, "42501"),
    "SequenceException": (DataError, "2200H"),
    "FatalException": (InternalError, "XX000"),
    "DataError": (DataError, "22000"),
    "IntegrityError": (IntegrityError, "23000"),
    "OperationalError": (OperationalError, "58000"),
    "ProgrammingError": (ProgrammingError, "42000"),
    "NotSupportedError": (NotSupportedError, "0A000"),
    "InternalError": (InternalError, "XX000"),
    "DatabaseError": (DatabaseError, "XX000"),
    "Error": (DatabaseError, "XX000"),
}

_TABLE_MISSING = re.compile(r"Table with name .* does not exist|Table .* does not exist")
_DIVISION_BY_ZERO = re.compile(r"[Dd]ivision by zero")
_NOT_NULL = re.compile(r"NOT NULL constraint failed")
_ABORTED = re.compile(r"Current transaction is aborted")
_CONFLICT = re.compile(r"Conflict on |write-write conflict|another transaction has altered|"
                       r"Attempting to modify table .* but another transaction")
_LINE_POSITION = re.compile(r"LINE \d+:")


_FUNCTION_ERROR = re.compile(r"mldb\[(\w+)/(\w{5})\] (.*)", re.DOTALL)


class FunctionError(Exception):
    """What an mldb function raises inside DuckDB: DuckDB keeps only the text of a Python
    exception, so the text carries the mldb class and SQLSTATE for :func:`translate`."""

    def __init__(self, error: Error):
        super().__init__(f"mldb[{type(error).__name__}/{error.sqlstate}] {error}")


def translate(error: duckdb.Error, sql: str | None = None) -> Error:
    """Map a DuckDB exception to the matching mldb class, keeping DuckDB's message.

    An mldb error raised inside one of mldb's functions keeps its own class and SQLSTATE.
    With ``sql`` (what DuckDB ran), the place its ``LINE n:`` excerpt points at is kept as
    ``query``/``span``; ``frontend.positions.as_written`` turns it into a ``position`` in the
    user's statement (SQL mldb runs for itself has no position a user could read)."""
    translated = _translate(error)
    if sql is not None:
        translated.query = sql
        translated.span = pointed_at(str(translated), sql)
    return translated


def _translate(error: duckdb.Error) -> Error:
    message = str(error)
    raised = _FUNCTION_ERROR.search(message)
    if raised is not None:
        kind, sqlstate, text = raised.groups()
        cls = globals().get(kind)
        if isinstance(cls, type) and issubclass(cls, Error):
            return cls(text, sqlstate=sqlstate)
    cls, sqlstate = DatabaseError, "XX000"
    for base in type(error).__mro__:
        if base.__name__ in _DUCKDB_ERRORS:
            cls, sqlstate = _DUCKDB_ERRORS[base.__name__]
            break
    sqlstate = _refine_sqlstate(type(error).__name__, message, sqlstate)
    if sqlstate.startswith("22"):
        cls = DataError  # DuckDB raises some data errors (division by zero) as invalid input
    return cls(message, sqlstate=sqlstate)


def _refine_sqlstate(kind: str, message: str, sqlstate: str) -> str:
    if kind == "CatalogException" and not _TABLE_MISSING.search(message):
        return "42704"  # undefined object (function, schema, type, ...)
    if kind == "BinderException" and "not found" not in message and "does not have a column" not in message:
        return "42000"
    if _DIVISION_BY_ZERO.search(message):
        return "22012"
    if _NOT_NULL.search(message):
        return "23502"
    if _ABORTED.search(message):
        return "25P02"
    if kind == "TransactionException" and _CONFLICT.search(message):
        return "40001"  # a concurrent transaction changed the same rows or table: retry
    return sqlstate



class ErrorClasses:
    """PEP 249's exception classes as attributes: of the DB-API module SQLAlchemy is given,
    and of a Connection (PEP 249's optional extension)."""

    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError

# DuckDB's error kinds as its messages name them ("Conversion Error: ...") -> its Python classes
_ERROR_KINDS = {
    "Invalid Input": "InvalidInputException", "Conversion": "ConversionException",
    "Out of Range": "OutOfRangeException", "INTERRUPT": "InterruptException", "Catalog": "CatalogException",
    "Binder": "BinderException", "Constraint": "ConstraintException", "TransactionContext": "TransactionException",
    "Not implemented": "NotImplementedException", "IO": "IOException", "Out of Memory": "OutOfMemoryException",
    "Serialization": "SerializationException", "Invalid type": "InvalidTypeException",
    "Mismatch Type": "TypeMismatchException", "Parser": "ParserException", "Syntax": "SyntaxException",
    "INTERNAL": "InternalException", "FATAL": "FatalException", "Permission": "PermissionException",
    "Dependency": "DependencyException", "Sequence": "SequenceException",
}
_ERROR_KIND = re.compile(r"^([A-Za-z ]+?) Error: ")


def duckdb_error(message: str) -> duckdb.Error:
    """The DuckDB exception an Arrow stream reported as text (so ``errors.translate`` classifies it)."""
    found = _ERROR_KIND.match(message)
    cls = getattr(duckdb, _ERROR_KINDS.get(found.group(1), "Error"), duckdb.Error) if found else duckdb.Error
    return cls(message)


# -- where an error points: DuckDB's "LINE n:" excerpt ------------------------------------------
_CONTEXT = re.compile(r"\n\nLINE (\d+): (.*)\n( *)(\^+)$")
_WIDTH = 120  # DuckDB renders at most this many columns of the line (QueryErrorContext::Format)


def pointed_at(message: str, sql: str) -> tuple[int, int] | None:
    """(character offset, length) in ``sql`` that the message's ``LINE n:`` excerpt points at."""
    found = _CONTEXT.search(message)
    if found is None:
        return None
    number, shown, indent, carets = int(found.group(1)), found.group(2), len(found.group(3)), len(found.group(4))
    lines = sql.splitlines(keepends=True)
    if number > len(lines):
        return None
    line_start = sum(len(line) for line in lines[: number - 1])
    line = lines[number - 1].rstrip("\r\n")
    begin = shown.startswith("...")
    shown = shown[3:] if begin else shown
    if shown.endswith("...") and shown[:-3] in line:
        shown = shown[:-3]
    start = line.find(shown) if begin else 0
    if start < 0:
        return None
    width, offset = indent - len(f"LINE {number}: ") - (3 if begin else 0), start
    while width > 0 and offset < len(line):
        width -= _char_width(line[offset])
        offset += 1
    length = 0
    while carets > 0 and offset + length < len(line):
        carets -= _char_width(line[offset + length])
        length += 1
    return line_start + offset, max(length, 1)


def excerpt(sql: str, offset: int, length: int) -> str:
    """DuckDB's ``LINE n:`` excerpt of ``sql`` pointing at ``length`` characters from ``offset``
    (a port of DuckDB's QueryErrorContext::Format, which Python cannot call)."""
    if not 0 <= offset < len(sql):
        return ""
    line_start = max(sql.rfind("\n", 0, offset), sql.rfind("\r", 0, offset)) + 1
    number = 1 + sum(1 for i, c in enumerate(sql[:offset]) if c == "\n" or (c == "\r" and sql[i + 1: i + 2] != "\n"))
    line_end = next((i for i in range(offset, len(sql)) if sql[i] in "\r\n"), len(sql))
    line, at = sql[line_start:line_end], offset - line_start
    widths = [_char_width(c) for c in line]
    first, begin = 0, False
    total = 0
    for i in range(at, 0, -1):
        total += widths[i]
        if total >= _WIDTH // 2:
            first, begin = _natural_break(line, max(i - 4, 0), min(i + 4, at), i), True
            break
    last, end, total = len(line), False, 0
    for i in range(at, len(line)):
        total += widths[i]
        if total >= _WIDTH // 2:
            last, end = _natural_break(line, max(i - 4, at), min(i + 4, len(line)), i), True
            break
    indicator = f"LINE {number}: "
    indent = len(indicator) + (3 if begin else 0) + sum(widths[first:at])
    carets = sum(widths[at:min(at + length, last)]) or 1
    shown = ("..." if begin else "") + line[first:last] + ("..." if end else "")
    return f"\n\n{indicator}{shown}\n{' ' * indent}{'^' * carets}"


def _natural_break(line: str, start: int, stop: int, default: int) -> int:
    """A space or operator character near ``default`` (DuckDB cuts the excerpt there)."""
    for k in range(start, stop):
        if line[k].isspace() or (line[k].isascii() and not line[k].isalnum() and line[k] != "_"):
            return k
    return default


def _char_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def with_excerpt(error: Error, message: str, sql: str | None, span: tuple[int, int] | None,
                 position: int | None = None) -> Error:
    """A copy of ``error`` (same class and SQLSTATE) with ``message`` and, when ``span`` is given,
    DuckDB's excerpt of ``sql`` and the 1-based ``position`` there."""
    context = excerpt(sql, *span) if sql is not None and span is not None else ""
    copy = type(error)(message + context, sqlstate=error.sqlstate,
                       position=span[0] + 1 if context else position)
    copy.query, copy.span = (sql, span) if context else (None, None)
    return copy
