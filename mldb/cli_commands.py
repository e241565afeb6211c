"""What the ``mldb`` command reads: SQL statements and DuckDB's dot commands, line by line.

One ``Runner`` serves every input (the terminal, ``-c``, ``-f FILE``, stdin, ``.read FILE``):
a line starting with ``.`` when no statement is pending is a dot command; other lines are
collected until the text ends with a top-level ``;`` and then run, statement by statement.
An error is printed on stderr with where it happened (``script.sql:4:``) and the statement,
and the command's exit status becomes 1. What happens next is what DuckDB's CLI does: a file
(``-f``, ``.read``) and ``-c`` stop at their first error (a failed ``.read`` is an error of the
input that read it); stdin and the terminal go on with the next statement. ``bail``
(``-bail``, ``.bail on``) stops everything at the first error. Scripts are read as UTF-8;
``.read`` may nest at most ``MAX_DEPTH`` files deep (as sqlite3's shell; DuckDB's crashes).
"""

from __future__ import annotations

import inspect
import os
import shlex
import sys
import threading
import time
from typing import NamedTuple

from mldb import errors
from mldb.cli_output import MODES, OutputError, Printer

HELP = """\
.bail on|off             stop everything at the first error (default off: stdin goes on; a file stops)
.exit ?CODE?             leave, with exit status CODE (also .quit)
.headers on|off          print column names
.help                    this list
.maxrows ?N?             at most N rows in the grid modes on the terminal (0: all; default 40)
.mode ?MODE?             output mode: {modes}
.nullvalue TEXT          how NULL is printed (default NULL)
.once FILE               write the next result to FILE
.open ?FILE?             close this database and open FILE (default: a new in-memory one)
.output ?FILE?           write results to FILE (truncated first); without FILE: back to stdout
.read FILE               run the SQL and dot commands in FILE
.schema ?PATTERN?        CREATE statements of the tables, views and indexes (LIKE PATTERN)
.separator SEP           column separator of the csv, list and tabs modes
.tables ?PATTERN?        names of the tables and views (LIKE PATTERN); mldb's own are in schema mldb
.timer on|off            print how long each statement took""".format(modes=" ".join(MODES))


