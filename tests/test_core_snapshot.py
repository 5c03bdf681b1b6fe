"""Snapshots: restore(snapshot()) rebuilds an equal state that behaves the same."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import pytest

from leasehold import core
from leasehold.core import (
    ApiVersion,
    CancelBooking,
    CheckAvailability,
    CreateBooking,
    CreateLease,
    LeaseSettings,
    Person,
    ShardState,
    SlotKey,
    SlotRef,
    SlotSpec,
)

S = core.NANOS_PER_SECOND
KEYS = [SlotKey("m1", "cut", 1_000 + 60 * i, 60) for i in range(3)]
SPECS = [SlotSpec(k, spots=2, spots_total=2) for k in KEYS]


def entropy() -> Callable[[], bytes]:
    counter = itertools.count()
    return lambda: next(counter).to_bytes(15, "big")


def busy_state() -> ShardState:
    state = ShardState(SPECS, entropy=entropy(), settings=LeaseSettings())
    leases = []
    for i, key in enumerate(KEYS):
        outcome = state.create_lease(CreateLease(ApiVersion.V2, SlotRef(key), f"r{i}", None), 0)
        assert isinstance(outcome.result, core.Lease)
        leases.append(outcome.result)
    booked = state.create_booking(
        CreateBooking(ApiVersion.V2, leases[0].slot, leases[0].lease_id, Person(user_id="u"), "t"),
        1,
    )
    assert isinstance(booked.result, core.Booking)
    state.cancel_booking(CancelBooking(booked.result.booking_id), 2)
    state.create_lease(CreateLease(ApiVersion.V0, SlotRef(KEYS[2]), "late", 400 * S), 3)
    state.expire_due(350 * S)  # the default-TTL leases (300 s) expire, "late" stays live
    return state


def test_restore_rebuilds_an_equal_state() -> None:
    original = busy_state()
    restored = ShardState(SPECS, entropy=entropy())
    restored.restore(original.snapshot())
    assert restored.snapshot() == original.snapshot()
    assert restored.counters() == original.counters()
    for key in KEYS:
        assert restored.open_spots(key) == original.open_spots(key)
    assert restored.next_deadline_ns() == original.next_deadline_ns()


def test_restored_state_keeps_idempotency_memory() -> None:
    original = busy_state()
    restored = ShardState(SPECS, entropy=entropy())
    restored.restore(original.snapshot())
    replay = CreateLease(ApiVersion.V0, SlotRef(KEYS[2]), "late", 400 * S)
    assert (
        restored.create_lease(replay, 360 * S).result
        == original.create_lease(replay, 360 * S).result
    )


def test_restore_refuses_a_snapshot_that_does_not_fit_the_inventory() -> None:
    snapshot = busy_state().snapshot()
    smaller = ShardState(SPECS[:1], entropy=entropy())
    with pytest.raises(ValueError, match="not in the inventory"):
        smaller.restore(snapshot)


def test_restore_needs_a_fresh_state() -> None:
    state = busy_state()
    with pytest.raises(ValueError, match="fresh"):
        state.restore(state.snapshot())


def test_a_frozen_state_is_the_state_when_frozen_whatever_happens_after() -> None:
    state = ShardState(SPECS, entropy=entropy(), settings=LeaseSettings())
    leases = [
        state.create_lease(CreateLease(ApiVersion.V2, SlotRef(key), f"r{i}", None), 0).result
        for i, key in enumerate(KEYS)
    ]
    assert all(isinstance(lease, core.Lease) for lease in leases)
    before = state.snapshot()
    frozen = state.freeze()
    # Every kind of change after the freeze: consume, cancel, expire, forget, new token.
    first = leases[0]
    assert isinstance(first, core.Lease)
    booked = state.create_booking(
        CreateBooking(ApiVersion.V2, first.slot, first.lease_id, Person(user_id="u"), "t"), 1
    ).result
    assert isinstance(booked, core.Booking)
    state.cancel_booking(CancelBooking(booked.booking_id), 2)
    state.expire_due(400 * S)
    state.expire_due(400 * S + 2 * 24 * 3600 * S)  # past retention: expired leases forgotten
    assert state.snapshot() != before
    assert frozen.materialize() == before


def test_a_restored_slot_expires_leases_of_mixed_lifetimes_each_at_its_instant() -> None:
    spec = SlotSpec(SlotKey("m1", "cut", 9_000, 60), spots=5, spots_total=5)
    state = ShardState([spec], entropy=entropy(), settings=LeaseSettings())
    lifetimes = [50, 10, 40, 20, 30]  # granted in this order: not expiry order
    for n, seconds in enumerate(lifetimes):
        granted = state.create_lease(
            CreateLease(ApiVersion.V2, SlotRef(spec.key), f"r{n}", seconds * S), 0
        )
        assert isinstance(granted.result, core.Lease)
    restored = ShardState([spec], entropy=entropy())
    restored.restore(state.snapshot())
    for seconds in sorted(lifetimes):
        at_instant = restored.check_availability(CheckAvailability(spec.key), seconds * S)
        assert at_instant.result == 5 - len([x for x in lifetimes if x > seconds])
        assert len(at_instant.events) == 1  # its own slot's one lease due, by the settle


@pytest.mark.parametrize("state", [core.LeaseState.EXPIRED, core.LeaseState.CONSUMED])
def test_restore_refuses_a_snapshot_holding_one_lease_twice(state: core.LeaseState) -> None:
    """Once LIVE and once more in `state` (any two entries of one id: the checks agree)."""
    snapshot = busy_state().snapshot()
    live = next(lease for lease in snapshot.leases if lease.state is core.LeaseState.LIVE)
    again = dataclasses.replace(live, state=state, booking_id="B-x")
    doubled = dataclasses.replace(snapshot, leases=(*snapshot.leases, again))
    with pytest.raises(ValueError, match=f"holds lease {live.lease_id!r} twice"):
        ShardState(SPECS, entropy=entropy()).restore(doubled)


def test_restore_refuses_a_live_lease_on_a_removed_slot() -> None:
    snapshot = busy_state().snapshot()
    live = next(lease for lease in snapshot.leases if lease.state is core.LeaseState.LIVE)
    inventory = tuple((spec, spec.key == live.slot.key) for spec in SPECS)
    with pytest.raises(ValueError, match=f"live lease {live.lease_id!r} on a removed slot"):
        ShardState(SPECS, entropy=entropy()).restore(
            dataclasses.replace(snapshot, inventory=inventory)
        )


def test_restored_tokens_keep_the_newest_up_to_the_memory_size() -> None:
    original = busy_state()
    snapshot = original.snapshot()
    booking = snapshot.bookings[0]
    tokens = tuple(("m1", "cut", f"t{i}", booking) for i in range(5))
    small = ShardState(SPECS, entropy=entropy(), settings=LeaseSettings(max_tokens=3))
    small.restore(dataclasses.replace(snapshot, tokens=tokens))
    assert small.snapshot().tokens == tokens[2:]


def test_restored_tokens_that_repeat_a_key_are_remembered_as_one_by_one() -> None:
    snapshot = busy_state().snapshot()
    first = snapshot.bookings[0]
    second = dataclasses.replace(first, booking_id="B-other")
    tokens = (("m1", "cut", "t0", first), ("m1", "cut", "t1", first), ("m1", "cut", "t0", second))
    restored = ShardState(SPECS, entropy=entropy())
    restored.restore(dataclasses.replace(snapshot, tokens=tokens))
    assert restored.snapshot().tokens == (("m1", "cut", "t0", second), ("m1", "cut", "t1", first))
