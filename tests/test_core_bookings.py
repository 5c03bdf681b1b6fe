"""CreateBooking (v2, v0), cancel, reschedule and reads in the pure core; event replay."""

from __future__ import annotations

from dataclasses import replace

import pytest
from _core_helpers import (
    CUT_A,
    CUT_B,
    CUT_FULL,
    DAY_START,
    NOW,
    SPECS,
    YOGA,
    S,
    assert_refused_untouched,
    book,
    book_v0,
    book_v2,
    fingerprint,
    grant,
    lease_v0,
    lease_v2,
    new_state,
    ok,
    refused,
    replay_into_fresh,
)

from leasehold.core import (
    BOOKING_ID_PREFIX,
    ApiVersion,
    Booking,
    BookingAlreadyCancelled,
    BookingCancelled,
    BookingCreated,
    BookingRescheduled,
    BookingStatus,
    CancelBooking,
    CreateBooking,
    Event,
    GetBooking,
    InvalidArgument,
    LeaseExpired,
    LeaseExpiredEvent,
    LeaseGranted,
    LeaseSettings,
    LeaseState,
    ListBookings,
    NotFound,
    Person,
    RescheduleBooking,
    SlotAlreadyBookedByUser,
    SlotKey,
    SlotRef,
    SlotSpec,
    SlotUnavailable,
    bucket_of_id,
    routing_bucket,
)

# ----- v2 CreateBooking -----------------------------------------------------------------


def test_v2_booking_from_a_lease_consumes_it_without_a_second_spot() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A, "r1", tag="tag-a"))
    assert state.open_spots(CUT_A) == 2
    person = Person(user_id="u1", given_name="Ann", email="ann@example.org")
    command = CreateBooking(ApiVersion.V2, SlotRef(CUT_A, "tag-a"), lease.lease_id, person, "t1")
    outcome = state.create_booking(command, NOW + S)
    booking = ok(outcome)
    assert booking.booking_id.startswith(BOOKING_ID_PREFIX)
    assert bucket_of_id(BOOKING_ID_PREFIX, booking.booking_id) == routing_bucket("m1", "cut")
    assert booking.slot == SlotRef(CUT_A, "tag-a")
    assert booking.person == person
    assert booking.status is BookingStatus.CONFIRMED
    assert booking.lease_id == lease.lease_id
    assert outcome.events == (BookingCreated(booking, "t1"),)
    assert state.open_spots(CUT_A) == 2
    consumed = state.lease(lease.lease_id)
    assert consumed is not None
    assert consumed.state is LeaseState.CONSUMED
    assert consumed.booking_id == booking.booking_id
    counters = state.counters()
    assert (counters.live_leases, counters.confirmed_bookings, counters.bookings_created) == (
        0,
        1,
        1,
    )
    assert state.booking(booking.booking_id) == booking


def test_v2_booking_from_a_lease_succeeds_on_a_slot_the_lease_filled() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_FULL))
    assert state.open_spots(CUT_FULL) == 0
    booking = book(state, book_v2(CUT_FULL, lease.lease_id))
    assert booking.slot.key == CUT_FULL
    assert state.open_spots(CUT_FULL) == 0


def test_v2_direct_booking_takes_a_spot() -> None:
    state = new_state()
    outcome = state.create_booking(book_v2(CUT_B, token="t1"), NOW)
    booking = ok(outcome)
    assert booking.lease_id == ""
    assert outcome.events == (BookingCreated(booking, "t1"),)
    assert state.open_spots(CUT_B) == 1


def test_v2_direct_booking_on_a_full_slot_is_slot_unavailable() -> None:
    state = new_state()
    book(state, book_v2(CUT_FULL, user_id="u1", token="t1"))
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v2(CUT_FULL, user_id="u2", token="t2"), NOW),
        SlotUnavailable,
    )


def test_v2_direct_booking_cannot_take_a_spot_held_by_a_lease() -> None:
    state = new_state()
    grant(state, lease_v2(CUT_FULL))
    refused(state.create_booking(book_v2(CUT_FULL), NOW), SlotUnavailable)


def test_v2_token_is_required() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A))
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v2(CUT_A, lease.lease_id, token=""), NOW),
        InvalidArgument,
        "idempotency_token",
    )


def test_v2_slot_is_required() -> None:
    state = new_state()
    command = CreateBooking(ApiVersion.V2, None, "", Person(user_id="u1"), "t1")
    assert_refused_untouched(
        state, lambda: state.create_booking(command, NOW), InvalidArgument, "slot"
    )


