"""``nn_tracker.core.structs`` behaves as :mod:`dataclasses` does, for what the package uses of it.

Each property builds the same class twice, with ``@dataclass`` and with ``@struct``, and checks that
both accept and refuse the same calls and give equal fields, equality, hashes and ``repr``.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nn_tracker.core import structs

NAMES = ("alpha", "beta", "gamma", "delta", "eps")
VALUES = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none(), st.tuples(st.integers(0, 3)))


@st.composite
def declarations(draw: Any) -> list[tuple[str, str, Any]]:
    """Fields in order: (name, kind, default), kind one of required, default, factory, hidden."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    required = draw(st.integers(0, len(names)))
    fields = []
    for index, name in enumerate(names):
        if index < required:
            fields.append((name, "required", None))
        else:
            kind = draw(st.sampled_from(["default", "factory", "hidden"]))
            fields.append((name, kind, draw(VALUES)))
    return fields


def build(decorate: Any, field_maker: Any, declared: list[tuple[str, str, Any]], name: str) -> type:
    namespace: dict[str, Any] = {"__annotations__": {}}
    for field_name, kind, default in declared:
        namespace["__annotations__"][field_name] = "Any"
        if kind == "default":
            namespace[field_name] = default
        elif kind == "factory":
            namespace[field_name] = field_maker(default_factory=list)
        elif kind == "hidden":
            namespace[field_name] = field_maker(default=default, init=False, repr=False, compare=False)
    return decorate(type(name, (), namespace))


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except TypeError:
        return "TypeError", None


@settings(max_examples=300, deadline=None)
@given(
    declared=declarations(),
    frozen=st.booleans(),
    args=st.lists(VALUES, max_size=6),
    kwargs=st.dictionaries(st.sampled_from((*NAMES, "zeta")), VALUES, max_size=4),
)
def test_a_struct_accepts_refuses_and_compares_as_a_dataclass_does(declared, frozen, args, kwargs):
    reference = build(dataclasses.dataclass(frozen=frozen), dataclasses.field, declared, "Thing")
    ours = build(structs.struct(frozen=frozen), structs.field, declared, "Thing")

    expected_kind, expected = outcome(lambda: reference(*args, **kwargs))
    got_kind, got = outcome(lambda: ours(*args, **kwargs))
    assert got_kind == expected_kind
    if expected is None:
        return
    assert [f.name for f in structs.fields(got)] == [f.name for f in dataclasses.fields(expected)]
    for f in dataclasses.fields(expected):
        assert getattr(got, f.name) == getattr(expected, f.name)
    assert repr(got) == repr(expected)
    assert structs.asdict(got) == dataclasses.asdict(expected)
    twin = ours(*args, **kwargs)
    assert (got == twin) is (expected == reference(*args, **kwargs))
    if frozen:
        assert outcome(lambda: hash(got))[0] == outcome(lambda: hash(expected))[0]
        if outcome(lambda: hash(got))[0] == "ok":
            assert hash(got) == hash(twin)
        with pytest.raises(AttributeError):
            got.alpha = 1
    else:
        with pytest.raises(TypeError):
            hash(got)
    changed = {f.name: "new" for f in dataclasses.fields(expected) if f.init}
    assert structs.asdict(structs.replace(got, **changed)) == dataclasses.asdict(
        dataclasses.replace(expected, **changed)
    )


