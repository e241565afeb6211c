"""``%mldb`` / ``%%mldb``: SQL cells in Jupyter, a thin frontend over the DB-API.

    %load_ext mldb
    %%mldb shop.db                  run the cell on shop.db (it stays the current database)
    %%mldb con                      ... or on an mldb connection named in the notebook
    %%mldb top <<                   store the result in ``top`` (polars; --pandas or --arrow)
    %mldb SELECT * FROM t WHERE id = {ident}      {name} binds a notebook variable as a parameter
    %mldb SELECT * FROM {table!i}   {name!i}: the variable's string as a quoted identifier
    %mldb SELECT * FROM df          a pandas / polars / pyarrow frame of the notebook (replacement scan)
    %mldb --plot training churn     a model's training curves (see mldb.plot)
    %mldb --plot monitor churn_drift   a monitor's history: values, thresholds, actions
    %config MldbMagic.max_rows = 50 rows shown per result (the note gives the total)

Without a database the cells share one in-memory database per kernel. An error shows
as one short message (class, SQLSTATE, text and DuckDB's pointer into the SQL); the
exception is still raised, so the cell fails and "run all" stops. Interrupting the
kernel cancels the running statement: it rolls back and the cell fails with
``OperationalError`` (SQLSTATE 57014); the connection stays usable.
"""

from __future__ import annotations

import contextlib
import functools
import os
import weakref
from dataclasses import dataclass

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Integer

from mldb import errors
from mldb.cli import interruptible
from mldb.result import intervals_as_durations

OUTPUTS = ("polars", "pandas", "arrow")
_VERBS = {"INSERT": "inserted", "UPDATE": "updated", "DELETE": "deleted", "COPY": "copied", "MERGE": "merged"}
_QUERY_WORDS = frozenset({"SELECT", "WITH", "FROM", "VALUES", "TABLE", "SHOW", "DESCRIBE", "SUMMARIZE",
                          "PRAGMA", "EXPLAIN", "CALL", "PIVOT", "UNPIVOT"})
USAGE = ("%mldb [--connect DB] [--pandas|--arrow] [--max-rows N] [NAME <<] SQL\n"
         "%%mldb [--pandas|--arrow] [--max-rows N] [DB or connection] [NAME <<]\n"
         "%mldb --plot training|drift|volume|importance MODEL [QUERY]\n"
         "%mldb --plot monitor MONITOR")


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(MldbMagic)


@dataclass
class Call:
    """What one ``%mldb`` line (plus the cell body) asks for."""

    sql: str = ""
    target: str | None = None  # a database path or the name of a connection in the notebook
    variable: str | None = None  # ``NAME <<``: store the result there
    output: str = "polars"
    max_rows: int | None = None
    plot: tuple[str, str] | None = None  # (kind, model)


