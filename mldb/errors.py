"""The PEP 249 exception tree, each error carrying a SQLSTATE.

Every frontend raises these; DuckDB's exceptions are translated in one place,
:func:`translate`, so no ``duckdb.Error`` ever reaches a user.
"""

from __future__ import annotations

import re

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
        self.position = position  # 1-based character offset of a syntax error, if known


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


def translate(error: duckdb.Error) -> Error:
    """Map a DuckDB exception to the matching mldb class, keeping DuckDB's message.

    An mldb error raised inside one of mldb's functions keeps its own class and SQLSTATE."""
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