class Quit(Exception):
    """Stop reading input: ``.exit`` / ``.quit``, or an error with bail on."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class CommandError(Exception):
    """A dot command used wrongly (printed like an SQL error, and counted as one)."""


class Stopped(Exception):
    """An input that stops at its first error (a file, ``-c``) had one; already printed."""


MAX_DEPTH = 25  # files read by .read inside each other (sqlite3's shell's limit)


class Runner:
    def __init__(self, connection, printer: Printer, *, timer: bool = False, bail: bool = False, connect=None):
        self.connection = connection
        self._connect = connect  # path -> a new connection, for .open
        self.printer = printer
        self.timer = timer
        self.bail = bail
        self.failed = False  # any error so far: the exit status is 1
        self._once = False  # .once: back to stdout after the next result
        self.pending: list[str] = []  # lines of a statement not yet ended by ';'
        self._pending_line = 0
        self._stops: list[bool] = []  # for each input being read, innermost last: stops at an error?
        self._depth = 0  # files being read by .read

    # -- input ---------------------------------------------------------------------------------
    def run_lines(self, lines, source: str | None = None, *, stop: bool = True) -> None:
        """Run a whole input (a file, stdin, a -c argument), and what is left unended at its end.
        ``stop``: the input stops at its first error (raising ``Stopped`` out of here)."""
        outer, self.pending = self.pending, []
        self._stops.append(stop)
        try:
            for number, line in enumerate(lines, start=1):
                if isinstance(line, NotText):  # (from decoded): not text, read no further
                    self._fail(f"Error: not valid UTF-8: byte 0x{line.byte:02x} at byte offset {line.offset}; "
                               "scripts are read as UTF-8", source, number)
                    return
                self.feed(line, source, number)
            if "".join(self.pending).strip():
                self._guarded(self._run_pending, source)
        finally:
            self._stops.pop()
            self.pending = outer

    def feed(self, line: str, source: str | None = None, number: int = 0) -> None:
        self._guarded(self._feed, line, source, number)

    def _guarded(self, step, *args) -> None:
        """``step(*args)``; an error that stopped an inner input (a ``.read`` file) ends there
        unless this input stops at errors too."""
        try:
            step(*args)
        except Stopped:
            if self._stops and self._stops[-1]:
                raise

    def _feed(self, line: str, source: str | None, number: int) -> None:
        if line.startswith(".") and (not self.pending or _only_comments(self.pending)):
            self.pending = []
            self._command(line, source, number)
            return
        if not self.pending:
            if not line.strip() or line.lstrip().startswith("--"):
                return
            self._pending_line = number
        self.pending.append(line)
        if ";" in line and _is_complete("\n".join(self.pending)):
            self._run_pending(source)

    def _run_pending(self, source: str | None) -> None:
        from mldb.frontend import split_statements

        text, first = "\n".join(self.pending), self._pending_line
        self.pending = []
        statements = split_statements(text)
        if statements is None:  # the tokenizer cannot read it: DuckDB says what is wrong
            self.run_sql(text, source, first)
            return
        for statement in statements:
            self.run_sql(statement.text, source, first + text[:statement.offset].count("\n"))

    # -- statements ----------------------------------------------------------------------------
    def run_sql(self, sql: str, source: str | None = None, line: int = 0) -> None:
        started = time.perf_counter()
        try:
            try:
                interruptible(self.connection, lambda: self._execute_and_print(sql))
            finally:
                self._after_result()
        except errors.Error as error:
            self._fail(self.error_text(error), source, line, sql)
            return
        except OutputError as error:
            self._fail(f"Error: {error}", source, line, sql)
            return
        except BrokenPipeError:  # the reader went away: mldb.cli stops quietly
            raise
        except OSError as error:  # writing the result (.output to a full disk, .once to /proc/...)
            self._fail(f"Error: cannot write the result: {_os_text(error)}", source, line, sql)
            return
        if self.timer:
            self.printer.out.write(f"Time: {(time.perf_counter() - started) * 1000:.1f} ms\n")

    def _execute_and_print(self, sql: str) -> None:
        with self.connection.execute(sql) as cursor:
            self.printer.print_result(cursor)

    def _fail(self, message: str, source: str | None, line: int, sql: str | None = None) -> None:
        self.failed = True
        where = f"{source}:{line}: " if source else ""
        print(where + message, file=sys.stderr)
        if sql is not None and source and "\nLINE " not in message:  # (the excerpt already shows it)
            print(f"  in: {_abridged(sql)}", file=sys.stderr)
        sys.stderr.flush()
        if self.bail:
            raise Quit(1)
        if self._stops and self._stops[-1]:
            raise Stopped

    # -- dot commands --------------------------------------------------------------------------
    def _command(self, line: str, source: str | None, number: int) -> None:
        try:
            words = shlex.split(line)
        except ValueError as error:
            self._fail(f"Error: {line.split()[0]}: {error}", source, number)
            return
        name, args = words[0], words[1:]
        handler = _COMMANDS.get(name)
        if handler is None:
            self._fail(f"Error: unknown command {name!r}; .help lists the commands", source, number)
            return
        try:
            inspect.signature(handler).bind(self, *args)
        except TypeError:
            self._fail(f"Error: wrong arguments for {name}; usage: {_usage(name)}", source, number)
            return
        try:
            handler(self, *args)
        except (Quit, Stopped, BrokenPipeError):
            raise
        except CommandError as error:
            self._fail(f"Error: {name}: {error}", source, number)
        except errors.Error as error:
            self._fail(self.error_text(error), source, number)
        except OSError as error:
            self._fail(f"Error: {name}: {_os_text(error)}", source, number)
        except Exception as error:  # noqa: BLE001 - no traceback reaches the user from a dot command
            self._fail(f"Error: {name}: {type(error).__name__}: {error}", source, number)

    def _quit(self, code: str = "0") -> None:
        raise Quit(_number(code))

    def _help(self) -> None:
        self.printer.out.write(HELP + "\n")

    def _mode(self, mode: str | None = None) -> None:
        settings = self.printer.settings
        if mode is None:
            self.printer.out.write(f"current output mode: {settings.mode}\n")
            return
        if mode not in MODES:
            raise CommandError(f"unknown mode {mode!r}; one of: {' '.join(MODES)}")
        settings.mode, settings.separator = mode, None

    def _headers(self, value: str) -> None:
        self.printer.settings.header = _on_off(value)

    def _timer(self, value: str) -> None:
        self.timer = _on_off(value)

    def _bail(self, value: str) -> None:
        self.bail = _on_off(value)

    def _nullvalue(self, text: str) -> None:
        self.printer.settings.nullvalue = unescape(text)

    def _separator(self, text: str) -> None:
        separator = unescape(text)
        if not separator and self.printer.settings.mode == "csv":
            raise CommandError("csv mode needs a separator of at least one character")
        self.printer.settings.separator = separator

    def _maxrows(self, count: str | None = None) -> None:
        if count is None:
            self.printer.out.write(f"current max rows: {self.printer.settings.maxrows}\n")
        else:
            self.printer.settings.maxrows = _number(count)

    def _output(self, path: str | None = None) -> None:
        self._close_output()
        if path is not None:
            self.printer.stream = open(path, "w", encoding="utf-8")  # noqa: SIM115 - open until .output

    def _once_to(self, path: str) -> None:
        self._output(path)
        self._once = True

    def _after_result(self) -> None:
        if self._once:
            self._once = False
            self._close_output()

    def _close_output(self) -> None:
        stream, self.printer.stream = self.printer.stream, None
        if stream is not None:
            try:
                stream.close()  # writes what is buffered: it may fail (.once /proc/version)
            except OSError as error:
                raise OSError(error.errno, error.strerror, stream.name) from None

    def read_file(self, path: str) -> None:
        """Run the file's lines as they are read (``-f FILE``, ``.read FILE``); it stops at its
        first error (raising ``Stopped``), as in DuckDB's CLI."""
        if self._depth >= MAX_DEPTH:
            raise CommandError(f"input nesting limit ({MAX_DEPTH}) reached reading {path!r}; "
                               "does a file .read itself?")
        try:
            script = open(os.path.expanduser(path), "rb")  # noqa: SIM115 - closed below
        except OSError as error:
            self._fail(f"Error: cannot open {path!r}: {error.strerror or error}", None, 0)
            return
        self._depth += 1
        try:
            with script:
                self.run_lines(decoded(script), path)
        finally:
            self._depth -= 1

    def _open(self, path: str = ":memory:") -> None:
        """Leave the current database (committing, as leaving the shell does) for ``path``."""
        connection = self._connect(path)  # a failure leaves the current one open
        self.connection.__exit__(None, None, None)
        self.connection = connection

    def _tables(self, pattern: str = "%") -> None:
        names = [row[0] for row in self._query(_TABLES, [pattern])]
        if names:
            self.printer.out.write(_columns(names) + "\n")

    def _schema(self, pattern: str = "%") -> None:
        for (sql,) in self._query(_SCHEMA, [pattern]):
            self.printer.out.write(sql.rstrip().rstrip(";") + ";\n")

    def _query(self, sql: str, params: list) -> list[tuple]:
        return self.connection.execute(sql, params).fetchall()

    def close(self) -> None:
        self._close_output()

    @staticmethod
    def error_text(error: errors.Error) -> str:
        """The whole message, as DuckDB's CLI prints it (candidates, the ``LINE n:`` excerpt and caret)."""
        return f"Error ({type(error).__name__}, SQLSTATE {error.sqlstate}): {str(error).strip()}"


