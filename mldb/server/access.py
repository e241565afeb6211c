"""What a client of ``mldb serve`` may do: its own settings, no server administration, files
only in the directories the server names.

The server is one process for many clients, and DuckDB keeps most settings, attached
databases, extensions, secrets and file access per database instance, not per connection.
So every statement a client sends passes ``ClientAccess.admit`` before DuckDB sees it.
DuckDB's own parser (``duckdb.extract_statements``) says what kind each statement is, so
a spelling sqlglot does not know is judged as DuckDB will run it:

- ``SET x = v``, ``RESET x`` and ``PRAGMA x = v`` change the client's session only: they run
  as ``SET SESSION`` / ``RESET SESSION``. A setting DuckDB keeps only server-wide
  (``memory_limit``, ``threads``, ``enable_external_access``, ``lock_configuration``, ...)
  and ``SET GLOBAL`` are refused with SQLSTATE 42501, as are ATTACH / DETACH, INSTALL /
  LOAD, CREATE / DROP SECRET, pragmas that are not read-only, DuckDB's logging functions
  (they reconfigure the whole database) and ``LOAD UDFS`` (a file's code would run on the
  server). ``--allow-admin`` lets clients run all of these.
- Files: the server turns DuckDB's ``enable_external_access`` off with
  ``allowed_directories`` = ``--data-dir`` and ``--export-dir`` (``restrict_files``), so
  ``read_csv``, ``read_text``, ``glob``, ``COPY FROM`` and the rest see only those; a
  ``COPY ... TO`` file and ``EXPORT DATABASE`` must in addition name a path inside
  ``--export-dir``. ``--allow-file-access`` keeps the server user's full access.
- mldb's catalog (schema ``mldb``) is read-only for clients, as PostgreSQL's ``pg_catalog`` is
  for all but superusers: a statement that inserts, updates, deletes, copies into, creates,
  alters, comments on or drops anything there (a data-modifying WITH included) is refused
  with 42501, and so is a search path or current schema naming ``mldb`` (unqualified names
  then never resolve there). mldb's own statements (CREATE MODEL, TRAIN, DEPLOY, CREATE
  MONITOR, ...) are the sanctioned way to change it: their SQL runs through ``Session.sql``,
  admitted as mldb's own (``_CheckedConnection.own``), to which only this rule does not
  apply. ``--allow-admin`` lets clients write the catalog too.

In-process users (``mldb.connect``) have no ``ClientAccess``: they keep full access.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from mldb import errors
from mldb.frontend import split_statements
from mldb.frontend.dialect import MLDB
from mldb.frontend.settings import SetSetting
from mldb.frontend.vectors import CreateFaissIndex, DropFaissIndex

_ADMIN_TYPES = {"ATTACH": "ATTACH", "DETACH": "DETACH", "LOAD": "INSTALL / LOAD of an extension",
                "EXTENSION": "CREATE EXTENSION", "COPY_DATABASE": "COPY FROM DATABASE"}
# Read-only pragmas.
_READ_PRAGMAS = {"table_info", "show_tables", "show_tables_expanded", "show", "database_list", "database_size",
                 "version", "platform", "functions", "collations", "storage_info", "metadata_info", "user_agent",
                 "table_storage_info", "show_databases"}
# Table functions that reconfigure the whole database (a file-logging target broke every statement).
# Functions that reconfigure or write for the whole server (logging, profiling to a file).
_SERVER_FUNCTIONS = {"enable_logging", "disable_logging", "truncate_duckdb_logs", "enable_profiling",
                     "disable_profiling"}
# Functions that run SQL built at run time: the server could not check it first.
_DYNAMIC_SQL = {"query", "query_table", "json_execute_serialized_sql"}
# The settings a client may change for its session: they shape its own results only. Others
# act on the server (threads, memory), write files (log_query_path, profiling_output), print
# on the server (enable_progress_bar), read the server's Python objects
# (python_enable_replacements) or let the parser recurse until the process dies
# (max_expression_depth).
_CLIENT_SETTINGS = {"timezone", "time zone", "calendar", "default_order", "default_null_order", "null_order",
                    "default_collation", "search_path", "schema", "preserve_insertion_order", "integer_division",
                    "ieee_floating_point_ops", "errors_as_json", "explain_output", "order_by_non_integer_literal",
                    "scalar_subquery_error_on_multiple_rows", "max_execution_time", "show_behavior"}
_SHOWN_SETTINGS = sorted(_CLIENT_SETTINGS - {"time zone"})
_FILE_NAMING = {"FILENAME_PATTERN", "FILE_EXTENSION"}
_EXACT_BELOW = 65_536  # statements up to this size are classified by DuckDB's parser (see _statements)
_SCOPES = ("GLOBAL", "SESSION", "LOCAL", "VARIABLE")
_CATALOG = "mldb"  # mldb's catalog schema: read-only for clients
CATALOG_READ_ONLY = ("mldb's catalog (schema mldb) is read-only for clients: use CREATE MODEL / TRAIN / DEPLOY / "
                     "DROP MODEL / CREATE MONITOR ... to change it")
# Statements (sqlglot's nodes) that write what they name, and where they name it.
_WRITES = {exp.Insert: ("this",), exp.Update: ("this",), exp.Delete: ("this",), exp.Merge: ("this",),
           exp.Copy: ("this",), exp.Create: ("this",), exp.Drop: ("tables",), exp.Alter: ("this", "actions"),
           exp.Comment: ("this",), exp.TruncateTable: ("expressions",), CreateFaissIndex: ("table",),
           DropFaissIndex: ("this",)}
# DuckDB's kinds of statement that may write (a text sqlglot cannot read is judged by its names).
_WRITE_KINDS = {"INSERT", "UPDATE", "DELETE", "MERGE_INTO", "CREATE", "DROP", "ALTER", "COPY", "SELECT",
                "PREPARE", "EXPLAIN", "MERGE", "TRUNCATE", "COMMENT"}  # (the last three: _kind's, over 64 KiB)
_SCHEMA_SETTINGS = {"search_path", "schema"}
_SERVER_WIDE = ("cannot be set locally", "cannot be reset locally", "cannot be set as a session variable")


@dataclass
class ClientAccess:
    allow_admin: bool = False
    allow_file_access: bool = False
    data_dir: str | None = None  # readable by read_* / COPY FROM
    export_dir: str | None = None  # writable by COPY TO / EXPORT DATABASE (and readable)
    readable: list[str] = field(init=False)

    def __post_init__(self):
        self.data_dir = _real(self.data_dir)
        self.export_dir = _real(self.export_dir)
        self.readable = [d for d in (self.data_dir, self.export_dir) if d]
        self.builtin_functions: set[str] = set()  # learnt by ``bind``
        self.builtin_relations: set[str] = set()
        self._verdict = functools.lru_cache(maxsize=4096)(self._judge)  # (refusals are not kept: they raise)

    # -- the server's database ----------------------------------------------------------------
    def bind(self, database) -> None:
        """Apply to the server's database: restrict its files; learn the names a client's objects
        may not take (a macro named ``lower`` or a view named ``pg_class`` in ``main`` would
        replace DuckDB's for every client, and for mldb's own catalog queries)."""
        self.restrict_files(database)
        root = database.root
        self.builtin_functions = {row[0].lower() for row in root.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE internal").fetchall()}
        self.builtin_relations = {row[0].lower() for row in root.execute(
            "SELECT DISTINCT view_name FROM duckdb_views() WHERE internal").fetchall()} | {
            name for name in self.builtin_functions if name.startswith(("duckdb_", "pragma_"))}

    def restrict_files(self, database) -> None:
        """Limit the database's file access to ``readable`` (for good: DuckDB cannot turn it back on)."""
        if self.allow_file_access:
            return
        database.file_roots = list(self.readable)  # embedding model paths (mldb.vectors.embedding)
        root = database.root
        root.execute("SET allowed_directories = ?", [[d + os.sep for d in self.readable]])
        root.execute("SET enable_external_access = false")

    def describe(self) -> str:
        """One line for the server's start-up message."""
        if self.allow_file_access:
            files = "files: the server user's"
        else:
            files = (f"files: read {self.data_dir or 'none'}, write {self.export_dir or 'none'}")
        return f"{'admin statements allowed' if self.allow_admin else 'no admin statements'}, {files}"

    # -- each statement -------------------------------------------------------------------------
    def admit(self, sql: str, changed: set[str] | None = None, own: bool = False) -> str:
        """``sql`` as the client may run it (settings made session-local), or 42501.
        ``changed`` collects the settings the client changed (for RESET ALL / DISCARD ALL);
        ``own``: mldb's own SQL (``Session.sql``), which may write mldb's catalog.
        The verdict depends on the text alone, so it is kept per text (mldb's own statements
        and a client's repeat: checking costs 50-200 us, a cached verdict about 1 us); whether
        the text writes the catalog is part of it, judged against ``own`` at each call."""
        admitted, names, catalog = self._verdict(sql) if len(sql) <= _EXACT_BELOW else self._judge(sql)
        if catalog and not own and not self.allow_admin:
            raise refused(f"{CATALOG_READ_ONLY} ({catalog})")
        if changed is not None:
            changed.update(names)
        return admitted

    def admit_step(self, node) -> None:
        """An mldb statement a client sends: those that name a table or index of their own
        (CREATE / DROP INDEX ... USING FAISS) may not name one in mldb's catalog; SET mldb_executor
        to Ray is an admin's (the server would connect to a cluster)."""
        if isinstance(node, SetSetting) and node.name == "mldb_executor" and not self.allow_admin \
                and str(node.args.get("value") or "local").lower() != "local":
            raise refused("SET mldb_executor is not allowed for clients of this server (it would make the server "
                          "connect to a Ray cluster); start mldb serve with --allow-admin to allow")
        if isinstance(node, (CreateFaissIndex, DropFaissIndex)) and not self.allow_admin:
            found = _catalog_target(node)
            if found:
                raise refused(f"{CATALOG_READ_ONLY} ({found})")

    def _judge(self, sql: str) -> tuple[str, frozenset[str], str | None]:
        statements = _statements(sql)
        if statements is None:
            return sql, frozenset(), None  # DuckDB will refuse it with its own syntax error
        names: set[str] = set()
        admitted = [self._admit_one(statement, names) for statement in statements]
        catalog = next(filter(None, map(_catalog_write, statements)), None)
        if all(new is old.text for new, old in zip(admitted, statements)):
            return sql, frozenset(names), catalog
        return ";\n".join(statement.strip().rstrip(";") for statement in admitted), frozenset(names), catalog

    def _admit_one(self, statement: _Statement, changed: set[str] | None) -> str:
        kind, text = statement.kind, statement.text
        if not self.allow_admin:
            self._check_admin(statement)
        if kind in ("PREPARE", "EXPLAIN"):  # judged as the statement they prepare or run
            inner = _inner(statement)
            if inner is not None:
                self._admit_one(inner, None)
        if kind in ("COPY", "EXPORT") and not self.allow_file_access:
            self._check_write(statement)
        if kind == "SET":
            return self._session_setting(text, changed)
        return text

    def _check_admin(self, statement: _Statement) -> None:
        kind = statement.kind
        if kind == "UNKNOWN":
            raise refused(f"{' '.join(statement.words[:2])} is not allowed for clients of this server")
        if kind in _ADMIN_TYPES:
            raise refused(f"{_ADMIN_TYPES[kind]} is not allowed for clients of this server")
        lower = statement.text.lower()  # (a cheap look first: tokens only where a name appears at all)
        if kind in ("CREATE", "DROP") and "secret" in lower and "SECRET" in statement.words[:5]:
            raise refused("secrets are kept for the whole server: CREATE / DROP SECRET is not allowed for clients")
        if kind == "PRAGMA":
            self._check_pragma(statement)
        if kind in ("CREATE", "ALTER"):
            self._check_shadowing(statement)
        if not any(name in lower for name in _SERVER_FUNCTIONS | _DYNAMIC_SQL):
            return
        names = statement.names
        found = sorted(names & _SERVER_FUNCTIONS)
        if found:
            raise refused(f"{found[0]}() reconfigures the whole server: not allowed for clients of this server")
        if statement.calls & _DYNAMIC_SQL:
            raise refused("query(), query_table() and json_execute_serialized_sql() run SQL built at run time, "
                          "which the server cannot check before it runs: not allowed for clients of this server")

    def _check_shadowing(self, statement: _Statement) -> None:
        """A lasting macro or function may not take a built-in function's name, nor a view or
        table a system view's (a TEMP one shadows them for its own session only)."""
        words = statement.words
        if kind_name := _created(words):
            kind, name = kind_name
            taken = self.builtin_functions if kind in ("MACRO", "FUNCTION") else self.builtin_relations
            if name in taken:
                raise refused(f"{kind} {name}: DuckDB has a built-in {'function' if kind in ('MACRO', 'FUNCTION') else 'view'} "
                              f"of that name, which it would replace for every client; choose another name "
                              f"(or CREATE TEMP {kind} for your session only)")

    def _check_pragma(self, statement: _Statement) -> None:
        words = statement.words
        if words[0] == "IMPORT":
            raise refused("IMPORT DATABASE runs the SQL files of a directory: not allowed for clients of this server")
        name = words[1].lower() if len(words) > 1 else ""
        if name not in _READ_PRAGMAS:
            raise refused(f"PRAGMA {name} is not allowed for clients of this server (it may change the whole "
                          "server); use SET for your session's settings")

    def _session_setting(self, text: str, changed: set[str] | None) -> str:
        """SET / RESET / PRAGMA x = v as the session-only form of a setting a client may change;
        USE and variables as they are."""
        first = _tokens(text)[0]
        word, tail = first.text.upper(), text[first.end + 1:]
        rest = _tokens(tail)  # (sqlglot reads RESET as a command: its tail is tokenized on its own)
        if word == "USE" or not rest:
            return text
        scope = rest[0].text.upper() if rest[0].token_type not in (TokenType.STRING, TokenType.IDENTIFIER) else ""
        if scope == "VARIABLE":
            return text
        if scope == "GLOBAL":
            if self.allow_admin:
                return text
            raise refused(f"{word} GLOBAL changes every client's setting: not allowed for clients of this server")
        named = rest[1:] if scope in _SCOPES else rest
        name = _setting_name(named)
        if not self.allow_admin and name not in _CLIENT_SETTINGS:
            raise refused(f"setting {name or '?'} is not one a client of this server may change (it is the "
                          f"server's, or acts beyond your session; mldb serve --allow-admin lets clients change "
                          f"any); you may SET {', '.join(_SHOWN_SETTINGS)}")
        if changed is not None and name in _CLIENT_SETTINGS:
            changed.add(name)  # (RESET ALL writes these names into SQL: only known ones)
        if scope in _SCOPES:
            return text
        return f"{'RESET' if word == 'RESET' else 'SET'} SESSION {tail[rest[0].start:]}"

    def _check_write(self, statement: _Statement) -> None:
        """A COPY TO file or EXPORT DATABASE must name a path inside ``export_dir``, and name
        its files itself (FILENAME_PATTERN / FILE_EXTENSION with a path would lead elsewhere)."""
        target = _write_target(statement)
        if target is _NO_WRITE:
            return
        self.check_write_path(target)
        tokens = statement.tokens
        for token, value in zip(tokens, tokens[1:]):
            if token.text.upper() in _FILE_NAMING and any(part in value.text for part in ("/", "\\", "..")):
                raise refused(f"{token.text.upper()} may not hold a path: files are written inside the export "
                              "directory")

    def check_write_path(self, target) -> None:
        """42501 unless this client may write ``target`` (a path inside ``export_dir``). Also called
        by the scale-out driver for a COPY its Ray workers write: they have none of DuckDB's file
        restrictions, so the check the COPY's SQL gets here locally is made before the job starts."""
        if self.allow_file_access:
            return
        if self.export_dir is None:
            raise refused("writing files is not allowed for clients of this server "
                          "(start mldb serve with --export-dir DIR to allow COPY TO files in DIR)")
        if not isinstance(target, str) or not _inside(target, self.export_dir):
            raise refused(f"COPY TO / EXPORT may write only inside the server's export directory "
                          f"{self.export_dir}; write to a literal path there")

    def checked(self, con, changed: set[str]) -> _CheckedConnection:
        """``con`` with every SQL text run through it admitted first (see ``_CheckedConnection``)."""
        return _CheckedConnection(con, lambda sql, own: self.admit(sql, changed, own))

    # -- errors DuckDB raises for a session-only SET ---------------------------------------------
    @staticmethod
    def explained(error: errors.Error) -> errors.Error:
        """DuckDB's refusal of ``SET SESSION`` for a server-wide setting, as 42501 with the way out."""
        if not any(part in str(error) for part in _SERVER_WIDE):
            return error
        return refused(f"{error.summary.split(':', 1)[-1].strip()}: it is a server-wide setting, and a client "
                       "changes only its own session's settings (start mldb serve with --allow-admin to allow)")