def test_v2_user_id_is_required() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A))
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v2(CUT_A, lease.lease_id, user_id=""), NOW),
        InvalidArgument,
        "user_id",
    )


def test_v2_token_replay_returns_the_identical_booking_and_creates_nothing() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A))
    first = book(state, book_v2(CUT_A, lease.lease_id, token="t1"))
    before = fingerprint(state)
    again = state.create_booking(book_v2(CUT_A, lease.lease_id, token="t1"), NOW + S)
    assert ok(again) == first
    assert again.events == ()
    assert fingerprint(state) == before


def test_v2_token_replay_of_a_direct_booking_takes_no_second_spot() -> None:
    state = new_state()
    first = book(state, book_v2(CUT_B, token="t1"))
    for _ in range(3):
        assert ok(state.create_booking(book_v2(CUT_B, token="t1"), NOW)) == first
    assert state.open_spots(CUT_B) == 1
    assert state.counters().bookings_created == 1


def test_v2_token_replay_after_cancel_is_the_original_response() -> None:
    state = new_state()
    first = book(state, book_v2(CUT_B, token="t1"))
    ok(state.cancel_booking(CancelBooking(first.booking_id), NOW + S))
    replay = state.create_booking(book_v2(CUT_B, token="t1"), NOW + 2 * S)
    assert ok(replay) == first
    assert replay.result == first
    assert replay.events == ()
    assert state.open_spots(CUT_B) == 2  # the replay did not re-take the freed spot


def test_v2_token_replay_after_a_failure_is_processed_afresh() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A))
    refused(state.create_booking(book_v2(CUT_A, "L1nonsense", token="t1"), NOW), NotFound)
    refused(
        state.create_booking(book_v2(CUT_A, lease.lease_id, "", token="t1"), NOW), InvalidArgument
    )
    booking = book(state, book_v2(CUT_A, lease.lease_id, token="t1"))
    assert booking.lease_id == lease.lease_id


def test_v2_token_replay_after_slot_unavailable_is_processed_afresh() -> None:
    state = new_state()
    blocker = book(state, book_v2(CUT_FULL, user_id="u1", token="t1"))
    refused(state.create_booking(book_v2(CUT_FULL, user_id="u2", token="t2"), NOW), SlotUnavailable)
    ok(state.cancel_booking(CancelBooking(blocker.booking_id), NOW))
    booking = book(state, book_v2(CUT_FULL, user_id="u2", token="t2"))
    assert booking.person.user_id == "u2"


def test_v2_tokens_are_scoped_by_merchant_and_service() -> None:
    state = new_state()
    cut = book(state, book_v2(CUT_B, token="shared"))
    yoga = book(state, book_v2(YOGA, token="shared"))
    assert cut.booking_id != yoga.booking_id
    assert yoga.slot.key == YOGA
    assert state.open_spots(YOGA) == 1


def test_v2_tokens_are_shared_by_the_slots_of_one_service() -> None:
    # POLICY scope is (merchant_id, service_id): the same token on another slot is a replay.
    state = new_state()
    first = book(state, book_v2(CUT_A, token="t1"))
    again = state.create_booking(book_v2(CUT_B, token="t1"), NOW)
    assert ok(again) == first
    assert state.open_spots(CUT_B) == 2


@pytest.mark.parametrize(
    "lease_id",
    [
        pytest.param("L1" + f"{routing_bucket('m1', 'cut'):08x}" + "ab" * 15, id="our-shape"),
        pytest.param("not-an-id", id="malformed"),
    ],
)
def test_v2_unknown_lease_is_not_found(lease_id: str) -> None:
    state = new_state()
    grant(state, lease_v2(CUT_A))
    assert_refused_untouched(
        state, lambda: state.create_booking(book_v2(CUT_A, lease_id), NOW), NotFound
    )


def test_v2_consumed_lease_is_not_found_for_a_new_token() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A))
    book(state, book_v2(CUT_A, lease.lease_id, user_id="u1", token="t1"))
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v2(CUT_A, lease.lease_id, "u2", token="t2"), NOW),
        NotFound,
    )


