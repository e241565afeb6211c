"""SQLAlchemy dialect for the in-process connection: ``create_engine("mldb:///shop.db")``.

Built on duckdb_engine (MIT), whose PostgreSQL-derived dialect already speaks DuckDB's SQL and
reflects DuckDB's catalog; this subclass only changes what differs for mldb:

- connections are ``mldb.connect(path)`` (``mldb://`` or ``mldb:///:memory:`` for memory), so
  TRAIN / PREDICT / EMBED work through the engine; URL query parameters are DuckDB settings;
- exceptions are mldb's PEP 249 classes, so SQLAlchemy wraps them (IntegrityError, ...);
- a SQLAlchemy transaction is an mldb one (``BEGIN`` ... ``commit()`` / ``rollback()``);
- reflection without a schema looks at the current schema only, so mldb's own tables
  (``mldb.models`` and the like) are not listed with the user's; indexes are read from
  ``duckdb_indexes()`` (duckdb_engine reports none).
"""

from __future__ import annotations

import re

from duckdb_engine import Dialect as DuckDBDialect
from sqlalchemy import pool, text
from sqlalchemy.dialects.postgresql.base import PGExecutionContext
from sqlalchemy.engine.reflection import ObjectKind, ObjectScope, cache

from mldb import errors
from mldb.server.pg_catalog import DROP_TABLE, drop_with_sequences, serial_statements


class MldbDBAPI(errors.ErrorClasses):
    """The DB-API module SQLAlchemy sees: mldb's exception classes; ``$1`` parameters as in duckdb_engine."""

    paramstyle = "numeric_dollar"
    apilevel = "2.0"
    threadsafety = 2  # as mldb.threadsafety

    @staticmethod
    def Binary(value):  # noqa: N802 - the name PEP 249 requires
        return value

    @staticmethod
    def connect(database: str = ":memory:", **kwargs):
        import mldb

        return mldb.connect(database, **kwargs)


_EXPRESSION = re.compile(r'^\s*"?([^"]*?)"?\s*$')