_NO_WRITE = object()


class _CheckedConnection:
    """A wire client's DuckDB connection, through which all SQL of its session runs: the
    client's statements and mldb's own. mldb's code builds SQL from the mldb.* catalog
    tables (a training query, a snapshot's table name), which a client cannot write with SQL
    but someone with the database file (or a client of an --allow-admin server) can, and runs
    subqueries while planning (DRIFT's): checking every text here, not at each place that
    builds one, keeps a stored text from doing what the client could not do directly."""

    def __init__(self, con, admit, own: bool = False):
        self._con, self._admit, self._own = con, admit, own

    def execute(self, sql, *args, **kwargs):
        return self._con.execute(self._admit(sql, self._own), *args, **kwargs)

    def sql(self, sql, *args, **kwargs):
        return self._con.sql(self._admit(sql, self._own), *args, **kwargs)

    def executemany(self, sql, *args, **kwargs):
        return self._con.executemany(self._admit(sql, self._own), *args, **kwargs)

    def query(self, sql, *args, **kwargs):
        return self._con.query(self._admit(sql, self._own), *args, **kwargs)

    def cursor(self):
        return _CheckedConnection(self._con.cursor(), self._admit, self._own)

    @property
    def own(self):
        """The connection for mldb's own SQL (``Session.sql``): every check but the catalog's
        (mldb's statements are the sanctioned way to write it)."""
        return _CheckedConnection(self._con, self._admit, own=True)

    @property
    def unchecked(self):
        """The connection itself, for ``EXECUTE`` of a statement admitted when it was prepared
        (``mldb.prepared``): its literals change every call, a verdict per text would not keep."""
        return self._con

    def __getattr__(self, name):
        return getattr(self._con, name)