def test_v2_expired_lease_is_lease_expired_from_its_exact_instant() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A, expiry_ns=NOW + 30 * S))
    end = lease.expires_ns
    outcome = state.create_booking(book_v2(CUT_A, lease.lease_id), end)
    refused(outcome, LeaseExpired)
    # The lease expired lazily in this very command; nothing else was applied.
    assert outcome.events == (LeaseExpiredEvent(lease.lease_id),)
    assert state.counters().bookings_created == 0
    assert state.open_spots(CUT_A) == 3
    # Later attempts are refused the same way, with no events.
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v2(CUT_A, lease.lease_id, token="t2"), end + S),
        LeaseExpired,
    )


def test_v2_lease_one_nanosecond_before_expiry_still_books() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A, expiry_ns=NOW + 30 * S))
    booking = book(state, book_v2(CUT_A, lease.lease_id), lease.expires_ns - 1)
    assert booking.lease_id == lease.lease_id
    # A consumed lease never expires: its spot stays with the booking.
    assert state.expire_due(lease.expires_ns) == ()
    assert state.open_spots(CUT_A) == 2


@pytest.mark.parametrize(
    "request_key",
    [
        pytest.param(CUT_B, id="other-start"),
        pytest.param(replace(CUT_A, duration_sec=3600), id="other-duration"),
        pytest.param(replace(CUT_A, staff_id="st2"), id="other-staff"),
    ],
)
def test_v2_slot_differing_from_the_leased_slot_is_invalid(request_key: SlotKey) -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A))
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v2(request_key, lease.lease_id), NOW),
        InvalidArgument,
        "slot",
    )


def test_v2_lease_of_another_merchant_is_invalid_slot() -> None:
    state = new_state()
    yoga_lease = grant(state, lease_v2(YOGA))
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v2(CUT_A, yoga_lease.lease_id), NOW),
        InvalidArgument,
        "slot",
    )


def test_v2_unknown_lease_id_routed_to_another_merchant_is_invalid_slot() -> None:
    # An id of ours that another shard would own cannot name a lease for this slot.
    state = new_state()
    foreign = "L1" + f"{routing_bucket('m2', 'yoga'):08x}" + "cd" * 15
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v2(CUT_A, foreign), NOW),
        InvalidArgument,
        "slot",
    )


@pytest.mark.parametrize(
    ("key", "field"),
    [
        pytest.param(replace(CUT_A, start_sec=1), "slot", id="no-such-slot"),
        pytest.param(replace(CUT_A, merchant_id="m9"), "merchant_id", id="unknown-merchant"),
    ],
)
def test_v2_unknown_slot_is_invalid(key: SlotKey, field: str) -> None:
    state = new_state()
    assert_refused_untouched(
        state, lambda: state.create_booking(book_v2(key), NOW), InvalidArgument, field
    )


def test_v2_same_user_with_a_confirmed_booking_on_the_slot_is_refused() -> None:
    state = new_state()
    book(state, book_v2(CUT_A, user_id="u1", token="t1"))
    lease = grant(state, lease_v2(CUT_A))
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v2(CUT_A, lease.lease_id, "u1", token="t2"), NOW),
        SlotAlreadyBookedByUser,
    )
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v2(CUT_A, user_id="u1", token="t3"), NOW),
        SlotAlreadyBookedByUser,
    )
    # Another user, or the same user on another slot, is fine.
    book(state, book_v2(CUT_A, lease.lease_id, user_id="u2", token="t4"))
    book(state, book_v2(CUT_B, user_id="u1", token="t5"))


def test_v2_same_user_may_book_again_after_cancelling() -> None:
    state = new_state()
    first = book(state, book_v2(CUT_A, user_id="u1", token="t1"))
    ok(state.cancel_booking(CancelBooking(first.booking_id), NOW))
    second = book(state, book_v2(CUT_A, user_id="u1", token="t2"))
    assert second.booking_id != first.booking_id


def test_a_refused_booking_leaves_the_lease_usable() -> None:
    state = new_state()
    book(state, book_v2(CUT_A, user_id="u1", token="t0"))
    lease = grant(state, lease_v2(CUT_A))
    refusals = [
        book_v2(CUT_A, lease.lease_id, user_id="u1", token="t1"),  # already booked by user
        book_v2(CUT_B, lease.lease_id, user_id="u2", token="t2"),  # slot differs
        book_v2(CUT_A, lease.lease_id, user_id="", token="t3"),  # no user_id
        book_v2(CUT_A, lease.lease_id, user_id="u2", token=""),  # no token
    ]
    for command in refusals:
        assert not isinstance(state.create_booking(command, NOW).result, Booking)
    view = state.lease(lease.lease_id)
    assert view == lease
    booking = book(state, book_v2(CUT_A, lease.lease_id, user_id="u2", token="t1"))
    assert booking.lease_id == lease.lease_id


