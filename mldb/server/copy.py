"""COPY ... FROM STDIN / TO STDOUT over the wire: the statement and its options.

``parse`` reads the statement (sqlglot's tokens, the new ``WITH (FORMAT csv, ...)``
syntax and the old ``WITH CSV HEADER`` one that psql's ``\\copy ... csv header`` sends)
and checks the options as PostgreSQL does; a COPY that names a file is not ours and
goes to DuckDB as written. ``copy_in`` loads what the client sends, ``copy_out``
formats the rows it receives; DuckDB parses and formats, never Python per row.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from mldb import errors

from mldb.frontend import split_statements

_BOOL_WORDS = {"true": True, "on": True, "1": True, "false": False, "off": False, "0": False}
_VALUE_OPTIONS = ("delimiter", "null", "quote", "escape", "encoding", "default")
_LIST_OPTIONS = ("force_quote", "force_not_null", "force_null")
_ENCODINGS = {"utf8": "utf-8", "utf-8": "utf-8", "unicode": "utf-8", "sql_ascii": "utf-8", "latin1": "latin-1",
              "iso88591": "latin-1", "iso-8859-1": "latin-1"}


class CopyError(Exception):
    """A COPY the server refuses before any data moves: message and SQLSTATE."""

    def __init__(self, message: str, sqlstate: str):
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass
class Options:
    format: str = "text"
    delimiter: str | None = None
    null: str | None = None
    header: bool | str = False  # True, False or "match"
    quote: str | None = None
    escape: str | None = None
    encoding: str = "utf-8"
    force_quote: list[str] | str = field(default_factory=list)  # column names, or "*"
    force_not_null: list[str] | str = field(default_factory=list)
    force_null: list[str] | str = field(default_factory=list)


@dataclass
class Copy:
    incoming: bool  # FROM STDIN (else TO STDOUT)
    table: str | None  # the table's name as written (None for COPY (query) TO STDOUT)
    columns: list[str] | None  # the column list as written
    query: str | None  # COPY (query) TO STDOUT
    options: Options
    where: str | None = None  # COPY ... FROM STDIN WHERE condition

    def select_sql(self) -> str:
        """The query whose rows COPY TO STDOUT sends."""
        if self.query is not None:
            return self.query
        return f"SELECT {', '.join(self.columns) if self.columns else '*'} FROM {self.table}"


def target_description(session, copy: Copy):
    """The description of the table's (listed) columns, with PostgreSQL's errors for a missing
    table or column and for a view to copy into (not DuckDB's, which quote mldb's own SELECT)."""
    try:
        description = session.sql(f"SELECT {', '.join(copy.columns) if copy.columns else '*'} "
                                  f"FROM {copy.table} LIMIT 0").description
    except errors.Error as error:
        raise _target_error(str(error), copy) from None
    if copy.incoming and _is_view(session, copy.table):
        raise CopyError(f'cannot copy to view "{_plain(copy.table)}"', "42809")
    return description


def _target_error(message: str, copy: Copy) -> Exception:
    table = _plain(copy.table)
    if re.search(r"Table with name .* does not exist", message):
        return CopyError(f'relation "{table}" does not exist', "42P01")
    column = re.search(r'Referenced column "(.*?)" not found', message)
    if column:
        return CopyError(f'column "{column.group(1)}" of relation "{table}" does not exist', "42703")
    return CopyError(message.split("\n")[0], "42P01" if "Catalog Error" in message else "42601")


def _plain(name: str) -> str:
    try:
        return sqlglot.exp.to_table(name, dialect="duckdb").sql(dialect="duckdb").replace('"', "")
    except sqlglot.errors.ParseError:
        return name


def _is_view(session, name: str) -> bool:
    try:
        table = exp.to_table(name, dialect="duckdb")
    except sqlglot.errors.ParseError:
        return False
    schema = f" AND schema_name = {literal(table.db)}" if table.db else ""
    found = session.sql(f"SELECT count(*) FROM duckdb_views() WHERE NOT internal AND view_name = "
                        f"{literal(table.name)}{schema}").fetchone()
    return bool(found and found[0])


# -- parsing the statement --------------------------------------------------------------------


def parse(sql: str) -> Copy | None:
    """The COPY statement if it reads from STDIN or writes to STDOUT; None for any other COPY."""
    statements = split_statements(sql)
    if not statements or len(statements) != 1 or statements[0].first_word != "COPY":
        return None
    return _Reader(sql, statements[0].tokens).copy()


class _Reader:
    """A walk over the tokens of ``COPY target [(columns)] FROM STDIN|TO STDOUT [WITH] [options] [WHERE ...]``."""

    def __init__(self, sql: str, tokens):
        self.sql, self.tokens, self.pos = sql, tokens, 1

    def copy(self) -> Copy | None:
        query = table = columns = None
        if self._is(TokenType.L_PAREN):
            query = self._parenthesised_text()
        else:
            table = self._name()
            if self._is(TokenType.L_PAREN):
                columns = self._name_list()
        direction = self._word()
        if direction not in ("FROM", "TO") or self._word() not in ("STDIN", "STDOUT"):
            return None  # a file or a program: DuckDB's COPY
        if query is not None and direction == "FROM":
            raise CopyError("COPY FROM a query is not possible: name a table", "42601")
        self._take("WITH")
        options = self._new_options() if self._is(TokenType.L_PAREN) else self._old_options()
        where = None
        if self._take("WHERE"):
            if direction != "FROM":
                raise CopyError("WHERE clause not allowed with COPY TO", "0A000")
            where = self.sql[self.tokens[self.pos].start:] if self.pos < len(self.tokens) else None
            self.pos = len(self.tokens)
        if self.pos < len(self.tokens):
            raise CopyError(f'syntax error in COPY at or near "{self.tokens[self.pos].text}"', "42601")
        return Copy(direction == "FROM", table, columns, query, _checked(options, direction == "FROM"), where)

    # -- tokens
    def _is(self, kind) -> bool:
        return self.pos < len(self.tokens) and self.tokens[self.pos].token_type == kind

    def _word(self) -> str:
        if self.pos >= len(self.tokens):
            raise CopyError("syntax error at end of COPY statement", "42601")
        self.pos += 1
        return self.tokens[self.pos - 1].text.upper()

    def _take(self, word: str) -> bool:
        if self.pos < len(self.tokens) and self.tokens[self.pos].text.upper() == word \
                and self.tokens[self.pos].token_type not in (TokenType.STRING, TokenType.IDENTIFIER):
            self.pos += 1
            return True
        return False

    def _source(self, first: int, last: int) -> str:
        return self.sql[self.tokens[first].start : self.tokens[last].end + 1]

    def _parenthesised_text(self) -> str:
        depth, start = 0, self.pos
        for index in range(self.pos, len(self.tokens)):
            depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(self.tokens[index].token_type, 0)
            if depth == 0:
                self.pos = index + 1
                return self._source(start + 1, index - 1) if index > start + 1 else ""
        raise CopyError("syntax error in COPY: unbalanced parentheses", "42601")

    def _name(self) -> str:
        start = self.pos
        self._word()
        while self._is(TokenType.DOT):
            self.pos += 1
            self._word()
        return self._source(start, self.pos - 1)

    def _name_list(self) -> list[str]:
        self.pos += 1  # (
        names = []
        while True:
            names.append(self._source(self.pos, self.pos))
            self._word()
            if self._is(TokenType.R_PAREN):
                self.pos += 1
                return names
            if not self._is(TokenType.COMMA):
                raise CopyError("syntax error in the column list of COPY", "42601")
            self.pos += 1

    def _value(self):
        """An option's value: a string, number, word, ``*`` or a parenthesised list of names."""
        token = self.tokens[self.pos]
        if token.token_type == TokenType.L_PAREN:
            return [_unquoted(name) for name in self._name_list()]
        self.pos += 1
        if token.token_type in (TokenType.STRING, TokenType.BYTE_STRING, TokenType.NATIONAL_STRING):
            source = self.sql[token.start : token.end + 1]
            return codecs.decode(token.text, "unicode_escape") if source[:1] in "eE" else token.text
        return token.text

    # -- the two option syntaxes
    def _new_options(self) -> dict:
        """``( name [value] [, ...] )`` (PostgreSQL 9.0 and later)."""
        self.pos += 1
        given = {}
        while not self._is(TokenType.R_PAREN):
            name = self._word().lower()
            value = True if self._is(TokenType.COMMA) or self._is(TokenType.R_PAREN) else self._value()
            _add(given, name, value)
            if self._is(TokenType.COMMA):
                self.pos += 1
        self.pos += 1
        return given

    def _old_options(self) -> dict:
        """``BINARY``, ``CSV``, ``HEADER``, ``DELIMITER [AS] 'c'``, ``FORCE QUOTE a, b`` ... (before 9.0; psql's
        ``\\copy ... csv header`` sends these)."""
        given = {}
        while self.pos < len(self.tokens) and not self._take_peek("WHERE"):
            word = self._word()
            if word in ("BINARY", "CSV"):
                _add(given, "format", word.lower())
            elif word in ("HEADER", "FREEZE", "OIDS"):
                _add(given, word.lower(), True)
            elif word in ("DELIMITER", "NULL", "QUOTE", "ESCAPE", "ENCODING"):
                self._take("AS")
                _add(given, word.lower(), self._value())
            elif word == "FORCE":
                _add(given, *self._old_force())
            else:
                raise CopyError(f'syntax error in COPY at or near "{self.tokens[self.pos - 1].text}"', "42601")
        return given

    def _take_peek(self, word: str) -> bool:
        return self.tokens[self.pos].text.upper() == word

    def _old_force(self) -> tuple[str, object]:
        words = [self._word()]
        if words[0] == "NOT":
            words.append(self._word())
        name = "force_" + "_".join(words).lower()
        if self._is(TokenType.STAR):
            self.pos += 1
            return name, "*"
        names = [_unquoted(self._source(self.pos, self.pos))]
        self._word()
        while self._is(TokenType.COMMA):
            self.pos += 1
            names.append(_unquoted(self._source(self.pos, self.pos)))
            self._word()
        return name, names