def refused(message: str) -> errors.ProgrammingError:
    return errors.ProgrammingError(message, sqlstate="42501")


def _tokens(text: str):
    return MLDB.Tokenizer().tokenize(text)


class _Statement:
    """One statement: DuckDB's kind (``SET``, ``COPY``, ...) and its text; tokens when asked."""

    def __init__(self, kind: str, text: str):
        self.kind, self.text = kind, text

    @functools.cached_property
    def tokens(self) -> list:
        """sqlglot's tokens; for a statement sqlglot reads as a command (CALL, PREPARE, RESET, ...)
        its tail, one string token there, tokenized on its own (offsets then count from the tail)."""
        tokens = _tokens(self.text)
        if len(tokens) > 1 and tokens[0].token_type == TokenType.COMMAND:
            return [tokens[0], *_tokens(self.text[tokens[0].end + 1:])]
        return tokens

    @functools.cached_property
    def words(self) -> list[str]:
        return [t.text.upper() for t in self.tokens if t.token_type != TokenType.STRING] or [""]

    @functools.cached_property
    def names(self) -> set[str]:
        """Every word that is not a string or a number, lower-cased (function and table names among them)."""
        return {t.text.lower() for t in self.tokens if t.token_type not in (TokenType.STRING, TokenType.NUMBER)}

    @functools.cached_property
    def calls(self) -> set[str]:
        """The names followed by "(" (function calls)."""
        tokens = self.tokens
        return {t.text.lower() for t, n in zip(tokens, tokens[1:])
                if n.token_type == TokenType.L_PAREN and t.token_type != TokenType.STRING}


