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

In-process users (``mldb.connect``) have no ``ClientAccess``: they keep full access.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import duckdb
from sqlglot.tokens import TokenType

from mldb import errors
from mldb.frontend.dialect import MLDB

_ADMIN_TYPES = {"ATTACH": "ATTACH", "DETACH": "DETACH", "LOAD": "INSTALL / LOAD of an extension",
                "EXTENSION": "CREATE EXTENSION", "COPY_DATABASE": "COPY FROM DATABASE"}
# Read-only pragmas.
_READ_PRAGMAS = {"table_info", "show_tables", "show_tables_expanded", "show", "database_list", "database_size",
                 "version", "platform", "functions", "collations", "storage_info", "metadata_info", "user_agent",
                 "table_storage_info", "show_databases"}
# Table functions that reconfigure the whole database (a file-logging target broke every statement).
_GLOBAL_FUNCTIONS = ("enable_logging", "disable_logging", "truncate_duckdb_logs")
_DYNAMIC_SQL = ("query", "query_table")
# Session settings whose effect lands on the server's stdout or files, not with the client.
_SERVER_OUTPUT = ("enable_profiling", "profiling_output", "profile_output", "profiling_mode",
                  "enable_progress_bar", "enable_progress_bar_print")
_SCOPES = ("GLOBAL", "SESSION", "LOCAL", "VARIABLE")
_SERVER_WIDE = ("cannot be set locally", "cannot be set as a session variable")


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

    # -- the server's database ----------------------------------------------------------------
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
    def admit(self, sql: str, changed: set[str] | None = None) -> str:
        """``sql`` as the client may run it (settings made session-local), or 42501.
        ``changed`` collects the settings the client changed (for RESET ALL / DISCARD ALL)."""
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error:
            return sql  # DuckDB will refuse it with its own syntax error
        admitted = [self._admit_one(statement, changed) for statement in statements]
        if all(new is old.query for new, old in zip(admitted, statements)):
            return sql
        return ";\n".join(statement.strip().rstrip(";") for statement in admitted)

    def _admit_one(self, statement, changed: set[str] | None) -> str:
        kind, text = statement.type.name, statement.query
        if not self.allow_admin:
            if kind in _ADMIN_TYPES:
                raise refused(f"{_ADMIN_TYPES[kind]} is not allowed for clients of this server")
            if kind in ("CREATE", "DROP") and _is_secret(text):
                raise refused("secrets are kept for the whole server: CREATE / DROP SECRET is not allowed for clients")
            if kind == "PRAGMA":
                self._check_pragma(text)
            if any(name in text.lower() for name in _GLOBAL_FUNCTIONS):
                raise refused("DuckDB's logging functions reconfigure the whole server: not allowed for clients")
            if _calls(text, _DYNAMIC_SQL):
                raise refused("query() / query_table() run SQL built at run time, which the server cannot check "
                              "before it runs: not allowed for clients of this server")
        if kind == "PREPARE":
            inner = _prepared(text)
            if inner is not None:
                self._admit_one(inner, None)
        if kind in ("COPY", "EXPORT") and not self.allow_file_access:
            self._check_write(text, kind)
        if kind == "SET":
            return self._session_setting(text, changed)
        return text

    def _check_pragma(self, text: str) -> None:
        tokens = _tokens(text)
        name = tokens[1].text.lower() if len(tokens) > 1 else ""
        if name not in _READ_PRAGMAS:
            raise refused(f"PRAGMA {name} is not allowed for clients of this server (it may change the whole "
                          "server); use SET for your session's settings")

    def _session_setting(self, text: str, changed: set[str] | None) -> str:
        """SET / RESET / PRAGMA x = v as the session-only form; USE and variables as they are."""
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
        if changed is not None and name.isascii() and name.replace(" ", "_").isidentifier():
            changed.add(name)  # (only plain names: RESET ALL writes them into SQL)
        if name.split(" ")[0] in _SERVER_OUTPUT and not self.allow_admin:
            raise refused(f"{name} writes to the server's own output, not to you: not allowed for clients "
                          "(EXPLAIN ANALYZE shows a statement's profile)")
        if scope in _SCOPES:
            return text
        return f"{'RESET' if word == 'RESET' else 'SET'} SESSION {tail[rest[0].start:]}"

    def _check_write(self, text: str, kind: str) -> None:
        """A COPY TO file or EXPORT DATABASE must name a path inside ``export_dir``."""
        target = _write_target(text, kind)
        if target is _NO_WRITE:
            return
        if self.export_dir is None:
            raise refused("writing files is not allowed for clients of this server "
                          "(start mldb serve with --export-dir DIR to allow COPY TO files in DIR)")
        if not isinstance(target, str) or not _inside(target, self.export_dir):
            raise refused(f"COPY TO / EXPORT may write only inside the server's export directory "
                          f"{self.export_dir}; write to a literal path there")

    # -- errors DuckDB raises for a session-only SET ---------------------------------------------
    @staticmethod
    def explained(error: errors.Error) -> errors.Error:
        """DuckDB's refusal of ``SET SESSION`` for a server-wide setting, as 42501 with the way out."""
        if not any(part in str(error) for part in _SERVER_WIDE):
            return error
        return refused(f"{error.summary.split(':', 1)[-1].strip()}: it is a server-wide setting, and a client "
                       "changes only its own session's settings (start mldb serve with --allow-admin to allow)")


_NO_WRITE = object()


def refused(message: str) -> errors.ProgrammingError:
    return errors.ProgrammingError(message, sqlstate="42501")


def _tokens(text: str):
    return MLDB.Tokenizer().tokenize(text)


def _calls(text: str, names: tuple[str, ...]) -> bool:
    """Whether ``text`` calls one of the functions ``names`` (a name token followed by "(")."""
    tokens = _tokens(text)
    return any(t.text.lower() in names and n.token_type == TokenType.L_PAREN for t, n in zip(tokens, tokens[1:]))


def _prepared(text: str):
    """The statement ``PREPARE name AS <statement>`` prepares (DuckDB's Statement), or None."""
    first = _tokens(text)[0]
    tail = text[first.end + 1:]  # (sqlglot reads PREPARE as a command: its tail is tokenized on its own)
    at = next((t for t in _outer_tokens(tail) if t.text.upper() == "AS"), None)
    if at is None:
        return None
    try:
        inner = duckdb.extract_statements(tail[at.end + 1:])
    except duckdb.Error:
        return None
    return inner[0] if len(inner) == 1 else None


def _setting_name(tokens) -> str:
    names = []
    for token in tokens:
        if token.token_type in (TokenType.EQ, TokenType.STRING, TokenType.NUMBER, TokenType.SEMICOLON) \
                or token.text.upper() == "TO":
            break
        names.append(token.text)
    return " ".join(names).lower()


def _is_secret(text: str) -> bool:
    words = [t.text.upper() for t in _tokens(text)[:5]]
    return "SECRET" in words


def _write_target(text: str, kind: str):
    """The file a COPY ... TO or EXPORT DATABASE writes (a str), ``_NO_WRITE`` for COPY FROM,
    None when it is not one literal path. Read from the tokens at parenthesis depth 0 (sqlglot
    reads neither ``EXPORT DATABASE`` nor every COPY form): ``COPY <t or (query)> TO 'path'
    [WITH] [(options)]`` and ``EXPORT DATABASE [db TO] 'path' [(options)]``; any other shape
    (an expression for the path) is None, and refused."""
    outer = _outer_tokens(text)
    words = [t.text.upper() if t.token_type != TokenType.STRING else None for t in outer]
    if kind == "COPY":
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
