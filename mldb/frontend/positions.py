"""Errors in the SQL the user wrote.

DuckDB reports an error on the SQL it ran: for a rewritten statement that is sqlglot's
text with ``mldb_predict_*`` / ``mldb_embed_*`` calls where the user wrote ``PREDICT`` or
``EMBED``. ``as_written`` points the error back at the statement as written:

- the place DuckDB's ``LINE n:`` excerpt points at is mapped token by token (the two
  token streams are aligned with ``difflib``; what mldb replaced maps to the whole
  ``PREDICT(...)`` / ``EMBED(...)`` call) and the excerpt is drawn again, DuckDB's way,
  from the user's text; ``position`` is a 1-based offset into that text;
- the internal calls named in the message become the calls the user wrote.
"""

from __future__ import annotations

import difflib
import re

from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

from mldb import errors
from mldb.frontend.dialect import _DIALECT, FUNCTION_NAMES, Statement

_INTERNAL_CALL = re.compile(r"\bmldb_(predict_proba|predict|embed|evaluate)\w*(\()?", re.IGNORECASE)
_KIND = {"predict_proba": ("PREDICT_PROBA",), "predict": ("PREDICT", "EVALUATE"), "embed": ("EMBED",),
         "evaluate": ("EVALUATE",)}
_RELATED = 0.5  # below this share of common tokens, the SQL DuckDB ran is not this statement's rewrite


def as_written(error: errors.Error, statement: Statement) -> errors.Error:
    """``error`` as the user should see it for ``statement`` (see the module docstring)."""
    query, origin = error.query, error.origin
    if _INTERNAL_CALL.search(str(error)) is None and origin is None and query in (None, statement.text):
        if error.span is not None and error.position is None:  # DuckDB ran what the user wrote
            error.position = error.span[0] + 1
        return error
    user = _tokens(statement.text)
    calls = _calls(user)
    message = _named_as_written(error.summary, statement.text, user, calls)
    if query is None:  # mldb's own error: a rule may have said which call it was about
        call = next((c for c in calls if origin is not None and user[c[0]].start == origin - statement.offset), None)
        span = (user[call[0]].start, user[call[1]].end + 1 - user[call[0]].start) if call else None
        return errors.with_excerpt(error, message, statement.text, span, position=error.position)
    span, message = _place(error, message, _tokens(query), user, calls, statement.text)
    return errors.with_excerpt(error, message, statement.text, span)


def _place(error: errors.Error, message: str, ran: list[Token], user: list[Token], calls, text: str):
    """(the user's (offset, length) or None, the message) for a DuckDB error on the SQL it ran."""
    if error.span is not None:
        return _mapped(error.span, ran, user, calls), message
    span = _searched(message, user)  # DuckDB gave no place (a relation's bind error): the name it names
    if span is None and (hidden := _hidden_feature(message, ran, user)) is not None:
        name, place = hidden
        span = _mapped(place, ran, user, calls)  # a column only mldb's call reads: point at the call
        if span is not None:
            message = f'{message.rstrip()}\n("{name}" is a feature that {text[span[0]: span[0] + span[1]]} reads)'
    return span, message


_QUOTED_COLUMN = re.compile(r'column "([^"]+)"')


def _hidden_feature(message: str, ran: list[Token], user: list[Token]) -> tuple[str, tuple[int, int]] | None:
    """A column the message names that the user never wrote but a rewritten call reads
    (a feature PREDICT passes by name): its name and (offset, length) in the SQL DuckDB ran."""
    found = _QUOTED_COLUMN.search(message)
    if found is None or any(token.text.lower() == found.group(1).lower() for token in user):
        return None
    for index, token in enumerate(ran):
        if token.text == found.group(1) and _internal_call(ran, index) is not None:
            return token.text, (token.start, token.end + 1 - token.start)
    return None


def _tokens(text: str, shift: int = 0) -> list[Token]:
    """The tokens of ``text``; the tail of a command (EXPLAIN's statement) is tokenized too."""
    try:
        tokens = _DIALECT.tokenize(text)
    except TokenError:
        return []
    for token in tokens:
        token.start, token.end = token.start + shift, token.end + shift
    if len(tokens) > 1 and tokens[0].token_type == TokenType.COMMAND:
        start = tokens[0].end + 1 - shift  # (the tail's own token has no usable start)
        tokens = tokens[:1] + _tokens(text[start:], shift + start)
    return tokens


def _calls(tokens: list[Token]) -> list[tuple[int, int]]:
    """Token index ranges ``[name, closing paren]`` of mldb's function calls in the user's text."""
    return [(index, end) for index, token in enumerate(tokens) if token.text.upper() in FUNCTION_NAMES
            for end in _calls_at(tokens, index)]