# ----- v0 CreateBooking -----------------------------------------------------------------


def test_v0_booking_consumes_its_lease() -> None:
    state = new_state()
    lease = grant(state, lease_v0(CUT_A, "c1"))
    outcome = state.create_booking(book_v0(lease.lease_id), NOW + S)
    booking = ok(outcome)
    assert booking.slot == lease.slot
    assert booking.status is BookingStatus.CONFIRMED
    assert booking.person.email == "ann@example.org"
    assert booking.lease_id == lease.lease_id
    assert outcome.events == (BookingCreated(booking, ""),)
    assert state.open_spots(CUT_A) == 2
    view = state.lease(lease.lease_id)
    assert view is not None
    assert view.state is LeaseState.CONSUMED


def test_v0_lease_is_required() -> None:
    state = new_state()
    assert_refused_untouched(
        state, lambda: state.create_booking(book_v0(""), NOW), InvalidArgument, "lease_ref"
    )


def test_v0_unknown_lease_is_not_found() -> None:
    state = new_state()
    assert_refused_untouched(
        state, lambda: state.create_booking(book_v0("L1" + "0" * 38), NOW), NotFound
    )


def test_v0_replay_for_a_consumed_lease_returns_that_booking() -> None:
    state = new_state()
    lease = grant(state, lease_v0(CUT_A))
    first = book(state, book_v0(lease.lease_id))
    before = fingerprint(state)
    # Even with other client information.
    replay = state.create_booking(book_v0(lease.lease_id, "bob@example.org"), NOW + S)
    assert ok(replay) == first
    assert replay.events == ()
    assert fingerprint(state) == before
    # And at and after the lease's expiry instant: a consumed lease does not expire.
    late = state.create_booking(book_v0(lease.lease_id), lease.expires_ns)
    assert ok(late) == first
    assert late.events == ()
    assert state.snapshot() == before.snapshot


def test_v0_replay_for_a_lease_consumed_through_v2_returns_that_booking() -> None:
    state = new_state()
    lease = grant(state, lease_v0(CUT_A))
    first = book(state, book_v2(CUT_A, lease.lease_id))
    assert ok(state.create_booking(book_v0(lease.lease_id), NOW)) == first


def test_v0_expired_lease_is_lease_expired() -> None:
    state = new_state()
    lease = grant(state, lease_v0(CUT_A, expiry_ns=NOW + 30 * S))
    refused(state.create_booking(book_v0(lease.lease_id), lease.expires_ns), LeaseExpired)
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v0(lease.lease_id), lease.expires_ns + 60 * S),
        LeaseExpired,
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(("ann@example.org", ""), ("ann@example.org", ""), id="same-email"),
        pytest.param(("Ann@Example.ORG", ""), ("ann@example.org", "+1"), id="email-case"),
        pytest.param(("ann@example.org", "+1 555"), ("bob@example.org", "+1 555"), id="phone"),
    ],
)
def test_v0_same_user_is_same_email_or_same_telephone(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    state = new_state()
    one = grant(state, lease_v0(CUT_A, "c1"))
    two = grant(state, lease_v0(CUT_A, "c2"))
    book(state, book_v0(one.lease_id, *first))
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v0(two.lease_id, *second), NOW),
        SlotAlreadyBookedByUser,
    )
    assert state.lease(two.lease_id) == two


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(("ann@example.org", "+1"), ("bob@example.org", "+2"), id="both-differ"),
        pytest.param(("", ""), ("", ""), id="both-empty"),
        pytest.param(("ann@example.org", ""), ("", ""), id="empty-request"),
    ],
)
def test_v0_other_user_may_book_the_same_slot(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    state = new_state()
    one = grant(state, lease_v0(CUT_A, "c1"))
    two = grant(state, lease_v0(CUT_A, "c2"))
    book(state, book_v0(one.lease_id, *first))
    book(state, book_v0(two.lease_id, *second))


def test_v0_same_email_as_a_v2_booking_is_the_same_user() -> None:
    state = new_state()
    person = Person(user_id="u1", email="ann@example.org")
    book(state, book_v2(CUT_A, person=person))
    lease = grant(state, lease_v0(CUT_A))
    refused(
        state.create_booking(book_v0(lease.lease_id, "ANN@example.org"), NOW),
        SlotAlreadyBookedByUser,
    )


def test_v0_lease_booked_through_v2() -> None:
    state = new_state()
    lease = grant(state, lease_v0(CUT_B, "c1"))
    booking = book(state, book_v2(CUT_B, lease.lease_id, token="t1"))
    assert booking.lease_id == lease.lease_id
    assert state.open_spots(CUT_B) == 1


def test_v2_lease_booked_through_v0() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_B, "r1"))
    booking = book(state, book_v0(lease.lease_id))
    assert booking.lease_id == lease.lease_id
    assert booking.slot == lease.slot
    assert state.open_spots(CUT_B) == 1


