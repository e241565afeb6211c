"""What PostgreSQL clients ask that DuckDB does not answer, in one place.

- ``parameter_status`` / ``apply_startup``: the ParameterStatus values sent after
  authentication, and start-up parameters DuckDB shares (TimeZone).
- ``intercept``: ``SET`` / ``SHOW`` / ``RESET`` of client-side parameters
  (application_name, extra_float_digits, DateStyle, ...) that DuckDB does not have,
  kept per connection; ``SET TIME ZONE``; COPY to the server's own stdin/stdout refused.
- ``translate_introspection``: psql's ``\\d`` queries, asyncpg's type look-up and the like,
  respelled for DuckDB, whose own ``pg_catalog`` schema answers most catalog look-ups.
"""

from __future__ import annotations

import contextlib
import re

from mldb import errors
from mldb.result import Result
from mldb.server import catalog_views

SERVER_VERSION = "15.0"

_DEFAULTS = {
    "server_version": SERVER_VERSION,
    "server_version_num": "150000",
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
    "is_superuser": "on",
    "default_transaction_read_only": "off",
    "in_hot_standby": "off",
    "transaction_isolation": "serializable",
    "max_identifier_length": "63",
    "extra_float_digits": "1",
}
_REPORTED = ("server_version", "server_encoding", "client_encoding", "DateStyle", "IntervalStyle",
             "integer_datetimes", "standard_conforming_strings", "is_superuser", "default_transaction_read_only",
             "in_hot_standby")

_SET = re.compile(r"^\s*SET\s+(?:SESSION\s+|LOCAL\s+)?([A-Za-z_][\w.]*)\s*(?:=|\s+TO\s+|\s+)\s*(.+?)\s*;?\s*$",
                  re.IGNORECASE | re.DOTALL)
