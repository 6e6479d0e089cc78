"""The one place where a typed report becomes JSON and JSON becomes a typed report.

The report's types (:mod:`nn_tracker.report.document`) are declared with :func:`record`; their
fields are the schema: a field's type says what its value may be (``float | None``: a finite
number or ``null``; ``Literal``: one of some strings; :data:`IsoTime`: an ISO 8601 time), a field
with a default may be absent from a saved report, and the field's :func:`spec` holds its
documentation and any extra rule. :func:`to_json` writes a report, :func:`from_json`
reads and checks one (one :class:`~nn_tracker.core.errors.ValidationError` naming the first field
that breaks a rule), and :func:`schema_rows` describes the fields for ``docs/report-schema.md``.
"""

from __future__ import annotations

import functools
import math
import time
import types
from typing import (
    Any,
    Literal,
    NewType,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

from nn_tracker.core.errors import ValidationError
from nn_tracker.core.structs import MISSING, NO_METADATA, Field, dataclass_transform, field, fields, struct

T = TypeVar("T")
IsoTime = NewType("IsoTime", str)
"""A UTC time as ISO 8601 text (``2026-01-01T00:00:00.000+00:00``)."""


def iso_time(wall_s: float) -> IsoTime:
    """A wall-clock time (s since the epoch) as :data:`IsoTime`, to the millisecond.

    What ``datetime.fromtimestamp(wall_s, timezone.utc).isoformat(timespec="milliseconds")`` writes
    (rounded to the microsecond, then cut to the millisecond; a test holds it), without importing
    ``datetime`` (~2 ms on a training script's cold path).

    Raises:
        ValueError: a year outside 1-9999 (or NaN); ``OverflowError``: beyond the platform's time.
    """
    fraction, whole_s = math.modf(wall_s)
    microseconds = round(fraction * 1e6)
    if microseconds >= 1_000_000:
        whole_s, microseconds = whole_s + 1, microseconds - 1_000_000
    elif microseconds < 0:
        whole_s, microseconds = whole_s - 1, microseconds + 1_000_000
    t = time.gmtime(whole_s)
    if not 1 <= t.tm_year <= 9999:  # as datetime: an ISO 8601 time has four digits of year
        raise ValueError(f"year {t.tm_year} is out of range")
    return IsoTime(
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        f".{microseconds // 1000:03d}+00:00"
    )


REQUIRED: Any = MISSING  # a field with no default


class Spec(Field):
    """A report field: a struct field with its documentation and rules (see :func:`spec`)."""

    __slots__ = ("doc", "key", "min_items", "minimum", "omit_none")

    def __init__(
        self, doc: str, default: Any, factory: Any, minimum: float | None, min_items: int, omit_none: bool, key: str
    ) -> None:
        super().__init__("", default, factory, True, True, True, NO_METADATA)
        self.doc, self.minimum, self.min_items, self.omit_none, self.key = doc, minimum, min_items, omit_none, key

    @property
    def factory(self) -> Any:
        """What makes the default, for lists and dicts."""
        return self.default_factory

    @property
    def required(self) -> bool:
        """Whether a saved report must have the field."""
        return self.default is REQUIRED and self.default_factory is None


def spec(
    doc: str,
    default: Any = REQUIRED,
    *,
    factory: Any = None,
    minimum: float | None = None,
    min_items: int = 0,
    omit_none: bool = False,
    key: str = "key",
) -> Any:
    """A report field: its documentation and rules.

    Args:
        doc: What the field means (one line, for the schema document).
        default: The value when a saved report lacks the field (none: the field is required).
        factory: Like ``default``, for lists and dicts.
        minimum: The least number allowed.
        min_items: The fewest items a list may have.
        omit_none: Left out of the JSON when ``None`` (fields that exist only on request).
        key: What the keys of an object field name (``phase``, ``device``), for the schema document.
    """
    if default is not REQUIRED and factory is not None:
        raise ValueError("a report field takes a default or a factory, not both")
    return Spec(doc, default, factory, minimum, min_items, omit_none, key)


@dataclass_transform(kw_only_default=True, field_specifiers=(spec, field))
def record(cls: type[T]) -> type[T]:
    """Declare a report type: a keyword-only :func:`~nn_tracker.core.structs.struct`.

    Its :func:`spec` fields, in order, are the document's; a field declared with
    ``structs.field(init=False, compare=False)`` (``paths``: where the report was written) is
    not in the JSON. Methods and properties stay.
    """
    kind: type[T] = struct(kw_only=True)(cls)
    specs = {f.name: f for f in fields(kind) if isinstance(f, Spec)}
    setattr(kind, "__record_fields__", specs)  # noqa: B010 - read by record_fields()
    return kind


def record_fields(kind: type) -> dict[str, Spec]:
    """A report type's fields, in order, with their specs."""
    specs: dict[str, Spec] = getattr(kind, "__record_fields__")  # noqa: B009 - set by record(), inherited
    return specs


def is_record(value: Any) -> bool:
    """Whether ``value`` is a report type (not an instance)."""
    return isinstance(value, type) and hasattr(value, "__record_fields__")


def to_json(value: Any) -> Any:
    """A JSON-ready copy of a typed report (or any part of one), keys in field order."""
    if is_record(type(value)):
        result = {}
        for name, item in record_fields(type(value)).items():
            content = getattr(value, name)
            if content is None and item.omit_none:
                continue
            result[name] = to_json(content)
        return result
    if isinstance(value, dict):
        return {name: to_json(content) for name, content in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(content) for content in value]
    return value


def from_json(kind: type, value: Any, where: str) -> Any:
    """Check ``value`` against the type ``kind`` and build it.

    Raises:
        ValidationError: the first field that breaks a rule, with its path from ``where``.
    """
    return _read(kind, value, where)


@functools.cache
def _hints(kind: type) -> dict[str, Any]:
    return get_type_hints(kind)


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _read(hint: Any, value: Any, where: str, rules: Spec | None = None, or_null: bool = False) -> Any:
    if hint is Any:
        return value
    if _is_union(hint):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _read(options[0], value, where, rules, or_null=True)
    if is_record(hint):
        return _read_object(hint, _object(value, where), where)
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint) or not isinstance(value, str):
            raise ValidationError(where, _short(value), f"must be one of {', '.join(get_args(hint))}")
        return value
    if origin is list:
        least = rules.min_items if rules else 0
        if not isinstance(value, list) or len(value) < least:
            more = f" with at least {least} item(s)" if least else ""
            raise ValidationError(where, _short(value), f"must be a list{more}")
        return [_read(get_args(hint)[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        return {name: _read(get_args(hint)[1], item, f"{where}.{name}") for name, item in _object(value, where).items()}
    return _read_scalar(hint, value, where, rules.minimum if rules else None, " or null" if or_null else "")


def _read_object(kind: type, value: dict[str, Any], where: str) -> Any:
    hints = _hints(kind)
    arguments = {}
    for name, item in record_fields(kind).items():
        if name not in value:
            if item.required:
                raise ValidationError(f"{where}.{name}", None, "is missing")
            continue
        arguments[name] = _read(hints[name], value[name], f"{where}.{name}", item)
    return kind(**arguments)


def _read_scalar(hint: Any, value: Any, where: str, minimum: float | None, or_null: str) -> Any:
    if hint in (float, int):
        whole = hint is int
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise ValidationError(where, _short(value), f"must be a finite number{or_null}")
        if whole and not float(value).is_integer():
            raise ValidationError(where, _short(value), f"must be a whole number{or_null}")
        if minimum is not None and value < minimum:
            raise ValidationError(where, _short(value), f"must be >= {minimum:g}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValidationError(where, _short(value), f"must be true or false{or_null}")
        return value
    if not isinstance(value, str):
        raise ValidationError(where, _short(value), f"must be a string{or_null}")
    if hint is IsoTime:
        from datetime import datetime  # on reading only: a tracker writes its times without it

        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError(where, _short(value), "must be an ISO 8601 time") from None
    return value


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer beyond float range
        return False


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(where, _short(value), "must be an object")
    return value


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 60 else text[:57] + "..."


# ----- the schema document ----------------------------------------------------------------------------------
def schema_rows(kind: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(path, type, meaning)`` for every field of ``kind`` and of the types it holds, in document order."""
    rows = []
    hints = _hints(kind)
    for name, item in record_fields(kind).items():
        path = f"{prefix}{name}"
        hint = hints[name]
        meaning = item.doc if item.required else f"{item.doc} (may be absent)"
        rows.append((f"`{path}`", _type_text(hint, item), meaning))
        inner, suffix = _holds(hint, item)
        if inner is not None:
            rows += schema_rows(inner, f"{path}{suffix}.")
    return rows


def _holds(hint: Any, item: Spec) -> tuple[type | None, str]:
    """The report type a field holds (directly, in a list or as an object's values) and the path's suffix."""
    if _is_union(hint):
        hint = next(a for a in get_args(hint) if a is not type(None))
    if is_record(hint):
        return hint, ""
    origin, arguments = get_origin(hint), get_args(hint)
    if origin is list and is_record(arguments[0]):
        return arguments[0], "[]"
    if origin is dict and is_record(arguments[1]):
        return arguments[1], f".<{item.key}>"
    return None, ""


def _type_text(hint: Any, item: Spec | None = None) -> str:
    """How the schema document names a type."""
    if _is_union(hint):
        return " \\| ".join(_type_text(a) for a in get_args(hint) if a is not type(None)) + " \\| null"
    if is_record(hint):
        return "object"
    origin, arguments = get_origin(hint), get_args(hint)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in arguments)
    if origin is list:
        least = item.min_items if item else 0
        return f"list of {_inner_text(arguments[0])}" + (f", at least {least}" if least else "")
    if origin is dict:
        shown = arguments[1] is Any or is_record(arguments[1])
        return "object" if shown else f"object of {_inner_text(arguments[1])}"
    names = {float: "number", int: "integer", bool: "bool", str: "string", IsoTime: "ISO 8601 time"}
    text = names.get(hint, "any")
    if item and item.minimum is not None:
        text += f" ≥ {item.minimum:g}"
    return text


def _inner_text(hint: Any) -> str:
    """An item type's name, in brackets when it is a choice (``object of (number | null)``)."""
    text = _type_text(hint)
    return f"({text})" if "|" in text else text