def _statements(sql: str) -> list[_Statement] | None:
    """The statements of ``sql`` with DuckDB's kinds; None when it does not parse.

    DuckDB's parser holds Python's GIL (every client waits while it runs: about 4 s for a
    300,000-item select list), so a statement over ``_EXACT_BELOW`` characters is split and
    classified from sqlglot's tokens instead (Python code, which lets other threads run)."""
    if len(sql) <= _EXACT_BELOW:
        try:
            return [_Statement(s.type.name, s.query) for s in duckdb.extract_statements(sql)]
        except duckdb.Error:
            return None
        except ValueError:  # a kind the Python binding has no name for (UPDATE EXTENSIONS)
            return [_Statement("UNKNOWN", sql)]
    parts = split_statements(sql)
    if parts is None:
        raise errors.ProgrammingError("a statement of over 64 KiB that cannot be tokenized: refused unread",
                                      sqlstate="54000")
    return [_Statement(_kind(part.text), part.text) for part in parts]


# First words -> DuckDB's statement kind (for statements too large for DuckDB's parser here).
_KINDS = {**dict.fromkeys(("SELECT", "WITH", "VALUES", "FROM", "TABLE", "(", "SHOW", "DESCRIBE", "SUMMARIZE",
                           "PIVOT", "UNPIVOT"), "SELECT"),
          **dict.fromkeys(("SET", "RESET", "USE"), "SET"), "INSTALL": "LOAD", "FORCE": "LOAD",
          **{word: "TRANSACTION" for word in ("BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT")},
          **{word: "CALL" for word in ("CHECKPOINT", "VACUUM", "ANALYZE", "DEALLOCATE")},
          **{word: word for word in ("INSERT", "UPDATE", "DELETE", "MERGE", "CREATE", "DROP", "ALTER", "TRUNCATE",
                                     "COMMENT", "EXPLAIN", "PREPARE", "EXECUTE", "COPY", "EXPORT", "ATTACH",
                                     "DETACH", "LOAD", "CALL", "PRAGMA", "IMPORT")}}


