"""Grammar of mldb's own session settings: ``SET`` / ``RESET`` / ``SHOW`` of a name starting ``mldb_``.

    SET mldb_executor = 'ray';          -- also SET SESSION ..., SET ... TO ..., SET ... = DEFAULT
    RESET mldb_executor;
    SHOW mldb_executor;

Only the names in ``NAMES`` trigger parsing (``TRIGGERS``); any other SET / RESET / SHOW is
left to sqlglot's grammar and DuckDB, as before. The steps that run these statements are in
``mldb.scaleout.settings``.
"""

from __future__ import annotations

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