def test_v2_consumed_by_v0_is_not_found_for_v2() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_B, "r1"))
    book(state, book_v0(lease.lease_id))
    refused(state.create_booking(book_v2(CUT_B, lease.lease_id, token="t9"), NOW), NotFound)


# ----- cancel ---------------------------------------------------------------------------


def test_cancel_returns_the_spot() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_FULL))
    booking = book(state, book_v2(CUT_FULL, lease.lease_id))
    outcome = state.cancel_booking(CancelBooking(booking.booking_id), NOW + S)
    cancelled = ok(outcome)
    assert cancelled == replace(booking, status=BookingStatus.CANCELED)
    assert outcome.events == (BookingCancelled(booking.booking_id),)
    assert state.open_spots(CUT_FULL) == 1
    assert state.booking(booking.booking_id) == cancelled
    assert state.counters().confirmed_bookings == 0
    # The freed spot can be taken again.
    book(state, book_v2(CUT_FULL, user_id="u2", token="t2"))


def test_cancelling_twice_returns_the_cancelled_booking_without_events() -> None:
    state = new_state()
    booking = book(state, book_v2(CUT_A))
    cancelled = ok(state.cancel_booking(CancelBooking(booking.booking_id), NOW))
    before = fingerprint(state)
    again = state.cancel_booking(CancelBooking(booking.booking_id), NOW + S)
    assert ok(again) == cancelled
    assert again.events == ()
    assert fingerprint(state) == before
    assert state.open_spots(CUT_A) == 3


def test_cancel_unknown_or_empty_id() -> None:
    state = new_state()
    book(state, book_v2(CUT_A))
    assert_refused_untouched(
        state, lambda: state.cancel_booking(CancelBooking("B1nope"), NOW), NotFound
    )
    assert_refused_untouched(
        state, lambda: state.cancel_booking(CancelBooking(""), NOW), InvalidArgument, "booking_id"
    )


# ----- reschedule -----------------------------------------------------------------------


def test_reschedule_moves_the_booking_to_another_slot() -> None:
    state = new_state()
    booking = book(state, book_v2(CUT_A))
    command = RescheduleBooking(booking.booking_id, CUT_B.start_sec, None)
    outcome = state.reschedule_booking(command, NOW)
    moved = ok(outcome)
    assert moved.booking_id == booking.booking_id
    assert moved.slot.key == CUT_B
    assert moved.status is BookingStatus.CONFIRMED
    assert outcome.events == (BookingRescheduled(booking.booking_id, moved.slot),)
    assert (state.open_spots(CUT_A), state.open_spots(CUT_B)) == (3, 1)
    assert state.booking(booking.booking_id) == moved
    assert state.counters().confirmed_bookings == 1


def test_reschedule_moves_the_same_user_rule_with_the_booking() -> None:
    state = new_state()
    booking = book(state, book_v2(CUT_A, user_id="u1", token="t1"))
    ok(state.reschedule_booking(RescheduleBooking(booking.booking_id, CUT_B.start_sec, None), NOW))
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v2(CUT_B, user_id="u1", token="t2"), NOW),
        SlotAlreadyBookedByUser,
    )
    book(state, book_v2(CUT_A, user_id="u1", token="t3"))  # the old slot no longer counts u1


def test_the_same_user_rule_counts_each_booking_of_a_shared_email() -> None:
    state = new_state()
    ann = "ann@example.org"
    first = book(state, book_v2(CUT_A, token="t1", person=Person(user_id="u1", email=ann)))
    book(state, book_v2(CUT_A, token="t2", person=Person(user_id="u2", email=ann)))
    ok(state.cancel_booking(CancelBooking(first.booking_id), NOW))
    # u2's booking still holds the email: a v0 caller with it is the same user.
    lease = grant(state, lease_v0(CUT_A, reference="r0"))
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v0(lease.lease_id, email="ANN@example.org"), NOW),
        SlotAlreadyBookedByUser,
    )


