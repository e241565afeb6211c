"""The ``mldb`` command, with the flags and dot commands of DuckDB's CLI.

    mldb shop.db                         interactive shell (history, multi-line statements ended by ;)
    mldb shop.db -c "SELECT 42"          run and print, then exit (-s too); status 1 on an error
    mldb shop.db -f script.sql           run a script file, then exit
    mldb shop.db < script.sql            a script on stdin; echo "SELECT 1" | mldb -csv
    mldb -csv | -json | -jsonlines | -markdown | -line | -box | -table | -duckbox | -list | -html
    mldb serve shop.db --port 5433       PostgreSQL wire protocol (see mldb.server)
    mldb monitor shop.db --once          run the due monitors, then exit (see mldb.monitors.cli)
    mldb ui shop.db --port 8765          the read-only web console (see mldb.console)

An error prints on stderr with the file, line and statement, and the exit status is 1. As in
DuckDB's CLI, ``-c`` and ``-f`` stop at their first error, so does a ``.read`` file (an error
of the input that read it), while stdin goes on with the next statement; ``-bail`` (``.bail
on``) stops everything at the first error. Output of ``-c``, ``-f`` and stdin is never cut; the
interactive shell shows at most ``.maxrows`` rows of a grid and says how many there were.
Dot commands (``.help`` lists them) are in ``mldb.cli_commands``, output modes in
``mldb.cli_output``.

Ctrl-C cancels the running statement (it rolls back and fails with SQLSTATE 57014); the
shell then returns to its prompt. At the prompt, Ctrl-C clears the line being typed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys

from mldb import errors
from mldb.cli_commands import Quit, Runner, Stopped, decoded, interruptible  # noqa: F401 - interruptible: used by mldb.magic
from mldb.cli_output import MODES, Printer, Settings

PROMPT, CONTINUATION = "mldb> ", "  ...> "
HISTORY_FILE = os.path.expanduser("~/.mldb_history")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        from mldb.server.cli import serve_main

        return serve_main(argv[1:])
    if argv[:1] == ["monitor"]:
        from mldb.monitors.cli import monitor_main

        return monitor_main(argv[1:])
    if argv[:1] == ["ui"]:
        from mldb.console.cli import ui_main

        return ui_main(argv[1:])
    options = _parser().parse_args(argv)
    problem = _not_a_database(options.database) or _not_sql(options)
    if problem:
        print(f"mldb: {problem}", file=sys.stderr)
        return 1
    try:
        connection = _connect(options)
    except errors.Error as error:
        print(Runner.error_text(error), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    inputs = options.inputs + [("sql", text) for text in options.sql]
    interactive = not inputs and sys.stdin.isatty()
    printer = Printer(_settings(options), limited=interactive and sys.stdout.isatty())
    runner = Runner(connection, printer, timer=options.timing, bail=options.bail,
                    connect=lambda path: _connect(options, path))
    try:
        with _leaving(runner):
            return _run(runner, inputs, interactive)
    except KeyboardInterrupt:  # between statements of a script: stop there, as psql does
        return 130
    except BrokenPipeError:  # the reader went away (mldb ... | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's last flush must not fail
        return 141  # as a program that SIGPIPE ended
    finally:
        runner.close()
        printer.close()


@contextlib.contextmanager
def _leaving(runner: Runner):
    """Leave the database open at the end (``.open`` may have changed it) as ``with connection``:
    commit and close, or roll back and close on an error."""
    try:
        yield
    except BaseException as error:
        runner.connection.__exit__(type(error), error, error.__traceback__)
        raise
    runner.connection.__exit__(None, None, None)


def _run(runner: Runner, inputs: list[tuple[str, str]], interactive: bool) -> int:
    try:
        if interactive:
            return Shell(runner).loop()
        for kind, value in inputs:
            if kind == "file":
                runner.read_file(value)
            else:
                runner.run_lines(value.splitlines())
        if not inputs:
            runner.run_lines(decoded(sys.stdin.buffer), "<stdin>", stop=False)
    except Quit as stop:
        return stop.code
    except Stopped:  # -c or -f had an error: the rest of the command line is not run (as DuckDB)
        return 1
    return 1 if runner.failed else 0


class _Input(argparse.Action):
    """-c / -s / -f in the order given: ("sql", text) or ("file", path)."""

    def __call__(self, parser, namespace, value, option_string=None):
        namespace.inputs.append(("file" if self.const == "file" else "sql", value))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mldb", description="mldb: ML in SQL over DuckDB.", allow_abbrev=False,
                                     epilog="Also: mldb serve DB [--host H] [--port P] (PostgreSQL wire "
                                            "protocol); mldb monitor DB [--once] (run the due monitors). In the shell, .help lists the dot commands.")
    parser.set_defaults(inputs=[], mode=None, header=True)
    parser.add_argument("database", nargs="?", default=":memory:", help="database file (default: in memory)")
    parser.add_argument("sql", nargs="*", help="SQL to run, then exit (as -c)")
    parser.add_argument("-c", "-s", "--command", action=_Input, const="sql", metavar="SQL",
                        help="run this SQL (or dot command), print the results and exit (repeatable)")
    parser.add_argument("-f", "--file", action=_Input, const="file", metavar="FILE",
                        help="run the SQL and dot commands in FILE, then exit")
    for mode in MODES:
        parser.add_argument(f"-{mode}", dest="mode", action="store_const", const=mode,
                            help=f"output mode {mode}" + (" (the default)" if mode == "table" else ""))
    parser.add_argument("-header", dest="header", action="store_true", help="print column names (default)")
    parser.add_argument("-noheader", dest="header", action="store_false", help="do not print column names")
    parser.add_argument("-separator", metavar="SEP", help="column separator (csv: ',', list: '|')")
    parser.add_argument("-nullvalue", metavar="TEXT", default="NULL", help="how NULL is printed (default NULL)")
    parser.add_argument("-bail", action="store_true",
                        help="stop at the first error, also on stdin (-c, -f and .read files always stop at theirs)")
    parser.add_argument("--timing", action="store_true", help="print how long each statement took")
    parser.add_argument("--udfs", action="append", default=[], metavar="FILE",
                        help="load the model UDFs defined in this Python file (repeatable)")
    parser.add_argument("--read-only", "-readonly", action="store_true", help="open the database read-only")
    parser.add_argument("--version", "-version", action="version", version=f"mldb {_version()}")
    return parser


def _settings(options) -> Settings:
    from mldb.cli_commands import unescape

    separator = unescape(options.separator) if options.separator is not None else None
    return Settings(mode=options.mode or "table", header=options.header, separator=separator,
                    nullvalue=unescape(options.nullvalue))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mldb")
    except PackageNotFoundError:
        return "(not installed)"


def _not_a_database(path: str) -> str | None:
    """Why ``path`` cannot be the database, or None. A DuckDB file has "DUCK" at offset 8."""
    if path == ":memory:" or not os.path.isfile(path):
        return None
    with open(path, "rb") as file:
        head = file.read(4096)
    if not head or head[8:12] == b"DUCK":
        return None
    if b"\0" not in head:
        return f"{path!r} is not a DuckDB database; it looks like text. Did you mean -f {path}?"
    return f"{path!r} is not a DuckDB database file"


def _not_sql(options) -> str | None:
    """DuckDB reads ``duckdb DB SQL``; a script file named there is refused with the right flag."""
    for text in options.sql:
        if os.path.isfile(text):
            return f"{text!r} is a file, not SQL. Did you mean: mldb {options.database} -f {text}?"
    return None


def _connect(options, path: str | None = None):
    import mldb

    path = options.database if path is None else path
    problem = _not_a_database(path)
    if problem:
        raise errors.ProgrammingError(problem)
    return mldb.connect(path, read_only=options.read_only, udfs=options.udfs)


def format_result(cursor) -> str:
    """The result as the shell's default table, every row (as a string)."""
    buffer = io.StringIO()
    printer = Printer(stream=buffer)
    try:
        printer.print_result(cursor)
    finally:
        printer.close()
    return buffer.getvalue().rstrip("\n")


class Shell:
    """Read lines from the terminal; the runner runs statements ended by ``;`` and dot commands."""

    def __init__(self, runner: Runner):
        self.runner = runner

    def loop(self) -> int:
        readline = _load_history()
        print("mldb shell: end statements with ';'. .help for commands, .quit to leave.")
        try:
            while True:
                try:
                    line = input(CONTINUATION if self.runner.pending else PROMPT)
                except EOFError:
                    print()
                    return 0
                except KeyboardInterrupt:
                    print("^C")
                    self.runner.pending = []
                    continue
                try:
                    self.runner.feed(line)
                except KeyboardInterrupt:  # a Ctrl-C just as the statement ended (or while printing)
                    print("^C")
        except Quit as stop:
            return stop.code
        finally:
            _save_history(readline)


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
