"""Applying a journal record to a ShardState during recovery, one call per record.

A restart replays up to millions of records, nearly all of them one lease grant
or one booking (a command's single event). For those this decodes the event's
fields and hands them to the state's own entry points (ShardState.apply_granted,
apply_booked) without the record's event objects and the per-kind dispatch
(docs/performance.md, "Restart, third pass"). The checks are the codec's own:
its lease and booking decoders. A record that is anything else, or not quite so,
goes through `decode_events` whole, which accepts it or says what is wrong with
it: this never accepts a record that `decode_events` refuses, and applies
nothing of one.
"""

from __future__ import annotations

from leasehold.core import Booking, BookingCreated, Lease, LeaseGranted, ShardState
from leasehold.shards._codec import (
    _UNPACK_ERRORS,
    RECORD_VERSION,
    CorruptRecord,
    SlotRefs,
    _decode_booking,
    _decode_lease,
    decode_events,
    unpack_record,
)

_GRANTED = LeaseGranted.kind
_BOOKED = BookingCreated.kind


def apply_record(state: ShardState, data: bytes, refs: SlotRefs) -> int:
    """Apply the events of the journal record `data` to `state`; how many there were.

    Raises CorruptRecord as decode_events does (before anything is applied), and the
    state's ValueError or KeyError for events that do not apply to it.
    """
    common = _common_event(data, refs)
    if type(common) is Lease:
        state.apply_granted(common)
        return 1
    if type(common) is tuple:
        state.apply_booked(*common)
        return 1
    decoded = decode_events(data, refs)
    for event in decoded:
        state.apply(event)
    return len(decoded)


def _common_event(data: bytes, refs: SlotRefs) -> Lease | tuple[Booking, str] | None:
    """The record's one event if it is a well-formed grant (its Lease) or booking (the
    Booking and its idempotency token); None for any other record, or one in doubt."""
    try:
        record = unpack_record(data)
        if type(record) is not tuple or len(record) != 2:
            return None
        version, events = record
        if type(version) is not int or version != RECORD_VERSION or type(events) is not tuple:
            return None
        event = events[0] if len(events) == 1 else None
        if type(event) is not tuple or not event:
            return None
        kind = event[0]
        if kind == _GRANTED and len(event) == 2:
            return _decode_lease(event[1], refs)
        if kind == _BOOKED and len(event) == 3 and type(event[2]) is str:
            return _decode_booking(event[1], refs), event[2]
    except (CorruptRecord, *_UNPACK_ERRORS):
        pass  # decode_events says what is wrong
    return None