@magics_class
class MldbMagic(Magics):
    max_rows = Integer(20, help="Rows shown per result; a note gives the total.").tag(config=True)

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self._opened: dict[str, object] = {}  # database path -> connection the magic opened
        self._cursors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._current = None

    @no_var_expand  # IPython would paste {name} into the text; we bind it as a parameter instead
    @line_cell_magic
    def mldb(self, line: str, cell: str | None = None):
        """Run SQL on an mldb database; see the module docstring for the forms."""
        try:
            return self._run(parse_call(line, cell))
        except errors.Error as error:
            error._render_traceback_ = functools.partial(render_error, error)  # shown instead of a traceback
            raise error from None

    def _run(self, call: Call):
        connection = self._connection(call.target)
        if call.plot:
            return self._plot(connection, call)
        if not call.sql.strip():
            if call.target and not call.variable:
                return Status(f"OK, using {call.target}")
            raise errors.ProgrammingError(f"no SQL to run; usage:\n{USAGE}")
        sql, params = bind_variables(call.sql, self.shell.user_ns)
        cursor = self._cursor(connection)
        try:
            return interruptible(connection, lambda: self._execute(cursor, sql, params, call))
        except errors.Error as error:
            raise _misplaced_parameter(error, call.sql) if params else error from None

    def _execute(self, cursor, sql: str, params, call: Call):
        """Run the statement and read what is shown (interrupting the kernel cancels both)."""
        from mldb.frames import Scope

        cursor._execute(sql, params, Scope(globals=self.shell.user_ns, where="the notebook"))  # FROM df
        if call.variable:
            self.shell.user_ns[call.variable] = _fetch(cursor, call.output)
            return None
        if _is_status_only(cursor):
            return Status(status_line(cursor))
        if [column[0] for column in cursor.description] == ["explain_key", "explain_value"]:
            return Plan("\n".join(value for _, value in cursor.fetchall()))
        return ResultTable.stream(cursor.arrow_reader(), call.max_rows or self.max_rows)

    # -- connections -------------------------------------------------------------------
    def _connection(self, target: str | None):
        """The connection ``target`` names (it becomes the current one), else the current one."""
        if target is not None:
            self._current = self._resolve(target)
        if self._current is None:
            self._current = self._open(":memory:")
        return self._current

    def _resolve(self, target: str):
        from mldb.dbapi import Connection

        value = self.shell.user_ns.get(target) if target.isidentifier() else None
        if isinstance(value, Connection):
            return value
        if value is not None:
            raise errors.ProgrammingError(f"{target} is a {type(value).__name__}, not an mldb connection")
        if target == ":memory:" or "." in target or os.sep in target:
            return self._open(target)
        raise errors.ProgrammingError(f"unknown database {target!r}: name an mldb connection of the notebook "
                                      "or a database file such as shop.db")

    def _open(self, path: str):
        import mldb

        key = path if path == ":memory:" else os.path.abspath(os.path.expanduser(path))
        connection = self._opened.get(key)
        if connection is None or connection.closed:
            connection = self._opened[key] = mldb.connect(key)
        return connection

    def _cursor(self, connection):
        """One cursor per connection, kept across cells (so BEGIN in one cell holds in the next).

        In a notebook it shows DuckDB's progress bar for long SQL (DuckDB turns the bar on
        for a connection made in Jupyter, but not for its cursors)."""
        from mldb.progress import in_notebook

        cursor = self._cursors.get(connection)
        if cursor is None or cursor.closed:
            cursor = self._cursors[connection] = connection.cursor()
            if in_notebook():
                cursor.execute("SET enable_progress_bar = true")
        return cursor

    # -- plots -------------------------------------------------------------------------
    def _plot(self, connection, call: Call):
        from IPython.display import display

        from mldb import plot

        kind, model = call.plot
        if bind_variables(call.sql, self.shell.user_ns)[1]:
            raise errors.NotSupportedError("{name} parameters cannot be used in a --plot query; write the value")
        ax = plot.draw(connection, kind, model, call.sql)
        display(ax.figure)
        _close_figure(ax.figure)


# -- parsing the magic line ----------------------------------------------------------------
def parse_call(line: str, cell: str | None) -> Call:
    """``[--options] [target] [NAME <<]`` on the line; the SQL is the cell (or the rest of the line)."""
    call, rest = Call(), line.strip()
    while rest.startswith("--") and rest[2:3].isalpha():
        option, rest = _next_word(rest)
        rest = _apply_option(call, option, rest)
    if cell is None:  # line magic: [NAME <<] SQL
        call.variable, call.sql = _split_store(rest)
        return call
    head = rest
    if head.endswith("<<"):
        words = head[:-2].split()
        if not words:
            raise errors.ProgrammingError("'<<' needs a variable name before it, as in: %%mldb result <<")
        call.variable, head = _check_name(words[-1]), " ".join(words[:-1])
    words = head.split()
    if call.plot:
        call.sql = " ".join([head, cell])
        return call
    if len(words) > 1:
        raise errors.ProgrammingError(f"unexpected {' '.join(words[1:])!r} after the database; usage:\n{USAGE}")
    if words:
        if call.target is not None:
            raise errors.ProgrammingError("name the database once: either --connect or the first word")
        call.target = words[0]
    call.sql = cell
    return call