_SET_NAMES = re.compile(r"^\s*SET\s+(?:SESSION\s+)?NAMES\b", re.IGNORECASE)
_SET_TIME_ZONE = re.compile(r"^\s*SET\s+(?:SESSION\s+)?TIME\s+ZONE\s+(.+?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_SHOW = re.compile(r"^\s*SHOW\s+([A-Za-z_][\w.]*|TRANSACTION\s+ISOLATION\s+LEVEL)\s*;?\s*$", re.IGNORECASE)
_RESET = re.compile(r"^\s*(?:RESET\s+(\w+)|RESET\s+ALL|DISCARD\s+ALL)\s*;?\s*$", re.IGNORECASE)
_FIRST = re.compile(r"^\s*(SET|SHOW|RESET|DISCARD|COPY|SAVEPOINT|RELEASE|ROLLBACK\s+TO|DEALLOCATE)\b", re.IGNORECASE)
_COMMENT_ON_CONSTRAINT = re.compile(r"^\s*COMMENT\s+ON\s+CONSTRAINT\b", re.IGNORECASE)
_COPY_STDIO = re.compile(r"\b(STDIN|STDOUT)\b|/dev/std(in|out|err)", re.IGNORECASE)


def command_line_options(options: str) -> dict[str, str]:
    """The start-up ``options`` parameter (``-c name=value --name=value``) as parameters."""
    words, found = options.split(), {}
    for i, word in enumerate(words):
        setting = words[i + 1] if word == "-c" and i + 1 < len(words) else word[2:] if word.startswith("--") else ""
        if "=" in setting:
            name, value = setting.split("=", 1)
            found[name.replace("-", "_")] = value
    return found


def apply_startup(startup: dict[str, str], session) -> None:
    """Start-up parameters DuckDB has too (JDBC sends the JVM's TimeZone): set them on the session.
    The catalog's temporary views and macros are made here, outside any transaction: made inside
    the client's first one (drivers open one before their first query) they would vanish with its
    rollback and be remade for every catalog query (about 0.15 s each time)."""
    _create_temporary(session)
    zone = startup.get("TimeZone") or startup.get("timezone")
    if zone:
        try:
            session.sql(f"SET SESSION TimeZone = '{zone.replace(chr(39), chr(39) * 2)}'")  # this client's only
        except errors.Error:
            pass  # a zone DuckDB does not know: keep the server's


def parameter_status(startup: dict[str, str], session) -> dict[str, str]:
    values = {name: _DEFAULTS[name] for name in _REPORTED}
    values["application_name"] = startup.get("application_name", "")
    values["session_authorization"] = startup.get("user", "")
    values["TimeZone"] = _timezone(session)
    return values


def _timezone(session) -> str:
    try:
        return str(session.sql("SELECT current_setting('TimeZone')").fetchone()[0])
    except errors.Error:
        return "UTC"


def intercept(connection, sql: str) -> Result | None:
    """A Result for statements answered here; None for everything DuckDB runs itself."""
    first = _FIRST.match(sql)
    if first is None and _COMMENT_ON_CONSTRAINT.match(sql):
        connection._notice("WARNING", "01000", "mldb keeps no comments on constraints (DuckDB has none): not stored")
        return Result.done("COMMENT")
    if first is None and DROP_TABLE.match(sql):
        return drop_with_sequences(connection.session.execute, sql)
    if first is None:
        serial = serial_statements(sql)
        if serial is None:
            return None
        for statement in serial[:-1]:
            connection.session.execute(statement)
        return connection.session.execute(serial[-1])
    word = " ".join(first.group(1).upper().split())
    if word in ("SAVEPOINT", "RELEASE", "ROLLBACK TO"):
        return _savepoint(connection, word)
    if word == "DEALLOCATE":
        return _deallocate(connection, sql)
    if word == "SET":
        return _set(connection, sql)
    if word == "SHOW":
        return _show(connection, sql)
    if word == "COPY" and _COPY_STDIO.search(sql):  # DuckDB would use the server's own stdin/stdout
        raise errors.NotSupportedError("COPY FROM STDIN / TO STDOUT is not supported by mldb serve: "
                                       "use INSERT, or COPY to or from a file on the server", sqlstate="0A000")
    if word == "COPY":
        return None
    return _reset(connection, sql) if _RESET.match(sql) else None


def _savepoint(connection, word: str) -> Result:
    """DuckDB has no savepoints. Drivers set one around a step that should not fail (psycopg's type
    look-up); SAVEPOINT and RELEASE pass (every statement between them stays part of the transaction),
    ROLLBACK TO fails, so a transaction is never left with changes the client believes undone."""
    if word == "ROLLBACK TO":
        raise errors.NotSupportedError("ROLLBACK TO SAVEPOINT is not supported by mldb (DuckDB has no savepoints): "
                                       "roll back the transaction", sqlstate="0A000")
    return Result.done(word)


_DEALLOCATE = re.compile(r"^\s*DEALLOCATE\s+(?:PREPARE\s+)?(ALL|\"(?:[^\"]|\"\")+\"|\w+)\s*;?\s*$", re.IGNORECASE)


def _deallocate(connection, sql: str) -> Result:
    """DEALLOCATE [PREPARE] name | ALL: the connection's protocol-level prepared statements."""
    match = _DEALLOCATE.match(sql)
    if match is None:
        raise errors.ProgrammingError(f"syntax error in {sql.strip()!r}", sqlstate="42601")
    name = match.group(1)
    if name.upper() == "ALL":
        for key in [key for key in connection.statements if key]:
            del connection.statements[key]
        return Result.done("DEALLOCATE ALL")
    name = name[1:-1].replace('""', '"') if name.startswith('"') else name
    if connection.statements.pop(name, None) is None:
        raise errors.ProgrammingError(f'prepared statement "{name}" does not exist', sqlstate="26000")
    return Result.done("DEALLOCATE")


def _set(connection, sql: str) -> Result | None:
    if _SET_NAMES.match(sql):
        return Result.done("SET")
    zone = _SET_TIME_ZONE.match(sql)
    if zone:  # PostgreSQL's spelling of DuckDB's TimeZone setting
        value = zone.group(1)
        statement = "RESET TimeZone" if value.upper() in ("LOCAL", "DEFAULT") else f"SET TimeZone = {value}"
        return connection.session.execute(statement)
    match = _SET.match(sql)
    if match is None or match.group(1).upper() in ("GLOBAL", "VARIABLE") or _is_mldb_setting(match.group(1)) \
            or _is_duckdb_setting(connection.session, match.group(1)):
        return None
    name, value = match.group(1), match.group(2).strip().strip("'\"")
    if name.lower() == "client_encoding" and value.upper().replace("-", "") not in ("UTF8", "UNICODE"):
        raise errors.NotSupportedError(f"client_encoding {value!r} is not supported: mldb speaks UTF8",
                                       sqlstate="22023")
    connection.params[name.lower()] = value
    return Result.done("SET")


def _reset(connection, sql: str) -> Result | None:
    """``RESET name``: DuckDB's own settings are reset by DuckDB (for this session: see
    mldb.server.access); a client parameter (application_name, ...) here. ``RESET ALL`` and
    ``DISCARD ALL`` reset every DuckDB setting this client changed."""
    name = _RESET.match(sql).group(1)
    tag = " ".join(sql.split()[:2]).upper().rstrip(";")
    if name is not None and name.upper() != "ALL":
        if _is_mldb_setting(name) or _is_duckdb_setting(connection.session, name):
            return None
        connection.params.pop(name.lower(), None)
        return Result.done(tag)
    session = connection.session
    for setting in sorted(session.changed_settings):
        with contextlib.suppress(errors.Error):  # (a name the client set that DuckDB never took)
            session.sql(f"RESET SESSION {'TimeZone' if setting == 'time zone' else setting}")
    session.changed_settings.clear()
    session.mldb_settings.clear()  # (mldb's own: mldb.scaleout.settings)
    session.settings_changed()
    return Result.done(tag)


def _show(connection, sql: str) -> Result | None:
    match = _SHOW.match(sql)
    if match is None:
        return None
    name = match.group(1)
    if _is_mldb_setting(name):
        return None
    if name.upper().startswith("TRANSACTION "):  # SHOW TRANSACTION ISOLATION LEVEL
        name = "transaction_isolation"
    value = connection.params.get(name.lower())
    if value is None:
        value = next((v for key, v in _DEFAULTS.items() if key.lower() == name.lower()), None)
    if value is None:
        return None
    return connection.session.execute(f'SELECT ? AS "{name.lower()}"', [value])


def _is_mldb_setting(name: str) -> bool:
    """One of mldb's own settings (SET mldb_executor ...): the session's statement, not a client parameter."""
    from mldb.frontend.settings import NAMES

    return name.lower() in NAMES


def _is_duckdb_setting(session, name: str) -> bool:
    found = session.sql("SELECT count(*) FROM duckdb_settings() WHERE lower(name) = lower(?)", [name]).fetchone()
    return bool(found[0])


# -- client introspection queries (psql's \d commands, drivers' type look-ups) ----------------
# Fixed spellings psql and drivers use that DuckDB reads differently: replaced as whole strings
# (not parsed: these are the tools' own queries, and sqlglot cannot read OPERATOR(...)).
_SPELLINGS = (
    ("OPERATOR(pg_catalog.~)", "~"),
    ("OPERATOR(pg_catalog.!~)", "!~"),
    (" COLLATE pg_catalog.default", ""),
    ("::pg_catalog.regtype::pg_catalog.text", "::VARCHAR"),
    ("::pg_catalog.regclass", "::VARCHAR"),
    ("::regtype::text", "::VARCHAR"),
    ("::pg_catalog.text", "::VARCHAR"),
    ("pg_get_expr(d.adbin, d.adrelid, true)", "pg_get_expr(d.adbin, d.adrelid)"),
    ("pg_catalog.array_to_string(d.datacl, E'\\n')", "NULL"),
    # \d+: table storage options (DuckDB has none)
    ("pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ')",
     "''"),
)
# What DuckDB's pg_catalog lacks, created per session as temporary macros and views
# (catalog_views has the PostgreSQL-shaped tables); the tools' ``pg_catalog.`` qualifier is
# dropped, so a bare name finds the temporary one first, then DuckDB's pg_catalog.
_MACROS = {
    "pg_get_userbyid": "(role) AS 'mldb'",
    "pg_encoding_to_char": "(encoding) AS 'UTF8'",
    "pg_table_size": "(relation) AS NULL::BIGINT",
    "pg_get_function_result": "(function_oid) AS NULL::VARCHAR",
    "pg_get_function_arguments": "(function_oid) AS NULL::VARCHAR",
    "pg_partition_ancestors": "(relation) AS relation::BIGINT",  # nothing is partitioned: a table is its own
}
_TEMPORARY = [f"CREATE OR REPLACE TEMP MACRO {name}{body}" for name, body in _MACROS.items()] + \
    catalog_views.statements()
# SQLAlchemy's column reflection reads identity column options through pg_get_serial_sequence for
# every column; DuckDB has no identity columns (attidentity is always ''): no sequence matches.
_IDENTITY_SEQUENCE = ("pg_catalog.pg_sequence.seqrelid = CAST(CAST(pg_catalog.pg_get_serial_sequence(CAST(CAST("
                      "pg_catalog.pg_attribute.attrelid AS REGCLASS) AS TEXT), pg_catalog.pg_attribute.attname) "
                      "AS REGCLASS) AS OID)")
_OID_LITERAL = re.compile(r"'(\d+)'::pg_catalog\.regclass")  # psql's '16384'::pg_catalog.regclass: an oid
_REGCLASS_NAME = re.compile(r"(?<![\w.'])([A-Za-z_][\w.]*)::pg_catalog\.regclass(?:::pg_catalog\.text)?(?!::)")
_QUALIFIER = re.compile(r"(?<![\w.\"])pg_catalog\.(?=[A-Za-z_])")
_RENAMED = re.compile(r"(?<![\w.])(" + "|".join(catalog_views.RENAMED) + r")\s*\(", re.IGNORECASE)
_FORMAT_ATTRIBUTE = re.compile(r"\bformat_type\(\s*([\w.]+)\.atttypid\s*,\s*\1\.atttypmod\s*\)", re.IGNORECASE)
_REGCLASS = re.compile(r"\s+AS\s+REGCLASS\s*\)", re.IGNORECASE)
_AS_TEXT_OR_OID = re.compile(r"\s+AS\s+(TEXT|VARCHAR|OID)\s*\)", re.IGNORECASE)
# Catalogs of features DuckDB does not have (row security, publications, inheritance, ...):
# a query on them is answered with no rows.
_ABSENT = re.compile(r"pg_catalog\.(pg_policy|pg_statistic_ext|pg_publication\w*|pg_inherits|pg_trigger|pg_rewrite"
                     r"|pg_partitioned_table|pg_foreign_table|pg_event_trigger|pg_roles|pg_prepared_xacts|pg_stat_activity)\b")


def version_string() -> str:
    """``version()`` as PostgreSQL spells it (drivers parse the number), naming mldb and DuckDB."""
    import platform

    import duckdb

    from mldb import __version__

    return (f"PostgreSQL {SERVER_VERSION} (mldb {__version__}, DuckDB {duckdb.__version__}) "
            f"on {platform.machine()}-pc-linux-gnu, 64-bit")


_VERSION_CALL = re.compile(r"(?<![\w.])(?:pg_catalog\.)?version\(\s*\)", re.IGNORECASE)
_VERSION_ONLY = re.compile(r"^\s*SELECT\s+(?:pg_catalog\.)?version\(\s*\)\s*;?\s*$", re.IGNORECASE)


def translate_introspection(connection, sql: str) -> str:
    """psql/driver catalog queries in DuckDB's spelling (only for SQL that mentions pg_catalog)."""
    if "set_config('jit', 'off', false)" in sql:  # asyncpg turns PostgreSQL's JIT off on connect
        return "SELECT 'off' AS cur, 'off' AS new"
    if "version(" in sql.lower():
        literal = "'" + version_string().replace("'", "''") + "'"
        if _VERSION_ONLY.match(sql):
            return f"SELECT {literal} AS version"
        sql = _VERSION_CALL.sub(literal, sql)
    if "pg_" not in sql:
        return sql
    if "typeinfo_tree" in sql:
        return _ASYNCPG_TYPES
    _ensure_temporary(connection)
    if _ABSENT.search(sql):
        return _no_rows(sql)
    sql = _OID_LITERAL.sub(r"\1", sql)
    sql = sql.replace(_IDENTITY_SEQUENCE, "false")
    sql = _REGCLASS_NAME.sub(r"mldb_regclass_name(\1)", sql)
    for spelling, duckdb in _SPELLINGS:
        sql = sql.replace(spelling, duckdb)
    sql = _QUALIFIER.sub("", sql)
    sql = _FORMAT_ATTRIBUTE.sub(r"\1.mldb_format_type", sql)
    sql = _RENAMED.sub(lambda m: catalog_views.RENAMED[m.group(1).lower()] + "(", sql)
    return _regclass_casts(sql)


def _regclass_casts(sql: str) -> str:
    """``CAST(x AS REGCLASS)`` (SQLAlchemy's spelling): a name for ``CAST(... AS TEXT)`` around it,
    else an oid (DuckDB has no regclass type)."""
    while True:
        found = _REGCLASS.search(sql)
        if found is None:
            return sql
        start = _cast_start(sql, found.start())
        inner = sql[start + 5 : found.start()]
        outer = _AS_TEXT_OR_OID.match(sql, found.end())
        if outer and sql[:start].rstrip().upper().endswith("CAST("):
            opening = sql[:start].rstrip()[:-5]
            function = "mldb_regclass_oid" if outer.group(1).upper() == "OID" else "mldb_regclass_name"
            sql = f"{opening}{function}({inner}){sql[outer.end():]}"
        else:
            sql = f"{sql[:start]}mldb_regclass_oid({inner}){sql[found.end():]}"


def _cast_start(sql: str, end: int) -> int:
    """Where the ``CAST(`` whose argument ends at ``end`` starts (parentheses counted back)."""
    depth = 0
    for position in range(end - 1, -1, -1):
        char = sql[position]
        if char == ")":
            depth += 1
        elif char == "(":
            if depth == 0:
                return position - 4
            depth -= 1
    raise errors.ProgrammingError("unbalanced parentheses around a REGCLASS cast", sqlstate="42601")


def _no_rows(sql: str) -> str:
    """A query with the same number of (text) columns as ``sql`` and no rows."""
    import sqlglot

    try:
        tree = sqlglot.parse_one(sql.replace("OPERATOR(pg_catalog.~)", "~"), read="postgres")
        names = [select.alias_or_name or f"column{i}" for i, select in enumerate(tree.selects, 1)]
    except sqlglot.errors.SqlglotError:
        names = ["column1"]
    columns = ", ".join(f'NULL::VARCHAR AS "{name.replace(chr(34), "")}"' for name in names)
    return f"SELECT {columns} WHERE false"


def _create_temporary(session) -> None:
    try:
        for definition in _TEMPORARY:
            session.sql(definition)
    except errors.Error:
        return  # (a database opened read-only still answers DuckDB's own pg_catalog)
    session.catalog_ready = True  # made outside a transaction: they stay for the session's life


def _ensure_temporary(connection) -> None:
    """Create the temporary catalog objects if the start-up did not. Made inside a client's
    transaction they vanish with its rollback, so they count as made for good only outside one;
    inside, look first."""
    if getattr(connection.session, "catalog_ready", False) or getattr(connection, "catalog_ready", False):
        return
    outside = getattr(connection, "transaction", b"I") == b"I"
    if outside or not connection.session.sql(
            "SELECT count(*) FROM duckdb_functions() WHERE function_name = 'mldb_constraintdef'").fetchone()[0]:
        for definition in _TEMPORARY:
            connection.session.sql(definition)
    connection.catalog_ready = outside


def _array_types() -> str:
    from mldb.server import types

    rows = ", ".join(f"({array}, '_{types.NAMES[element]}', {element}, '{types.NAMES[element]}')"
                     for element, array in types.ARRAY_OF.items())
    return f"(VALUES {rows}) AS t(oid, name, elemtype, elemtype_name)"


# asyncpg asks for the types it has no built-in codec for (arrays among them) with one
# recursive query over pg_type; DuckDB's pg_type has other OIDs, so answer from our own table.
_ASYNCPG_TYPES = f"""SELECT t.oid::UINTEGER AS oid, 'pg_catalog' AS ns, t.name, 'b' AS kind,
  NULL::UINTEGER AS basetype, t.elemtype::UINTEGER AS elemtype, ',' AS elemdelim, NULL::UINTEGER AS range_subtype,
  NULL::UINTEGER[] AS attrtypoids, NULL::VARCHAR[] AS attrnames, 0 AS depth, NULL::VARCHAR AS basetype_name,
  t.elemtype_name, NULL::VARCHAR AS range_subtype_name
FROM {_array_types()} WHERE list_contains($1::UINTEGER[], t.oid)"""


# -- SERIAL / BIGSERIAL and GENERATED BY DEFAULT AS IDENTITY columns: a sequence and a nextval()
# default, as PostgreSQL makes (DuckDB has neither) -------------------------------------------------
_SERIAL = re.compile(r"^\s*CREATE\s+(?:TEMP\w*\s+)?TABLE\b.*(?:\b(?:SMALL|BIG)?SERIAL\d?\b|\bBY\s+DEFAULT\s+AS\s+IDENTITY\b)",
                     re.IGNORECASE | re.DOTALL)
_IDENTITY_OPTIONS = re.compile(r"(\bBY\s+DEFAULT\s+AS\s+IDENTITY)\s*\(([^()]*)\)", re.IGNORECASE)
_CACHE = re.compile(r"\bCACHE\s+\d+", re.IGNORECASE)  # (DuckDB's sequences have no cache)
_SERIAL_TYPES = {"SMALLSERIAL": "SMALLINT", "SERIAL": "INTEGER", "BIGSERIAL": "BIGINT"}


def serial_statements(sql: str) -> list[str] | None:
    """``CREATE TABLE`` with SERIAL or ``GENERATED BY DEFAULT AS IDENTITY`` columns as
    ``CREATE OR REPLACE SEQUENCE <table>_<column>_seq`` statements followed by the table with
    ``DEFAULT nextval(...)`` columns; None if it has none. (``GENERATED ALWAYS`` is left to fail:
    a default would let an explicit value through, which PostgreSQL refuses.)"""
    if not _SERIAL.match(sql):
        return None
    import sqlglot
    from sqlglot import exp

    identity_options: list[str] = []  # each identity's (options), read here: sqlglot wants START first
    sql = _IDENTITY_OPTIONS.sub(lambda m: identity_options.append(_CACHE.sub("", m.group(2)).strip()) or m.group(1), sql)
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except sqlglot.errors.SqlglotError:
        return None
    schema = tree.this if isinstance(tree, exp.Create) else None
    if not isinstance(schema, exp.Schema):
        return None
    table, before = schema.this, []
    for column in schema.find_all(exp.ColumnDef):
        options = _sequence_options(column, identity_options)
        if options is None:
            continue
        sequence = exp.table_(f"{table.name}_{column.name}_seq", db=table.db or None)
        create = "CREATE SEQUENCE IF NOT EXISTS" if tree.args.get("exists") else "CREATE OR REPLACE SEQUENCE"
        temporary = "TEMP " if tree.find(exp.TemporaryProperty) else ""
        before.append(f"{create.replace('SEQUENCE', temporary + 'SEQUENCE')} {sequence.sql(dialect='duckdb')}{options}")
        default = exp.ColumnConstraint(kind=exp.DefaultColumnConstraint(
            this=exp.Anonymous(this="nextval", expressions=[exp.Literal.string(sequence.sql(dialect="duckdb"))])))
        column.append("constraints", default)
    return before + [tree.sql(dialect="duckdb")] if before else None


def _sequence_options(column, identity_options: list[str]) -> str | None:
    """A SERIAL column (its type made the integer type) or a BY DEFAULT identity column (the
    identity clause removed): its sequence's options (START, INCREMENT, ...); None for any other."""
    from sqlglot import exp

    kind = column.args.get("kind")
    name = kind.this.name if isinstance(kind, exp.DataType) else ""
    if name in _SERIAL_TYPES:
        column.set("kind", exp.DataType.build(_SERIAL_TYPES[name]))
        return ""
    for constraint in column.args.get("constraints") or []:
        identity = constraint.args.get("kind")
        if isinstance(identity, exp.GeneratedAsIdentityColumnConstraint) and identity.this is False:
            constraint.pop()
            return " " + identity_options.pop(0) if identity_options else ""
    return None


# -- DROP TABLE: a SERIAL column's sequence goes with its table, as in PostgreSQL -----------------
DROP_TABLE = re.compile(r"^\s*DROP\s+TABLE\b", re.IGNORECASE)
_NEXTVAL = r"regexp_extract(column_default, 'nextval\(''([^'']+)''', 1)"
_OWNED = (f"SELECT DISTINCT {_NEXTVAL} FROM duckdb_columns() WHERE table_name = ? AND schema_name = coalesce(?, "
          f"current_schema()) AND {_NEXTVAL} LIKE '%' || table_name || '_' || column_name || '_seq'")


def drop_with_sequences(execute, sql: str):
    """``DROP TABLE`` that also drops the sequences its SERIAL columns made (``<table>_<column>_seq``,
    as ``serial_statements`` names them), as PostgreSQL drops a SERIAL column's owned sequence.
    ``execute(sql, params=None)`` runs one statement; the DROP's own result is returned."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except sqlglot.errors.SqlglotError:
        return execute(sql)
    owned = []
    for table in tree.find_all(exp.Table) if isinstance(tree, exp.Drop) else ():
        try:
            owned += [row[0] for row in execute(_OWNED, [table.name, table.db or None]).fetchall()]
        except errors.Error:
            pass  # (no such table: the DROP itself says so)
    result = execute(sql)
    for sequence in owned:
        execute(f"DROP SEQUENCE IF EXISTS {sequence}")
    return result
