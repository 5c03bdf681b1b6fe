"""The bench checker under inventory changes (issue 19, spec section 8).

The rule is "no new grant while holders >= current capacity"; a lowered capacity
evicts nobody, a removed slot grants nothing and releases its leases, its bookings
stay. A change was applied somewhere in [send - slack, recv + slack]: before it the
old capacity holds, after it the new one, in between either. Each planted over-grant
below MUST be flagged; each legal history beside it must not be.

Histories are built with tests/_bench_history.py (milliseconds, 1 ms of slack).
"""

from __future__ import annotations

from _bench_history import MS, History, kinds, slot

from leasehold.bench._capacity import INF, CapacityTimeline, Change
from leasehold.bench._checker import ViolationKind
from leasehold.bench._history import (
    DEADLINE_EXCEEDED,
    INVALID_ARGUMENT,
    RESOURCE_EXHAUSTED,
    Kind,
    Outcome,
)

OVER = ViolationKind.OVER_CAPACITY


def two_holders_then_lowered_to_one() -> History:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000)
    h.lease(3, 5, "L2", expiry_ms=1_000)
    h.change(10, 12, 1)  # 2 -> 1 below the 2 holders: legal, nobody is evicted
    return h


# ----- capacity lowered -----------------------------------------------------------------


def test_lowering_below_the_holders_evicts_nobody_and_is_legal() -> None:
    h = two_holders_then_lowered_to_one()
    h.read(20, 21, 0)
    result = h.check(slot(2))
    assert result.ok, result.violations
    assert result.max_certain_holders == {0: 2}


def test_a_grant_while_holders_exceed_a_lowered_capacity_is_flagged() -> None:
    h = two_holders_then_lowered_to_one()
    h.lease(20, 22, "L3", expiry_ms=1_000)  # 2 holders, capacity 1: must be refused
    result = h.check(slot(2))
    assert kinds(result) == [OVER]
    assert 2 in result.violations[0].op_ids  # the change is cited


def test_a_grant_while_holders_equal_a_lowered_capacity_is_flagged() -> None:
    h = two_holders_then_lowered_to_one()
    h.lease(20, 22, "L3", expiry_ms=1_000)
    h.ops.pop(1)  # no L2: one holder, capacity 1, and still a grant
    assert kinds(h.check(slot(2))) == [OVER]


def test_after_the_holders_fall_below_the_lowered_capacity_a_grant_is_legal() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=100)
    h.lease(3, 5, "L2", expiry_ms=1_000)
    h.change(10, 12, 1)
    h.lease(50, 52, "L3", expiry_ms=1_000)  # 2 holders of 1 spot: over-grant
    h.lease(150, 152, "L4", expiry_ms=1_000)  # L1 expired, but L2 and L3 still hold
    assert kinds(h.check(slot(2))) == [OVER, OVER]
    legal = History()
    legal.lease(0, 2, "L1", expiry_ms=100)
    legal.lease(3, 5, "L2", expiry_ms=200)
    legal.change(10, 12, 1)
    legal.lease(250, 252, "L3", expiry_ms=1_000)  # both expired: 0 holders < 1
    legal.read(300, 301, 0, phase="final")
    assert legal.check(slot(2)).ok


def test_a_grant_that_may_precede_an_in_flight_lowering_is_legal() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000)
    h.change(10, 20, 1)  # 2 -> 1, answered at 20
    h.lease(12, 14, "L2", expiry_ms=1_000)  # may have been granted before the lowering
    assert h.check(slot(2)).ok
    late = History()
    late.lease(0, 2, "L1", expiry_ms=1_000)
    late.change(10, 20, 1)
    late.lease(25, 27, "L2", expiry_ms=1_000)  # after the answer: capacity 1, held
    assert kinds(late.check(slot(2))) == [OVER]


# ----- capacity raised ------------------------------------------------------------------


def test_raised_capacity_is_available_at_once() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000)
    h.change(10, 12, 2)
    h.lease(14, 16, "L2", expiry_ms=1_000)
    h.read(20, 21, 0)
    h.read(2_000, 2_001, 2, phase="final")
    assert h.check(slot(1)).ok


def test_a_grant_before_a_raise_was_sent_is_flagged() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000)
    h.lease(3, 6, "L2", expiry_ms=1_000)  # granted by 7; the raise is sent at 10 (>= 9)
    h.change(10, 12, 2)
    assert kinds(h.check(slot(1))) == [OVER]


