"""The ``mldb`` command: an interactive shell, ``-c SQL``, scripts on stdin, and ``serve``.

    mldb shop.db                      interactive shell (history, multi-line statements ended by ;)
    mldb shop.db -c "SELECT 42"       run and print; exit status 1 on error
    mldb shop.db < script.sql         run a script; stops at the first error with status 1
    mldb serve shop.db --port 5433    PostgreSQL wire protocol (see mldb.server)

Ctrl-C cancels the running statement (it rolls back and fails with SQLSTATE 57014); the
shell then returns to its prompt. At the prompt, Ctrl-C clears the line being typed.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from mldb import errors

PROMPT, CONTINUATION = "mldb> ", "  ...> "
HISTORY_FILE = os.path.expanduser("~/.mldb_history")
MAX_SHOWN_ROWS = 1000


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        from mldb.server.cli import serve_main

        return serve_main(argv[1:])
    options = _parser().parse_args(argv)
    try:
        connection = _connect(options)
    except errors.Error as error:
        _print_error(error)
        return 1
    except KeyboardInterrupt:
        return 130
    try:
        with connection:
            if options.command is not None:
                return _run_script(connection, options.command, options.timing)
            if sys.stdin.isatty():
                return Shell(connection, options.timing).loop()
            return _run_script(connection, sys.stdin.read(), options.timing)
    except KeyboardInterrupt:  # between statements of a script: stop there, as psql does
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mldb", description="mldb: ML in SQL over DuckDB.",
                                     epilog="Also: mldb serve DB [--host H] [--port P] (PostgreSQL wire protocol).")
    parser.add_argument("database", nargs="?", default=":memory:", help="database file (default: in memory)")
    parser.add_argument("-c", "--command", help="run these SQL statements, print the results and exit")
    parser.add_argument("--timing", action="store_true", help="print how long each statement took")
    parser.add_argument("--udfs", action="append", default=[], metavar="FILE",
                        help="load the model UDFs defined in this Python file (repeatable)")
    parser.add_argument("--read-only", action="store_true", help="open the database read-only")
    return parser


def _connect(options):
    import mldb

    return mldb.connect(options.database, read_only=options.read_only, udfs=options.udfs)


def _run_script(connection, sql: str, timing: bool) -> int:
    """Run each statement in order, printing results; stop at the first error (status 1)."""
    from mldb.frontend import split_statements

    statements = split_statements(sql)
    texts = [statement.text for statement in statements] if statements is not None else [sql]
    for text in texts:
        if not _run_and_print(connection, text, timing):
            return 1
    return 0


def _run_and_print(connection, sql: str, timing: bool) -> bool:
    started = time.perf_counter()
    try:
        output = interruptible(connection, lambda: format_result(connection.execute(sql)))
    except errors.Error as error:
        _print_error(error)
        return False
    if output:
        print(output)
    if timing:
        print(f"Time: {(time.perf_counter() - started) * 1000:.1f} ms")
    return True


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


def format_result(cursor) -> str:
    """An aligned table of the rows (at most MAX_SHOWN_ROWS), or the statement's status line."""
    from tabulate import tabulate

    if cursor.description is None or _is_status_only(cursor):
        count = f" {cursor.rowcount}" if cursor.rowcount >= 0 else ""
        return f"{cursor.status}{count}" if cursor.status else "OK"
    headers = [column[0] for column in cursor.description]
    rows = cursor.fetchmany(MAX_SHOWN_ROWS + 1)
    shown = rows[:MAX_SHOWN_ROWS]
    table = tabulate(shown, headers=headers, tablefmt="psql", missingval="NULL", disable_numparse=True)
    more = " (more rows not shown)" if len(rows) > MAX_SHOWN_ROWS else ""
    return f"{table}\n({len(shown)} row{'s' if len(shown) != 1 else ''}){more}"


_QUERY_WORDS = frozenset({"SELECT", "WITH", "FROM", "VALUES", "TABLE", "SHOW", "DESCRIBE", "SUMMARIZE",
                          "PRAGMA", "EXPLAIN", "CALL", "PIVOT", "UNPIVOT", "("})


def _is_status_only(cursor) -> bool:
    """DuckDB answers INSERT/CREATE/... with a single ``Count`` column; show a status line instead."""
    description = cursor.description
    return (cursor.status not in _QUERY_WORDS and len(description) == 1 and description[0][0] == "Count")


def _print_error(error: errors.Error) -> None:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    print(f"Error ({type(error).__name__}, SQLSTATE {error.sqlstate}): {first_line}", file=sys.stderr)


class Shell:
    """Read statements until ``;``, run them, print tables. ``.timer on|off``, ``.quit``."""

    def __init__(self, connection, timing: bool):
        self.connection = connection
        self.timing = timing

    def loop(self) -> int:
        readline = _load_history()
        buffer: list[str] = []
        print("mldb shell: end statements with ';'. .help for commands, .quit to leave.")
        while True:
            try:
                line = input(CONTINUATION if buffer else PROMPT)
            except EOFError:
                print()
                break
            except KeyboardInterrupt:
                print("^C")
                buffer = []
                continue
            if not buffer and line.strip().startswith("."):
                if not self._command(line.strip()):
                    break
                continue
            buffer.append(line)
            text = "\n".join(buffer)
            if _is_complete(text):
                buffer = []
                try:
                    _run_and_print(self.connection, text, self.timing)
                except KeyboardInterrupt:  # a Ctrl-C just as the statement ended (or while printing)
                    print("^C")
        _save_history(readline)
        return 0

    def _command(self, line: str) -> bool:
        words = line.split()
        if words[0] in (".quit", ".exit"):
            return False
        if words[0] == ".timer" and len(words) == 2 and words[1] in ("on", "off"):
            self.timing = words[1] == "on"
        else:
            print(".timer on|off   print statement timings\n.quit           leave the shell")
        return True


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


def _load_history():
    try:
        import readline
    except ImportError:  # not on every platform
        return None
    try:
        readline.read_history_file(HISTORY_FILE)
    except OSError:
        pass
    return readline


def _save_history(readline) -> None:
    if readline is not None:
        try:
            readline.write_history_file(HISTORY_FILE)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
