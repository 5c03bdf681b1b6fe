"""Small helpers shared by the `core/` tests: deterministic ids, command builders, checks."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from leasehold import core
from leasehold.core import (
    ApiVersion,
    Booking,
    BookingError,
    CreateBooking,
    CreateLease,
    Event,
    Lease,
    LeaseSettings,
    Outcome,
    Person,
    ShardState,
    SlotKey,
    SlotRef,
    SlotSpec,
)

R = TypeVar("R")
E = TypeVar("E", bound=BookingError)

S = core.NANOS_PER_SECOND
MINUTE = 60 * S
DEFAULT_TTL = 5 * MINUTE
MAX_TTL = 15 * MINUTE

# 2026-01-01T00:00:00Z; every slot below starts later that day, so none has ended at NOW.
EPOCH_SEC = 1_767_225_600
NOW = EPOCH_SEC * S
DAY_START = EPOCH_SEC + 8 * 3600

CUT_A = SlotKey("m1", "cut", DAY_START, 1800, staff_id="st1")
CUT_B = SlotKey("m1", "cut", DAY_START + 1800, 1800, staff_id="st1")
CUT_FULL = SlotKey("m1", "cut", DAY_START + 3600, 1800, staff_id="st1")  # one spot
YOGA = SlotKey("m2", "yoga", DAY_START, 3600)
SPECS = (
    SlotSpec(CUT_A, spots=3, spots_total=3, availability_tag="tag-a"),
    SlotSpec(CUT_B, spots=2, spots_total=2),
    SlotSpec(CUT_FULL, spots=1, spots_total=1),
    SlotSpec(YOGA, spots=2, spots_total=2),
)


def counter_entropy() -> Callable[[], bytes]:
    """Deterministic id entropy: 0, 1, 2, ... as 15 big-endian bytes."""
    counter = itertools.count()
    return lambda: next(counter).to_bytes(15, "big")


def new_state(
    specs: Iterable[SlotSpec] = SPECS, settings: LeaseSettings | None = None
) -> ShardState:
    return ShardState(specs, entropy=counter_entropy(), settings=settings or LeaseSettings())


def ok(outcome: Outcome[R]) -> R:
    """The successful result of `outcome` (fails the test on a refusal)."""
    result = outcome.result
    assert not isinstance(result, BookingError), f"refused: {result!r} {result.message}"
    return result


def refused(outcome: Outcome[Any], kind: type[E], field: str | None = None) -> E:
    """The refusal of `outcome`, checked to be exactly `kind` (and to name `field`)."""
    result = outcome.result
    assert type(result) is kind, f"expected {kind.__name__}, got {result!r}"
    assert isinstance(result, kind)
    if field is not None:
        assert result.field == field
    return result


def lease_v2(
    key: SlotKey, reference: str = "ref", expiry_ns: int | None = None, tag: str = ""
) -> CreateLease:
    return CreateLease(ApiVersion.V2, SlotRef(key, tag), reference, expiry_ns)


def lease_v0(key: SlotKey, reference: str = "ref", expiry_ns: int | None = None) -> CreateLease:
    return CreateLease(ApiVersion.V0, SlotRef(key), reference, expiry_ns)


def book_v2(
    key: SlotKey,
    lease_id: str = "",
    user_id: str = "u1",
    token: str = "tok",
    person: Person | None = None,
) -> CreateBooking:
    return CreateBooking(
        ApiVersion.V2, SlotRef(key), lease_id, person or Person(user_id=user_id), token
    )


def book_v0(lease_id: str, email: str = "ann@example.org", telephone: str = "") -> CreateBooking:
    person = Person(given_name="Ann", email=email, telephone=telephone)
    return CreateBooking(ApiVersion.V0, None, lease_id, person)


def grant(state: ShardState, command: CreateLease, now_ns: int = NOW) -> Lease:
    return ok(state.create_lease(command, now_ns))


def book(state: ShardState, command: CreateBooking, now_ns: int = NOW) -> Booking:
    return ok(state.create_booking(command, now_ns))


@dataclass(frozen=True)
class Fingerprint:
    """Everything observable about a state, to assert that a refusal changed nothing."""

    snapshot: core.StateSnapshot
    counters: core.Counters
    open_spots: tuple[int | None, ...]
    next_deadline_ns: int | None


def fingerprint(state: ShardState) -> Fingerprint:
    return Fingerprint(
        snapshot=state.snapshot(),
        counters=state.counters(),
        open_spots=tuple(state.open_spots(s.key) for s in state.slot_specs()),
        next_deadline_ns=state.next_deadline_ns(),
    )


def assert_refused_untouched(
    state: ShardState, run: Callable[[], Outcome[Any]], kind: type[E], field: str | None = None
) -> E:
    """Run a command that must be refused with no expiry due: no events, no change."""
    before = fingerprint(state)
    outcome = run()
    error = refused(outcome, kind, field)
    assert outcome.events == ()
    assert fingerprint(state) == before
    return error


def replay_into_fresh(events: Iterable[Event], specs: Iterable[SlotSpec] = SPECS) -> ShardState:
    fresh = ShardState(specs, entropy=counter_entropy())
    for event in events:
        fresh.apply(event)
    return fresh
