"""Recovery's one-call-per-record replay (shards._replay.apply_record) does exactly what
decoding the record and applying its events does: the same state after a history, and
for a damaged or misfitting record the same refusal with the same message, and no
more applied."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from _core_helpers import (
    CUT_A,
    CUT_B,
    CUT_FULL,
    MINUTE,
    NOW,
    YOGA,
    Fingerprint,
    book_v0,
    book_v2,
    fingerprint,
    lease_v0,
    lease_v2,
    new_state,
    ok,
)
from hypothesis import given
from hypothesis import strategies as st

from leasehold.core import BookingCreated, CancelBooking, LeaseGranted, Outcome, ShardState
from leasehold.shards._codec import SlotRefs, decode_events, encode_events
from leasehold.shards._replay import apply_record


def _history() -> list[bytes]:
    """Records as a shard journals them: grants and bookings of both API versions, a
    direct booking, a cancellation, and a lease expired by the sweep."""
    state = new_state()
    outcomes: list[Outcome[Any]] = []
    for n, key in enumerate((CUT_A, CUT_B, YOGA)):
        outcomes.append(state.create_lease(lease_v2(key, f"ref-{n}"), NOW))
        lease_id = ok(outcomes[-1]).lease_id
        booking = book_v2(key, lease_id, user_id=f"user-{n}", token=f"tok-{n}")
        outcomes.append(state.create_booking(booking, NOW))
    outcomes.append(state.create_lease(lease_v0(CUT_A, "v0-ref"), NOW))
    v0_booking = book_v0(ok(outcomes[-1]).lease_id, telephone="+15550000001")
    outcomes.append(state.create_booking(v0_booking, NOW))
    outcomes.append(state.create_booking(book_v2(CUT_FULL, user_id="direct", token="t"), NOW))
    outcomes.append(state.create_lease(lease_v2(CUT_B, "lapses"), NOW))
    outcomes.append(state.cancel_booking(CancelBooking(ok(outcomes[1]).booking_id), NOW))
    records = [encode_events(outcome.events) for outcome in outcomes]
    assert all(ok(outcome) for outcome in outcomes)
    return [*records, encode_events(state.expire_due(NOW + 16 * MINUTE))]


HISTORY = _history()


def _outcome(
    apply: Callable[[ShardState, bytes, SlotRefs], int], before: list[bytes], record: bytes
) -> tuple[object, Fingerprint]:
    """What applying `record` after `before` gives: its event count or its refusal, and
    the state afterwards."""
    state = new_state()
    refs = SlotRefs(state.canonical_ref)
    for earlier in before:
        apply(state, earlier, refs)
    try:
        result: object = apply(state, record, refs)
    except (ValueError, KeyError) as problem:
        result = (type(problem), str(problem))
    return result, fingerprint(state)


def _decode_then_apply(state: ShardState, data: bytes, refs: SlotRefs) -> int:
    events = decode_events(data, refs)
    for event in events:
        state.apply(event)
    return len(events)


def test_the_history_holds_the_common_records_and_others() -> None:
    kinds = [type(event) for record in HISTORY for event in decode_events(record)]
    assert kinds.count(LeaseGranted) >= 5
    assert kinds.count(BookingCreated) >= 5
    assert len(set(kinds)) >= 4  # the cancellation and the expiries go the long way


def test_a_history_replays_to_the_same_state_both_ways() -> None:
    fast = _outcome(apply_record, HISTORY[:-1], HISTORY[-1])
    assert fast == _outcome(_decode_then_apply, HISTORY[:-1], HISTORY[-1])
    assert fast[1].counters.confirmed_bookings == 4  # (five booked, one cancelled)


@given(st.integers(0, len(HISTORY) - 1), st.data())
def test_a_damaged_record_is_refused_or_applied_alike(index: int, data: st.DataObject) -> None:
    record = bytearray(HISTORY[index])
    position = data.draw(st.integers(0, len(record) - 1))
    if data.draw(st.booleans()):
        record[position] = data.draw(st.integers(0, 255))
    else:
        del record[position:]
    damaged = bytes(record)
    before = HISTORY[:index]
    assert _outcome(apply_record, before, damaged) == _outcome(_decode_then_apply, before, damaged)


@pytest.mark.parametrize("index", range(len(HISTORY)))
def test_a_record_that_does_not_fit_the_state_is_refused_alike(index: int) -> None:
    """Each record applied twice (a grant granted again, a lease booked twice) or out of
    its place: the state's refusal, the same both ways."""
    for before in (HISTORY[: index + 1], []):
        assert _outcome(apply_record, before, HISTORY[index]) == _outcome(
            _decode_then_apply, before, HISTORY[index]
        )
