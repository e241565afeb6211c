"""How the console reads the catalog: plain DuckDB SQL on a cursor of the database, one per thread.

The console only reads mldb's own tables (schema ``mldb``) and the user's tables' metadata, so
it goes straight to DuckDB (no mldb statement planning per query, which the 200 ms page budget
cannot afford). A file opened by ``mldb ui`` is read-only; beside ``mldb serve`` the same
``Database`` is shared and the console's queries are fixed read-only text.
"""

from __future__ import annotations

import collections
import contextlib
import threading


class Reader:
    def __init__(self, database):
        self.database = database
        self._local = threading.local()
        self._kept: collections.OrderedDict = collections.OrderedDict()  # what pages keep (drawn charts)
        self._kept_lock = threading.Lock()

    def cursor(self):
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self.database.root.cursor()
        return cursor

    def rows(self, sql: str, params=None) -> list[dict]:
        """Every row of ``sql`` as a dict of column name to value."""
        result = self.cursor().execute(sql, params or [])
        names = [column[0] for column in result.description]
        return [dict(zip(names, row)) for row in result.fetchall()]

    def kept(self, key, make, limit: int):
        """What ``make()`` gave for ``key`` when it was last asked (at most ``limit`` kept, the least recently
        used dropped first): for work too slow for every request, keyed by what it depends on."""
        with self._kept_lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        value = make()
        with self._kept_lock:
            self._kept[key] = value
            while len(self._kept) > limit:
                self._kept.popitem(last=False)
        return value

    def row(self, sql: str, params=None) -> dict | None:
        rows = self.rows(sql, params)
        return rows[0] if rows else None

    def value(self, sql: str, params=None):
        rows = self.cursor().execute(sql, params or []).fetchall()
        return rows[0][0] if rows else None

    @contextlib.contextmanager
    def time_limit(self, seconds: float):
        """``with reader.time_limit(2) as cursor:`` a query on it is interrupted after ``seconds``
        (``duckdb.InterruptException``): for the user's own queries and views, which may scan anything."""
        cursor, lock, over = self.cursor(), threading.Lock(), threading.Event()

        def interrupt():
            with lock:  # (never after the block: the cursor's next query is not this one)
                if not over.is_set():
                    cursor.interrupt()
        timer = threading.Timer(seconds, interrupt)
        timer.start()
        try:
            yield cursor
        finally:
            with lock:
                over.set()
            timer.cancel()

    def close(self) -> None:
        cursor = getattr(self._local, "cursor", None)
        if cursor is not None:
            cursor.close()


class PageReader:
    """The reader for one request, knowing which ``mldb`` tables and columns this file has from one query (a page
    asks a dozen times; an older file lacks monitors, alerts, shadows...). Everything else goes to the reader."""

    def __init__(self, reader):
        self.reader = reader
        self.columns = set(reader.cursor().execute(
            "SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'mldb' "
            "AND database_name = current_database()").fetchall())
        self.tables = {table for table, _ in self.columns}

    def has_table(self, name: str) -> bool:
        return name in self.tables

    def has_column(self, table: str, column: str) -> bool:
        return (table, column) in self.columns

    def __getattr__(self, name):
        return getattr(self.reader, name)


def for_page(reader) -> "PageReader":
    """``reader`` as one page's build sees it (once per request: a served file's catalog may change)."""
    return reader if isinstance(reader, PageReader) else PageReader(reader)