def _add(given: dict, name: str, value) -> None:
    if name in given:
        raise CopyError("conflicting or redundant options", "42601")
    given[name] = value


def _unquoted(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def _checked(given: dict, incoming: bool) -> Options:
    """PostgreSQL's option rules (src/backend/commands/copy.c, ProcessCopyOptions)."""
    options = Options()
    for name, value in given.items():
        if name == "format":
            options.format = str(value).lower()
            if options.format not in ("text", "csv", "binary"):
                raise CopyError(f'COPY format "{value}" not recognized', "22023")
        elif name == "header":
            options.header = "match" if str(value).lower() == "match" else _boolean(name, value)
        elif name in ("freeze", "oids"):
            if _boolean(name, value) and name == "oids":
                raise CopyError("COPY with OIDS is not supported", "0A000")
        elif name in _VALUE_OPTIONS:
            if not isinstance(value, str):
                raise CopyError(f'{name} requires a string value', "42601")
            setattr(options, name, value) if name != "default" else _refuse("DEFAULT")
        elif name in _LIST_OPTIONS:
            setattr(options, name, value if value == "*" or isinstance(value, list) else [str(value).lower()])
        else:
            raise CopyError(f'option "{name}" not recognized', "42601")
    return _defaults(options, incoming)


def _boolean(name: str, value) -> bool:
    if value is True:
        return True
    flag = _BOOL_WORDS.get(str(value).lower())
    if flag is None:
        raise CopyError(f"{name} requires a Boolean value", "22023")
    return flag


def _refuse(what: str) -> None:
    raise CopyError(f"COPY {what} is not supported by mldb serve", "0A000")


def _defaults(options: Options, incoming: bool) -> Options:
    csv = options.format == "csv"
    if options.format == "binary":
        raise CopyError("COPY in binary format is not supported by mldb serve: use FORMAT text or csv", "0A000")
    options.delimiter = options.delimiter if options.delimiter is not None else ("," if csv else "\t")
    options.null = options.null if options.null is not None else ("" if csv else "\\N")
    if len(options.delimiter.encode()) != 1:
        raise CopyError("COPY delimiter must be a single one-byte character", "0A000")
    if options.delimiter in "\r\n" or (not csv and options.delimiter == "\\"):
        raise CopyError("COPY delimiter cannot be newline, carriage return or (in text format) backslash", "22023")
    if "\r" in options.null or "\n" in options.null or options.delimiter in options.null:
        raise CopyError("COPY null representation cannot use newline, carriage return or the delimiter", "22023")
    if not csv and (options.quote is not None or options.escape is not None):
        raise CopyError("COPY quote and escape are available only in CSV mode", "0A000")
    if not csv and (options.force_quote or options.force_not_null or options.force_null):
        raise CopyError("COPY FORCE options are available only in CSV mode", "0A000")
    if options.force_quote and incoming:
        raise CopyError("COPY FORCE_QUOTE only available using COPY TO", "0A000")
    if (options.force_not_null or options.force_null) and not incoming:
        raise CopyError("COPY FORCE_NOT_NULL and FORCE_NULL only available using COPY FROM", "0A000")
    if options.header == "match" and not incoming:
        raise CopyError("cannot use \"match\" with HEADER in COPY TO", "0A000")
    if csv:
        options.quote = '"' if options.quote is None else options.quote
        options.escape = options.quote if options.escape is None else options.escape
        if len(options.quote.encode()) != 1 or len(options.escape.encode()) != 1:
            raise CopyError("COPY quote and escape must be single one-byte characters", "0A000")
        if options.quote == options.delimiter:
            raise CopyError("COPY delimiter and quote must be different", "0A000")
    encoding = _ENCODINGS.get(options.encoding.lower().replace("_", ""), None) \
        or _ENCODINGS.get(options.encoding.lower())
    if encoding is None:
        raise CopyError(f'COPY encoding "{options.encoding}" is not supported (UTF8 or LATIN1)', "0A000")
    options.encoding = encoding
    return options


def literal(text: str) -> str:
    """A SQL string literal (the COPY options and the spool's path go into DuckDB SQL as literals)."""
    return "'" + text.replace("'", "''") + "'"
