"""mldb: a data-centric ML database. DuckDB plus TRAIN / PREDICT / EMBED / vector search in SQL.

    import mldb
    con = mldb.connect("shop.db")
    con.execute("SELECT 42").fetchall()
"""

from mldb.dbapi import (
    BINARY, DATETIME, NUMBER, ROWID, STRING, Binary, Connection, Cursor, Date, DateFromTicks, Time,
    TimeFromTicks, Timestamp, TimestampFromTicks, apilevel, connect, paramstyle, threadsafety,
)
from mldb.errors import (
    DatabaseError, DataError, Error, IntegrityError, InterfaceError, InternalError, NotSupportedError,
    OperationalError, ProgrammingError, Warning,
)
from mldb.udf import udf  # @mldb.udf(params=[...], returns=...): model UDFs (see udfs/)

__version__ = "0.1.0"

__all__ = [
    "connect", "udf", "Connection", "Cursor", "apilevel", "paramstyle", "threadsafety",
    "Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
    "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError",
    "STRING", "BINARY", "NUMBER", "DATETIME", "ROWID",
    "Date", "Time", "Timestamp", "DateFromTicks", "TimeFromTicks", "TimestampFromTicks", "Binary",
]


def load_ipython_extension(ipython) -> None:
    """``%load_ext mldb``: registers the %mldb / %%mldb magics (imported only then)."""
    from mldb.magic import load_ipython_extension as load

    load(ipython)
