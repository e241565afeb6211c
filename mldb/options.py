"""Declarative option schemas: each statement states its ``WITH (...)`` options once.

An :class:`Option` names a type, a range or the allowed values and a default; a
:class:`Schema` checks a whole dict of given options before anything reaches FAISS,
torch or LightGBM: unknown keys are refused with the list of known ones, and a wrong
type or a value out of range is refused with what was expected. Every refusal is a
``ProgrammingError`` with SQLSTATE 22023 (PostgreSQL's invalid_parameter_value).

    INDEX = Schema("FAISS index", Option("m", "int", 32, low=2, high=256), ...)
    options = INDEX.check(given)          # normalised values, no defaults added
    options = INDEX.complete(given)       # the same with every default filled in
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from mldb import errors

_KINDS = ("int", "number", "text", "bool", "sizes", "bytes")
_TRUE, _FALSE = ("true", "on", "yes", "1"), ("false", "off", "no", "0")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class Option:
    """One option: ``kind`` is int, number, text, bool, sizes (a list of positive ints) or
    bytes (a memory size: a number of bytes or a text such as '8GB' or '512MiB', read as DuckDB's
    ``memory_limit`` is: KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB of 1024).

    ``low``/``high`` bound an int or number (inclusive unless ``open_low``/``open_high``);
    ``choices`` lists the allowed texts (compared lower-cased); ``pattern`` is a regular expression a
    text must match whole instead (lower-cased, e.g. ``cuda:N``); ``hint`` says what a valid value looks
    like when the kind, range and choices do not say it well; ``most`` caps a list's length."""

    name: str
    kind: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] | None = None
    most: int | None = None
    nullable: bool = False
    pattern: str | None = None
    hint: str | None = None

    def __post_init__(self):
        assert self.kind in _KINDS, self.kind

    def check(self, value, where: str):
        """The value in its normal form (ints as int, texts lower-cased when there are choices)."""
        if value is None:
            if self.nullable:
                return None
            raise self._error(where, value)
        checked = getattr(self, f"_{self.kind}")(value, where)
        if self.kind in ("int", "number", "bytes") and not self._in_range(checked):
            raise self._error(where, value)
        return checked

    @property
    def expected(self) -> str:
        """What a valid value looks like, for an error message."""
        if self.hint:
            return self.hint
        if self.choices:
            return "one of " + ", ".join(f"'{c}'" for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "text":
            return "a string"
        if self.kind == "sizes":
            return "a list of positive integers, e.g. [64, 32]" + (f" (at most {self.most})" if self.most else "")
        if self.kind == "bytes":
            return "a memory size such as '8GB' or '512MiB'" + self._range_text()
        noun = "an integer" if self.kind == "int" else "a number"
        return noun + self._range_text()

    def _range_text(self) -> str:
        low, high = _shown(self.low), _shown(self.high)
        if self.low is not None and self.high is not None:
            left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
            return f" in {left}{low}, {high}{right}"
        if self.low is not None:
            return f" {'>' if self.open_low else '>='} {low}"
        if self.high is not None:
            return f" {'<' if self.open_high else '<='} {high}"
        return ""

    def _in_range(self, value) -> bool:
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.open_high and value == self.high)))

    def _int(self, value, where):
        if isinstance(value, bool):
            raise self._error(where, value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise self._error(where, value)

    def _number(self, value, where):
        if isinstance(value, bool):
            raise self._error(where, value)
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise self._error(where, value) from None
        if not math.isfinite(number):
            raise self._error(where, value)
        return number

    def _text(self, value, where):
        if not isinstance(value, str) or isinstance(value, bool):
            raise self._error(where, value)
        if self.pattern is not None:
            if not re.fullmatch(self.pattern, value.strip().lower()):
                raise self._error(where, value)
            return value.strip().lower()
        if self.choices is None:
            return value
        if value.lower() not in self.choices:
            raise self._error(where, value)
        return value.lower()

    def _bool(self, value, where):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise self._error(where, value)

    def _sizes(self, value, where):
        if not isinstance(value, list) or not value or (self.most and len(value) > self.most):
            raise self._error(where, value)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
            raise self._error(where, value)
        return list(value)

    def _bytes(self, value, where):
        if isinstance(value, bool):
            raise self._error(where, value)
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return int(value)
        match = _SIZE.match(value) if isinstance(value, str) else None
        if match is None:
            raise self._error(where, value)
        return int(float(match.group(1)) * _UNITS[(match.group(2) or "b").lower()])

    def _error(self, where: str, value) -> errors.ProgrammingError:
        found = "NULL" if value is None else repr(value)
        return errors.ProgrammingError(f"{where}: option {self.name} must be {self.expected}; found {found}",
                                       sqlstate="22023")


class Schema:
    """The options one statement takes; ``what`` names it in messages ("model 'm'" is added by callers)."""

    def __init__(self, what: str, *options: Option):
        self.what = what
        self.options = {option.name: option for option in options}

    @property
    def defaults(self) -> dict:
        return {name: option.default for name, option in self.options.items() if option.default is not None}

    def check(self, given: dict, where: str | None = None) -> dict:
        """``given`` checked and normalised; unknown keys refused with the known ones."""
        where = where or self.what
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            raise errors.ProgrammingError(
                f"{where}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.options))}", sqlstate="22023")
        return {name: self.options[name].check(value, where) for name, value in given.items()}

    def complete(self, given: dict, where: str | None = None) -> dict:
        """:meth:`check`, then every option not given takes its default."""
        return self.defaults | self.check(given, where)


def _shown(bound) -> str:
    if bound is None:
        return ""
    if isinstance(bound, int):  # (exact, as an integer option's range is)
        return str(bound)
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e15 else f"{bound:g}"