def test_an_argument_given_twice_or_unknown_is_refused():
    @structs.struct
    class Pair:
        first: int
        second: int = 0

    with pytest.raises(TypeError, match="multiple values for argument 'first'"):
        Pair(1, first=2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'third'"):
        Pair(1, third=2)
    with pytest.raises(TypeError, match="takes 2 positional arguments, 3 given"):
        Pair(1, 2, 3)
    with pytest.raises(TypeError, match="missing argument 'first'"):
        Pair(second=2)
    assert Pair(1, second=2) == Pair(first=1, second=2)


def test_methods_the_class_defines_itself_stay_as_with_dataclasses():
    for decorate in (dataclasses.dataclass(frozen=True), structs.struct(frozen=True)):

        @decorate
        class Named:
            name: str
            size: int = 0

            def __repr__(self) -> str:
                return f"<{self.name}>"

            def __eq__(self, other: object) -> bool:
                return isinstance(other, Named) and other.name == self.name

            def __hash__(self) -> int:
                return hash(self.name)

        assert repr(Named("a", 1)) == "<a>"
        assert Named("a", 1) == Named("a", 2) and hash(Named("a", 1)) == hash(Named("a", 2))

    for decorate in (dataclasses.dataclass(frozen=True), structs.struct(frozen=True)):

        @decorate
        class OwnEquality:
            name: str

            def __eq__(self, other: object) -> bool:
                return True

        assert OwnEquality("a") == OwnEquality("b")
        assert hash(OwnEquality("a")) == hash(OwnEquality("a"))  # generated: the class's __eq__ alone set it None


def test_comparison_leaves_out_hidden_fields_and_other_types():
    @structs.struct(frozen=True)
    class Point:
        x: int
        y: int = 0
        note: str = structs.field(default="", compare=False)

    @structs.struct(frozen=True)
    class Other:
        x: int
        y: int = 0
        note: str = ""

    assert Point(1, note="a") == Point(1, note="b")
    assert Point(1) != Point(1, 2)
    assert Point(1) != Other(1)
    assert hash(Point(1, note="a")) == hash(Point(1, note="b"))


def test_factories_give_each_instance_its_own_value_and_post_init_runs():
    @structs.struct
    class Box:
        items: list[int] = structs.field(default_factory=list)
        size: int = structs.field(default=0, init=False)

        def __post_init__(self) -> None:
            self.size = len(self.items)

    first, second = Box(), Box([1, 2])
    first.items.append(1)
    assert Box().items == [] and second.size == 2
    with pytest.raises(ValueError, match="not set by __init__"):
        structs.replace(second, size=3)
    assert structs.replace(second, items=[1]).size == 1


def test_inherited_fields_come_first_and_instances_pickle():
    assert pickle.loads(pickle.dumps(Child(1, 2))) == Child(1, 2)
    assert [f.name for f in structs.fields(Child)] == ["base", "extra"]
    with pytest.raises(AttributeError):
        Child(1, 2).base = 3


def test_declarations_that_dataclasses_refuse_are_refused():
    with pytest.raises(TypeError, match="without a default follows"):

        @structs.struct
        class Wrong:
            a: int = 0
            b: int

    with pytest.raises(ValueError, match="use default_factory"):

        @structs.struct
        class Shared:
            items: list[int] = []  # noqa: RUF012 - the mistake under test

    @structs.struct(kw_only=True)
    class KeywordsOnly:
        a: int = 0
        b: int

    assert KeywordsOnly(b=1) == KeywordsOnly(a=0, b=1)
    with pytest.raises(TypeError):
        KeywordsOnly(0, 1)


@structs.struct(frozen=True)
class Parent:
    base: int


@structs.struct(frozen=True)
class Child(Parent):
    extra: int = 0


def test_the_finer_points_match_dataclasses():
    """Subclasses' own attributes, match arguments, recursive repr, fields set by __post_init__,
    read-only metadata, unhashable defaults, copy.replace's protocol: each as dataclasses have it."""
    import copy

    for decorate, make_field, frozen_error in (
        (dataclasses.dataclass, dataclasses.field, dataclasses.FrozenInstanceError),
        (structs.struct, structs.field, structs.FrozenInstanceError),
    ):

        @decorate(frozen=True)
        class Base:
            a: int

        class Sub(Base):  # not decorated: attributes of its own are allowed, fields stay frozen
            pass

        sub = Sub(1)
        sub.extra = 2
        assert sub.extra == 2
        with pytest.raises(frozen_error):
            sub.a = 3
        with pytest.raises(frozen_error):
            Base(1).extra = 2

        @decorate(kw_only=True)
        class Keywords:
            a: int = 0

        @decorate
        class Node:
            name: str
            children: list = make_field(default_factory=list)
            size: int = make_field(init=False)
            note: dict = make_field(default=None, metadata={"help": "x"})

            def __post_init__(self) -> None:
                self.size = len(self.children)

        assert Keywords.__match_args__ == () and Node.__match_args__ == ("name", "children", "note")
        node = Node("root")
        node.children.append(node)
        assert repr(node).endswith(".Node(name='root', children=[...], size=0, note=None)")
        assert Node("x", [1, 2]).size == 2
        metadata = {
            f.name: f for f in (dataclasses.fields if decorate is dataclasses.dataclass else structs.fields)(Node)
        }
        with pytest.raises(TypeError):
            metadata["note"].metadata["help"] = "changed"
        with pytest.raises(ValueError, match="mutable default"):

            @decorate
            class Shared:
                items: bytearray = bytearray()

        if hasattr(copy, "replace"):  # Python 3.13
            assert copy.replace(Keywords(a=1), a=2) == Keywords(a=2)
    assert structs.replace(Keywords(a=1), a=2) == Keywords.__replace__(Keywords(a=1), a=2)