def _apply_option(call: Call, option: str, rest: str) -> str:
    if option[2:] in OUTPUTS:
        call.output = option[2:]
    elif option == "--connect":
        call.target, rest = _required_word(option, rest)
    elif option == "--max-rows":
        value, rest = _required_word(option, rest)
        if not value.isdigit() or int(value) < 1:
            raise errors.ProgrammingError(f"--max-rows needs a positive whole number, got {value!r}")
        call.max_rows = int(value)
    elif option == "--plot":
        kind, rest = _required_word(option, rest)
        model, rest = _required_word(option, rest)
        call.plot = (kind, model)
        call.sql = rest
    else:
        raise errors.ProgrammingError(f"unknown option {option}; usage:\n{USAGE}")
    return rest


def _next_word(text: str) -> tuple[str, str]:
    parts = text.split(None, 1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


def _required_word(option: str, text: str) -> tuple[str, str]:
    if not text.strip():
        raise errors.ProgrammingError(f"{option} needs a value; usage:\n{USAGE}")
    return _next_word(text)


def _split_store(text: str) -> tuple[str | None, str]:
    """``NAME << SQL`` -> (NAME, SQL); SQL alone (even one using the ``<<`` operator) -> (None, SQL)."""
    before, found, after = text.partition("<<")
    words = before.split()
    if not found or len(words) != 1 or any(c in words[0] for c in "()'\"[]{},;"):
        return None, text
    return _check_name(words[0]), after


def _check_name(name: str) -> str:
    import keyword

    if not name.isidentifier() or keyword.iskeyword(name):
        raise errors.ProgrammingError(f"{name!r} is not a valid Python variable name to store the result in")
    return name


# -- {name} parameters ---------------------------------------------------------------------
_BINDS = frozenset({"SELECT", "WITH", "FROM", "VALUES", "TABLE", "INSERT", "UPDATE", "DELETE", "MERGE",
                    "DESCRIBE", "SUMMARIZE", "PIVOT", "UNPIVOT", "SET", "EXPLAIN"})  # DuckDB prepares these


def bind_variables(sql: str, namespace: dict) -> tuple[str, list | None]:
    """Replace each ``{name}`` by a ``?`` bound to the notebook's value of ``name``, and each
    ``{name!i}`` by that string as a quoted identifier (``FROM {table!i}``).

    Found with the SQL tokenizer, so braces inside strings and comments stay as written. Where
    DuckDB takes no parameter (CREATE VIEW, ATTACH, an mldb statement's ``WITH (...)``
    options) a number, string, boolean, date or list of them is written as a quoted literal
    instead. A frame (``FROM {df}``) becomes its name, which the replacement scan then reads.
    """
    from mldb.frontend import split_statements

    statements = split_statements(sql)
    if not statements:
        return sql, None  # DuckDB will judge the text as written
    pieces, params, start = [], [], 0
    for statement in statements:
        for first, last, name, conversion, word in _braces(sql, statement.tokens):
            if name not in namespace:
                raise errors.ProgrammingError(f"{{{name}}}: there is no variable {name!r} in the notebook")
            text, bound = _render(name, namespace[name], conversion, statement, word)
            pieces += [sql[start:first], text]
            params += bound
            start = last + 1
    if start == 0:
        return sql, None
    return "".join(pieces) + sql[start:], (params or None)


def _braces(sql: str, tokens):
    """``(start, end, name, conversion, word)`` of each ``{name}`` / ``{name!c}`` among ``tokens``
    (``word``: the keyword before it, upper case)."""
    from sqlglot.tokens import TokenType

    kinds = [token.token_type for token in tokens]
    for i, token in enumerate(tokens):
        if kinds[i] != TokenType.L_BRACE or i + 2 >= len(tokens):
            continue
        name = tokens[i + 1]
        if sql[name.start:name.end + 1] != name.text or not name.text.isidentifier():
            continue  # a string or quoted identifier: not a variable
        end = i + 2 if kinds[i + 2] == TokenType.R_BRACE else i + 4
        if end == i + 4 and not (kinds[i + 2] == TokenType.NOT and end < len(tokens) and kinds[end] == TokenType.R_BRACE):
            continue
        if i > 0 and kinds[i - 1] == TokenType.L_BRACE and end + 1 < len(tokens) and kinds[end + 1] == TokenType.R_BRACE:
            raise errors.ProgrammingError(
                f"{{{{{name.text}}}}}: jupysql's double braces are not mldb's form; write {{{name.text}}} for a "
                f"value (bound as a parameter) or {{{name.text}!i}} for a table or column name", sqlstate="42601")
        word = tokens[i - 1].text.upper() if i > 0 else ""
        yield token.start, tokens[end].end, name.text, (tokens[i + 3].text if end == i + 4 else None), word


_FRAME_WORDS = frozenset({"FROM", "JOIN", "DESCRIBE", "SUMMARIZE", "TABLE", "PIVOT", "UNPIVOT"})  # a table is read


def _render(name: str, value, conversion: str | None, statement, word: str = "") -> tuple[str, list]:
    """The SQL text for one brace and the parameters it binds."""
    from mldb import frames

    if conversion == "i":
        return _identifier(name, value), []
    if conversion is not None:
        raise errors.ProgrammingError(f"{{{name}!{conversion}}}: unknown conversion; write {{{name}}} for a "
                                      f"value or {{{name}!i}} for a table or column name")
    if frames.is_frame(value):
        if word not in _FRAME_WORDS:
            raise errors.ProgrammingError(
                f"{{{name}}} is a {type(value).__name__}: a frame can only be read as a table (FROM {{{name}}}, "
                f"JOIN {{{name}}} or FROM {name}); it is not a value", sqlstate="42601")
        return _identifier(name, name), []  # the replacement scan reads the frame by its name
    if _takes_parameters(statement):
        return "?", [value]
    return _literal(name, value, statement.first_word), []


def _misplaced_parameter(error: errors.Error, sql: str) -> errors.Error:
    """A syntax error at a ``?`` a ``{name}`` became: say that a value cannot stand for a name there."""
    text = str(error)
    if error.sqlstate != "42601" or 'at or near "?"' not in text:
        return error
    names = [name for _, _, name, conversion, _ in _braces_of(sql) if conversion is None]
    name = names[0] if len(names) == 1 else "table"
    first, _, rest = text.partition("\n")
    hinted = type(error)(f"{first} (a {{name}} is bound as a parameter, which DuckDB takes only where a value "
                         f"goes; use {{{name}!i}} for a table or column name)" + (f"\n{rest}" if rest else ""),
                         sqlstate=error.sqlstate, position=error.position)
    hinted.query, hinted.span = error.query, error.span
    return hinted


def _braces_of(sql: str):
    from mldb.frontend import split_statements

    for statement in split_statements(sql) or ():
        yield from _braces(sql, statement.tokens)


def _identifier(name: str, value) -> str:
    from sqlglot import exp

    from mldb.frontend.dialect import MLDB

    parts = value if isinstance(value, (tuple, list)) else [value]
    if not parts or not all(isinstance(part, str) and part for part in parts):
        raise errors.ProgrammingError(f"{{{name}!i}} needs a name (a string, or a tuple of them for "
                                      f"schema.table), got {type(value).__name__}")
    return ".".join(exp.to_identifier(part, quoted=True).sql(dialect=MLDB) for part in parts)


def _takes_parameters(statement) -> bool:
    """Whether DuckDB (or mldb's planner) binds a ``?`` in this statement."""
    from sqlglot import exp

    from mldb.frontend import parse
    from mldb.frontend.expressions import MldbStatement

    words = [token.text.upper() for token in statement.tokens[:4]]
    if words[0] == "CREATE":
        return "TABLE" in words and "MODEL" not in words and "INDEX" not in words
    if words[0] not in _BINDS:
        return False
    if not statement.has_mldb:
        return True
    try:
        tree = parse(statement)
    except errors.Error:
        return False
    return not isinstance(tree, MldbStatement) and not isinstance(tree, exp.Command)


def _literal(name: str, value, word: str) -> str:
    """``value`` as a SQL literal (strings quoted, quotes doubled): for a place DuckDB binds nothing."""
    import datetime
    import decimal
    import math

    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, decimal.Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"'{value}'::DOUBLE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, datetime.datetime):
        kind = "TIMESTAMPTZ" if value.tzinfo is not None else "TIMESTAMP"
        return f"{kind} '{value.isoformat(sep=' ')}'"
    if isinstance(value, datetime.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(name, item, word) for item in value) + "]"
    raise errors.ProgrammingError(f"{{{name}}}: a {type(value).__name__} cannot be written into a {word} "
                                  "statement (DuckDB takes no parameters there); use a number, string, "
                                  "boolean, date or a list of them")


# -- showing results -----------------------------------------------------------------------
class ResultTable:
    """The first ``max_rows`` rows as polars' HTML table, with a note of the total."""

    def __init__(self, frame, total: int, max_rows: int):
        self.frame, self.total, self.max_rows = frame, total, max_rows

    @classmethod
    def stream(cls, reader, max_rows: int) -> "ResultTable":
        """Keep the first ``max_rows`` rows and count the rest batch by batch (bounded memory)."""
        import polars
        import pyarrow

        kept, total = [], 0
        with _translated():
            for batch in reader:
                if total < max_rows:
                    kept.append(batch.slice(0, max_rows - total))
                total += batch.num_rows
        return cls(polars.from_arrow(intervals_as_durations(pyarrow.Table.from_batches(kept, reader.schema))),
                   total, max_rows)

    @property
    def note(self) -> str:
        shown = min(self.total, self.max_rows)
        rows = f"{self.total:,} row{'s' if self.total != 1 else ''}"
        return rows if shown == self.total else f"{rows}, {shown:,} shown"

    def _repr_html_(self) -> str:
        import html

        with self._config():
            table = self.frame._repr_html_()
        return f"{table}<p><small>{html.escape(self.note)}</small></p>"

    def __repr__(self) -> str:
        with self._config():
            return f"{self.frame}\n{self.note}"

    def _config(self):
        import polars

        return polars.Config(tbl_rows=self.max_rows, tbl_hide_dataframe_shape=True, fmt_str_lengths=80)


@dataclass
class Status:
    """A statement without rows: one line such as ``OK, 3 rows inserted``."""

    text: str

    def __repr__(self) -> str:
        return self.text


@dataclass
class Plan:
    """EXPLAIN's plan drawing, shown as preformatted text rather than squeezed into a table cell."""

    text: str

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        import html

        return f"<pre>{html.escape(self.text)}</pre>"


def status_line(cursor) -> str:
    count = cursor.rowcount
    if cursor.status in _VERBS and count >= 0:
        return f"OK, {count:,} row{'s' if count != 1 else ''} {_VERBS[cursor.status]}"
    if cursor.description and cursor.description[0][0] == "Count":
        rows = cursor.fetchall()  # CREATE TABLE ... AS reports how many rows it wrote
        if rows and rows[0][0] is not None:
            return f"OK, {cursor.status}, {rows[0][0]:,} row{'s' if rows[0][0] != 1 else ''}"
    return f"OK, {cursor.status}" if cursor.status else "OK"


def _is_status_only(cursor) -> bool:
    """DuckDB answers INSERT/CREATE/BEGIN/SET with one ``Count`` or ``Success`` column."""
    description = cursor.description
    if description is None:
        return True
    return (cursor.status not in _QUERY_WORDS and len(description) == 1
            and description[0][0] in ("Count", "Success"))


def _fetch(cursor, output: str):
    if cursor.description is None:
        return None
    return {"polars": cursor.pl, "pandas": cursor.df, "arrow": cursor.arrow}[output]()


def render_error(error: errors.Error) -> list[str]:
    """``Class (SQLSTATE x): first line``, plus DuckDB's ``LINE n:`` pointer when it gave one."""
    lines = str(error).strip().splitlines() or [""]
    shown = [f"{type(error).__name__} (SQLSTATE {error.sqlstate}): {lines[0]}"]
    pointer = next((i for i, text in enumerate(lines) if text.startswith("LINE ")), None)
    if pointer is not None:
        shown += lines[pointer:pointer + 2]
    elif len(lines) > 1 and lines[0].endswith(":"):
        shown += lines[1:]  # a message that announces more (e.g. the usage text)
    return shown


@contextlib.contextmanager
def _translated():
    """Errors raised while rows stream in become mldb errors too."""
    import duckdb
    import pyarrow

    try:
        yield
    except duckdb.Error as error:
        raise errors.translate(error) from None
    except pyarrow.ArrowException as error:
        raise errors.DatabaseError(str(error)) from None


def _close_figure(figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)

