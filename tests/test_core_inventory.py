"""Inventory changes in the core (spec section 8): raise, lower, remove, re-add, windows."""

from __future__ import annotations

from dataclasses import replace

import pytest
from _core_helpers import (
    CUT_A,
    CUT_B,
    CUT_FULL,
    NOW,
    SPECS,
    YOGA,
    book,
    book_v0,
    book_v2,
    grant,
    lease_v0,
    lease_v2,
    new_state,
    ok,
    refused,
    replay_into_fresh,
)

from leasehold.core import (
    END_OF_TIME,
    CancelBooking,
    ChangeInventory,
    CheckAvailability,
    Event,
    InvalidArgument,
    InventoryChanged,
    InventoryReport,
    LeaseExpiredEvent,
    LeaseState,
    ListInventory,
    RescheduleBooking,
    ShardState,
    SlotKey,
    SlotSpec,
    SlotUnavailable,
    Window,
    check_listing,
    whole_inventory,
)

SPEC = {spec.key: spec for spec in SPECS}


def exactly(key: SlotKey, *listed: SlotSpec) -> Window:
    """A window holding just the slot `key` (by every restriction), listing `listed`."""
    return Window(
        key.start_sec,
        key.start_sec + 1,
        key.merchant_id,
        key.service_id,
        key.duration_sec,
        (key.staff_id, key.room_id, key.party_size),
        listed,
    )


def change(state: ShardState, window: Window, now: int = NOW, **kw: object) -> InventoryReport:
    outcome = state.change_inventory(ChangeInventory(window, **kw), now)  # type: ignore[arg-type]
    return ok(outcome)


def with_spots(key: SlotKey, spots: int) -> SlotSpec:
    return replace(SPEC[key], spots=spots, spots_total=max(spots, SPEC[key].spots_total))


def test_capacity_raised_is_available_at_once() -> None:
    state = new_state()
    grant(state, lease_v2(CUT_FULL, "a"))
    refused(state.create_lease(lease_v2(CUT_FULL, "b"), NOW), SlotUnavailable)
    report = change(state, exactly(CUT_FULL, with_spots(CUT_FULL, 2)))
    assert (report.changed, report.added, report.removed) == (1, 0, 0)
    assert state.open_spots(CUT_FULL) == 1
    grant(state, lease_v2(CUT_FULL, "b"))


def test_capacity_lowered_below_holders_evicts_nobody_and_grants_nothing_until_below() -> None:
    state = new_state()
    first = grant(state, lease_v2(CUT_A, "a"))
    grant(state, lease_v2(CUT_A, "b"))
    change(state, exactly(CUT_A, with_spots(CUT_A, 1)))
    assert state.open_spots(CUT_A) == 0
    assert state.counters().live_leases == 2
    refused(state.create_lease(lease_v2(CUT_A, "c"), NOW), SlotUnavailable)
    refused(state.create_booking(book_v2(CUT_A, token="direct"), NOW), SlotUnavailable)
    # A holder may still book its own lease: that takes no new spot.
    ok(state.create_booking(book_v2(CUT_A, first.lease_id, token="t1"), NOW))
    refused(state.create_lease(lease_v2(CUT_A, "c"), NOW), SlotUnavailable)


def test_removed_slot_keeps_bookings_releases_leases_and_refuses_new_leases() -> None:
    state = new_state()
    booking = book(state, book_v2(CUT_A, token="t1"))
    v2_lease = grant(state, lease_v2(CUT_A, "a"))
    v0_lease = grant(state, lease_v0(CUT_A, "b"))
    report = change(state, exactly(CUT_A))
    assert (report.removed, report.kept_booked, report.leases_released) == (1, 1, 2)
    assert state.inventory_figures().orphaned_bookings == 1
    assert state.booking(booking.booking_id) == booking  # still CONFIRMED
    released = state.lease(v2_lease.lease_id)
    assert released is not None
    assert released.state is LeaseState.EXPIRED
    refused(state.create_lease(lease_v2(CUT_A, "new"), NOW), InvalidArgument, "slot")
    refused(state.check_availability(CheckAvailability(CUT_A), NOW), InvalidArgument)
    refused(
        state.create_booking(book_v2(CUT_A, v2_lease.lease_id, token="t2"), NOW), SlotUnavailable
    )
    refused(state.create_booking(book_v0(v0_lease.lease_id), NOW), SlotUnavailable, "slot")
    assert state.open_spots(CUT_A) is None