class MldbDialect(DuckDBDialect):
    name = "mldb"
    driver = "mldb"
    supports_statement_cache = False
    execution_ctx_cls = PGExecutionContext  # psycopg2's reads connection.notices
    supports_constraint_comments = False  # DuckDB has no COMMENT ON CONSTRAINT
    _backslash_escapes = False  # DuckDB's strings are standard-conforming: a backslash is itself

    @classmethod
    def import_dbapi(cls):
        return MldbDBAPI

    @staticmethod
    def dbapi(**kwargs):
        return MldbDBAPI

    @classmethod
    def get_pool_class(cls, url):
        return pool.SingletonThreadPool if url.database in (None, "", ":memory:") else pool.QueuePool

    def create_connect_args(self, url):
        settings = dict(url.query)
        options = {"config": settings} if settings else {}
        return (url.database or ":memory:",), options

    def connect(self, *cargs, **cparams):
        return MldbDBAPI.connect(*cargs, **cparams)

    def do_begin(self, dbapi_connection) -> None:
        dbapi_connection.execute("BEGIN")

    def do_rollback(self, dbapi_connection) -> None:
        dbapi_connection.rollback()

    def do_commit(self, dbapi_connection) -> None:
        dbapi_connection.commit()

    def do_execute(self, cursor, statement, parameters, context=None) -> None:
        _run_serial(cursor, statement) or cursor.execute(statement, parameters)

    def do_execute_no_params(self, cursor, statement, context=None) -> None:
        _run_serial(cursor, statement) or cursor.execute(statement)

    def is_disconnect(self, e, connection, cursor) -> bool:
        return isinstance(e, errors.InterfaceError) and "closed" in str(e)

    # -- reflection: the current schema by default; indexes from duckdb_indexes() -----------------
    def _schema(self, schema):
        return schema if schema is not None else self.default_schema_name

    @cache
    def get_table_names(self, connection, schema=None, **kw):
        return super().get_table_names(connection, schema=self._schema(schema), **kw)

    def get_view_names(self, connection, schema=None, include=None, **kw):
        return super().get_view_names(connection, schema=self._schema(schema), include=include, **kw)

    @cache
    def get_table_oid(self, connection, table_name, schema=None, **kw):
        return super().get_table_oid(connection, table_name, schema=self._schema(schema), **kw)

    def has_table(self, connection, table_name, schema=None, **kw) -> bool:
        return super().has_table(connection, table_name, schema=self._schema(schema), **kw)

    def _tables(self, connection, schema, filter_names, scope=ObjectScope.ANY, kind=ObjectKind.ANY, **kw):
        """Names of the tables and views reflection asks for: in ``schema`` (the current one if None),
        of ``kind`` (tables, views) and ``scope`` (permanent, temporary)."""
        rows = connection.execute(text(
            "SELECT table_name, temporary, false FROM duckdb_tables() WHERE schema_name = :schema "
            "AND database_name IN (current_database(), 'temp') UNION ALL "
            "SELECT view_name, temporary, true FROM duckdb_views() WHERE NOT internal AND schema_name = :schema "
            "AND database_name IN (current_database(), 'temp')"), {"schema": self._schema(schema)})
        wanted = []
        for name, temporary, view in rows:
            if not (kind & (ObjectKind.VIEW if view else ObjectKind.TABLE)):
                continue
            if not (scope & (ObjectScope.TEMPORARY if temporary else ObjectScope.DEFAULT)):
                continue
            if not filter_names or name in filter_names:
                wanted.append(name)
        return sorted(wanted)

    def _constraints(self, connection, schema, kind: str, names) -> dict:
        """{table: [(name, columns, referenced table, referenced columns, expression)]} of one kind."""
        found = {name: [] for name in names}
        if not names:
            return found
        rows = connection.execute(text(
            "SELECT table_name, constraint_name, constraint_column_names, referenced_table, "
            "referenced_column_names, expression FROM duckdb_constraints() "
            "WHERE constraint_type = :kind AND schema_name = :schema AND database_name = current_database() "
            "ORDER BY table_name, constraint_index"), {"kind": kind, "schema": self._schema(schema)})
        for table, *rest in rows:
            if table in found:
                found[table].append(tuple(rest))
        return found

    def get_multi_columns(self, connection, schema=None, filter_names=None, **kw):
        """PostgreSQL's reflection, asked for the current schema by name: with ``schema=None`` it
        would take every table DuckDB calls visible (mldb's own, other schemas' of the same name)."""
        found = super().get_multi_columns(connection, schema=self._schema(schema), filter_names=filter_names, **kw)
        return [((schema, table), columns) for (_, table), columns in found]

    def get_multi_pk_constraint(self, connection, schema=None, filter_names=None, **kw):
        names = self._tables(connection, schema, filter_names, **kw)
        for table, found in self._constraints(connection, schema, "PRIMARY KEY", names).items():
            name, columns = (found[0][0], list(found[0][1])) if found else (None, [])
            yield (schema, table), {"name": name, "constrained_columns": columns, "comment": None}

    def get_multi_foreign_keys(self, connection, schema=None, filter_names=None, **kw):
        names = self._tables(connection, schema, filter_names, **kw)
        for table, found in self._constraints(connection, schema, "FOREIGN KEY", names).items():
            yield (schema, table), [
                {"name": name, "constrained_columns": list(columns), "referred_schema": schema,
                 "referred_table": referred, "referred_columns": list(referred_columns), "options": {},
                 "comment": None}
                for name, columns, referred, referred_columns, _ in found]

    def get_multi_unique_constraints(self, connection, schema=None, filter_names=None, **kw):
        names = self._tables(connection, schema, filter_names, **kw)
        for table, found in self._constraints(connection, schema, "UNIQUE", names).items():
            yield (schema, table), [{"name": name, "column_names": list(columns), "comment": None}
                                    for name, columns, *_ in found]

    def get_multi_check_constraints(self, connection, schema=None, filter_names=None, **kw):
        names = self._tables(connection, schema, filter_names, **kw)
        for table, found in self._constraints(connection, schema, "CHECK", names).items():
            yield (schema, table), [{"name": name, "sqltext": _unparenthesized(expression), "comment": None}
                                    for name, _, _, _, expression in found]

    def get_multi_indexes(self, connection, schema=None, filter_names=None, **kw):
        names = self._tables(connection, schema, filter_names, **kw)
        found = {name: [] for name in names}
        rows = connection.execute(text(
            "SELECT table_name, index_name, is_unique, expressions::VARCHAR[] FROM duckdb_indexes() "
            "WHERE schema_name = :schema AND database_name = current_database() AND NOT is_primary "
            "ORDER BY table_name, index_name"), {"schema": self._schema(schema)})
        for table, name, unique, expressions in rows:
            if table in found:
                found[table].append({"name": name, "column_names": [_column(e) for e in expressions],
                                     "unique": bool(unique), "dialect_options": {}, "include_columns": []})
        return [((schema, table), indexes) for table, indexes in found.items()]

    def get_indexes(self, connection, table_name, schema=None, **kw):
        return self._value_or_raise(
            self.get_multi_indexes(connection, schema=schema, filter_names=[table_name], **kw), table_name, schema)

    def get_multi_table_comment(self, connection, schema=None, filter_names=None, **kw):
        names = self._tables(connection, schema, filter_names, **kw)
        rows = connection.execute(text(
            "SELECT table_name, comment FROM duckdb_tables() WHERE schema_name = :schema "
            "AND database_name = current_database()"), {"schema": self._schema(schema)})
        comments = dict(rows.fetchall())
        return [((schema, name), {"text": comments.get(name)}) for name in names]


def _run_serial(cursor, statement: str) -> bool:
    """``CREATE TABLE`` with SERIAL columns (SQLAlchemy's autoincrement primary key): sequences first;
    ``DROP TABLE``: the sequences of its SERIAL columns after it."""
    if DROP_TABLE.match(statement):
        drop_with_sequences(lambda sql, params=None: cursor.execute(sql, params) if params else cursor.execute(sql),
                            statement)
        return True
    statements = serial_statements(statement)
    for each in statements or ():
        cursor.execute(each)
    return statements is not None


def _column(expression: str) -> str:
    return _EXPRESSION.match(expression).group(1)


def _unparenthesized(expression: str) -> str:
    return expression[1:-1] if expression and expression.startswith("(") and expression.endswith(")") else expression
