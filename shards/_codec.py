"""Events <-> msgpack bytes: one journal record holds one command's events.

A command's events are one record, so a torn write loses the whole command or
none of it. The layout is positional and compact; it is the on-disk format, so
the golden bytes in tests/test_codec.py pin it, and any change to it needs a new
`RECORD_VERSION` (with the old layout still read).

    record  = [RECORD_VERSION, [event, ...]]
    event   = [kind, field, ...]            the event's fields in declaration order
    SlotKey = [merchant_id, service_id, start_sec, duration_sec, staff_id, room_id, party_size]
    SlotRef = [SlotKey, availability_tag]
    Lease   = [lease_id, version, SlotRef, reference, expires_ns, state, booking_id]
    Booking = [booking_id, SlotRef, Person, status, lease_id]
    Person  = [user_id, given_name, family_name, telephone, email, language_code,
               PostalAddress | nil]
    PostalAddress = [country, locality, region, post_office_box_number, postal_code,
                     street_address]
    SlotSpec = [SlotKey, spots, spots_total, availability_tag, staff_name, room_name]

Event kinds added later (a reader that does not know one refuses the record as of an
unknown kind, never misreads it; the data dir's format version says which kinds it may
hold): "inventory_changed" (data dir format 3) = [kind, [SlotSpec...], [SlotKey...],
[released lease id...]].

`kind` is the event's stable `kind` tag and enums are stored by value (both
strings), so neither Python class names nor enum order leak into the format.
Encoding is hand-written per type (it runs for every command); decoding runs
only on recovery and checks every field's type, so whatever it returns is a
well-formed event and anything else raises CorruptRecord.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import TypeVar, assert_never, cast

# msgpack ships neither stubs nor a py.typed marker; its two calls are wrapped below.
import msgpack  # type: ignore[import-untyped]

from leasehold.core import (
    ApiVersion,
    Booking,
    BookingCancelled,
    BookingCreated,
    BookingRescheduled,
    BookingStatus,
    Event,
    ExpiredLeasesForgotten,
    InventoryChanged,
    Lease,
    LeaseExpiredEvent,
    LeaseGranted,
    LeaseState,
    Person,
    PostalAddress,
    SlotKey,
    SlotRef,
    SlotSpec,
)

RECORD_VERSION = 1

# The C extension raises these for bytes that are not one well-formed msgpack value
# (ExtraData and "incomplete input" are ValueErrors; unhashable map keys a TypeError).
_UNPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException)


class CorruptRecord(ValueError):
    """A record's bytes are not a well-formed list of events of a version this code reads."""


def encode_events(events: Sequence[Event]) -> bytes:
    """One record holding `events`, in order."""
    return cast(bytes, msgpack.packb((RECORD_VERSION, [_event(e) for e in events])))


class SlotRefs:
    """Decodes SlotRefs once per distinct encoding, so leases and bookings share them.

    Recovery decodes millions of leases and bookings on a few thousand slots, so
    building and validating a SlotKey for each was a large share of its time
    (docs/performance.md); one object per slot saves the memory too. `canonical` may swap in
    the inventory's own ref (ShardState.canonical_ref), which the state then
    keeps without copying. The memo is bounded: past `limit` slots it stops
    growing (decoding stays correct, only slower).
    """

    def __init__(
        self, canonical: Callable[[SlotRef], SlotRef] = lambda ref: ref, limit: int = 1 << 16
    ) -> None:
        self._canonical = canonical
        self._limit = limit
        # Keyed by the decoded msgpack value. Equal values hash alike, so a key with
        # 1.0 or True where 1 was maps to the valid ref of equal value: still well formed.
        self._known: dict[object, SlotRef] = {}

    def decode(self, value: object) -> SlotRef:
        try:
            ref = self._known.get(value)
        except TypeError:  # an unhashable part (a map): not a SlotRef, the full decode says why
            ref = None
        if ref is None:
            ref = self._canonical(_decode_slot_ref(value))
            if len(self._known) < self._limit:
                self._known[value] = ref
        return ref


