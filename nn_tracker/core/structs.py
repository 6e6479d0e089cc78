"""Plain record types, declared like dataclasses and cheap to define.

``@struct`` reads a class's annotated fields and gives it an ``__init__``, ``__eq__``,
``__repr__`` (and, frozen, ``__hash__`` and no assignment) shared by every struct, instead of
the methods :mod:`dataclasses` writes and compiles for each class: defining one costs ~0.02 ms,
not ~0.5 ms, which is most of what ``import nn_tracker`` cost (``docs/validation/benchmarks.md``).
The semantics are the dataclasses' that this package uses: fields in declaration order
(inherited first), defaults and :func:`field` factories, positional or keyword arguments
(``kw_only``), ``__post_init__``, frozen instances, :func:`fields`, :func:`replace`, :func:`asdict`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from reprlib import recursive_repr
from types import MappingProxyType
from typing import Any, TypeVar

T = TypeVar("T")

if sys.version_info >= (3, 11):
    from typing import dataclass_transform as dataclass_transform  # re-exported for report.codec
else:  # Python 3.10: the decorator is only for type checkers

    def dataclass_transform(**_: Any) -> Callable[[T], T]:
        """What type checkers read; nothing at run time."""
        return lambda declared: declared


MISSING: Any = object()  # a field with no default
NO_METADATA: Mapping[str, Any] = MappingProxyType({})


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen struct."""


class Field:
    """One field of a struct (what :func:`fields` lists; :func:`field` returns one not yet named)."""

    __slots__ = ("compare", "default", "default_factory", "init", "metadata", "name", "repr")

    def __init__(
        self,
        name: str,
        default: Any,
        default_factory: Callable[[], Any] | None,
        init: bool,
        repr: bool,
        compare: bool,
        metadata: Mapping[str, Any],
    ) -> None:
        self.name, self.default, self.default_factory = name, default, default_factory
        self.init, self.repr, self.compare, self.metadata = init, repr, compare, metadata

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r}, init={self.init})"


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | None = None,
    init: bool = True,
    repr: bool = True,
    compare: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> Any:
    """A field with a factory, metadata or left out of ``__init__``, ``repr`` or comparison."""
    if default is not MISSING and default_factory is not None:
        raise ValueError("a field takes a default or a default_factory, not both")
    shown = MappingProxyType(dict(metadata)) if metadata else NO_METADATA  # read-only, as dataclasses'
    return Field("", default, default_factory, init, repr, compare, shown)


@dataclass_transform(field_specifiers=(field,))
def struct(cls: Any = None, /, *, frozen: bool = False, eq: bool = True, kw_only: bool = False) -> Any:
    """Declare a record type: ``@struct``, ``@struct(frozen=True)``, ``@struct(kw_only=True)``..."""

    def declare(kind: type[T]) -> type[T]:
        return _declare(kind, frozen, eq, kw_only)

    return declare if cls is None else declare(cls)


class _Plan:  # how the shared __init__ fills an instance (a plain class: a NamedTuple costs 0.1 ms to define)
    __slots__ = ("accepted", "defaults", "factories", "positional", "post_init", "required")

    def __init__(self, found: dict[str, Field], kw_only: bool, post_init: bool) -> None:
        given = [f.name for f in found.values() if f.init]
        self.required = tuple(
            f.name for f in found.values() if f.init and f.default is MISSING and f.default_factory is None
        )
        self.positional = () if kw_only else tuple(given)
        self.accepted = frozenset(given)
        self.defaults = {f.name: f.default for f in found.values() if f.default is not MISSING}
        self.factories = tuple((f.name, f.default_factory) for f in found.values() if f.default_factory is not None)
        self.post_init = post_init


class _PlanOnFirstUse:
    """A struct's ``__struct_plan__`` until its first instance: then the plan, built (most types of a run never are)."""

    __slots__ = ("kind", "kw_only", "post_init")

    def __init__(self, kind: type, kw_only: bool, post_init: bool) -> None:
        self.kind, self.kw_only, self.post_init = kind, kw_only, post_init

    def __get__(self, instance: Any, owner: type | None = None) -> _Plan:
        plan = _Plan(getattr(self.kind, "__struct_fields__"), self.kw_only, self.post_init)  # noqa: B009
        setattr(self.kind, "__struct_plan__", plan)  # noqa: B010 - in place of this (two threads: two equal plans)
        return plan


