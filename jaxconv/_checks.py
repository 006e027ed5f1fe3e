"""Argument checks with one message format and one rule, shared by every public function.

Every message reads ``fn: `arg` must be ALLOWED; got GIVEN``. A value of the wrong *type* raises ``TypeError``,
a value of the right type outside what is allowed raises ``ValueError``. The checks run in Python on concrete
values, so under ``jit`` they fire at trace time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from typing import Any

import numpy as np


def fail(fn: str, arg: str, allowed: str, given: Any, error: type[Exception] = ValueError) -> Exception:
    """The exception (not raised) for argument ``arg`` of ``fn``: ``fn: `arg` must be ALLOWED; got GIVEN``.

    The exception also carries ``argument``, ``allowed`` and ``given`` as attributes, so that a caller (the CLI)
    can say the same thing in its own words (``argument --flag: must be ...``) without parsing the message.

    Examples:
      >>> from jaxconv._checks import fail
      >>> err = fail("fit", "steps", "an int >= 1", 0)
      >>> err, err.argument
      (ValueError('fit: `steps` must be an int >= 1; got 0'), 'steps')
    """
    err = error(f"{fn}: `{arg}` must be {allowed}; got {given!r}")
    err.argument, err.allowed, err.given = arg, allowed, given  # type: ignore[attr-defined]
    return err


def is_int(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy integer (``bool`` is not)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(
    fn: str, arg: str, value: Any, *, low: int | None = None, high: int | None = None, allowed: str | None = None
) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (either bound optional), else the error naming ``arg`` (and
    ``allowed``, by default the range in words).

    Examples:
      >>> from jaxconv._checks import check_int
      >>> check_int("fit", "steps", 3, low=1)
      3
      >>> check_int("fit", "steps", 1.5, low=1)
      Traceback (most recent call last):
      ...
      TypeError: fit: `steps` must be an int >= 1; got 1.5
    """
    allowed = allowed or _int_range(low, high)
    if not is_int(value):
        raise fail(fn, arg, allowed, value, TypeError)
    if (low is not None and value < low) or (high is not None and value > high):
        raise fail(fn, arg, allowed, value)
    return int(value)


def check_number(fn: str, arg: str, value: Any, *, allowed: str, ok: Callable[[float], bool] = lambda v: True) -> float:
    """``value`` as a finite ``float`` for which ``ok`` holds, else the error naming ``arg`` and ``allowed``.

    Examples:
      >>> from jaxconv._checks import check_number
      >>> check_number("fit", "learning_rate", 0.1, allowed="a number > 0", ok=lambda v: v > 0)
      0.1
      >>> check_number("fit", "learning_rate", -1, allowed="a number > 0", ok=lambda v: v > 0)
      Traceback (most recent call last):
      ...
      ValueError: fit: `learning_rate` must be a number > 0; got -1
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise fail(fn, arg, allowed, value, TypeError)
    if not (np.isfinite(value) and ok(float(value))):
        raise fail(fn, arg, allowed, value)
    return float(value)


def check_choice(fn: str, arg: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``, else the error listing them (``TypeError`` when no choice has
    ``value``'s type, e.g. a number where names are expected).

    Examples:
      >>> from jaxconv._checks import check_choice
      >>> check_choice("fit", "optimizer", "sgd", ("adam", "sgd"))
      'sgd'
      >>> check_choice("fit", "optimizer", "lbfgs", ("adam", "sgd"))
      Traceback (most recent call last):
      ...
      ValueError: fit: `optimizer` must be one of ('adam', 'sgd'); got 'lbfgs'
    """
    allowed = f"one of {tuple(choices)}"
    if not any(type(value) is type(c) for c in choices):
        raise fail(fn, arg, allowed, value, TypeError)
    if value not in choices:
        raise fail(fn, arg, allowed, value)
    return value


@dataclasses.dataclass(frozen=True)
class Allowed:
    """What one argument may be — checked the same way wherever it arrives: a keyword, a config, a CLI flag.

    Args:
      kind: ``"int"``, ``"number"``, ``"choice"`` or ``"int_or_auto"`` (an int, or the string ``"auto"``).
      low, high: an int's bounds (inclusive), or ``None``.
      describe: a number's allowed values in words (e.g. ``"a number > 0"``); with ``ok``, the test.
      choices: a choice's values.

    Examples:
      >>> from jaxconv._checks import Allowed
      >>> steps = Allowed("int_or_auto", low=1)
      >>> steps.check("fit", "steps", "auto"), steps.parse("12"), steps.describe
      ('auto', 12, 'auto or an int >= 1')
    """

    kind: str
    low: int | None = None
    high: int | None = None
    describe: str = ""
    ok: Callable[[float], bool] | None = None
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not self.describe:
            words = {"int": _int_range(self.low, self.high), "choice": f"one of {self.choices}"}
            words["int_or_auto"] = f"auto or {_int_range(self.low, self.high)}"
            object.__setattr__(self, "describe", words[self.kind])

    def check(self, fn: str, arg: str, value: Any) -> Any:
        """``value`` normalised (an ``int``, a ``float``, the choice), else the error naming ``arg``."""
        if self.kind == "int_or_auto" and isinstance(value, str):  # a string is the right type: "auto" or wrong
            if value != "auto":
                raise fail(fn, arg, self.describe, value)
            return value
        if self.kind in ("int", "int_or_auto"):
            return check_int(fn, arg, value, low=self.low, high=self.high, allowed=self.describe)
        if self.kind == "number":
            return check_number(fn, arg, value, allowed=self.describe, ok=self.ok or (lambda v: True))
        return check_choice(fn, arg, value, self.choices)

    def parse(self, text: str) -> Any:
        """The value that the command-line text ``text`` stands for (not yet checked), e.g. ``"3"`` -> ``3``."""
        if self.kind == "choice" or (self.kind == "int_or_auto" and text == "auto"):
            return text
        try:
            return int(text) if self.kind in ("int", "int_or_auto") else float(text)
        except ValueError:
            return text


def _int_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"an int in [{low}, {high}]"
    if low is not None:
        return f"an int >= {low}"
    if high is not None:
        return f"an int <= {high}"
    return "an int"


__all__ = ["fail", "is_int", "check_int", "check_number", "check_choice", "Allowed"]
