"""A query vector written as a list literal becomes a parameter, so the plan is cached.

    SELECT id FROM docs ORDER BY array_cosine_distance(v, [0.12, -0.5, ...]::FLOAT[384]) LIMIT 10
 -> SELECT id FROM docs ORDER BY array_cosine_distance(v, ?::FLOAT[384]) LIMIT 10   with [0.12, -0.5, ...]

Each query of an application that writes its vector into the text is a new text: without
this, every one is tokenized, parsed and rewritten by sqlglot (a list of 384 numbers is
about 800 nodes). Only a list of numbers written directly as an argument of a vector
distance function or of VECTOR_SEARCH is taken, read from the statement's tokens.
"""

from __future__ import annotations

from sqlglot.tokens import TokenType

from mldb.frontend import Statement, split_statements

FUNCTIONS = frozenset({"ARRAY_DISTANCE", "ARRAY_COSINE_DISTANCE", "ARRAY_NEGATIVE_INNER_PRODUCT", "LIST_DISTANCE",
                       "LIST_COSINE_DISTANCE", "LIST_NEGATIVE_INNER_PRODUCT", "VECTOR_SEARCH"})
_SHORTEST = 2  # numbers: a shorter list is left as written
_NAME = "mldb_vector_{}"


def parameterized(statement: Statement, params):
    """(text, params) with each query-vector literal a parameter, or None when there is none
    (or the statement's own parameters are of a kind this does not combine with)."""
    tokens = statement.tokens
    found = list(_vector_literals(tokens))
    if not found:
        return None
    style = _style(tokens, params)
    if style is None:
        return None
    text, at, pieces, values = statement.text, 0, [], []
    numbered = max((int(tokens[i + 1].text) for i, t in enumerate(tokens[:-1])
                    if t.token_type == TokenType.PARAMETER and tokens[i + 1].text.isdigit()), default=0)
    for number, (first, last, vector) in enumerate(found):
        start, end = tokens[first].start - statement.offset, tokens[last].end + 1 - statement.offset
        marker = {"?": "?", "$": f"${numbered + number + 1}", "name": f"${_NAME.format(number)}"}[style]
        pieces += [text[at:start], marker]
        at = end
        values.append((tokens[first].start, vector))
    text = "".join(pieces) + text[at:]
    return text, _merged(style, tokens, params, values)


def statement_of(text: str) -> Statement | None:
    parts = split_statements(text)
    return parts[0] if parts and len(parts) == 1 else None


def _vector_literals(tokens):
    """(first token, last token, values) of each list of numbers that is an argument of FUNCTIONS."""
    calls = []  # per open parenthesis: the function name before it (upper case) or None
    i = 0
    while i < len(tokens):
        kind = tokens[i].token_type
        if kind == TokenType.L_PAREN:
            calls.append(tokens[i - 1].text.upper() if i else None)
        elif kind == TokenType.R_PAREN and calls:
            calls.pop()
        elif kind == TokenType.L_BRACKET and calls and calls[-1] in FUNCTIONS \
                and tokens[i - 1].token_type in (TokenType.COMMA, TokenType.L_PAREN):
            read = _numbers(tokens, i)
            if read is not None:
                last, vector = read
                if len(vector) >= _SHORTEST:
                    yield i, last, vector
                    i = last
        i += 1


def _numbers(tokens, first):
    """(index of the closing bracket, values) when tokens[first] opens a list of numbers."""
    values, i = [], first + 1
    while i < len(tokens):
        sign = 1.0
        if tokens[i].token_type == TokenType.DASH:
            sign, i = -1.0, i + 1
        if i >= len(tokens) or tokens[i].token_type != TokenType.NUMBER:
            return None
        values.append(sign * float(tokens[i].text))
        i += 1
        if i < len(tokens) and tokens[i].token_type == TokenType.R_BRACKET:
            return i, values
        if i >= len(tokens) or tokens[i].token_type != TokenType.COMMA:
            return None
        i += 1
    return None


def _style(tokens, params) -> str | None:
    """How the statement's parameters are written: "?" (or none), "$" ($1, $2) or "name" ($q)."""
    if tokens[-1].token_type == TokenType.PARAMETER:
        return None  # (a lone ``$`` last: DuckDB judges it as written)
    marks = {("?" if t.token_type == TokenType.PLACEHOLDER else "$" if tokens[i + 1].text.isdigit() else "name")
             for i, t in enumerate(tokens) if t.token_type in (TokenType.PLACEHOLDER, TokenType.PARAMETER)}
    if len(marks) > 1:
        return None
    style = next(iter(marks), "?")
    if style == "name" and not isinstance(params, dict) or style != "name" and isinstance(params, dict):
        return None
    if style == "?" and len(params or []) != sum(t.token_type == TokenType.PLACEHOLDER for t in tokens):
        return None  # (DuckDB says what is wrong with the parameters as written)
    return style


def _merged(style: str, tokens, params, values):
    if style == "name":
        return {**params, **{_NAME.format(n): vector for n, (_, vector) in enumerate(values)}}
    if style == "$":
        return [*(params or []), *(vector for _, vector in values)]
    marks = [t.start for t in tokens if t.token_type == TokenType.PLACEHOLDER]  # ``?``: in text order
    slots = sorted([(start, False, value) for start, value in zip(marks, params or [])]
                   + [(start, True, vector) for start, vector in values], key=lambda slot: slot[0])
    return [value for _, _, value in slots]