def test_reschedule_with_start_and_duration() -> None:
    specs = (*SPECS, SlotSpec(replace(CUT_A, duration_sec=3600), spots=1, spots_total=1))
    state = new_state(specs)
    booking = book(state, book_v2(CUT_B))
    command = RescheduleBooking(booking.booking_id, CUT_A.start_sec, 3600)
    moved = ok(state.reschedule_booking(command, NOW))
    assert moved.slot.key == replace(CUT_A, duration_sec=3600)
    assert state.open_spots(CUT_B) == 2


def test_reschedule_to_a_full_slot_keeps_the_old_spot() -> None:
    state = new_state()
    grant(state, lease_v2(CUT_FULL))
    booking = book(state, book_v2(CUT_A))
    assert_refused_untouched(
        state,
        lambda: state.reschedule_booking(
            RescheduleBooking(booking.booking_id, CUT_FULL.start_sec, None), NOW
        ),
        SlotUnavailable,
    )
    assert state.booking(booking.booking_id) == booking
    assert state.open_spots(CUT_A) == 2


def test_reschedule_of_a_cancelled_booking_is_refused() -> None:
    state = new_state()
    booking = book(state, book_v2(CUT_A))
    ok(state.cancel_booking(CancelBooking(booking.booking_id), NOW))
    assert_refused_untouched(
        state,
        lambda: state.reschedule_booking(
            RescheduleBooking(booking.booking_id, CUT_B.start_sec, None), NOW
        ),
        BookingAlreadyCancelled,
    )


@pytest.mark.parametrize(
    ("start", "duration"),
    [
        pytest.param(DAY_START + 7, None, id="no-slot-at-start"),
        pytest.param(None, 1799, id="no-slot-with-duration"),
        pytest.param(YOGA.start_sec, YOGA.duration_sec, id="other-service-times"),
    ],
)
def test_reschedule_to_an_unknown_slot_is_invalid(start: int | None, duration: int | None) -> None:
    state = new_state()
    booking = book(state, book_v2(CUT_A))
    assert_refused_untouched(
        state,
        lambda: state.reschedule_booking(
            RescheduleBooking(booking.booking_id, start, duration), NOW
        ),
        InvalidArgument,
    )


def test_reschedule_unknown_booking() -> None:
    state = new_state()
    assert_refused_untouched(
        state,
        lambda: state.reschedule_booking(RescheduleBooking("B1x", CUT_B.start_sec, None), NOW),
        NotFound,
    )


def test_reschedule_to_the_same_slot_changes_nothing() -> None:
    state = new_state()
    booking = book(state, book_v2(CUT_A))
    outcome = state.reschedule_booking(RescheduleBooking(booking.booking_id, None, None), NOW)
    assert ok(outcome) == booking
    assert outcome.events == ()


# ----- reads ----------------------------------------------------------------------------


def test_get_booking() -> None:
    state = new_state()
    booking = book(state, book_v2(CUT_A))
    assert ok(state.get_booking(GetBooking(booking.booking_id), NOW)) == booking
    refused(state.get_booking(GetBooking("B1unknown"), NOW), NotFound)
    refused(state.get_booking(GetBooking(""), NOW), InvalidArgument, "booking_id")


def test_list_bookings_confirmed_upcoming_by_start() -> None:
    ended = SlotKey("m1", "cut", DAY_START - 7200, 1800)  # ended before NOW + 6 h
    ending = SlotKey("m1", "cut", DAY_START - 3600, 1800)
    specs = (*SPECS, SlotSpec(ended, 1, 1), SlotSpec(ending, 1, 1))
    state = new_state(specs)
    later = book(state, book_v2(CUT_B, token="t1"))
    earlier = book(state, book_v2(CUT_A, token="t2"))
    cancelled = book(state, book_v2(YOGA, token="t3"))
    ok(state.cancel_booking(CancelBooking(cancelled.booking_id), NOW))
    book(state, book_v2(ended, token="t4"))
    last = book(state, book_v2(ending, token="t5"))
    book(state, book_v2(CUT_A, user_id="someone-else", token="t6"))
    # `ending` ends at DAY_START - 1800: listed one nanosecond before, not at that instant.
    end_ns = (DAY_START - 1800) * S
    listed = ok(state.list_bookings(ListBookings("u1"), end_ns - 1))
    assert listed == (last, earlier, later)
    assert ok(state.list_bookings(ListBookings("u1"), end_ns)) == (earlier, later)


