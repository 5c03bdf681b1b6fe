"""faster_init: the domain's value types keep their constructors' signatures and stay frozen."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import core
from core._frozen import faster_init

FAST = [
    cls
    for cls in vars(core).values()
    if isinstance(cls, type) and hasattr(vars(cls).get("__init__"), "__wrapped__")
]


def test_the_hot_value_types_have_it() -> None:
    names = {cls.__name__ for cls in FAST}
    hot = {"CreateLease", "CreateBooking", "Person", "Lease", "Booking", "LeaseGranted"}
    assert hot | {"BookingCreated", "Outcome", "LeaseExpired", "SlotRef"} <= names


@pytest.mark.parametrize("cls", FAST, ids=lambda cls: cls.__name__)
def test_same_signature_as_the_dataclass_init(cls: type[Any]) -> None:
    fast = inspect.signature(cls.__init__, follow_wrapped=False)
    generated = inspect.signature(cls.__init__.__wrapped__)
    assert [(p.name, p.kind, p.default) for p in fast.parameters.values()] == [
        (p.name, p.kind, p.default) for p in generated.parameters.values()
    ]


def _sample(cls: type[Any]) -> Any:
    """An instance with a distinct value in every field, made by keyword."""
    return cls(**{f.name: f"v-{f.name}" for f in dataclasses.fields(cls)})


@pytest.mark.parametrize("cls", FAST, ids=lambda cls: cls.__name__)
def test_builds_the_same_value_and_stays_frozen(cls: type[Any]) -> None:
    made = _sample(cls)
    reference = object.__new__(cls)
    cls.__init__.__wrapped__(reference, **{f.name: f"v-{f.name}" for f in dataclasses.fields(cls)})
    assert made == reference
    assert repr(made) == repr(reference)
    positional = cls(*(f"v-{f.name}" for f in dataclasses.fields(cls)))
    assert positional == made
    assert pickle.loads(pickle.dumps(made)) == made
    for f in dataclasses.fields(cls):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, f.name, "other")
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(made, f.name)
    if dataclasses.fields(cls):
        first = dataclasses.fields(cls)[0].name
        assert getattr(dataclasses.replace(made, **{first: "new"}), first) == "new"


def test_defaults_fill_every_slot() -> None:
    person = core.Person(user_id="u1")
    assert person == core.Person("u1", "", "", "", "", "", None)
    lease = core.Lease("L", core.ApiVersion.V2, core.SlotRef(core.SlotKey("m", "s", 1, 2)), "r", 5)
    assert lease.state is core.LeaseState.LIVE
    assert lease.booking_id == ""


def test_refuses_what_it_does_not_handle() -> None:
    @dataclasses.dataclass(slots=True)
    class Mutable:
        a: int

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        a: list[int] = dataclasses.field(default_factory=list)

    for cls in (Mutable, NoSlots, PostInit, Factory):
        with pytest.raises(TypeError):
            faster_init(cls)


_keys = st.builds(
    core.SlotKey,
    st.sampled_from(["m1", "m2"]),
    st.sampled_from(["s1", "s2"]),
    st.integers(0, 2),
    st.integers(1, 2),
    st.sampled_from(["", "st1"]),
    st.sampled_from(["", "r1"]),
    st.integers(0, 1),
)


@given(_keys, _keys)
def test_slot_key_equality_is_equality_of_every_field(a: core.SlotKey, b: core.SlotKey) -> None:
    assert (a == b) is (a.as_tuple() == b.as_tuple())
    assert (a != b) is (a.as_tuple() != b.as_tuple())
    assert a == a
    if a == b:
        assert hash(a) == hash(b)
    assert a != a.as_tuple()  # another type is never equal, as with the generated __eq__