def test_a_grant_overlapping_the_raise_may_follow_it() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000)
    h.lease(8, 11, "L2", expiry_ms=1_000)
    h.change(10, 12, 2)
    assert h.check(slot(1)).ok


# ----- removed, re-added ----------------------------------------------------------------


def test_a_removed_slot_grants_nothing() -> None:
    h = History()
    h.remove(10, 12)
    h.lease(20, 22, "L1", expiry_ms=1_000)
    result = h.check(slot(3))
    assert kinds(result) == [OVER]
    assert "at most 0 spots" in result.violations[0].message


def test_a_removal_releases_the_leases_and_a_re_add_grants_again() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000)
    h.remove(10, 12)
    h.book(20, 21, "", lease_id="L1", cause="SLOT_UNAVAILABLE")
    h.change(30, 32, 1)  # re-added with one spot; L1 was released
    h.lease(40, 42, "L2", expiry_ms=1_000)
    h.read(50, 51, 0)
    h.read(2_000, 2_001, 1, phase="final")
    result = h.check(slot(1))
    assert result.ok, result.violations


def test_a_booking_of_a_lease_the_removal_released_is_flagged() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000)
    h.remove(10, 12)
    h.change(30, 32, 1)
    h.book(40, 41, "B1", lease_id="L1")  # released at the removal: must be refused
    assert ViolationKind.BOOKING_OF_RELEASED_LEASE in kinds(h.check(slot(1)))


def test_a_booking_racing_the_removal_may_have_come_first() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000)
    h.book(9, 13, "B1", lease_id="L1")
    h.remove(10, 12)
    assert h.check(slot(1)).ok


def test_an_orphaned_booking_still_holds_its_spot_after_a_re_add() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000)
    h.book(3, 4, "B1", lease_id="L1")
    h.remove(10, 12)  # B1 stays CONFIRMED, orphaned
    h.change(30, 32, 1)
    h.lease(40, 42, "L2", expiry_ms=1_000)  # 1 holder (B1) of 1 spot: must be refused
    assert kinds(h.check(slot(1))) == [OVER]


def test_a_lease_granted_while_the_removal_was_in_flight_is_not_counted_after_it() -> None:
    h = History()
    h.remove(10, 20)
    h.lease(12, 14, "L1", expiry_ms=1_000)  # may precede the removal, then released
    h.change(30, 32, 1)
    h.lease(40, 42, "L2", expiry_ms=1_000)
    assert h.check(slot(1)).ok


# ----- outcomes of the admin call -------------------------------------------------------


def test_an_admin_error_proves_nothing_was_applied_neither_way() -> None:
    # A change goes in steps, shard by shard: a step may fail after others applied.
    raised = History()
    raised.lease(0, 2, "L1", expiry_ms=1_000)
    raised.change(10, 12, 2, status=RESOURCE_EXHAUSTED)  # 1 -> 2, maybe applied
    raised.lease(20, 22, "L2", expiry_ms=1_000)
    assert raised.check(slot(1)).ok
    removed = History()
    removed.lease(0, 2, "L1", expiry_ms=1_000)
    removed.remove(10, 12, status=INVALID_ARGUMENT)  # maybe applied: L1 maybe released
    removed.change(20, 22, 1)
    removed.lease(30, 32, "L2", expiry_ms=1_000)
    assert removed.check(slot(1)).ok
    assert [op.outcome for op in removed.ops if op.kind is Kind.INVENTORY] == [
        Outcome.UNKNOWN,
        Outcome.APPLIED,
    ]


def test_a_change_of_unknown_outcome_may_have_been_applied_at_any_later_time() -> None:
    raised = History()
    raised.lease(0, 2, "L1", expiry_ms=10_000)
    raised.change(10, 5_000, 2, status=DEADLINE_EXCEEDED)
    raised.lease(6_000, 6_002, "L2", expiry_ms=10_000)
    assert raised.check(slot(1)).ok
    lowered = History()
    lowered.lease(0, 2, "L1", expiry_ms=10_000)
    lowered.change(10, 5_000, 1, status=DEADLINE_EXCEEDED)
    lowered.lease(6_000, 6_002, "L2", expiry_ms=10_000)
    assert lowered.check(slot(2)).ok


