"""The bench checker on hand-made histories: each kind of violation is found, and valid
histories (including the ambiguous ones concurrency produces) raise no false alarm.

The histories are built with tests/_bench_history.py (milliseconds, 1 ms of slack).
"""

from __future__ import annotations

import pytest
from _bench_history import MS, History, kinds, slot

from leasehold.bench._checker import ViolationKind, check_history
from leasehold.bench._history import DEADLINE_EXCEEDED, NOT_FOUND, RESOURCE_EXHAUSTED, Kind

# ----- valid histories ------------------------------------------------------------------


def test_an_empty_history_is_valid() -> None:
    assert History().check(slot(1)).ok


def test_two_leases_on_two_spots_then_both_expire() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=100)
    h.lease(1, 3, "L2", expiry_ms=120)
    h.read(10, 11, 0)
    h.read(110, 111, 1)
    h.read(200, 201, 2, phase="final")
    result = h.check(slot(2))
    assert result.ok, result.violations
    assert result.max_certain_holders == {0: 2}
    assert result.reads_checked == 3


def test_a_lease_granted_right_after_another_expired_is_valid() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=100)
    # Sent before L1's expiry, answered after it: the server may have granted it at 100.
    h.lease(99.5, 102, "L2", expiry_ms=300)
    h.read(400, 401, 1, phase="final")
    assert h.check(slot(1)).ok


def test_the_funnel_lease_book_cancel_frees_the_spot() -> None:
    h = History()
    h.lease(0, 1, "L1", expiry_ms=1_000)
    h.book(10, 12, "B1", lease_id="L1")
    h.read(20, 21, 0)
    h.read(2_000, 2_001, 0)  # the booking holds the spot past the lease's expiry
    h.cancel(3_000, 3_002, "B1")
    h.lease(3_010, 3_011, "L2", expiry_ms=3_500)
    h.read(4_000, 4_001, 1, phase="final")
    assert h.check(slot(1)).ok


def test_refused_and_unknown_requests_are_not_counted_as_holders() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000)
    h.refused_lease(3, 4, "ref-x")
    # A timed-out lease request: it may or may not hold the spot (the server says it did not).
    h.add(Kind.LEASE, 5, 500, slot=0, reference="ref-y", status=DEADLINE_EXCEEDED,
          requested_expiry_ns=800 * MS)  # fmt: skip
    h.read(600, 601, 0)
    assert h.check(slot(1)).ok


def test_an_unknown_outcome_widens_what_a_read_may_answer() -> None:
    for answer in (0, 1):
        h = History()
        h.lease(0, 2, "L1", expiry_ms=1_000)
        h.add(Kind.LEASE, 5, 500, slot=0, reference="ref-y", status=DEADLINE_EXCEEDED,
              requested_expiry_ns=900 * MS)  # fmt: skip
        h.read(600, 601, answer, phase="final")
        assert h.check(slot(2)).ok, answer


def test_a_read_straddling_an_expiry_may_see_either_side() -> None:
    for answer in (0, 1):
        h = History()
        h.lease(0, 2, "L1", expiry_ms=100)
        h.read(99, 101, answer)
        assert h.check(slot(1)).ok, answer


def test_identical_replays_are_valid() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000, ref="r1")
    h.lease(5, 6, "L1", expiry_ms=1_000, ref="r1")  # the same reference again: the same lease
    h.book(10, 11, "B1", lease_id="L1", token="t1")
    h.book(20, 21, "B1", lease_id="L1", token="t1")  # the same token again: the same booking
    h.read(30, 31, 0)
    result = h.check(slot(1))
    assert result.ok, result.violations
    assert result.max_certain_holders == {0: 1}


def test_a_shed_replay_is_not_a_mismatch() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000, ref="r1")
    h.add(Kind.LEASE, 5, 6, slot=0, reference="r1", status=RESOURCE_EXHAUSTED)
    assert h.check(slot(1)).ok


def test_a_reschedule_moves_the_holder() -> None:
    h = History()
    h.book(0, 1, "B1", on=0)
    h.add(Kind.RESCHEDULE, 10, 12, booking_id="B1", target_slot=1, reply_slot=1,
          booking_status="CONFIRMED")  # fmt: skip
    h.read(20, 21, 1, on=0)
    h.read(20, 21, 0, on=1)
    h.book(30, 31, "B2", on=0)  # the old slot's spot is free again
    assert h.check(slot(1), slot(1, start_sec=5_000)).ok


def test_overlapping_changes_of_one_booking_are_treated_as_unknown() -> None:
    h = History()
    h.book(0, 1, "B1", on=0)
    h.cancel(10, 20, "B1")
    h.add(Kind.RESCHEDULE, 12, 14, booking_id="B1", target_slot=1, reply_slot=1)
    # The reschedule may have been applied before the cancel: while both are in flight
    # the booking may be on either slot.
    h.read(15, 16, 0, on=1)
    h.read(15, 16, 1, on=0)
    assert h.check(slot(1), slot(1, start_sec=5_000)).ok


# ----- each kind of violation -----------------------------------------------------------


def test_two_certain_holders_of_a_single_spot_are_an_overbooking() -> None:
    h = History()
    first = h.lease(0, 2, "L1", expiry_ms=100)
    second = h.lease(50, 52, "L2", expiry_ms=200)
    result = h.check(slot(1))
    assert kinds(result) == [ViolationKind.OVER_CAPACITY]
    violation = result.violations[0]
    assert set(violation.op_ids) == {first.op_id, second.op_id}
    assert violation.at_ns == 53 * MS  # second's reply + slack: from here both certainly hold


