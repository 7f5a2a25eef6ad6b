"""Value rules of the option schema: each one checks one value and says what is allowed.

A rule is called with the value and its key path (``train:optim_g:lr``) and
returns the value to keep (a whole float such as ``!!float 5e3`` becomes the
int 5000 where an integer is wanted) or raises :class:`OptionError`: one line
``<key path>: must be <what is allowed>, got <value>``.  YAML 1.1 (BasicSR's
and this loader's) reads ``1e-3`` as a *string* — a number needs a dot and a
signed exponent (``1.0e-3``) or the ``!!float`` tag — so a string that looks
like a number gets that advice.  No torch or BasicSR import.
"""
from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from ..errors import ConfigError

# ---------------------------------------------------------------------------- the error
_SHOW_MAX = 60


def show(value: Any) -> str:
    """``value`` for an error line: short, one line, never a 4,000-digit number."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "~"}[value]
    if isinstance(value, int):
        if value.bit_length() > 200:
            return f"a {int(value.bit_length() * math.log10(2)) + 1}-digit integer"
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping):
        text = "a mapping {" + ", ".join(str(k) for k in list(value)[:5]) + (", ..." if len(value) > 5 else "") + "}"
    elif isinstance(value, (list, tuple)):
        text = "a list " + repr(value)
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


class OptionError(ConfigError):
    """A refused option: ``key`` (its path, e.g. ``inference:tile``), ``value`` and what is allowed (``need``).

    ``none_means`` (optional rules) says what ``~`` does, so that a caller that
    maps key paths to command-line flags can word it for its flags.
    """

    def __init__(self, key: str, value: Any = None, need: str = "", *, message: str = "", none_means: str = "") -> None:
        self.key, self.value, self.need, self.none_means = key, value, need, none_means
        if not message:
            allowed = f"{need} or ~ ({none_means})" if none_means else need
            message = f"{key}: {allowed}, got {show(value)}"
        super().__init__(message)


def suggest(key: Any, valid: Collection[Any]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``valid``, or ``''``."""
    names = [str(v) for v in valid]
    close = difflib.get_close_matches(str(key), names, n=1)
    if not close and len(str(key)) >= 3:  # a shortened key: 'crop' for 'crop_border'
        close = [n for n in names if n.startswith(str(key))][:1]
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_key(where: str, key: Any, valid: Sequence[str]) -> OptionError:
    prefix = f"{where}: " if where else ""
    return OptionError(
        f"{where}:{key}" if where else str(key), key,
        message=f"{prefix}unknown key '{key}'{suggest(key, valid)}; valid keys: {', '.join(valid)}",
    )  # fmt: skip


def check_keys(where: str, given: Mapping[Any, Any], valid: Sequence[str]) -> None:
    """Raise :class:`OptionError` for the first key of ``given`` not in ``valid``."""
    for key in given:
        if key not in valid:
            raise unknown_key(where, key, valid)


def join(where: str, key: Any) -> str:
    return f"{where}:{key}" if where else str(key)


# ---------------------------------------------------------------------------- number advice
_NUMBER = re.compile(r"\s*([-+]?)(\d[\d_]*)?(?:\.(\d*))?(?:[eE]([-+]?)(\d+))?\s*")


def number_hint(value: Any) -> str:
    """Advice for a string that is a number to Python but a string to YAML 1.1 (``1e-3``)."""
    if not isinstance(value, str):
        return ""
    m = _NUMBER.fullmatch(value)
    if not m or not (m.group(2) or m.group(3)):
        return ""
    sign, whole, frac, esign, exp = m.groups()
    if exp is None:
        return f" (YAML reads {value!r} as a string: write it without quotes)"
    yaml11 = f"{sign}{whole or 0}.{frac or 0}e{esign or '+'}{exp}"
    return f" (YAML reads {value.strip()} as a string: write {value.strip()} as {yaml11} or !!float {value.strip()})"


