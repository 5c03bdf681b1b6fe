"""Applying a journal record to a ShardState during recovery, one call per record.

A restart replays up to millions of records, nearly all of them one lease grant
or one booking (a command's single event). For those this decodes the event's
fields and hands them to the state's own entry points (ShardState.replay_granted,
apply_booked) without the record's event objects and the per-kind dispatch
(docs/performance.md, "Restart, third pass"); a grant not even as a Lease: the
state keeps its fields as a tuple. The checks are the codec's own: its lease
decoder's fast path (the same type comparison) and its booking decoder. A record
that is anything else, or not quite so, goes through `decode_events` whole, which
accepts it or says what is wrong with it: this never accepts a record that
`decode_events` refuses, and applies nothing of one.
"""

from __future__ import annotations

from leasehold.core import ApiVersion, Booking, BookingCreated, LeaseGranted, ShardState, SlotRef
from leasehold.shards._codec import (
    _LEASE_STATES,
    _LEASE_TYPES,
    _UNPACK_ERRORS,
    _VERSIONS,
    RECORD_VERSION,
    CorruptRecord,
    SlotRefs,
    _decode_booking,
    decode_events,
    unpack_record,
)

_GRANTED = LeaseGranted.kind
_BOOKED = BookingCreated.kind

# A grant's fields as ShardState.replay_granted takes them.
Granted = tuple[str, ApiVersion, SlotRef, str, int]


def apply_record(
    state: ShardState, data: bytes, refs: SlotRefs, *, list_later: bool = False
) -> int:
    """Apply the events of the journal record `data` to `state`; how many there were.

    `list_later`: a grant's expiry is listed when the state next needs it (see
    ShardState.replay_granted), so a grant consumed by then is never listed: the state
    is the same but for fewer stale expiry entries.

    Raises CorruptRecord as decode_events does (before anything is applied), and the
    state's ValueError or KeyError for events that do not apply to it.
    """
    common = _common_event(data, refs)
    if type(common) is tuple:
        if len(common) == 5:
            state.replay_granted(*common, list_later)
        else:
            state.apply_booked(*common)
        return 1
    decoded = decode_events(data, refs)
    for event in decoded:
        state.apply(event)
    return len(decoded)


def _common_event(data: bytes, refs: SlotRefs) -> Granted | tuple[Booking, str] | None:
    """The record's one event if it is a well-formed grant (the lease's fields) or
    booking (the Booking and its idempotency token); None for any other record, or one
    in doubt."""
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
            return _granted(event[1], refs)
        if kind == _BOOKED and len(event) == 3 and type(event[2]) is str:
            return _decode_booking(event[1], refs), event[2]
    except (CorruptRecord, *_UNPACK_ERRORS):
        pass  # decode_events says what is wrong
    return None


def _granted(value: object, refs: SlotRefs) -> Granted | None:
    """A lease's fields if the codec's lease decoder takes it on its fast path; else None.
    (Its state and booking_id are checked, not kept: a grant's lease is LIVE.)"""
    if type(value) is not tuple or tuple(map(type, value)) != _LEASE_TYPES:
        return None
    lease_id, version, slot, reference, expires_ns, state, _ = value
    known_version = _VERSIONS.get(version)
    if known_version is None or state not in _LEASE_STATES:
        return None
    return lease_id, known_version, refs.decode(slot), reference, expires_ns