def test_list_bookings_follows_a_reschedule() -> None:
    state = new_state()
    booking = book(state, book_v2(CUT_B, token="t1"))
    other = book(state, book_v2(CUT_A, token="t2"))
    moved = ok(
        state.reschedule_booking(
            RescheduleBooking(booking.booking_id, CUT_FULL.start_sec, None), NOW
        )
    )
    assert ok(state.list_bookings(ListBookings("u1"), NOW)) == (other, moved)


def test_list_bookings_of_an_unknown_user_is_empty() -> None:
    state = new_state()
    book(state, book_v2(CUT_A))
    assert ok(state.list_bookings(ListBookings("nobody"), NOW)) == ()


def test_list_bookings_needs_a_user_id() -> None:
    refused(new_state().list_bookings(ListBookings(""), NOW), InvalidArgument, "user_id")


# ----- replaying events -----------------------------------------------------------------


def test_replaying_the_events_into_a_fresh_state_rebuilds_it() -> None:
    settings = LeaseSettings(expired_retention_ns=3600 * S)
    state = new_state(settings=settings)
    events: list[Event] = []

    def run(outcome_events: tuple[Event, ...]) -> None:
        events.extend(outcome_events)

    t = NOW
    leases = []
    for i, key in enumerate((CUT_A, CUT_B, CUT_FULL, YOGA)):
        outcome = state.create_lease(lease_v2(key, f"r{i}", t + (30 + i) * S), t)
        run(outcome.events)
        leases.append(ok(outcome))
    outcome0 = state.create_lease(lease_v0(CUT_A, "c1"), t)
    run(outcome0.events)
    v0_lease = ok(outcome0)

    booked = state.create_booking(book_v2(CUT_A, leases[0].lease_id, token="t1"), t + S)
    run(booked.events)
    direct = state.create_booking(book_v2(CUT_B, user_id="u2", token="t2"), t + S)
    run(direct.events)
    v0 = state.create_booking(book_v0(v0_lease.lease_id), t + 2 * S)
    run(v0.events)
    run(state.cancel_booking(CancelBooking(ok(direct).booking_id), t + 3 * S).events)
    move = RescheduleBooking(ok(booked).booking_id, CUT_B.start_sec, None)
    run(state.reschedule_booking(move, t + 4 * S).events)
    run(state.create_booking(book_v2(CUT_B, user_id="u2", token="t2"), t + 4 * S).events)
    # The remaining leases expire (one lazily, by a command), then are forgotten.
    lazily = state.create_lease(lease_v2(CUT_FULL, "r9"), leases[2].expires_ns)
    run(lazily.events)
    run(state.expire_due(t + 40 * S))
    run(state.expire_due(t + 3600 * S + 40 * S))
    assert any(e.kind == "expired_leases_forgotten" for e in events)

    fresh = replay_into_fresh(events)
    assert fresh.counters() == state.counters()
    for spec in SPECS:
        assert fresh.open_spots(spec.key) == state.open_spots(spec.key)
    for lease in [*leases, v0_lease, ok(lazily)]:
        assert fresh.lease(lease.lease_id) == state.lease(lease.lease_id)
    for made in (booked, direct, v0):
        booking_id = ok(made).booking_id
        assert fresh.booking(booking_id) == state.booking(booking_id)
    assert fresh.snapshot() == state.snapshot()
    # The fresh heap still lists the consumed leases (stale entries, skipped when due).
    assert fresh.expire_due(t + 3600 * S + 40 * S) == ()
    assert fresh.next_deadline_ns() == state.next_deadline_ns()
    # The rebuilt state also answers alike: token replay, and the v0 lease replay.
    replay = book_v2(CUT_A, leases[0].lease_id, token="t1")
    assert fresh.create_booking(replay, t + 5 * S) == state.create_booking(replay, t + 5 * S)


