"""A small reader and runner for sqllogictest files (the format DuckDB tests itself with).

Records are separated by blank lines:

    statement ok | statement error [Class] [SQLSTATE]
                                        then SQL; for error, optionally ---- and a message fragment;
                                        Class (e.g. ProgrammingError) and SQLSTATE (e.g. 22023) are checked
    query <types> [rowsort|valuesort]   then SQL, ----, expected rows (values tab-separated)
    restart                             close and reopen the same database file
    # comment

Types: I integer, R real (compared with a relative tolerance of 1e-6... see _same_value),
T text, B boolean, anything else as text. NULL prints as NULL, the empty string as (empty).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Record:
    kind: str  # "statement", "query", "restart"
    line: int
    sql: str = ""
    expect_error: bool = False
    error_class: str = ""  # e.g. "ProgrammingError": the mldb error class the statement must raise
    sqlstate: str = ""  # e.g. "22023": the SQLSTATE it must carry
    expected: list[str] = field(default_factory=list)
    types: str = ""
    sort: str = ""


def read_records(text: str) -> list[Record]:
    records, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        line = lines[index].strip()
        if not line or line.startswith("#"):
            index += 1
            continue
        block_start = index
        block = []
        while index < len(lines) and lines[index].strip():
            block.append(lines[index])
            index += 1
        records.append(_record(block, block_start + 1))
    return records


def _record(block: list[str], line: int) -> Record:
    words = block[0].split()
    body = block[1:]
    sql_lines, expected = body, []
    if "----" in [b.strip() for b in body]:
        cut = [b.strip() for b in body].index("----")
        sql_lines, expected = body[:cut], body[cut + 1:]
    sql = "\n".join(sql_lines)
    if words[0] == "restart":
        return Record("restart", line)
    if words[0] == "statement":
        extra = words[2:]
        error_class = next((w for w in extra if not _is_sqlstate(w)), "")
        sqlstate = next((w for w in extra if _is_sqlstate(w)), "")
        return Record("statement", line, sql, expect_error=words[1] == "error", expected=expected,
                      error_class=error_class, sqlstate=sqlstate)
    if words[0] == "query":
        sort = words[2] if len(words) > 2 else ""
        return Record("query", line, sql, expected=expected, types=words[1], sort=sort)
    raise ValueError(f"line {line}: unknown record {block[0]!r}")


def _is_sqlstate(word: str) -> bool:
    return len(word) == 5 and word[:2].isalnum() and word[:2].upper() == word[:2]


def format_row(row: tuple, types: str) -> list[str]:
    return [format_value(value, types[i] if i < len(types) else "T") for i, value in enumerate(row)]


def format_value(value, kind: str) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return "(empty)"
    if kind == "R" and isinstance(value, (int, float)):
        return repr(float(value))
    return _nested(value)


def _nested(value) -> str:
    """DuckDB's text form of nested values: [a, b], {'k': v}; strings inside unquoted."""
    if value is None:
        return "NULL"
    if isinstance(value, dict):
        return "{" + ", ".join(f"'{k}': {_nested(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_nested(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def same_rows(actual: list[list[str]], expected: list[list[str]], types: str) -> bool:
    if len(actual) != len(expected):
        return False
    return all(
        len(a) == len(e) and all(_same_value(x, y, types[i] if i < len(types) else "T") for i, (x, y) in enumerate(zip(a, e)))
        for a, e in zip(actual, expected)
    )


def _same_value(actual: str, expected: str, kind: str) -> bool:
    if kind == "R" and actual not in ("NULL",) and expected not in ("NULL",):
        try:
            return math.isclose(float(actual), float(expected), rel_tol=1e-6, abs_tol=1e-9)
        except ValueError:
            return False
    return actual == expected