def _kind(text: str) -> str:
    words = _Statement("", text).words
    kind = _KINDS.get(words[0], "UNKNOWN")
    if kind == "UPDATE" and words[1:2] == ["EXTENSIONS"]:
        return "UNKNOWN"
    if kind == "COPY" and words[1:3] == ["FROM", "DATABASE"]:
        return "COPY_DATABASE"
    if kind == "PRAGMA" and "=" in words[:4]:
        return "SET"
    return "PRAGMA" if kind == "IMPORT" else kind


def _created(words: list[str]) -> tuple[str, str] | None:
    """(kind, lower-cased name) of a lasting object ``CREATE [OR REPLACE] MACRO|FUNCTION|VIEW|TABLE
    [IF NOT EXISTS] [schema.]name`` or ``ALTER VIEW|TABLE ... RENAME TO name`` makes; None for
    a TEMP object or another statement."""
    if words[0] == "ALTER" and "RENAME" in words and words[words.index("RENAME") + 1:][:1] == ["TO"]:
        at = words.index("RENAME") + 2
        return (words[1], words[at].lower()) if len(words) > at else None
    if words[0] != "CREATE" or any(w in ("TEMP", "TEMPORARY") for w in words[1:4]):
        return None
    kind = next((w for w in words[1:4] if w in ("MACRO", "FUNCTION", "VIEW", "TABLE")), None)
    if kind is None:
        return None
    rest = words[words.index(kind) + 1:]
    if rest[:3] == ["IF", "NOT", "EXISTS"]:
        rest = rest[3:]
    while len(rest) > 2 and rest[1] == ".":  # schema.name, catalog.schema.name
        rest = rest[2:]
    return (kind, rest[0].lower()) if rest else None