def interruptible(connection, work):
    """``work()`` (running a statement and reading its rows) such that Ctrl-C cancels it.

    The work runs in a helper thread while the main thread waits for it: Ctrl-C then raises
    KeyboardInterrupt in the wait, never inside mldb, DuckDB or torch, and becomes
    ``connection.interrupt()``: the statement stops at its next batch, rolls back and fails
    with ``OperationalError`` (SQLSTATE 57014), which is raised here. Outside the main
    thread (where no KeyboardInterrupt arrives) ``work()`` simply runs."""
    if threading.current_thread() is not threading.main_thread():
        return work()
    outcome: dict = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=run, name="mldb-statement", daemon=True).start()
    # Wait in short steps, not with Thread.join (a KeyboardInterrupt inside it forgets the
    # thread) nor one endless wait (with polars imported, SIGINT's handler restarts the wait
    # instead of interrupting it, so Ctrl-C would only be seen when the statement ends).
    cancelled, asked = False, 0.0
    while not done.is_set():
        try:
            done.wait(0.1)
        except KeyboardInterrupt:
            cancelled, asked = True, 0.0
        if cancelled and time.monotonic() - asked >= 1.0:  # again each second until it stops: a
            asked = time.monotonic()  # cancel that came between two steps (not yet in DuckDB) is not lost
            connection.interrupt()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class NotText(NamedTuple):
    """In place of a line that is not valid UTF-8: its first bad byte and where it is in the file."""

    byte: int
    offset: int


