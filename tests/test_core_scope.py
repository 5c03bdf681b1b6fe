"""commit_scope: how far a command's reads and writes reach, for the journal's SYNC hold."""

from __future__ import annotations

import pytest
from _core_helpers import S, counter_entropy

from leasehold.core import (
    ApiVersion,
    BatchAvailability,
    Booking,
    BookingStatus,
    CancelBooking,
    CheckAvailability,
    Command,
    CreateBooking,
    CreateLease,
    ExpiredLeasesForgotten,
    GetBooking,
    Lease,
    LeaseExpiredEvent,
    ListBookings,
    NotFound,
    Person,
    RescheduleBooking,
    ShardState,
    SlotKey,
    SlotRef,
    SlotSpec,
    commit_scope,
)

KEY = SlotKey("m1", "haircut", 1_767_254_400, 1800)
REF = SlotRef(KEY, "tag")
T0 = 1_767_254_400 * S - 3600 * S
USER = Person(user_id="u1")


@pytest.mark.parametrize(
    "command",
    [
        CheckAvailability(KEY),
        CreateLease(ApiVersion.V2, REF, "r1", None),
        CreateLease(ApiVersion.V0, REF, "r1", None),
        CreateBooking(ApiVersion.V2, REF, "L1", USER, "t1"),
        CreateBooking(ApiVersion.V2, REF, "", USER, "t1"),
    ],
)
def test_commands_on_one_slot_reach_its_merchant_and_service(command: Command) -> None:
    assert commit_scope(command, ()) == ("m1", "haircut")
    # Expiring the slot's own due leases first stays within it.
    assert commit_scope(command, (LeaseExpiredEvent("L0"),)) == ("m1", "haircut")


@pytest.mark.parametrize(
    "command",
    [
        CreateBooking(ApiVersion.V0, None, "L1", USER),  # names only a lease
        CancelBooking("B1"),
        RescheduleBooking("B1", 1_767_258_000, None),
        GetBooking("B1"),
        ListBookings("u1"),
        BatchAvailability((KEY,)),
    ],
)
def test_commands_by_id_or_over_many_slots_reach_the_whole_shard(command: Command) -> None:
    assert commit_scope(command, ()) is None


@pytest.mark.parametrize(
    "command",
    [CancelBooking("B1"), RescheduleBooking("B1", 1_767_258_000, None), GetBooking("B1")],
)
def test_commands_by_booking_id_reach_the_service_of_the_booking_they_answer(
    command: Command,
) -> None:
    booking = Booking("B1", REF, USER, BookingStatus.CONFIRMED, "L1")
    assert commit_scope(command, (), booking) == ("m1", "haircut")
    refused = NotFound("booking 'B1' is unknown", field="booking_id")
    assert commit_scope(command, (), refused) is None, "refused: nothing tells its service"


def test_forgetting_expired_leases_reaches_the_whole_shard() -> None:
    # Forgetting drops references of every scope, whichever command did it first.
    events = (ExpiredLeasesForgotten(3), LeaseExpiredEvent("L0"))
    assert commit_scope(CheckAvailability(KEY), events) is None


def test_a_sweep_reaches_the_one_service_of_the_leases_it_expired() -> None:
    other = SlotKey("m2", "haircut", 1_767_254_400, 1800)
    specs = [SlotSpec(KEY, 2, 2), SlotSpec(other, 1, 1)]
    state = ShardState(specs, entropy=counter_entropy())
    ids = {}
    for name, key, ttl_s in (("a1", KEY, 10), ("a2", KEY, 10), ("b1", other, 20)):
        lease = state.create_lease(
            CreateLease(ApiVersion.V2, SlotRef(key), name, T0 + ttl_s * S), T0
        )
        assert isinstance(lease.result, Lease)
        ids[name] = lease.result.lease_id
    first = state.expire_due(T0 + 10 * S)
    assert {e.lease_id for e in first if isinstance(e, LeaseExpiredEvent)} == {ids["a1"], ids["a2"]}
    assert state.expiry_scope(first) == ("m1", "haircut")
    both = (*first, *state.expire_due(T0 + 20 * S))
    assert state.expiry_scope(both) is None, "leases of two merchants"
    assert state.expiry_scope(()) is None
