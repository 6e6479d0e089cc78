"""Checks shared by every entry point; each raises :class:`ValidationError`."""

from __future__ import annotations

import math
from collections.abc import Sequence

from nn_tracker.errors import ValidationError


def finite(field: str, value: object) -> float:
    """Return ``value`` as a float, or raise if it is not a finite real number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, value, "must be a number")
    if not math.isfinite(value):
        raise ValidationError(field, value, "must be finite")
    return float(value)


def non_negative(field: str, value: object) -> float:
    """A finite number >= 0 (counts, hours, watts, energies, intensities)."""
    number = finite(field, value)
    if number < 0:
        raise ValidationError(field, value, "must be >= 0")
    return number


def positive(field: str, value: object) -> float:
    """A finite number > 0 (lifetimes, functional units, intervals)."""
    number = finite(field, value)
    if number <= 0:
        raise ValidationError(field, value, "must be > 0")
    return number


def pue(field: str, value: object) -> float:
    """Power usage effectiveness: a finite number >= 1."""
    number = finite(field, value)
    if number < 1:
        raise ValidationError(field, value, "must be >= 1")
    return number


def fraction(field: str, value: object) -> float:
    """A share in (0, 1]: transport factors, utilisation, resource shares."""
    number = finite(field, value)
    if not 0 < number <= 1:
        raise ValidationError(field, value, "must be in (0, 1]")
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
