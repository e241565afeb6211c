"""The mldb sqlglot dialect (DuckDB plus mldb's statements and functions) and the splitter.

Splitting and parsing are pure functions of the text, so both are kept per text (the
statement-shape cache): a client that sends the same statement again (a loop of
``execute(sql, params)``, a prepared statement of the wire server) is neither tokenized
nor parsed again. A kept ``Statement`` is shared: its tokens are read-only, and ``parse``
hands out a copy of its tree (rewrite rules change trees in place).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from mldb import errors
from mldb.frontend.expressions import MldbFunction
from mldb.frontend.grammar import load_grammars

_GRAMMARS = load_grammars()


def _merged(attribute: str) -> dict:
    merged: dict = {}
    for module in _GRAMMARS:
        merged.update(getattr(module, attribute, {}))
    return merged


def _merged_statements() -> dict[str, tuple]:
    merged: dict[str, tuple] = {}
    for module in _GRAMMARS:
        for word, rules in getattr(module, "STATEMENTS", {}).items():
            merged[word] = merged.get(word, ()) + tuple(rules)
    return merged


TRIGGERS: frozenset[str] = frozenset(
    word.upper() for module in _GRAMMARS for word in getattr(module, "TRIGGERS", ())
)
STATEMENT_RULES = _merged_statements()
FUNCTION_NAMES: frozenset[str] = frozenset(_merged("FUNCTIONS"))  # PREDICT, EMBED, ...: mldb's functions
SPAN = "mldb_span"  # meta key of a SELECT projection: (first, last) character of its text in the statement


class MLDB(DuckDB):
    class Tokenizer(DuckDB.Tokenizer):
        # DuckDB has no ``?::`` operator: ``?::FLOAT[3]`` is a parameter cast (sqlglot reads it as QDCOLON)
        KEYWORDS = {word: kind for word, kind in DuckDB.Tokenizer.KEYWORDS.items() if word != "?::"}

    class Parser(DuckDB.Parser):
        FUNCTIONS = {**DuckDB.Parser.FUNCTIONS, **_merged("FUNCTIONS")}
        FUNCTION_PARSERS = {**DuckDB.Parser.FUNCTION_PARSERS, **_merged("FUNCTION_PARSERS")}

        def _parse_statement(self) -> exp.Expression | None:
            rules = STATEMENT_RULES.get(self._curr.text.upper(), ()) if self._curr else ()
            for rule in rules:
                start = self._index
                node = rule(self)
                if node is not None:
                    return node
                self._retreat(start)
            return super()._parse_statement()

        def validate_expression(self, expression, args=None):
            """A call of one of mldb's functions without its arguments says how it is called
            (sqlglot would say "Required keyword: 'this' missing for Embed"; DuckDB, given the
            statement, "Did you mean product?")."""
            if isinstance(expression, MldbFunction) and expression.error_messages(args):
                name = expression.sql_name()
                found = f"{len(args)} argument{'s' if len(args) != 1 else ''}" if args else "no arguments"
                try:
                    self.raise_error(f"{name} is called as {expression.usage or name + '(...)'}; found {found}")
                except ParseError as error:
                    raise FunctionCallError(str(error), error.errors) from None
            return super().validate_expression(expression, args)

        def _parse_projections(self):
            """Each projection remembers where its text is (``SPAN``), so a rewritten one
            can keep the column name DuckDB gives the text as the user wrote it."""
            return self._parse_csv(self._parse_spanned_projection), None

        def _parse_spanned_projection(self) -> exp.Expression | None:
            first = self._curr
            node = self._parse_expression()
            if node is not None and first is not None and self._prev is not None:
                node.meta[SPAN] = (first.start, self._prev.end)
            return node

    class Generator(DuckDB.Generator):
        TRANSFORMS = {**DuckDB.Generator.TRANSFORMS, **_merged("TRANSFORMS")}  # mldb's statements written back


class FunctionCallError(ParseError):
    """A call of one of mldb's functions that cannot be right: a syntax error whatever the statement."""


_DIALECT = MLDB()


@dataclass
class Statement:
    """One statement of a SQL string: its original text and its tokens."""

    text: str
    tokens: list[Token]  # read-only: a statement of the shape cache is shared by every caller
    offset: int = 0  # where ``text`` starts in the string it was split from (token positions count from there)
    tree: object = field(default=None, repr=False, compare=False)  # ``parse``'s, once parsed (read-only)

    def rest(self) -> "Statement | None":
        """The statement after its first word, re-tokenized (sqlglot reads e.g. EXPLAIN's
        remainder as one raw token). ``None`` when nothing follows."""
        first_word = self.tokens[0]
        start = first_word.start + len(first_word.text)  # (a command token's .end is not reliable)
        parts = split_statements(self.text[start - self.offset :])
        if not parts:
            return None
        inner = parts[0]  # (positions count from the whole string again: shifted copies, the cache's stay)
        return Statement(inner.text, [_shifted(token, start) for token in inner.tokens], start + inner.offset)

    @functools.cached_property
    def words(self) -> set[str]:
        return {token.text.upper() for token in self.tokens}

    @functools.cached_property
    def first_word(self) -> str:
        return self.tokens[0].text.upper() if self.tokens else ""

    @functools.cached_property
    def has_mldb(self) -> bool:
        return not TRIGGERS.isdisjoint(self.words)

    @functools.cached_property
    def placeholders(self) -> int:
        return sum(t.token_type in (TokenType.PLACEHOLDER, TokenType.PARAMETER) for t in self.tokens)