def test_concurrent_changes_in_either_order() -> None:
    def history(grants: int) -> History:
        h = History()
        h.change(10, 20, 1)
        h.change(15, 25, 3)  # overlaps the first: the final capacity is 1 or 3
        for i in range(grants):
            h.lease(30 + i, 31 + i, f"L{i}", expiry_ms=1_000)
        return h

    assert history(3).check(slot(2)).ok
    assert kinds(history(4).check(slot(2))) == [OVER]


# ----- reads ----------------------------------------------------------------------------


def test_reads_follow_the_capacity() -> None:
    ok = two_holders_then_lowered_to_one()
    ok.change(30, 32, 5)
    ok.read(40, 41, 3)
    ok.read(2_000, 2_001, 5, phase="final")
    assert ok.check(slot(2)).ok
    wrong = two_holders_then_lowered_to_one()
    wrong.read(20, 21, 1)  # 2 holders of 1 spot: nothing is open
    wrong.change(30, 32, 5)
    wrong.read(2_000, 2_001, 4, phase="final")  # all leases expired: 5 are open
    result = wrong.check(slot(2))
    assert kinds(result) == [ViolationKind.AVAILABILITY_MISMATCH] * 2


# ----- the timeline alone ---------------------------------------------------------------


def change(op_id: int, capacity: int, lo_ms: int, hi_ms: int, applied: bool = True) -> Change:
    latest = hi_ms * MS if applied else INF
    return Change(op_id, capacity, capacity == 0, lo_ms * MS, latest, applied)


def test_a_timeline_of_sequential_changes() -> None:
    t = CapacityTimeline(2, [change(1, 5, 10, 20), change(2, 0, 30, 40)])
    assert t.most(0, 9 * MS) == 2
    assert (t.least(15 * MS, 15 * MS), t.most(15 * MS, 15 * MS)) == (2, 5)
    assert (t.least(21 * MS, 29 * MS), t.most(21 * MS, 29 * MS)) == (5, 5)
    assert (t.least(41 * MS, 50 * MS), t.most(41 * MS, 50 * MS)) == (0, 0)
    assert t.most(0, 50 * MS) == 5
    assert t.changes_in(21 * MS, 29 * MS) == (1,)
    assert [c.op_id for c in t.removals()] == [2]


def test_a_timeline_never_forgets_a_change_of_unknown_outcome() -> None:
    t = CapacityTimeline(2, [change(1, 7, 10, 20, applied=False), change(2, 1, 30, 40)])
    # After the applied change 2, the unknown change 1 may still come (later): 1 or 7.
    assert (t.least(50 * MS, 60 * MS), t.most(50 * MS, 60 * MS)) == (1, 7)
    assert t.most(0, 9 * MS) == 2


def test_a_lease_released_by_a_removal_may_be_refused_before_its_expiry() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000)
    h.remove(10, 12)
    h.book(20, 21, "", lease_id="L1", cause="LEASE_EXPIRED")  # released: no longer live
    assert h.check(slot(1)).ok
    kept = History()
    kept.lease(0, 2, "L1", expiry_ms=1_000)
    kept.book(20, 21, "", lease_id="L1", cause="LEASE_EXPIRED")  # no removal: too early
    assert kinds(kept.check(slot(1))) == [ViolationKind.LEASE_EXPIRED_EARLY]


def test_a_replay_refused_while_the_slot_may_be_removed_is_legal() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000, ref="r1")
    h.remove(10, 12)
    h.add(Kind.LEASE, 20, 21, slot=0, reference="r1", status=INVALID_ARGUMENT)
    assert h.check(slot(1)).ok
    kept = History()
    kept.lease(0, 2, "L1", expiry_ms=1_000, ref="r1")
    kept.add(Kind.LEASE, 20, 21, slot=0, reference="r1", status=INVALID_ARGUMENT)
    assert kinds(kept.check(slot(1))) == [ViolationKind.REPLAY_MISMATCH]


def test_a_booking_replay_refused_after_a_removal_is_legal() -> None:
    h = History()
    h.lease(0, 2, "L1", expiry_ms=1_000)
    h.book(3, 4, "B1", lease_id="L1", token="t1")
    h.remove(10, 12)
    h.add(Kind.BOOK, 20, 21, slot=0, lease_id="L1", token="t1", status=INVALID_ARGUMENT)
    assert h.check(slot(1)).ok