def test_a_booking_that_outlives_its_lease_keeps_the_spot() -> None:
    h = History()
    h.lease(0, 1, "L1", expiry_ms=100)
    h.book(10, 11, "B1", lease_id="L1")
    h.lease(200, 201, "L2", expiry_ms=300)  # granted while B1 still holds the only spot
    assert kinds(h.check(slot(1))) == [ViolationKind.OVER_CAPACITY]


def test_a_lease_granted_before_the_cancel_was_sent_is_an_overbooking() -> None:
    h = History()
    h.book(0, 1, "B1")
    h.lease(10, 11, "L1", expiry_ms=1_000)
    h.cancel(20, 21, "B1")
    assert kinds(h.check(slot(1))) == [ViolationKind.OVER_CAPACITY]


def test_a_final_read_that_disagrees_with_the_history() -> None:
    h = History()
    h.book(0, 1, "B1")
    final = h.read(100, 101, 1, phase="final")
    result = h.check(slot(1))
    assert kinds(result) == [ViolationKind.AVAILABILITY_MISMATCH]
    assert result.violations[0].op_ids[0] == final.op_id
    assert "final read" in result.violations[0].message


def test_a_read_that_misses_an_expiry() -> None:
    h = History()
    h.lease(0, 1, "L1", expiry_ms=100)
    h.read(150, 151, 0)  # the lease expired at 100: the spot must be open
    assert kinds(h.check(slot(1))) == [ViolationKind.AVAILABILITY_MISMATCH]


def test_a_batch_answer_is_checked_too() -> None:
    h = History()
    h.book(0, 1, "B1")
    h.add(Kind.BATCH, 10, 11, slot=0, count=1)
    assert kinds(h.check(slot(1))) == [ViolationKind.AVAILABILITY_MISMATCH]


def test_a_booking_sent_after_its_lease_expired() -> None:
    h = History()
    h.lease(0, 1, "L1", expiry_ms=100)
    booking = h.book(101.5, 103, "B1", lease_id="L1")
    result = h.check(slot(1))
    assert kinds(result) == [ViolationKind.BOOKING_WITHOUT_LIVE_LEASE]
    assert booking.op_id in result.violations[0].op_ids


def test_a_booking_sent_just_before_its_lease_expired_is_valid() -> None:
    h = History()
    h.lease(0, 1, "L1", expiry_ms=100)
    h.book(99.5, 103, "B1", lease_id="L1")
    assert h.check(slot(1)).ok


def test_a_booking_of_a_lease_never_granted_or_on_another_slot() -> None:
    h = History()
    h.book(0, 1, "B1", lease_id="L-nobody-granted")
    h.lease(0, 1, "L2", expiry_ms=1_000, on=1)
    h.book(5, 6, "B2", lease_id="L2", on=0)
    result = h.check(slot(2), slot(2, start_sec=5_000))
    assert kinds(result) == [ViolationKind.BOOKING_WITHOUT_LIVE_LEASE] * 2


def test_one_lease_backing_two_bookings() -> None:
    h = History()
    h.lease(0, 1, "L1", expiry_ms=1_000)
    h.book(10, 11, "B1", lease_id="L1", token="t1")
    h.book(20, 21, "B2", lease_id="L1", token="t2")
    result = h.check(slot(5))
    assert ViolationKind.LEASE_CONSUMED_TWICE in kinds(result)


def test_a_lease_refused_as_expired_while_live() -> None:
    h = History()
    h.lease(0, 1, "L1", expiry_ms=1_000)
    h.book(10, 11, "", lease_id="L1", cause="LEASE_EXPIRED")
    assert kinds(h.check(slot(1))) == [ViolationKind.LEASE_EXPIRED_EARLY]


def test_a_lease_replay_with_another_answer() -> None:
    h = History()
    h.lease(0, 1, "L1", expiry_ms=1_000, ref="r1")
    h.lease(5, 6, "L9", expiry_ms=1_000, ref="r1")
    assert ViolationKind.REPLAY_MISMATCH in kinds(h.check(slot(5)))


def test_a_lease_replay_refused_after_the_grant() -> None:
    h = History()
    h.lease(0, 1, "L1", expiry_ms=1_000, ref="r1")
    h.refused_lease(5, 6, "r1")
    assert kinds(h.check(slot(1))) == [ViolationKind.REPLAY_MISMATCH]


def test_a_concurrent_refusal_of_the_same_reference_is_not_provably_a_replay() -> None:
    h = History()
    h.lease(0, 10, "L1", expiry_ms=1_000, ref="r1")
    h.refused_lease(5, 6, "r1")  # sent before the grant was answered: it may have come first
    assert h.check(slot(1)).ok


def test_a_token_replay_with_another_booking_or_a_refusal() -> None:
    h = History()
    h.book(0, 1, "B1", token="t1")
    h.book(5, 6, "B2", token="t1")
    h.add(Kind.BOOK, 10, 11, slot=0, token="t1", status=NOT_FOUND)
    result = h.check(slot(5))
    assert kinds(result) == [ViolationKind.REPLAY_MISMATCH] * 2


@pytest.mark.parametrize("slack_ms", [0, 1, 5])
def test_the_checker_is_a_pure_function_of_its_inputs(slack_ms: int) -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=100)
    h.lease(50, 52, "L2", expiry_ms=200)
    once = check_history(h.ops, [slot(1)], slack_ms * MS)
    again = check_history(list(reversed(h.ops)), [slot(1)], slack_ms * MS)
    assert once == again