def decode_events(data: bytes, refs: SlotRefs | None = None) -> tuple[Event, ...]:
    """The events of one record; CorruptRecord if `data` is anything but such a record.

    Pass one `refs` for many records (recovery) to share their slots' refs.
    """
    try:
        record = unpack_record(data)
    except _UNPACK_ERRORS as problem:
        # (StackError, for nesting too deep, has no message.)
        detail = str(problem) or type(problem).__name__
        raise CorruptRecord(f"not a msgpack record: {detail}") from None
    version, events = _array(record, 2, "record")
    if type(version) is not int:
        raise CorruptRecord(f"record: version is {_describe(version)}, not an integer")
    if version != RECORD_VERSION:
        newer = " (written by a newer Leasehold)" if version > RECORD_VERSION else ""
        raise CorruptRecord(
            f"record version {version}{newer}; this version reads version {RECORD_VERSION}"
        )
    if type(events) is not tuple:
        raise CorruptRecord(f"record: events are {_describe(events)}, not an array")
    refs = refs or SlotRefs()
    if len(events) == 1:  # most records: one command, one event
        return (_decode_event(events[0], 0, refs),)
    return tuple(_decode_event(event, index, refs) for index, event in enumerate(events))


def unpack_record(data: bytes) -> object:
    """The msgpack value of a record's bytes (arrays as tuples); _UNPACK_ERRORS if none."""
    return msgpack.unpackb(data, raw=False, use_list=False)


# Encoding: plain tuples, which msgpack writes as arrays.


def _event(event: Event) -> tuple[object, ...]:
    match event:
        case LeaseGranted():
            return (event.kind, _lease(event.lease))
        case LeaseExpiredEvent():
            return (event.kind, event.lease_id)
        case ExpiredLeasesForgotten():
            return (event.kind, event.count)
        case BookingCreated():
            return (event.kind, _booking(event.booking), event.idempotency_token)
        case BookingCancelled():
            return (event.kind, event.booking_id)
        case BookingRescheduled():
            return (event.kind, event.booking_id, _slot_ref(event.new_slot))
        case InventoryChanged():
            return (
                event.kind,
                [slot_spec(spec) for spec in event.upserts],
                [key.as_tuple() for key in event.removals],
                list(event.released),
            )
        case _:
            assert_never(event)


def _slot_ref(ref: SlotRef) -> tuple[object, ...]:
    return (ref.key.as_tuple(), ref.availability_tag)


def slot_spec(spec: SlotSpec) -> tuple[object, ...]:
    return (
        spec.key.as_tuple(),
        spec.spots,
        spec.spots_total,
        spec.availability_tag,
        spec.staff_name,
        spec.room_name,
    )


def _lease(lease: Lease) -> tuple[object, ...]:
    return (
        lease.lease_id,
        lease.version.value,
        _slot_ref(lease.slot),
        lease.reference,
        lease.expires_ns,
        lease.state.value,
        lease.booking_id,
    )


def _booking(booking: Booking) -> tuple[object, ...]:
    return (
        booking.booking_id,
        _slot_ref(booking.slot),
        _person(booking.person),
        booking.status.value,
        booking.lease_id,
    )


def _person(person: Person) -> tuple[object, ...]:
    address = person.address
    return (
        person.user_id,
        person.given_name,
        person.family_name,
        person.telephone,
        person.email,
        person.language_code,
        None if address is None else _address(address),
    )


def _address(address: PostalAddress) -> tuple[object, ...]:
    return (
        address.country,
        address.locality,
        address.region,
        address.post_office_box_number,
        address.postal_code,
        address.street_address,
    )


# Decoding: every value is checked before it is used. Errors name the field by its
# type ("SlotKey.start_sec") and `_decode_event` adds which event: the names are
# constants, so the checks cost no string formatting until one fails.


def _decode_event(value: object, index: int, refs: SlotRefs) -> Event:
    if type(value) is not tuple or not value:
        raise CorruptRecord(f"event {index} is {_describe(value)}, not a non-empty array")
    kind = value[0]
    decode = _EVENT_DECODERS.get(kind) if type(kind) is str else None
    if decode is None:
        raise CorruptRecord(f"event {index} has unknown kind {kind!r}")
    try:
        return decode(value, refs)
    except CorruptRecord as problem:
        raise CorruptRecord(f"event {index} ({kind}): {problem}") from None


def _lease_granted(value: tuple[object, ...], refs: SlotRefs) -> LeaseGranted:
    if len(value) == 2:
        return LeaseGranted(_decode_lease(value[1], refs))
    _, lease = _array(value, 2, "LeaseGranted")
    return LeaseGranted(_decode_lease(lease, refs))


def _lease_expired(value: tuple[object, ...], refs: SlotRefs) -> LeaseExpiredEvent:
    _, lease_id = _array(value, 2, "LeaseExpired")
    return LeaseExpiredEvent(_str(lease_id, "LeaseExpired.lease_id"))


