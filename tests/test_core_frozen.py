"""statically_frozen: the value types keep their constructors' signatures and values, and
stay frozen: for mypy always, at runtime in the test suite (and without the guard, the
same values)."""

from __future__ import annotations

import dataclasses
import inspect
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leasehold import core
from leasehold.core import _frozen
from leasehold.core._frozen import with_fast_init

ROOT = Path(__file__).resolve().parent.parent

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

    # Each refused for its own reason (a TypeError from elsewhere would not do).
    reasons = {
        Mutable: "Mutable is not a frozen dataclass",
        NoSlots: "NoSlots has no slots",
        PostInit: "PostInit has __post_init__",
        Factory: "Factory.a: only plain fields are handled",
    }
    for cls, reason in reasons.items():
        for guarded in (True, False):
            with pytest.raises(TypeError, match=f"^{re.escape(reason)}$"):
                with_fast_init(cls, guarded=guarded)


def test_the_suite_runs_with_the_runtime_guard() -> None:
    """conftest sets the variable before core is imported: every test would see a mutation."""
    assert _frozen.RUNTIME_CHECKED
    assert all("__setattr__" in vars(cls) and "__delattr__" in vars(cls) for cls in FAST)


# Run without the guard, as the server runs: every value type builds the same values.
_UNGUARDED_CHECK = """
import dataclasses, pickle, sys
from leasehold import core
fast = [c for c in vars(core).values()
        if isinstance(c, type) and hasattr(vars(c).get("__init__"), "__wrapped__")]
assert len(fast) >= 10, fast
for cls in fast:
    assert "__setattr__" not in vars(cls) and "__delattr__" not in vars(cls), cls
    values = {f.name: f"v-{f.name}" for f in dataclasses.fields(cls)}
    made = cls(**values)
    reference = object.__new__(cls)
    cls.__init__.__wrapped__(reference, **values)
    assert made == reference and repr(made) == repr(reference), cls
    assert cls(*values.values()) == made, cls
    assert hash(made) == hash(reference), cls
    assert pickle.loads(pickle.dumps(made)) == made, cls
    if values:
        first = next(iter(values))
        assert getattr(dataclasses.replace(made, **{first: "new"}), first) == "new", cls
person = core.Person(user_id="u1")
assert person == core.Person("u1", "", "", "", "", "", None)
print(len(fast), "ok")
"""


def test_without_the_guard_the_same_values_as_the_dataclass_init() -> None:
    env = {k: v for k, v in os.environ.items() if k != _frozen.CHECK_FROZEN_ENV}
    result = subprocess.run(
        [sys.executable, "-c", _UNGUARDED_CHECK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(len(FAST)), "ok"]


def test_mypy_rejects_assigning_a_field(tmp_path: Path) -> None:
    """The guarantee the server relies on without the runtime guard (mypy runs in CI)."""
    snippet = tmp_path / "mutates.py"
    snippet.write_text(
        "from leasehold import core\n\n\ndef f(b: core.Booking) -> None:\n    b.lease_id = 'x'\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", str(snippet)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'Property "lease_id" defined in "Booking" is read-only' in result.stdout


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
    # A distinct but equal key: `a == a` would pass on the identity short-cut alone.
    twin = core.SlotKey(*a.as_tuple())
    assert twin is not a
    assert twin == a
    assert (twin != a) is False
    assert hash(twin) == hash(a)
    if a == b:
        assert hash(a) == hash(b)
    assert a != a.as_tuple()  # another type is never equal, as with the generated __eq__