def test_booking_events_naming_equal_copies_of_keys_apply_as_the_originals() -> None:
    # Decoded from the journal, events name keys equal to the inventory's, never
    # identical: apply must not tell them apart (nor a just-decided booking from its copy).
    def copied(key: SlotKey) -> SlotKey:
        return SlotKey(*key.as_tuple())

    state = new_state()
    lease = grant(state, lease_v2(CUT_A, "r1"))
    # A request naming a copy of the key decides and applies as one naming the original.
    booked = state.create_booking(book_v2(copied(CUT_A), lease.lease_id, token="t1"), NOW)
    direct = state.create_booking(book_v2(copied(CUT_B), user_id="u2", token="t2"), NOW)
    events: list[Event] = [LeaseGranted(lease), *booked.events, *direct.events]
    moved: list[Event] = []
    for event in events:
        if isinstance(event, BookingCreated):
            b = event.booking
            slot = SlotRef(copied(b.slot.key), b.slot.availability_tag)
            event = BookingCreated(replace(b, slot=slot), event.idempotency_token)
        moved.append(event)
    fresh = replay_into_fresh(moved)
    assert fresh.snapshot() == state.snapshot()
    again = (book_v2(CUT_A, lease.lease_id, token="t1"), book_v2(CUT_B, user_id="u2", token="t2"))
    for made, key, replay in ((booked, CUT_A, again[0]), (direct, CUT_B, again[1])):
        kept = fresh.booking(ok(made).booking_id)
        assert kept is not None
        assert kept.slot.key is key  # the inventory's own key object
        assert fresh.create_booking(replay, NOW).result == ok(made)
    assert fresh.counters() == state.counters()


def test_applying_an_event_that_would_overbook_is_rejected() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_FULL))
    second = replace(lease, lease_id=lease.lease_id[:-1] + "f", reference="other")
    fresh = replay_into_fresh([LeaseGranted(lease)])
    with pytest.raises(ValueError, match="overbook"):
        fresh.apply(LeaseGranted(second))
    assert fresh.snapshot() == state.snapshot()


def test_applying_a_grant_of_a_known_lease_id_is_rejected_in_every_state() -> None:
    state = new_state()
    live = grant(state, lease_v2(CUT_A, "live"))
    consumed = grant(state, lease_v2(CUT_A, "consumed"))
    book(state, book_v2(CUT_A, consumed.lease_id))
    lapsed = grant(state, lease_v2(CUT_B, "lapsed", NOW + S))
    state.expire_due(NOW + S)
    before = fingerprint(state)
    for known in (live, consumed, lapsed):
        again = replace(known, reference="another")
        with pytest.raises(ValueError, match="twice"):
            state.apply(LeaseGranted(again))
    assert fingerprint(state) == before


def test_past_max_tokens_the_oldest_token_is_forgotten_first() -> None:
    state = new_state(settings=LeaseSettings(max_tokens=2))
    first = book(state, book_v2(CUT_A, user_id="u1", token="t1"))
    second = book(state, book_v2(CUT_A, user_id="u2", token="t2"))
    third = book(state, book_v2(CUT_B, user_id="u3", token="t3"))
    # t2 and t3 still replay to their bookings, with no new events.
    for booking, token, user in ((second, "t2", "u2"), (third, "t3", "u3")):
        key = booking.slot.key
        replay = state.create_booking(book_v2(key, user_id=user, token=token), NOW)
        assert (replay.result, replay.events) == (booking, ())
    # t1 is forgotten: the same request is a new booking, refused as a second one for u1.
    assert_refused_untouched(
        state,
        lambda: state.create_booking(book_v2(CUT_A, user_id="u1", token="t1"), NOW),
        SlotAlreadyBookedByUser,
    )
    assert state.booking(first.booking_id) == first


def test_a_restored_state_forgets_its_tokens_in_the_original_order() -> None:
    settings = LeaseSettings(max_tokens=2)
    state = new_state(settings=settings)
    book(state, book_v2(CUT_A, user_id="u1", token="t1"))
    second = book(state, book_v2(CUT_A, user_id="u2", token="t2"))
    restored = new_state(settings=settings)
    restored.restore(state.snapshot())
    book(restored, book_v2(CUT_B, user_id="u3", token="t3"))
    replay = restored.create_booking(book_v2(CUT_A, user_id="u2", token="t2"), NOW)
    assert (replay.result, replay.events) == (second, ())
    # t1, the oldest, went when t3 came: the same request is now a new (refused) booking.
    assert_refused_untouched(
        restored,
        lambda: restored.create_booking(book_v2(CUT_A, user_id="u1", token="t1"), NOW),
        SlotAlreadyBookedByUser,
    )