def _declare(kind: type[T], frozen: bool, eq: bool, kw_only: bool) -> type[T]:
    found: dict[str, Field] = {}
    for base in reversed(kind.__mro__[1:]):
        found.update(getattr(base, "__struct_fields__", {}))
    # the class's own annotations (since 3.10 never a base's; on 3.14 evaluated here: names defined later are quoted)
    for name, annotation in kind.__annotations__.items():
        if str(annotation).split("[", 1)[0].rsplit(".", 1)[-1] == "ClassVar":
            continue
        declared = kind.__dict__.get(name, MISSING)
        if isinstance(declared, Field):
            declared.name = name  # one declaration, one class attribute: named in place, not copied
            found[name] = declared
            if declared.default is MISSING:
                delattr(kind, name)
            else:
                setattr(kind, name, declared.default)
        else:
            if type(declared).__hash__ is None:  # a list, dict, set...: shared by every instance
                raise ValueError(f"mutable default {type(declared).__name__} for field {name}: use default_factory")
            found[name] = Field(name, declared, None, True, True, True, NO_METADATA)
    given = [f for f in found.values() if f.init]
    optional = [f.default is not MISSING or f.default_factory is not None for f in given]
    if not kw_only and optional != sorted(optional):
        raise TypeError(f"{kind.__name__}: a field without a default follows one with a default")
    setattr(kind, "__struct_fields__", found)  # noqa: B010 - read by fields()
    setattr(kind, "__struct_plan__", _PlanOnFirstUse(kind, kw_only, hasattr(kind, "__post_init__")))  # noqa: B010
    own = kind.__dict__
    # a __hash__ of the class's own (Python sets None where the class defines __eq__ alone), as dataclasses see it
    own_hash = own.get("__hash__", MISSING) not in (MISSING, None) or ("__hash__" in own and "__eq__" not in own)
    positional = () if kw_only else tuple(name for name, f in found.items() if f.init)
    methods: dict[str, Any] = {"__init__": _init, "__match_args__": positional, "__replace__": replace}
    if "__repr__" not in own:  # the class's own __repr__ and __eq__ stay, as with dataclasses
        methods["__repr__"] = _repr
    if eq and "__eq__" not in own:
        methods["__eq__"] = _eq
    if eq and not own_hash:
        methods["__hash__"] = _hash if frozen else None  # unhashable if mutable, as dataclasses
    if frozen:
        methods.update(
            __setattr__=_frozen_setattr(kind, frozenset(found)), __delattr__=_frozen_delattr(kind, frozenset(found))
        )
    for name, method in methods.items():
        setattr(kind, name, method)
    return kind


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    plan: _Plan = self.__struct_plan__  # the class's, through the instance: the fastest lookup
    values = plan.defaults.copy()
    if args:
        if len(args) > len(plan.positional):
            raise TypeError(
                f"{type(self).__name__}() takes {len(plan.positional)} positional arguments, {len(args)} given"
            )
        values.update(zip(plan.positional, args, strict=False))
    if kwargs:
        if not plan.accepted.issuperset(kwargs) or (
            args and not kwargs.keys().isdisjoint(plan.positional[: len(args)])
        ):
            _refuse_keywords(type(self).__name__, plan, len(args), kwargs)
        values.update(kwargs)
    for name, factory in plan.factories:
        if name not in values:  # a field with a factory has no default
            values[name] = factory()
    for name in plan.required:  # (a field left out of __init__ without a default is __post_init__'s to set)
        if name not in values:
            raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
    self.__dict__.update(values)
    if plan.post_init:
        self.__post_init__()


def _refuse_keywords(kind: str, plan: _Plan, given: int, kwargs: dict[str, Any]) -> None:
    for name in kwargs:
        if name not in plan.accepted:
            raise TypeError(f"{kind}() got an unexpected keyword argument {name!r}")
        if name in plan.positional[:given]:
            raise TypeError(f"{kind}() got multiple values for argument {name!r}")


def _compared(self: Any) -> tuple[Any, ...]:
    return tuple(self.__dict__[f.name] for f in type(self).__struct_fields__.values() if f.compare)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _compared(self) == _compared(other)


def _hash(self: Any) -> int:
    return hash(_compared(self))


@recursive_repr()
def _repr(self: Any) -> str:
    shown = ", ".join(f"{f.name}={self.__dict__[f.name]!r}" for f in type(self).__struct_fields__.values() if f.repr)
    return f"{type(self).__qualname__}({shown})"


def _frozen_setattr(kind: type, names: frozenset[str]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is kind or name in names:  # a subclass may have attributes of its own, as with dataclasses
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    return __setattr__


def _frozen_delattr(kind: type, names: frozenset[str]) -> Callable[[Any, str], None]:
    def __delattr__(self: Any, name: str) -> None:
        if type(self) is kind or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        object.__delattr__(self, name)

    return __delattr__


def is_struct(value: Any) -> bool:
    """Whether ``value`` is a struct type or instance."""
    return hasattr(value, "__struct_fields__")


def fields(value: Any) -> tuple[Field, ...]:
    """A struct's (type's or instance's) fields, in order."""
    try:
        return tuple(value.__struct_fields__.values())
    except AttributeError:
        raise TypeError(f"{value!r} is not a struct") from None


def replace(value: T, /, **changes: Any) -> T:
    """A copy of the struct ``value`` with ``changes`` (fields left out of ``__init__`` are recomputed)."""
    known = {f.name: f for f in fields(value)}
    for name, item in known.items():
        if not item.init:
            if name in changes:
                raise ValueError(f"field {name!r} is not set by __init__: it cannot be replaced")
        elif name not in changes:
            changes[name] = getattr(value, name)
    return type(value)(**changes)


def asdict(value: Any) -> dict[str, Any]:
    """A struct as a dict of its fields, recursively (structs, lists, tuples and dicts copied)."""
    return {f.name: _copied(getattr(value, f.name)) for f in fields(value)}


def _copied(value: Any) -> Any:
    if is_struct(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
        return type(value)(*(_copied(item) for item in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_copied(item) for item in value)
    if isinstance(value, dict):
        return {_copied(key): _copied(item) for key, item in value.items()}
    return value
