"""A planned statement as SQL text with holes that its operators fill in when it runs.

Rules put a ``Hole`` where the statement needs something only known when it runs (the
keys FAISS found, an embedded query vector, the statement's id). A hole holds the SQL
it stands for until an operator fills it (``default``: for a top-k search, DuckDB's exact
search), and rules that run later still see and rewrite that default. ``render`` turns
the tree into text once; each run fills the holes as strings and renumbers the
parameters left (``Filling.bind``), so a cached plan runs with no sqlglot at all.

    SELECT id FROM docs WHERE <filter|TRUE> ORDER BY <rank|array_cosine_distance(v, $1)> LIMIT 3
    -> SELECT id FROM docs WHERE "docs"."id" IN (17, 4, 80) ORDER BY list_position([17, 4, 80], "docs"."id") LIMIT 3
"""

from __future__ import annotations

import re
import secrets

from sqlglot import exp

from mldb.frontend.dialect import MLDB

_TOKEN = secrets.token_hex(6)  # marks no user text can hold by chance
_OPEN, _CLOSE, _PARAMETER = f"\x02h{_TOKEN}", f"\x03h{_TOKEN}", f"\x02p{_TOKEN}_"
_PARAMETERS = re.compile(re.escape(_PARAMETER) + r"([^\x03]*)\x03")
EXECUTION = "execution"  # the hole every plan has: the running statement's id


class Hole(exp.Expression):
    """``this``: the hole's name; ``expression``: the SQL it stands for until it is filled."""

    arg_types = {"this": True, "expression": False}


def hole(name: str, default: exp.Expression | None = None) -> Hole:
    return Hole(this=name, expression=default)


class _Generator(MLDB.Generator):
    def hole_sql(self, expression: Hole) -> str:
        default = expression.args.get("expression")
        inner = self.sql(default) if default is not None else ""
        return f"{_OPEN}{expression.name}\x03{inner}{_CLOSE}{expression.name}\x03"

    def placeholder_sql(self, expression: exp.Placeholder) -> str:
        return f"{_PARAMETER}{expression.name or '?'}\x03"  # (an unnumbered ``?`` keeps its name, ``?``)


_Generator.TRANSFORMS = {**MLDB.Generator.TRANSFORMS, Hole: _Generator.hole_sql}
# Anywhere else (a rule that DESCRIBEs a subquery holding one), a hole is the SQL it stands for.
MLDB.Generator.TRANSFORMS[Hole] = lambda generator, node: generator.sql(node, "expression")


def render(node: exp.Expression) -> str:
    """SQL text with holes and parameter marks (``Filling`` turns it into DuckDB's SQL).
    The tree is rendered as it is, not copied (its last use: a copy of a statement with a
    list literal of 384 numbers costs more than the search), and may be changed."""
    return _Generator(dialect=MLDB).generate(node, copy=False)


def plain(node: exp.Expression, params) -> tuple[str, object]:
    """(SQL, parameters) with every hole at its default (for EXPLAIN: nothing is filled)."""
    return Filling(render(node), params).bind()


class Filling:
    """One run's text: ``fill`` replaces holes, ``bind`` gives DuckDB's SQL and parameters."""

    def __init__(self, text: str, params):
        self.text = text
        self.params = params
        self.written = set(_PARAMETERS.findall(text))  # (a parameter given but never written: DuckDB judges)

    def has(self, name: str) -> bool:
        return f"{_OPEN}{name}\x03" in self.text

    def fill(self, name: str, sql: str) -> None:
        """Every hole ``name`` (and what its default held) becomes ``sql``."""
        start_mark, end_mark = f"{_OPEN}{name}\x03", f"{_CLOSE}{name}\x03"
        text, pieces, at = self.text, [], 0
        while (start := text.find(start_mark, at)) >= 0:
            end = text.index(end_mark, start)
            pieces += [text[at:start], sql]
            at = end + len(end_mark)
        self.text = "".join(pieces) + text[at:] if pieces else text

    def bind(self, text: str | None = None):
        """(SQL, parameters) for DuckDB from ``text`` (default: the statement): holes left
        keep their defaults, and only the parameters the text still uses are passed,
        renumbered from 1 (a search may have replaced the one that held the query vector)."""
        text = self.text if text is None else text
        text = _strip_holes(text)
        params = self.params
        names = _PARAMETERS.findall(text)
        if not names:
            return text, None if self.written else params
        if "?" in names:  # ``?``: in order, none was dropped (a rule that drops one numbers them first)
            return _PARAMETERS.sub("?", text), params
        if isinstance(params, dict):
            used = set(names)
            kept = {k: v for k, v in params.items() if k in used or k not in self.written}
            return _PARAMETERS.sub(lambda m: f"${m.group(1)}", text), kept
        kept = sorted({int(name) for name in names})
        number = {str(old): str(new) for new, old in enumerate(kept, start=1)}
        sql = _PARAMETERS.sub(lambda m: f"${number[m.group(1)]}", text)
        return sql, [params[old - 1] for old in kept] if params is not None else None


def _strip_holes(text: str) -> str:
    if _OPEN not in text:
        return text
    return re.sub(f"(?:{re.escape(_OPEN)}|{re.escape(_CLOSE)})[^\x03]*\x03", "", text)
