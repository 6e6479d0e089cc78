"""Checks shared by every entry point; each raises :class:`ValidationError`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeGuard

from nn_tracker.core.errors import ValidationError

MAX_MAGNITUDE = 1e15  # no input quantity is larger (1e15 kWh is 30 years of the world's electricity)
MIN_POSITIVE = 1e-9  # the smallest divisor: with both bounds, every result stays finite
MIN_FRACTION = 1e-6
PHASE_NAME_MOST = 64  # characters of a phase name (phases nest as "outer/inner")
PHASE_NAME_RULE = f"1-{PHASE_NAME_MOST} letters, digits, '_', '.' or '-'"
_NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def is_name(text: object, most: int) -> TypeGuard[str]:
    """Whether ``text`` is 1 to ``most`` ASCII letters, digits, ``_``, ``.`` or ``-``: safe in a file name and a label.

    Nothing else, not even a trailing newline (which a regular expression's ``$`` lets through).
    """
    return isinstance(text, str) and 0 < len(text) <= most and _NAME_CHARACTERS.issuperset(text)


def _number(field: str, value: object) -> float:
    """``value`` as a finite float (any type, size or NaN refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, value, "must be a number")
    try:
        number = float(value)
    except OverflowError:
        raise ValidationError(field, "an integer beyond float range", "must be a finite number") from None
    if not math.isfinite(number):
        raise ValidationError(field, value, "must be finite")
    return number


def _bounded(field: str, value: object, number: float) -> float:
    if abs(number) > MAX_MAGNITUDE:
        raise ValidationError(field, value, f"must be at most {MAX_MAGNITUDE:g} in magnitude")
    return number


def finite(field: str, value: object) -> float:
    """Return ``value`` as a float, or raise unless it is a finite real number within ±1e15.

    The bound keeps every product and quotient of the footprint formulas finite: a value that
    would overflow is refused here, at the input, never propagated as ``inf``.
    """
    return _bounded(field, value, _number(field, value))


def non_negative(field: str, value: object) -> float:
    """A finite number >= 0 (counts, hours, watts, energies, intensities)."""
    number = _number(field, value)
    if number < 0:
        raise ValidationError(field, value, "must be >= 0")
    return _bounded(field, value, number)


def positive(field: str, value: object) -> float:
    """A finite number > 0 (lifetimes, functional units, intervals); at least 1e-9, as it may divide."""
    number = _number(field, value)
    if number <= 0:
        raise ValidationError(field, value, "must be > 0")
    if number < MIN_POSITIVE:
        raise ValidationError(field, value, f"must be at least {MIN_POSITIVE:g}")
    return _bounded(field, value, number)


def pue(field: str, value: object) -> float:
    """Power usage effectiveness: a finite number >= 1."""
    number = _number(field, value)
    if number < 1:
        raise ValidationError(field, value, "must be >= 1")
    return _bounded(field, value, number)


def fraction(field: str, value: object) -> float:
    """A share in (0, 1]: transport factors, utilisation, resource shares (at least 1e-6, as it divides)."""
    number = _number(field, value)
    if not 0 < number <= 1:
        raise ValidationError(field, value, "must be in (0, 1]")
    if number < MIN_FRACTION:
        raise ValidationError(field, value, f"must be at least {MIN_FRACTION:g}")
    return number


def same_length(fields: dict[str, Sequence[object]]) -> int:
    """Raise unless all the named lists have one length; return that length."""
    lengths = {name: len(values) for name, values in fields.items()}
    if len(set(lengths.values())) > 1:
        first, *rest = lengths
        for name in rest:
            if lengths[name] != lengths[first]:
                raise ValidationError(name, lengths[name], f"must have as many items as {first} ({lengths[first]})")
    return next(iter(lengths.values()), 0)
