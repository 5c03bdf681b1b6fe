"""value_type: the value types stay frozen, for mypy always, at runtime in the test suite;
and without the runtime guard (as the server runs) they build the same values."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leasehold import core
from leasehold.core import _frozen
from leasehold.core._frozen import is_value_type, make_value_type

ROOT = Path(__file__).resolve().parent.parent

VALUE_TYPES = [cls for cls in vars(core).values() if isinstance(cls, type) and is_value_type(cls)]


def test_the_hot_value_types_are_value_types() -> None:
    names = {cls.__name__ for cls in VALUE_TYPES}
    hot = {"CreateLease", "CreateBooking", "Person", "Lease", "Booking", "LeaseGranted"}
    assert hot | {"BookingCreated", "Outcome", "LeaseExpired", "SlotRef"} <= names


def _values(cls: type[Any]) -> dict[str, str]:
    """A distinct value for every field."""
    return {f.name: f"v-{f.name}" for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("cls", VALUE_TYPES, ids=lambda cls: cls.__name__)
def test_builds_values_that_stay_frozen(cls: type[Any]) -> None:
    values = _values(cls)
    made = cls(**values)
    assert cls(*values.values()) == made
    assert tuple(getattr(made, name) for name in values) == tuple(values.values())
    assert hash(made) == hash(tuple(values.values()))  # as a frozen dataclass hashes
    assert pickle.loads(pickle.dumps(made)) == made
    for name in values:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, name, "other")
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(made, name)
    if values:
        first = next(iter(values))
        assert getattr(dataclasses.replace(made, **{first: "new"}), first) == "new"


def test_defaults_fill_every_slot() -> None:
    person = core.Person(user_id="u1")
    assert person == core.Person("u1", "", "", "", "", "", None)
    lease = core.Lease("L", core.ApiVersion.V2, core.SlotRef(core.SlotKey("m", "s", 1, 2)), "r", 5)
    assert lease.state is core.LeaseState.LIVE
    assert lease.booking_id == ""


def test_the_suite_runs_with_the_runtime_guard() -> None:
    """conftest sets the variable before core is imported: every test would see a mutation."""
    assert _frozen.RUNTIME_CHECKED
    assert all("__setattr__" in vars(cls) for cls in VALUE_TYPES)


def _declared() -> type[Any]:
    """A fresh class to make a value type of (each is made once)."""

    class Sample:
        kind: ClassVar[str] = "sample"
        a: int
        b: str = "b"
        c: tuple[int, ...] = ()

    return Sample


@pytest.mark.parametrize("guarded", [True, False])
def test_either_way_a_slotted_dataclass_with_the_same_behaviour(guarded: bool) -> None:
    cls = make_value_type(_declared(), guarded=guarded)
    made = cls(1, c=(2, 3))
    assert (made.a, made.b, made.c, made.kind) == (1, "b", (2, 3), "sample")
    assert repr(made).endswith(".Sample(a=1, b='b', c=(2, 3))")
    assert made == cls(1, "b", (2, 3))
    assert made != cls(2)
    assert hash(made) == hash((1, "b", (2, 3)))
    assert cls.__match_args__ == ("a", "b", "c")
    assert dataclasses.replace(made, b="x") == cls(1, "x", (2, 3))
    assert not hasattr(made, "__dict__")
    assert is_value_type(cls)
    if guarded:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, "a", 2)  # noqa: B010 (as mypy cannot see)
    else:
        # No __setattr__ of its own: the generated __init__'s stores are specialised.
        assert "__setattr__" not in vars(cls)
        setattr(made, "a", 2)  # noqa: B010 (as mypy cannot see)
        assert made.a == 2


@pytest.mark.parametrize("guarded", [True, False])
def test_refuses_a_class_that_hashes_otherwise(guarded: bool) -> None:
    class OwnHash:
        a: int

        def __hash__(self) -> int:
            return 0

    with pytest.raises(TypeError):
        make_value_type(OwnHash, guarded=guarded)


# Run without the guard, as the server runs: prints each value type's sample's repr.
_UNGUARDED = """
import dataclasses, pickle
from leasehold import core
from leasehold.core._frozen import RUNTIME_CHECKED, is_value_type
assert not RUNTIME_CHECKED
for cls in [c for c in vars(core).values() if isinstance(c, type) and is_value_type(c)]:
    assert "__setattr__" not in vars(cls), cls
    values = {f.name: f"v-{f.name}" for f in dataclasses.fields(cls)}
    made = cls(**values)
    assert cls(*values.values()) == made, cls
    assert hash(made) == hash(tuple(values.values())), cls
    assert pickle.loads(pickle.dumps(made)) == made, cls
    if values:
        first = next(iter(values))
        assert getattr(dataclasses.replace(made, **{first: "new"}), first) == "new", cls
    print(repr(made))
print(repr(core.Person(user_id="u1")))
"""


def test_without_the_guard_the_same_values() -> None:
    env = {k: v for k, v in os.environ.items() if k != _frozen.CHECK_FROZEN_ENV}
    result = subprocess.run(
        [sys.executable, "-c", _UNGUARDED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    guarded = [repr(cls(**_values(cls))) for cls in VALUE_TYPES]
    assert result.stdout.splitlines() == [*guarded, repr(core.Person(user_id="u1"))]


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