def _catalog_write(statement: _Statement) -> str | None:
    """What in ``statement`` writes mldb's catalog (a few words), or None.

    Read from sqlglot's tree: a write (INSERT, UPDATE, DELETE, MERGE, COPY ... FROM, CREATE,
    ALTER, COMMENT, TRUNCATE, DROP; a data-modifying WITH's too) naming schema ``mldb`` (any
    case, quoted or not, under any database), and a search path or current schema naming it
    (or set to an expression, which could). A text sqlglot reads as no such statement is judged
    by its names: one of DuckDB's writing kinds that names ``mldb`` at all is refused."""
    kind = statement.kind
    if kind == "SET":
        return _schema_setting(statement)
    if kind not in _WRITE_KINDS or _CATALOG not in statement.text.lower():  # (a cheap look first)
        return None
    if kind in ("PREPARE", "EXPLAIN"):  # judged as the statement they prepare or run
        inner = _inner(statement)
        return _catalog_write(inner) if inner is not None else _named(statement)
    try:
        trees = [tree for tree in sqlglot.parse(statement.text, dialect=MLDB) if tree is not None]
    except sqlglot.errors.SqlglotError:
        trees = []
    if len(trees) != 1 or isinstance(trees[0], exp.Command):
        return _named(statement)
    return _catalog_target(trees[0])


