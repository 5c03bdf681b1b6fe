"""Recovery lists a replayed grant's expiry only when the state next needs it
(apply_record's list_later, ShardState.replay_granted): a grant consumed by then is
never listed. The state must expire exactly the same leases, in the same order, at
every instant, by the sweep and by a command settling its slot, as when every grant
is listed at once."""

from __future__ import annotations

import itertools

from _core_helpers import (
    CUT_A,
    CUT_B,
    MINUTE,
    NOW,
    SPECS,
    YOGA,
    book_v2,
    lease_v0,
    lease_v2,
    new_state,
    ok,
)

from leasehold.core import Lease, ShardState
from leasehold.shards._codec import SlotRefs, encode_events
from leasehold.shards._replay import apply_record


def _history() -> tuple[list[bytes], list[Lease]]:
    """Grants of mixed lifetimes on three slots, every other one booked, with a sweep's
    expiry record (not a grant nor a booking) in the middle; and the leases left live."""
    state = new_state()
    records: list[bytes] = []
    live: list[Lease] = []
    for n, (key, minutes) in enumerate([(CUT_A, 2), (CUT_B, 3), (YOGA, 7), (CUT_A, 9)] * 2):
        now = NOW + n * MINUTE // 2 + 1
        if n == 4:  # the first lease (2 minutes) is due by now
            records.append(encode_events(state.expire_due(now)))
        expiry = now + minutes * MINUTE
        v0 = n % 4 == 2
        command = lease_v0(key, f"v0-{n}", expiry) if v0 else lease_v2(key, f"r{n}", expiry)
        outcome = state.create_lease(command, now)
        records.append(encode_events(outcome.events))
        lease = ok(outcome)
        if n % 2:
            booked = state.create_booking(book_v2(key, lease.lease_id, f"u{n}", f"t{n}"), now)
            records.append(encode_events(booked.events))
            ok(booked)
        else:
            live.append(lease)
    assert all(records)
    return records, live


def _replayed(records: list[bytes], list_later: bool) -> ShardState:
    # (Ids of its own: commands on the replayed state must not remake the history's.)
    ids = itertools.count(1 << 32)
    state = ShardState(SPECS, entropy=lambda: next(ids).to_bytes(15, "big"))
    refs = SlotRefs(state.canonical_ref)
    for record in records:
        apply_record(state, record, refs, list_later=list_later)
    return state


def test_the_history_has_live_and_consumed_grants_around_a_sweep() -> None:
    records, live = _history()
    state = _replayed(records, list_later=False)
    assert 3 <= state.counters().live_leases < len(live)  # one expired by the sweep
    assert state.counters().confirmed_bookings == 4


def test_the_sweep_expires_the_same_leases_in_the_same_order() -> None:
    records, _ = _history()
    at_once, later = _replayed(records, False), _replayed(records, True)
    for minutes in range(17):
        now = NOW + minutes * MINUTE
        assert later.expire_due(now) == at_once.expire_due(now)
        assert later.snapshot() == at_once.snapshot()
    assert later.counters() == at_once.counters()
    assert later.counters().live_leases == 0


def test_a_command_settles_its_slot_alike() -> None:
    records, _ = _history()
    at_once, later = _replayed(records, False), _replayed(records, True)
    for minutes in (1, 4, 8, 12):
        for key in (CUT_A, CUT_B, YOGA):
            command = lease_v2(key, f"late-{minutes}")
            now = NOW + minutes * MINUTE
            mine, theirs = later.create_lease(command, now), at_once.create_lease(command, now)
            assert (mine.events, repr(mine.result)) == (theirs.events, repr(theirs.result))
    assert later.snapshot() == at_once.snapshot()
    assert later.counters().leases_expired > 1


def test_a_consumed_grant_is_not_listed_later() -> None:
    """What list_later is for: a grant booked before anything read the lists leaves no
    stale entry, so the next deadline is the live lease's own; listed at once, the
    consumed lease's earlier one comes first (a lower bound)."""
    source = new_state()
    short = source.create_lease(lease_v2(CUT_A, "short", NOW + MINUTE), NOW)
    booked = source.create_booking(book_v2(CUT_A, ok(short).lease_id), NOW)
    kept = source.create_lease(lease_v2(CUT_B, "kept", NOW + 5 * MINUTE), NOW)
    records = [encode_events(o.events) for o in (short, booked, kept)]
    assert _replayed(records, True).next_deadline_ns() == NOW + 5 * MINUTE
    assert _replayed(records, False).next_deadline_ns() == NOW + MINUTE