def test_orphaned_booking_can_be_cancelled_or_moved_away_but_not_onto_a_removed_slot() -> None:
    state = new_state()
    first = book(state, book_v2(CUT_A, token="t1"))
    second = book(state, book_v2(CUT_A, user_id="u2", token="t2"))
    change(state, exactly(CUT_A))
    ok(state.cancel_booking(CancelBooking(first.booking_id), NOW))
    assert state.inventory_figures().orphaned_bookings == 1
    moved = ok(
        state.reschedule_booking(RescheduleBooking(second.booking_id, CUT_B.start_sec, None), NOW)
    )
    assert moved.slot.key == CUT_B
    assert state.inventory_figures().orphaned_bookings == 0
    back = RescheduleBooking(second.booking_id, CUT_A.start_sec, None)
    refused(state.reschedule_booking(back, NOW), SlotUnavailable)


def test_readded_slot_counts_its_orphaned_bookings_again() -> None:
    state = new_state()
    book(state, book_v2(CUT_A, token="t1"))
    book(state, book_v2(CUT_A, user_id="u2", token="t2"))
    change(state, exactly(CUT_A))
    report = change(state, exactly(CUT_A, with_spots(CUT_A, 2)))
    assert report.added == 1
    assert state.inventory_figures().orphaned_bookings == 0
    assert state.open_spots(CUT_A) == 0  # both bookings hold its two spots
    refused(state.create_lease(lease_v2(CUT_A, "x"), NOW), SlotUnavailable)


def test_a_window_removes_what_it_does_not_list_and_only_inside_it() -> None:
    state = new_state()
    window = Window(CUT_A.start_sec, CUT_B.start_sec + 1, "m1", "cut", slots=(SPEC[CUT_B],))
    report = change(state, window)
    assert (report.removed, report.unchanged, report.cut_sec) == (1, 1, window.end_sec)
    assert state.open_spots(CUT_A) is None
    assert state.open_spots(CUT_FULL) == 1  # outside the window
    assert state.open_spots(YOGA) == 2  # another service


def test_a_whole_feed_adds_changes_and_removes() -> None:
    state = new_state()
    new = SlotSpec(SlotKey("m3", "new", CUT_A.start_sec, 600), spots=4, spots_total=4)
    feed = whole_inventory([with_spots(CUT_A, 5), SPEC[CUT_B], new])
    report = change(state, feed)
    assert (report.added, report.changed, report.unchanged, report.removed) == (1, 1, 1, 2)
    assert state.open_spots(new.key) == 4
    assert state.inventory_figures().slots == 3


def test_dry_run_reports_and_changes_nothing() -> None:
    state = new_state()
    grant(state, lease_v2(CUT_A, "a"))
    before = state.snapshot()
    outcome = state.change_inventory(ChangeInventory(exactly(CUT_A), dry_run=True), NOW)
    assert outcome.events == ()
    assert ok(outcome) == InventoryReport(
        removed=1, leases_released=1, cut_sec=CUT_A.start_sec + 1, applied=False
    )
    assert state.snapshot() == before


def test_a_listing_outside_its_window_or_twice_is_refused_whole() -> None:
    state = new_state()
    before = state.snapshot()
    outside = exactly(CUT_A, SPEC[CUT_B])
    refused(state.change_inventory(ChangeInventory(outside), NOW), InvalidArgument, "availability")
    other_staff = replace(SPEC[CUT_A], key=replace(CUT_A, staff_id="st2"))
    astray = exactly(CUT_A, other_staff)
    refused(state.change_inventory(ChangeInventory(astray), NOW), InvalidArgument, "availability")
    twice = Window(0, END_OF_TIME, slots=(SPEC[CUT_A], SPEC[CUT_A]))
    refused(state.change_inventory(ChangeInventory(twice), NOW), InvalidArgument, "availability")
    assert state.snapshot() == before


def test_due_leases_of_a_removed_slot_expire_rather_than_being_released() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A, "a", expiry_ns=NOW + 10))
    outcome = state.change_inventory(ChangeInventory(exactly(CUT_A)), NOW + 10)
    assert outcome.events[0] == LeaseExpiredEvent(lease.lease_id)
    changed = outcome.events[1]
    assert isinstance(changed, InventoryChanged)
    assert changed.released == ()


def test_max_slots_cuts_at_a_start_and_each_step_is_a_whole_window() -> None:
    base = [
        SlotSpec(SlotKey("m", "s", 1000 + 10 * i, 10, staff_id=staff), 1, 1)
        for i in range(10)
        for staff in ("a", "b")
    ]
    state = ShardState(base, entropy=lambda: b"\0" * 15)
    listing = whole_inventory([replace(s, spots=2, spots_total=2) for s in base[:12]])
    steps, window = [], listing
    while True:
        report = change(state, window, max_slots=5)
        steps.append(report)
        if report.cut_sec >= window.end_sec:
            break
        window = window.from_cut(report.cut_sec)
    # The budget counts listed and existing slots alike (a changed slot is both), and a
    # step takes whole starts (two slots each): 2 starts = 8 counted while both exist,
    # then 3 starts of removals only (6 counted), then the last one.
    assert [s.changed + s.removed for s in steps] == [4, 4, 4, 6, 2]
    assert sum(s.removed for s in steps) == 8
    assert set(state.slot_specs()) == set(listing.slots)