# ---------------------------------------------------------------------------- rules
class Rule:
    """Checks one value; ``need`` says what is allowed (for errors and docs/options.md)."""

    need = "any value"
    none_means = ""

    def __call__(self, value: Any, key: str) -> Any:
        return value

    def fail(self, value: Any, key: str, need: str | None = None) -> OptionError:
        need = (need or f"must be {self.need}") + number_hint(value)
        return OptionError(key, value, need)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bounds(lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" >= {lo}"
    return f" <= {hi}" if hi is not None else ""


class Int(Rule):
    """An integer in ``[lo, hi]``; ``whole=True`` also takes whole floats (``!!float 5e3``) as ints."""

    def __init__(self, lo: int | None = None, hi: int | None = None, whole: bool = False, why: str = "") -> None:
        self.lo, self.hi, self.whole = lo, hi, whole
        self.need = ("a whole number" if whole else "an integer") + _bounds(lo, hi) + (f" ({why})" if why else "")

    def __call__(self, value: Any, key: str) -> Any:
        if self.whole and isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if not is_int(value):
            raise self.fail(value, key)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise self.fail(value, key)
        return value


class Num(Rule):
    """A finite number in ``[lo, hi]`` (``lo_open``/``hi_open``: bound excluded); ints kept as ints."""

    def __init__(
        self, lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False
    ) -> None:
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        parts: list[str] = []
        if lo is not None and hi is not None and not lo_open and not hi_open:
            parts.append(f"from {lo} to {hi}")
            lo = hi = None
        if lo is not None:
            parts.append(f"> {lo}" if lo_open else f">= {lo}")
        if hi is not None:
            parts.append(f"< {hi}" if hi_open else f"<= {hi}")
        self.need = "a number" + (" " + " and ".join(parts) if parts else "")

    def __call__(self, value: Any, key: str) -> Any:
        if not is_number(value) or not math.isfinite(value):
            raise self.fail(value, key)
        lo, hi = self.lo, self.hi
        if lo is not None and (value < lo or (self.lo_open and value == lo)):
            raise self.fail(value, key)
        if hi is not None and (value > hi or (self.hi_open and value == hi)):
            raise self.fail(value, key)
        return value


class Bool(Rule):
    need = "true or false"

    def __call__(self, value: Any, key: str) -> Any:
        if value is not True and value is not False:
            raise self.fail(value, key)
        return value


class Choice(Rule):
    """One of ``values`` (``None`` written ``~``)."""

    def __init__(self, *values: Any) -> None:
        self.values = values
        self.need = "one of " + ", ".join(v if isinstance(v, str) else show(v) for v in values)

    def __call__(self, value: Any, key: str) -> Any:
        if not any(type(v) is type(value) and v == value for v in self.values):  # 1 is not true
            raise self.fail(value, key, f"must be {self.need}{suggest(value, self.values) if isinstance(value, str) else ''}")
        return value


class Text(Rule):
    """A non-empty string without NUL characters (file names, keys, type names)."""

    def __init__(self, what: str = "a non-empty string") -> None:
        self.need = what

    def __call__(self, value: Any, key: str) -> Any:
        if not isinstance(value, str) or not value.strip() or "\0" in value:
            raise self.fail(value, key)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise self.fail(value, key, f"must be {self.need} (valid UTF-8)") from None
        return value


PATH = Text("a file or folder path")
FILE = Text("a file path")
FOLDER = Text("a folder path (or an LMDB)")


class Optional_(Rule):
    """``~`` or what ``rule`` allows; ``none_means`` says what ``~`` does."""

    def __init__(self, rule: Rule, none_means: str = "") -> None:
        self.rule, self.none_means = rule, none_means
        self.need = rule.need

    def __call__(self, value: Any, key: str) -> Any:
        if value is None:
            return None
        try:
            return self.rule(value, key)
        except OptionError as exc:
            if exc.key != key:
                raise
            if self.none_means:
                raise OptionError(key, value, exc.need, none_means=self.none_means) from None
            raise OptionError(key, value, f"{exc.need} or ~") from None


def Maybe(rule: Rule, none_means: str = "") -> Optional_:
    return Optional_(rule, none_means)


class ListOf(Rule):
    """A list of values each allowed by ``item``; ``length`` fixes its length."""

    def __init__(self, item: Rule, length: int | None = None, min_len: int = 0, max_len: int = 10_000) -> None:
        self.item, self.length, self.min_len, self.max_len = item, length, min_len, max_len
        size = f"{length} " if length else ""
        self.need = f"a list of {size}values, each {item.need}"

    def __call__(self, value: Any, key: str) -> Any:
        if not isinstance(value, (list, tuple)):
            raise self.fail(value, key)
        if self.length is not None and len(value) != self.length:
            raise self.fail(value, key)
        if not self.min_len <= len(value) <= self.max_len:
            raise self.fail(value, key, f"must be {self.need} ({self.min_len} to {self.max_len} of them)")
        return [self.item(v, f"{key}[{i}]") for i, v in enumerate(value)]


class Check(Rule):
    """A rule given as a function ``(value, key) -> value`` and its description."""

    def __init__(self, need: str, check: Callable[[Any, str], Any]) -> None:
        self.need, self._check = need, check

    def __call__(self, value: Any, key: str) -> Any:
        return self._check(value, key)


def mapping(value: Any, key: str, what: str = "a mapping of options (key: value lines)") -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise OptionError(key, value, f"must be {what}")
    return value


def rule_from_default(default: Any) -> Rule:
    """The rule for a constructor argument known only by its default value (its type)."""
    if isinstance(default, bool):
        return Bool()
    if isinstance(default, int):
        return Int()
    if isinstance(default, float):
        return Num()
    if isinstance(default, str):
        return Text()
    if isinstance(default, (tuple, list)):
        return ListOf(Num())
    return Rule()
