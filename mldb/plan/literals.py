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
    """(text, params, marks) with each query-vector literal a parameter, or None when there is
    none (or the statement's own parameters are of a kind this does not combine with). ``marks``
    are the names of the parameters made from literals (``?`` are written ``$1``, ``$2`` ... in
    text order, so every parameter has a name): ``faithful`` checks the plan used them only as
    the query vector of a FAISS search."""
    tokens = statement.tokens
    found = list(_vector_literals(tokens))
    if not found:
        return None
    style = _style(tokens, params)
    if style is None:
        return None
    numbered = max((int(tokens[i + 1].text) for i, t in enumerate(tokens[:-1])
                    if t.token_type == TokenType.PARAMETER and tokens[i + 1].text.isdigit()), default=0)
    spans = [(tokens[first].start, tokens[last].end + 1, vector) for first, last, vector in found]
    if style == "?":  # the user's ``?`` become ``$n`` too, numbered with the literals in text order
        spans += [(t.start, t.end + 1, None) for t in tokens if t.token_type == TokenType.PLACEHOLDER]
        spans.sort(key=lambda span: span[0])
    text, at, pieces, values, marks = statement.text, 0, [], [], set()
    for number, (start, end, vector) in enumerate(spans):
        if style == "?":
            marker = f"${number + 1}"
        elif style == "$":
            marker = f"${numbered + len(values) + 1}"
        else:
            marker = f"${_NAME.format(len(values))}"
        pieces += [text[at:start - statement.offset], marker]
        at = end - statement.offset
        if vector is not None:
            values.append((start, vector))
            marks.add(marker[1:])
    text = "".join(pieces) + text[at:]
    return text, _merged(style, tokens, params, values), marks


def faithful(tree, marks: set[str], before: bool) -> bool:
    """Whether the plan of the parameterized text is the written text's: before the rewrite, no
    projection without an alias holds a literal made a parameter (its column name is the text
    as written); after it, each is left only in a hole a FAISS search fills (it was the query
    vector, so DuckDB never sees its type: a list literal is DECIMAL[], a parameter DOUBLE[])."""
    from sqlglot import exp

    from mldb.plan.template import Hole

    def marked(node) -> bool:
        return any(p.this in marks and (before or p.find_ancestor(Hole) is None)
                   for p in node.find_all(exp.Placeholder))

    if not before:
        return not marked(tree)
    return not any(not isinstance(projection, exp.Alias) and marked(projection)
                   for select in tree.find_all(exp.Select) for projection in select.expressions)


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
