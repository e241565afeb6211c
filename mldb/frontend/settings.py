"""Grammar of mldb's own session settings: ``SET`` / ``RESET`` / ``SHOW`` of a name starting ``mldb_``.

    SET mldb_executor = 'ray';          -- also SET SESSION ..., SET ... TO ..., SET ... = DEFAULT
    RESET mldb_executor;
    SHOW mldb_executor;

Only the names in ``NAMES`` trigger parsing (``TRIGGERS``); any other SET / RESET / SHOW is
left to sqlglot's grammar and DuckDB, as before. The steps that run these statements are in
``mldb.scaleout.settings``.
"""

from __future__ import annotations

import json

from sqlglot import exp
from sqlglot.tokens import TokenType

from mldb import errors
from mldb.frontend.expressions import MldbStatement, value_of

# mldb's settings (the scale-out executor's); mldb.scaleout.settings.SCHEMA gives their values
NAMES = ("mldb_executor", "mldb_ray_workers", "mldb_ray_cpus_per_worker", "mldb_ray_batch_rows",
         "mldb_ray_retries", "mldb_ray_preserve_order")


class SetSetting(MldbStatement):
    """``this``: the setting's name (lower case); ``value``: its Python value, ``None`` for DEFAULT."""

    arg_types = {"this": True, "value": False}


class ResetSetting(MldbStatement):
    """``this``: the setting's name (lower case)."""


class ShowSetting(MldbStatement):
    """``this``: the setting's name (lower case)."""


def _at_end(parser) -> bool:
    return parser._curr is None or parser._curr.token_type in (TokenType.SENTINEL, TokenType.SEMICOLON)


def _name(text: str) -> str | None:
    name = text.strip().strip('"').lower()
    return name if name in NAMES else None


def _parse_set(parser) -> exp.Expression | None:
    if not parser._match(TokenType.SET):
        return None
    scope = parser._curr.text.upper() if parser._curr else ""
    if scope in ("SESSION", "LOCAL", "GLOBAL") and parser._next and _name(parser._next.text):
        if scope != "SESSION":
            raise errors.NotSupportedError(f"mldb's settings are per session: SET {scope} is not supported; "
                                           "use SET or SET SESSION", sqlstate="0A000")
        parser._advance()
    name = _name(parser._curr.text) if parser._curr else None
    if name is None:
        return None
    parser._advance()
    if not (parser._match(TokenType.EQ) or parser._match_text_seq("TO")):
        parser.raise_error(f"Expecting SET {name} = value")
    if parser._match(TokenType.DEFAULT) or parser._match_text_seq("DEFAULT"):
        return SetSetting(this=name, value=None)
    node = parser._parse_unary()
    if node is None or not _at_end(parser):
        parser.raise_error(f"Expecting one value: SET {name} = value")
    return SetSetting(this=name, value=_value(node, name))


def _value(node: exp.Expression, name: str):
    value = value_of(node, f"SET {name}: values")
    return value if isinstance(value, (str, int, float, bool)) else _bad_value(name, node)


def _bad_value(name: str, node: exp.Expression):
    raise errors.ProgrammingError(f"SET {name}: expected one value; found {node.sql()}", sqlstate="22023")


def _parse_reset(parser) -> exp.Expression | None:
    """sqlglot reads RESET as a command: what follows it is one string token."""
    if not parser._curr or parser._curr.text.upper() != "RESET" or parser._next is None:
        return None
    words = parser._next.text.split()
    if words and words[0].upper() == "SESSION":
        words = words[1:]
    name = _name(words[0]) if len(words) == 1 else None
    if name is None:
        return None
    parser._advance(2)
    return ResetSetting(this=name) if _at_end(parser) else None


def _parse_show(parser) -> exp.Expression | None:
    if not parser._match(TokenType.SHOW):
        return None
    name = _name(parser._curr.text) if parser._curr else None
    if name is None:
        return None
    parser._advance()
    return ShowSetting(this=name) if _at_end(parser) else None


def _set_sql(generator, node: SetSetting) -> str:
    value = node.args.get("value")
    shown = "DEFAULT" if value is None else exp.convert(value).sql(dialect="duckdb")
    return f"SET {node.name} = {shown}"


STATEMENTS = {"SET": (_parse_set,), "RESET": (_parse_reset,), "SHOW": (_parse_show,)}

TRANSFORMS = {
    SetSetting: _set_sql,
    ResetSetting: lambda generator, node: f"RESET {node.name}",
    ShowSetting: lambda generator, node: f"SHOW {node.name}",
}

TRIGGERS = {name.upper() for name in NAMES}