_CACHED_BELOW = 2048  # characters: longer texts (bulk INSERTs, literal vectors) rarely come twice; their trees are big
_SHAPES = 1024  # texts kept by the shape cache (with their trees: a few MB in all)


def _shifted(token: Token, by: int) -> Token:
    return Token(token.token_type, token.text, token.line, token.col, token.start + by, token.end + by,
                 token.comments)


def split_statements(sql: str) -> list[Statement] | None:
    """Split on top-level semicolons using sqlglot's tokenizer (strings and comments stay whole).

    Returns ``None`` when the tokenizer cannot read the text; the caller then hands the
    whole string to DuckDB unchanged. A text seen before is not tokenized again (its
    statements are shared: read-only).
    """
    if len(sql) >= _CACHED_BELOW:
        return _split(sql)
    statements = _split_kept(sql)
    return None if statements is None else list(statements)


@functools.lru_cache(maxsize=_SHAPES)
def _split_kept(sql: str) -> tuple[Statement, ...] | None:
    statements = _split(sql)
    return None if statements is None else tuple(statements)


def _split(sql: str) -> list[Statement] | None:
    try:
        tokens = _DIALECT.tokenize(sql)
    except TokenError:
        return None
    statements, current, start = [], [], 0
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            _append(statements, sql, start, token.end, current)
            current, start = [], token.end + 1
        else:
            current.append(token)
    _append(statements, sql, start, len(sql), current)
    return statements


def _append(statements: list[Statement], sql: str, start: int, end: int, tokens: list[Token]) -> None:
    """Add ``sql[start:end]`` (without its semicolon and surrounding blanks) if it holds tokens."""
    if not tokens:
        return
    text = sql[start:end]
    offset = start + len(text) - len(text.lstrip())
    statements.append(Statement(text.strip(), tokens, offset))


def parse(statement: Statement) -> exp.Expression | None:
    """Parse one statement with the mldb dialect; ``None`` when sqlglot cannot.

    An mldb statement that fails to parse is a syntax error (raised with its position);
    anything else that sqlglot cannot read is left for DuckDB to judge. The tree is kept
    on the statement (a statement of the shape cache is parsed once); each call gets a copy.
    """
    if statement.tree is None:
        statement.tree = _parse(statement) or _UNPARSED
    return None if statement.tree is _UNPARSED else statement.tree.copy()


_UNPARSED = object()  # ``Statement.tree`` of a statement sqlglot cannot read (DuckDB judges it)


def _parse(statement: Statement) -> exp.Expression | None:
    try:
        trees = _DIALECT.parser().parse(statement.tokens, statement.text)
    except ParseError as error:
        if isinstance(error, FunctionCallError) or (statement.first_word in STATEMENT_RULES
                                                    and _is_mldb_statement(statement)):
            raise _syntax_error(error, statement) from None
        return None
    tree = trees[0] if trees else None
    if tree is not None:
        _source_texts(tree, statement)
    return tree


def _source_texts(tree: exp.Expression, statement: Statement) -> None:
    """Turn each projection's ``SPAN`` (positions in the whole string) into its text; a ``?``
    becomes ``$n``, its number in the statement, as DuckDB names it."""
    marks = [t.start for t in statement.tokens if t.token_type == TokenType.PLACEHOLDER and t.text == "?"]
    for node in tree.walk():
        span = node.meta.get(SPAN)
        if isinstance(span, tuple):
            first, last = span
            text = statement.text[first - statement.offset : last + 1 - statement.offset]
            for number, mark in reversed(list(enumerate(marks, start=1))):
                if first <= mark <= last:
                    text = f"{text[: mark - first]}${number}{text[mark - first + 1 :]}"
            node.meta[SPAN] = text


def _is_mldb_statement(statement: Statement) -> bool:
    words = [t.text.upper() for t in statement.tokens[:6]]
    return bool(TRIGGERS.intersection(words))


def _syntax_error(error: ParseError, statement: Statement) -> errors.ProgrammingError:
    """sqlglot's error as mldb's: the 1-based ``position`` of the offending token in the
    statement and DuckDB's ``LINE n:`` excerpt pointing at it."""
    detail = error.errors[0] if error.errors else {}
    message = detail.get("description") or str(error)
    token = _token_ending_at(statement, detail.get("line"), detail.get("col"))
    if token is None:
        return errors.ProgrammingError(f"syntax error: {message}", sqlstate="42601")
    start = token.start - statement.offset
    line = statement.text.count("\n", 0, start) + 1
    column = start - (statement.text.rfind("\n", 0, start) + 1) + 1
    context = errors.excerpt(statement.text, start, token.end + 1 - token.start)
    return errors.ProgrammingError(f"syntax error at line {line}, column {column}: {message}{context}",
                                   sqlstate="42601", position=start + 1)


def _token_ending_at(statement: Statement, line: int | None, column: int | None) -> Token | None:
    """The token sqlglot's error names by (line, column of its last character)."""
    return next((token for token in statement.tokens if (token.line, token.col) == (line, column)), None)