def _mapped(span: tuple[int, int], ran: list[Token], user: list[Token],
            calls: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The user's (offset, length) for DuckDB's (offset, length) in the SQL it ran."""
    if not ran or not user:
        return None
    matcher = difflib.SequenceMatcher(None, [_key(t) for t in ran], [_key(t) for t in user], autojunk=False)
    offset, length = span
    first, last = _token_at(ran, offset), _token_at(ran, offset + length - 1)
    inside = _internal_call(ran, first)
    if inside is not None:  # in a call mldb wrote: the call the user wrote
        region = _user_region(matcher, inside)
        call = next((c for c in calls if region[0] <= c[0] < max(region[1], region[0] + 1)), None)
        if call is None:
            return None
        return user[call[0]].start, user[call[1]].end + 1 - user[call[0]].start
    if matcher.ratio() < _RELATED and not _equal(matcher, first):
        return None  # SQL mldb ran for the statement (a step's query): nothing of it to point at
    start, stop = _user_region(matcher, first), _user_region(matcher, last)
    begin, end = start[0], max(stop[1] - 1, start[0])
    begin, end = min(begin, len(user) - 1), min(end, len(user) - 1)
    return user[begin].start, user[end].end + 1 - user[begin].start


_NAMED = (  # DuckDB's messages that name what is missing; DuckDB points at that name (or call)
    (re.compile(r'Table "([^"]+)" does not have a column named "([^"]+)"'), "qualified"),
    (re.compile(r'Referenced column "([^"]+)" not found'), "name"),
    (re.compile(r"(?:Table|Type) with name (\S+) does not exist"), "name"),
    (re.compile(r"Scalar Function with name (\S+) does not exist"), "call"),
)


def _searched(message: str, user: list[Token]) -> tuple[int, int] | None:
    """Where DuckDB would point for a message naming a missing column, table, type or function:
    the first place the user's text has that name."""
    for pattern, kind in _NAMED:
        found = pattern.search(message)
        if found is None:
            continue
        name = found.group(found.lastindex).lower()
        for index, token in enumerate(user):
            if token.text.lower() != name or token.token_type == TokenType.STRING:
                continue
            first, last = index, index
            if kind == "qualified":
                if index < 2 or user[index - 1].token_type != TokenType.DOT or \
                        user[index - 2].text.lower() != found.group(1).lower():
                    continue
                first = index - 2
            elif kind == "call":
                call = next((c for c in _calls_at(user, index)), None)
                if call is None:
                    continue
                last = call
            return user[first].start, user[last].end + 1 - user[first].start
        return None
    return None


def _calls_at(tokens: list[Token], index: int):
    """The closing parenthesis of a call whose name is token ``index``."""
    if index + 1 < len(tokens) and tokens[index + 1].token_type == TokenType.L_PAREN:
        depth = 0
        for end in range(index + 1, len(tokens)):
            depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(tokens[end].token_type, 0)
            if depth == 0:
                yield end
                return


def _key(token: Token) -> tuple[str, str]:
    return ("'" if token.token_type == TokenType.STRING else "", token.text.upper())


def _token_at(tokens: list[Token], offset: int) -> int:
    return next((i for i, token in enumerate(tokens) if token.end >= offset), len(tokens) - 1)


def _internal_call(tokens: list[Token], index: int) -> int | None:
    """The name token of the ``mldb_*(...)`` call holding token ``index``, if any."""
    depth = 0
    for i in range(index, -1, -1):
        kind = tokens[i].token_type
        if kind == TokenType.R_PAREN and i != index:
            depth += 1
        elif kind == TokenType.L_PAREN and i != index:
            if depth == 0 and i > 0 and tokens[i - 1].text.lower().startswith("mldb_"):
                return i - 1
            depth = max(depth - 1, 0)
        elif i == index and tokens[i].text.lower().startswith("mldb_"):
            return i
    return None


def _user_region(matcher: difflib.SequenceMatcher, index: int) -> tuple[int, int]:
    """The user's token range that token ``index`` of the SQL DuckDB ran corresponds to."""
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if i1 <= index < i2:
            return (j1 + index - i1, j1 + index - i1 + 1) if tag == "equal" else (j1, max(j2, j1 + 1))
    return (len(matcher.b) - 1, len(matcher.b))


def _equal(matcher: difflib.SequenceMatcher, index: int) -> bool:
    return any(tag == "equal" and i1 <= index < i2 for tag, i1, i2, _, _ in matcher.get_opcodes())


def _named_as_written(message: str, text: str, tokens: list[Token], calls: list[tuple[int, int]]) -> str:
    """``mldb_predict_boolean('m', 17, x)`` in a message -> ``PREDICT(m)`` as the user wrote it
    (a bare ``mldb_predict_boolean`` -> ``PREDICT``)."""
    written = [(tokens[a].text, text[tokens[a].start: tokens[b].end + 1]) for a, b in calls]
    pieces, at = [], 0
    for found in _INTERNAL_CALL.finditer(message):
        if found.start() < at:
            continue
        names = _KIND[found.group(1).lower()]
        name, call = next(((name, call) for name, call in written if name.upper() in names),
                          (names[0], f"{names[0]}(...)"))
        end = _closing(message, found.end()) if found.group(2) else found.end()
        pieces += [message[at: found.start()], call if found.group(2) else name]
        at = end
    return "".join(pieces) + message[at:]


def _closing(message: str, start: int) -> int:
    """The index after the parenthesis that closes the one before ``start`` (quotes respected)."""
    depth, quote = 1, None
    for i in range(start, len(message)):
        char = message[i]
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(message)