def _catalog_target(tree: exp.Expression) -> str | None:
    """The first write in ``tree`` (the statement itself, a data-modifying WITH inside) whose
    target is in mldb's catalog, in a few words; None when there is none."""
    for node in tree.find_all(*_WRITES):
        if isinstance(node, exp.Copy) and not node.args.get("kind"):
            continue  # (COPY ... TO only reads)
        for arg in _WRITES[type(node)]:
            value = node.args.get(arg)
            for part in value if isinstance(value, list) else [value]:
                if isinstance(part, exp.Expression) and _in_catalog(part):
                    return f"{node.key.upper()} {part.sql(dialect=MLDB)}"
    return None


def _in_catalog(target: exp.Expression) -> bool:
    """Whether a written name (a table, view, schema, column, sequence, macro or an index's table,
    by its schema part; a query inside is read, not written) is in mldb's."""
    for node in target.walk(prune=lambda node: isinstance(node, exp.Query)):
        if isinstance(node, (exp.Table, exp.Column)) and isinstance(node.args.get("db"), exp.Identifier) \
                and node.args["db"].name.lower() == _CATALOG:
            return True
    return False


def _named(statement: _Statement) -> str | None:
    """For a text sqlglot cannot read as one statement: its kind if it names ``mldb`` at all."""
    if _CATALOG in {t.text.lower() for t in statement.tokens if t.token_type != TokenType.STRING}:
        return f"{statement.kind} naming mldb"
    return None


def _schema_setting(statement: _Statement) -> str | None:
    """``USE``, ``SET search_path`` / ``SET schema`` (``PRAGMA`` too) naming mldb, or set to
    anything but a literal (an expression or parameter could name it)."""
    try:
        tree = sqlglot.parse_one(statement.text, dialect=MLDB)
    except sqlglot.errors.SqlglotError:
        tree = None
    if isinstance(tree, exp.Use):
        names = [part.name for part in tree.this.parts] if isinstance(tree.this, exp.Table) else [_CATALOG]
        return f"USE {tree.this.sql(dialect=MLDB)}" if _CATALOG in map(str.lower, names) else None
    items = tree.expressions if isinstance(tree, exp.Set) else [tree] if isinstance(tree, exp.Pragma) else None
    if items is None:  # RESET, or a form sqlglot does not read
        words = statement.words
        return "a search path naming mldb" if words[0] != "RESET" and _named(statement) else None
    for item in items:
        if isinstance(item, exp.SetItem) and item.args.get("kind") == "VARIABLE":
            continue
        pair = item.this
        if not isinstance(pair, exp.EQ) or pair.this.name.lower() not in _SCHEMA_SETTINGS:
            continue
        if _names_catalog(pair.expression):
            return f"{pair.this.name} = {pair.expression.sql(dialect=MLDB)}"
    return None