def _forgotten(value: tuple[object, ...], refs: SlotRefs) -> ExpiredLeasesForgotten:
    _, count = _array(value, 2, "ExpiredLeasesForgotten")
    return ExpiredLeasesForgotten(_int(count, "ExpiredLeasesForgotten.count"))


def _booking_created(value: tuple[object, ...], refs: SlotRefs) -> BookingCreated:
    if len(value) == 3 and type(value[2]) is str:
        return BookingCreated(_decode_booking(value[1], refs), value[2])
    _, booking, token = _array(value, 3, "BookingCreated")
    return BookingCreated(
        _decode_booking(booking, refs), _str(token, "BookingCreated.idempotency_token")
    )


def _booking_cancelled(value: tuple[object, ...], refs: SlotRefs) -> BookingCancelled:
    _, booking_id = _array(value, 2, "BookingCancelled")
    return BookingCancelled(_str(booking_id, "BookingCancelled.booking_id"))


def _booking_rescheduled(value: tuple[object, ...], refs: SlotRefs) -> BookingRescheduled:
    _, booking_id, new_slot = _array(value, 3, "BookingRescheduled")
    return BookingRescheduled(
        _str(booking_id, "BookingRescheduled.booking_id"), refs.decode(new_slot)
    )


def _inventory_changed(value: tuple[object, ...], refs: SlotRefs) -> InventoryChanged:
    _, upserts, removals, released = _array(value, 4, "InventoryChanged")
    return InventoryChanged(
        tuple(decode_slot_spec(v) for v in _items(upserts, "InventoryChanged.upserts")),
        tuple(_decode_slot_key(v) for v in _items(removals, "InventoryChanged.removals")),
        tuple(_str(v, "InventoryChanged.released") for v in _items(released, "released")),
    )


def decode_slot_spec(value: object) -> SlotSpec:
    key, spots, total, tag, staff_name, room_name = _array(value, 6, "SlotSpec")
    return SlotSpec(
        _decode_slot_key(key),
        _int(spots, "SlotSpec.spots"),
        _int(total, "SlotSpec.spots_total"),
        _str(tag, "SlotSpec.availability_tag"),
        _str(staff_name, "SlotSpec.staff_name"),
        _str(room_name, "SlotSpec.room_name"),
    )


def _items(value: object, what: str) -> tuple[object, ...]:
    if type(value) is not tuple:
        raise CorruptRecord(f"{what} is {_describe(value)}, not an array")
    return value


_EVENT_DECODERS: dict[str, Callable[[tuple[object, ...], SlotRefs], Event]] = {
    LeaseGranted.kind: _lease_granted,
    LeaseExpiredEvent.kind: _lease_expired,
    ExpiredLeasesForgotten.kind: _forgotten,
    BookingCreated.kind: _booking_created,
    BookingCancelled.kind: _booking_cancelled,
    BookingRescheduled.kind: _booking_rescheduled,
    InventoryChanged.kind: _inventory_changed,
}


def _decode_slot_key(value: object) -> SlotKey:
    merchant, service, start, duration, staff, room, party = _array(value, 7, "SlotKey")
    return SlotKey(
        _str(merchant, "SlotKey.merchant_id"),
        _str(service, "SlotKey.service_id"),
        _int(start, "SlotKey.start_sec"),
        _int(duration, "SlotKey.duration_sec"),
        _str(staff, "SlotKey.staff_id"),
        _str(room, "SlotKey.room_id"),
        _int(party, "SlotKey.party_size"),
    )


def _decode_slot_ref(value: object) -> SlotRef:
    key, tag = _array(value, 2, "SlotRef")
    return SlotRef(_decode_slot_key(key), _str(tag, "SlotRef.availability_tag"))


# The fast path of the decoders recovery runs millions of times: one comparison of the
# fields' exact types instead of a checking call per field (docs/performance.md). What
# it does not take goes to the field-by-field decoder, which takes what is valid too
# and else says which field is wrong: the fast path only ever accepts less.
_LEASE_TYPES = (str, str, tuple, str, int, str, str)
_BOOKING_TYPES = (str, tuple, tuple, str, str)
_PERSON_NAME_TYPES = (str,) * 6  # then the address: None or an array
_VERSIONS = {member.value: member for member in ApiVersion}
_LEASE_STATES = {member.value: member for member in LeaseState}
_STATUSES = {member.value: member for member in BookingStatus}