def decoded(lines):
    """Lines of a binary file as text without their line end; where one is not valid UTF-8, a
    ``NotText`` and nothing after it."""
    offset = 0
    for number, raw in enumerate(lines):
        try:
            text = raw.decode("utf-8-sig" if number == 0 else "utf-8")
        except UnicodeDecodeError as error:
            yield NotText(raw[error.start], offset + error.start)
            return
        offset += len(raw)
        yield text[:-1].removesuffix("\r") if text.endswith("\n") else text


def _os_text(error: OSError) -> str:
    return f"{error.strerror or error}: {error.filename}" if error.filename else str(error.strerror or error)


def _on_off(value: str) -> bool:
    if value.lower() in ("on", "true", "yes", "1"):
        return True
    if value.lower() in ("off", "false", "no", "0"):
        return False
    raise CommandError(f"expected on or off, got {value!r}")


def _number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CommandError(f"expected a number, got {text!r}") from None


def unescape(text: str) -> str:
    """``\\t``, ``\\n`` and ``\\\\`` as DuckDB's CLI reads them in .separator and .nullvalue."""
    return text.replace("\\t", "\t").replace("\\n", "\n").replace("\\\\", "\\")


_COMMANDS = {
    ".bail": Runner._bail, ".exit": Runner._quit, ".quit": Runner._quit, ".headers": Runner._headers,
    ".header": Runner._headers, ".help": Runner._help, ".maxrows": Runner._maxrows, ".mode": Runner._mode,
    ".nullvalue": Runner._nullvalue, ".once": Runner._once_to, ".open": Runner._open, ".output": Runner._output, ".read": Runner.read_file,
    ".schema": Runner._schema, ".separator": Runner._separator, ".tables": Runner._tables, ".timer": Runner._timer,
}


def _usage(name: str) -> str:
    return next((line.split("  ")[0] for line in HELP.splitlines() if line.startswith(name + " ")), name)


# The user's tables and views in the current database; mldb's catalog (schema mldb) is left out.
_TABLES = """
SELECT CASE WHEN schema_name = current_schema() THEN name ELSE schema_name || '.' || name END AS name
FROM (SELECT schema_name, table_name AS name FROM duckdb_tables() WHERE NOT internal
          AND database_name = current_database() AND schema_name <> 'mldb'
      UNION ALL
      SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal
          AND database_name = current_database() AND schema_name <> 'mldb')
WHERE name LIKE ? ORDER BY name
"""
# their CREATE statements: each table, then its indexes, then the views (as DuckDB's .schema)
_SCHEMA = """
SELECT sql FROM (
    SELECT table_name AS name, 0 AS kind, sql FROM duckdb_tables()
        WHERE NOT internal AND database_name = current_database() AND schema_name <> 'mldb'
    UNION ALL
    SELECT table_name, 1, sql FROM duckdb_indexes()
        WHERE database_name = current_database() AND schema_name <> 'mldb' AND sql IS NOT NULL
    UNION ALL
    SELECT view_name, 2, sql FROM duckdb_views()
        WHERE NOT internal AND database_name = current_database() AND schema_name <> 'mldb')
WHERE name LIKE ? ORDER BY kind = 2, name, kind, sql
"""


def _columns(names: list[str], width: int = 80) -> str:
    """Names laid out in columns, down then across (as sqlite's and DuckDB's .tables did)."""
    size = max(len(name) for name in names) + 2
    per_line = max(1, width // size)
    rows = -(-len(names) // per_line)
    lines = [names[row::rows] for row in range(rows)]
    return "\n".join("".join(name.ljust(size) for name in line).rstrip() for line in lines)


def _abridged(sql: str, limit: int = 200) -> str:
    """The statement on one line, shortened: enough to find it in the script."""
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def _only_comments(lines: list[str]) -> bool:
    """Whether the lines hold no SQL (a block comment before a dot command)."""
    from mldb.frontend.dialect import MLDB
    from sqlglot.errors import TokenError

    try:
        return not MLDB().tokenize("\n".join(lines))
    except TokenError:
        return False


def _is_complete(text: str) -> bool:
    """A statement is complete when its last token is a top-level ';' (not inside a string)."""
    from mldb.frontend.dialect import MLDB
    from sqlglot.errors import TokenError
    from sqlglot.tokens import TokenType

    try:
        tokens = MLDB().tokenize(text)
    except TokenError:
        return False  # e.g. an unterminated string: keep reading
    return bool(tokens) and tokens[-1].token_type == TokenType.SEMICOLON