def _names_catalog(value: exp.Expression) -> bool:
    """Whether a search path's value names mldb (a literal list of [database.]schema) or may
    (anything but a literal)."""
    if isinstance(value, (exp.Var, exp.Column, exp.Identifier)):
        parts = value.parts if isinstance(value, exp.Column) else [value]
        return _CATALOG in (part.name.lower() for part in parts)
    if not (isinstance(value, exp.Literal) and value.is_string):
        return True
    for entry in value.name.split(","):
        try:
            table = exp.to_table(entry.strip(), dialect=MLDB)
        except sqlglot.errors.SqlglotError:
            return True
        if _CATALOG in (part.name.lower() for part in table.parts):
            return True
    return False


def _inner(statement: _Statement) -> _Statement | None:
    """What ``PREPARE name AS <statement>`` prepares or ``EXPLAIN [ANALYZE] [(...)] <statement>`` runs."""
    first = _tokens(statement.text)[0]
    tail = statement.text[first.end + 1:]  # (sqlglot reads PREPARE as a command: its tail is tokenized on its own)
    outer = _outer_tokens(tail)
    if statement.kind == "PREPARE":
        at = next((t for t in outer if t.text.upper() == "AS"), None)
    else:
        skipped = [t for t in outer[:2] if t.text.upper() in ("ANALYZE", "ANALYSE", "(")]
        at = skipped[-1] if skipped else None
        if at is not None and at.token_type == TokenType.L_PAREN:  # EXPLAIN (FORMAT json): skip to its ")"
            at = _closing(tail, at)
    body = tail[at.end + 1:] if at is not None else tail
    inner = _statements(body)
    return inner[0] if inner and len(inner) == 1 else None


def _closing(text: str, opening):
    depth = 0
    for token in _tokens(text):
        if token.start < opening.start:
            continue
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(token.token_type, 0)
        if depth == 0:
            return token
    return opening


def _setting_name(tokens) -> str:
    names = []
    for token in tokens:
        if token.token_type in (TokenType.EQ, TokenType.STRING, TokenType.NUMBER, TokenType.SEMICOLON) \
                or token.text.upper() == "TO":
            break
        names.append(token.text)
    return " ".join(names).lower()


def _write_target(statement: _Statement):
    """The file a COPY ... TO or EXPORT DATABASE writes (a str), ``_NO_WRITE`` for COPY FROM,
    None when it is not one literal path. Read from the tokens at parenthesis depth 0 (sqlglot
    reads neither ``EXPORT DATABASE`` nor every COPY form): ``COPY <t or (query)> TO 'path'
    [WITH] [(options)]`` and ``EXPORT DATABASE [db TO] 'path' [(options)]``; any other shape
    (an expression for the path) is None, and refused."""
    outer = _outer_tokens(statement.text)
    words = [t.text.upper() if t.token_type != TokenType.STRING else None for t in outer]
    if statement.kind == "COPY":
        at = next((i for i, w in enumerate(words) if i > 1 and w in ("TO", "FROM")), None)
        if at is None or words[at] == "FROM":
            return _NO_WRITE if at is not None else None
    else:
        at = 3 if words[2:4] == [words[2], "TO"] and words[2] is not None else 1
        if words[:2] != ["EXPORT", "DATABASE"]:
            return None
    rest = outer[at + 1:]
    if not rest or rest[0].token_type != TokenType.STRING:
        return None
    if any(t.text.upper() not in ("WITH", "(", ";") for t in rest[1:]):
        return None
    return rest[0].text


def _outer_tokens(text: str) -> list:
    """The tokens outside parentheses; a parenthesized group is kept as its opening token."""
    outer, depth = [], 0
    for token in _tokens(text):
        if token.token_type == TokenType.L_PAREN:
            if depth == 0:
                outer.append(token)
            depth += 1
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
        elif depth == 0:
            outer.append(token)
    return outer


def _inside(path: str, directory: str) -> bool:
    real = os.path.realpath(path)
    return real == directory or real.startswith(directory + os.sep)


def _real(path: str | None) -> str | None:
    return os.path.realpath(path) if path else None