# -- a statement's own settings: SELECT ... WITH (executor = 'ray', workers = 2) ----------------------
# the keys a statement may give, and the session setting each one overrides for that statement
STATEMENT_KEYS = {"executor": "mldb_executor", "workers": "mldb_ray_workers",
                  "cpus_per_worker": "mldb_ray_cpus_per_worker", "batch_rows": "mldb_ray_batch_rows",
                  "retries": "mldb_ray_retries", "preserve_order": "mldb_ray_preserve_order"}
_QUERY_WORDS = ("SELECT", "FROM", "WITH", "COPY", "EXPLAIN")


def statement_options(statement):
    """``statement`` without a trailing ``WITH (key = value, ...)``, and those settings by session name.

    Read on tokens: the list must close the statement, at paren depth 0, after a query or a COPY.
    A COPY may end with DuckDB's own ``WITH (FORMAT ...)``: there the list is mldb's only when every
    key is one of ``STATEMENT_KEYS``; after a query any other key is refused (22023)."""
    tokens = statement.tokens
    if statement.first_word not in _QUERY_WORDS or len(tokens) < 4 or tokens[-1].token_type != TokenType.R_PAREN:
        return statement, {}
    opening = _opening_paren(tokens)
    if opening is None or opening < 2 or tokens[opening - 1].token_type != TokenType.WITH:
        return statement, {}
    pairs = _pairs(tokens[opening + 1 : -1])
    inner_first = _inner_first_word(statement)
    if pairs is None or (inner_first == "COPY" and not set(pairs) <= set(STATEMENT_KEYS)):
        return statement, {}
    unknown = sorted(set(pairs) - set(STATEMENT_KEYS))
    if unknown:
        raise errors.ProgrammingError(f"WITH after a query: unknown option{'s' * (len(unknown) > 1)} "
                                      f"{', '.join(unknown)}; known: {', '.join(STATEMENT_KEYS)}", sqlstate="22023")
    from mldb.frontend.dialect import split_statements  # (the dialect loads this grammar)

    cut = tokens[opening - 1].start - statement.offset
    shortened = split_statements(statement.text[:cut])
    if not shortened:
        return statement, {}
    return shortened[0], {STATEMENT_KEYS[key]: value for key, value in pairs.items()}


def _opening_paren(tokens) -> int | None:
    """The index of the ``(`` matching the last token's ``)``."""
    depth = 0
    for index in range(len(tokens) - 1, -1, -1):
        kind = tokens[index].token_type
        depth += (kind == TokenType.R_PAREN) - (kind == TokenType.L_PAREN)
        if depth == 0:
            return index
    return None


def _pairs(tokens) -> dict | None:
    """``key = value, ...`` as a dict (None: not such a list, e.g. a CTE's body)."""
    pairs, index = {}, 0
    while index < len(tokens):
        if index + 2 >= len(tokens) or tokens[index + 1].token_type != TokenType.EQ:
            return None
        key = tokens[index].text.strip('"').lower()
        value, index = _token_value(tokens, index + 2)
        if value is _NOT_A_VALUE or key in pairs:
            return None
        if index < len(tokens) and tokens[index].token_type != TokenType.COMMA:
            return None
        pairs[key] = value
        index += 1
    return pairs


_NOT_A_VALUE = object()
_WORDS = {TokenType.TRUE: True, TokenType.FALSE: False, TokenType.NULL: None}


def _token_value(tokens, index: int):
    """The literal at ``tokens[index]`` (a string, a number, -number, TRUE/FALSE/NULL, a bare word)
    and the index after it."""
    token = tokens[index]
    if token.token_type == TokenType.DASH and index + 1 < len(tokens):
        value, after = _token_value(tokens, index + 1)
        return (-value if isinstance(value, (int, float)) and not isinstance(value, bool) else _NOT_A_VALUE), after
    if token.token_type == TokenType.STRING:
        return token.text, index + 1
    if token.token_type == TokenType.NUMBER:
        return json.loads(token.text), index + 1
    if token.token_type in _WORDS:
        return _WORDS[token.token_type], index + 1
    if token.token_type in (TokenType.VAR, TokenType.IDENTIFIER):
        return token.text, index + 1
    return _NOT_A_VALUE, index + 1


def _inner_first_word(statement) -> str:
    """The first word of the statement EXPLAIN [ANALYZE] explains (the statement's own otherwise)."""
    words = statement.text.split(None, 3)
    if statement.first_word != "EXPLAIN":
        return statement.first_word
    rest = [word.upper() for word in words[1:]]
    return rest[1] if rest[:1] == ["ANALYZE"] and len(rest) > 1 else (rest[0] if rest else "")