def _decode_lease(value: object, refs: SlotRefs) -> Lease:
    if type(value) is tuple and tuple(map(type, value)) == _LEASE_TYPES:
        # (No typing.cast to name the fields' types: it is a call, and this runs per lease.)
        lease_id, version, slot, reference, expires_ns, state, booking_id = value
        known_version, known_state = _VERSIONS.get(version), _LEASE_STATES.get(state)
        if known_version is not None and known_state is not None:
            ref = refs.decode(slot)
            return Lease(
                lease_id, known_version, ref, reference, expires_ns, known_state, booking_id
            )
    return _lease_field_by_field(value, refs)


def _lease_field_by_field(value: object, refs: SlotRefs) -> Lease:
    lease_id, version, slot, reference, expires_ns, state, booking_id = _array(value, 7, "Lease")
    return Lease(
        _str(lease_id, "Lease.lease_id"),
        _enum(ApiVersion, version, "Lease.version"),
        refs.decode(slot),
        _str(reference, "Lease.reference"),
        _int(expires_ns, "Lease.expires_ns"),
        _enum(LeaseState, state, "Lease.state"),
        _str(booking_id, "Lease.booking_id"),
    )


def _decode_booking(value: object, refs: SlotRefs) -> Booking:
    if type(value) is tuple and tuple(map(type, value)) == _BOOKING_TYPES:
        booking_id, slot, person, status, lease_id = value
        known_status = _STATUSES.get(status)
        if known_status is not None:
            ref = refs.decode(slot)
            return Booking(booking_id, ref, _decode_person(person), known_status, lease_id)
    return _booking_field_by_field(value, refs)


def _booking_field_by_field(value: object, refs: SlotRefs) -> Booking:
    booking_id, slot, person, status, lease_id = _array(value, 5, "Booking")
    return Booking(
        _str(booking_id, "Booking.booking_id"),
        refs.decode(slot),
        _decode_person(person),
        _enum(BookingStatus, status, "Booking.status"),
        _str(lease_id, "Booking.lease_id"),
    )


def _decode_person(value: object) -> Person:
    if (
        type(value) is tuple
        and len(value) == 7
        and tuple(map(type, value[:6])) == _PERSON_NAME_TYPES
    ):
        user_id, given, family, telephone, email, language, address = value
        return Person(
            user_id,
            given,
            family,
            telephone,
            email,
            language,
            None if address is None else _decode_address(address),
        )
    return _person_field_by_field(value)


def _person_field_by_field(value: object) -> Person:
    user_id, given, family, telephone, email, language, address = _array(value, 7, "Person")
    return Person(
        _str(user_id, "Person.user_id"),
        _str(given, "Person.given_name"),
        _str(family, "Person.family_name"),
        _str(telephone, "Person.telephone"),
        _str(email, "Person.email"),
        _str(language, "Person.language_code"),
        None if address is None else _decode_address(address),
    )


def _decode_address(value: object) -> PostalAddress:
    country, locality, region, box, postal_code, street = _array(value, 6, "PostalAddress")
    return PostalAddress(
        _str(country, "PostalAddress.country"),
        _str(locality, "PostalAddress.locality"),
        _str(region, "PostalAddress.region"),
        _str(box, "PostalAddress.post_office_box_number"),
        _str(postal_code, "PostalAddress.postal_code"),
        _str(street, "PostalAddress.street_address"),
    )


def _array(value: object, length: int, what: str) -> tuple[object, ...]:
    if type(value) is not tuple or len(value) != length:
        raise CorruptRecord(f"{what} is {_describe(value)}, not an array of {length}")
    return value


def _str(value: object, what: str) -> str:
    if type(value) is not str:
        raise CorruptRecord(f"{what} is {_describe(value)}, not a string")
    return value


def _int(value: object, what: str) -> int:
    # `type(...) is int`: msgpack's booleans decode to bool, an int subclass.
    if type(value) is not int:
        raise CorruptRecord(f"{what} is {_describe(value)}, not an integer")
    return value


E = TypeVar("E", ApiVersion, LeaseState, BookingStatus)


# Members by value: a dict lookup is several times cheaper than calling the enum class.
_MEMBERS: dict[type[enum.Enum], dict[str, enum.Enum]] = {
    cls: {member.value: member for member in cls} for cls in (ApiVersion, LeaseState, BookingStatus)
}


def _enum(cls: type[E], value: object, what: str) -> E:
    member = _MEMBERS[cls].get(value) if type(value) is str else None
    if member is not None:
        return cast(E, member)
    raise CorruptRecord(f"{what} is {_describe(value)}, not one of {[m.value for m in cls]}")


def _describe(value: object) -> str:
    if type(value) is tuple:
        return f"an array of {len(value)}"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"