def test_a_snapshot_rebuilds_a_changed_inventory() -> None:
    state = new_state()
    booking = book(state, book_v2(CUT_A, token="t1"))
    book(state, book_v2(CUT_B, token="t9"))
    grant(state, lease_v2(YOGA, "y"))
    for window in (
        exactly(CUT_A),
        exactly(CUT_FULL, with_spots(CUT_FULL, 3)),
        whole_inventory([*SPECS[1:], SlotSpec(SlotKey("m4", "x", 5, 5), 1, 1)]),
    ):
        change(state, window)
    snapshot = state.snapshot()
    assert snapshot.inventory is not None
    restored = new_state()
    restored.restore(snapshot)
    assert restored.snapshot() == snapshot
    assert restored.inventory_figures() == state.inventory_figures()
    assert restored.booking(booking.booking_id) == booking
    keys = [*SPEC, SlotKey("m4", "x", 5, 5)]
    assert [restored.open_spots(k) for k in keys] == [state.open_spots(k) for k in keys]
    assert restored.open_spots(CUT_A) is None


def test_replaying_the_events_gives_the_same_state() -> None:
    state = new_state()
    events: list[Event] = []
    events += state.create_booking(book_v2(CUT_A, token="t1"), NOW).events
    events += state.create_lease(lease_v2(CUT_A, "a"), NOW).events
    events += state.change_inventory(ChangeInventory(exactly(CUT_A)), NOW).events
    events += state.change_inventory(
        ChangeInventory(exactly(CUT_A, with_spots(CUT_A, 1))), NOW
    ).events
    events += state.change_inventory(
        ChangeInventory(exactly(YOGA, with_spots(YOGA, 9))), NOW
    ).events
    replayed = replay_into_fresh(events)
    assert replayed.snapshot() == state.snapshot()
    assert replayed.inventory_figures() == state.inventory_figures()


def test_an_event_removing_a_slot_with_live_leases_left_is_rejected_unapplied() -> None:
    state = new_state()
    grant(state, lease_v2(CUT_A, "a"))
    before = state.snapshot()
    with pytest.raises(ValueError, match="live leases"):
        state.apply(InventoryChanged((), (CUT_A,), ()))
    with pytest.raises(ValueError, match="not bookable"):
        state.apply(InventoryChanged((), (SlotKey("x", "y", 1, 1),), ()))
    assert state.snapshot() == before


def test_list_inventory_shows_capacity_holders_and_removed_slots() -> None:
    state = new_state()
    book(state, book_v2(CUT_A, token="t1"))
    grant(state, lease_v2(CUT_B, "b"))
    change(state, exactly(CUT_A))
    listing = ok(state.list_inventory(ListInventory("m1", "cut"), NOW))
    assert [(s.spec.key, s.leases, s.bookings, s.removed) for s in listing] == [
        (CUT_A, 0, 1, True),
        (CUT_B, 1, 0, False),
        (CUT_FULL, 0, 0, False),
    ]
    limited = ok(state.list_inventory(ListInventory("m1", limit=1), NOW))
    assert len(limited) == 2  # one more than the limit: "there are more"


def test_check_listing_refuses_what_the_core_would_ignore_or_split_badly() -> None:
    before = exactly(CUT_B, SPEC[CUT_A])  # (the core ignores slots before a window's start)
    with pytest.raises(InvalidArgument, match="outside") as outside:
        check_listing(before, "service_availability[0]")
    assert outside.value.field == "service_availability[0].availability"
    unsorted = Window(0, END_OF_TIME, slots=(SPEC[CUT_B], SPEC[CUT_A]))
    with pytest.raises(InvalidArgument, match="start order"):
        check_listing(unsorted, "w")
    with pytest.raises(InvalidArgument, match="later than its start"):
        check_listing(Window(5, 5), "w")
    crowd = tuple(SlotSpec(SlotKey("m", "s", 100, 60, staff_id=str(n)), 1, 1) for n in range(1501))
    with pytest.raises(InvalidArgument, match="slots start at 100"):
        check_listing(Window(0, END_OF_TIME, slots=crowd), "w")
    check_listing(Window(0, END_OF_TIME, slots=crowd[:1500]), "w")
