"""Snapshot format 4's leases and bookings: one array per field, their slots by number.

A snapshot holds hundreds of thousands of leases and bookings on a few thousand
slots. Format 3 wrote each as the journal's row, its slot's key and tag in full
(11 of a lease's ~20 msgpack objects), so every restore unpacked, hashed and
compared each slot again, and checked each row in Python. Format 4 writes each
slot once, in a table, and the leases and bookings as columns: unpacking makes
fewer objects, and the checks and the objects are made by C loops (`map`, `set`)
instead of a Python step per row (figures: docs/performance.md, "Restart, fifth
pass").

    slots    = [SlotRef...]                     (the journal codec's SlotRef)
    leases   = [[lease_id...], [version...], [slot number...], [reference...],
                [expires_ns...], [state...], [booking_id...]]
    bookings = [[booking_id...], [slot number...], persons, [status...], [lease_id...]]
    persons  = [[user_id...], [given_name...], [family_name...], [telephone...],
                [email...], [language_code...], [PostalAddress | nil...]]

A slot number is an index into `slots`. Every column of a table has as many
values as its first; each value's exact type is checked (enums by value), and
anything else raises CorruptRecord naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from leasehold.core import Booking, Lease, Person, PostalAddress, SlotRef
from leasehold.shards import _codec as c

Columns = tuple[list[object], ...]


class SlotTable:
    """Numbers the distinct slots that leases and bookings name, in first-seen order."""

    __slots__ = ("_by_id", "_numbers", "refs")

    def __init__(self) -> None:
        self._numbers: dict[SlotRef, int] = {}
        # By id() first: leases and bookings share their slot's ref object (the caller
        # keeps them alive while encoding), which spares hashing an equal ref each time.
        self._by_id: dict[int, int] = {}
        self.refs: list[SlotRef] = []

    def number(self, ref: SlotRef) -> int:
        number = self._by_id.get(id(ref))
        if number is None:
            number = self._numbers.setdefault(ref, len(self.refs))
            if number == len(self.refs):
                self.refs.append(ref)
            self._by_id[id(ref)] = number
        return number

    def encoded(self) -> list[tuple[object, ...]]:
        return [c._slot_ref(ref) for ref in self.refs]


def encode_leases(leases: Sequence[Lease], table: SlotTable) -> Columns:
    number = table.number
    return (
        [lease.lease_id for lease in leases],
        [lease.version.value for lease in leases],
        [number(lease.slot) for lease in leases],
        [lease.reference for lease in leases],
        [lease.expires_ns for lease in leases],
        [lease.state.value for lease in leases],
        [lease.booking_id for lease in leases],
    )


def encode_bookings(bookings: Sequence[Booking], table: SlotTable) -> tuple[object, ...]:
    number = table.number
    persons = [booking.person for booking in bookings]
    return (
        [booking.booking_id for booking in bookings],
        [number(booking.slot) for booking in bookings],
        (
            [p.user_id for p in persons],
            [p.given_name for p in persons],
            [p.family_name for p in persons],
            [p.telephone for p in persons],
            [p.email for p in persons],
            [p.language_code for p in persons],
            [None if p.address is None else c._address(p.address) for p in persons],
        ),
        [booking.status.value for booking in bookings],
        [booking.lease_id for booking in bookings],
    )


def decode_slot_table(value: object, refs: c.SlotRefs) -> list[SlotRef]:
    return [refs.decode(v) for v in _array(value, None, "slots")]


def decode_leases(value: object, slots: list[SlotRef]) -> tuple[Lease, ...]:
    ids, versions, numbers, references, expiries, states, booking_ids = _array(value, 7, "leases")
    n = len(_array(ids, None, "Lease.lease_id"))
    return tuple(
        map(
            Lease,
            _exactly(str, ids, n, "Lease.lease_id"),
            _members(c._VERSIONS, versions, n, "Lease.version"),
            _slots(slots, numbers, n, "Lease.slot"),
            _exactly(str, references, n, "Lease.reference"),
            _exactly(int, expiries, n, "Lease.expires_ns"),
            _members(c._LEASE_STATES, states, n, "Lease.state"),
            _exactly(str, booking_ids, n, "Lease.booking_id"),
        )
    )


def decode_bookings(value: object, slots: list[SlotRef]) -> tuple[Booking, ...]:
    ids, numbers, persons, statuses, lease_ids = _array(value, 5, "bookings")
    n = len(_array(ids, None, "Booking.booking_id"))
    return tuple(
        map(
            Booking,
            _exactly(str, ids, n, "Booking.booking_id"),
            _slots(slots, numbers, n, "Booking.slot"),
            _persons(persons, n),
            _members(c._STATUSES, statuses, n, "Booking.status"),
            _exactly(str, lease_ids, n, "Booking.lease_id"),
        )
    )


def _persons(value: object, n: int) -> list[Person]:
    user_ids, given, family, telephones, emails, languages, addresses = _array(value, 7, "persons")
    return list(
        map(
            Person,
            _exactly(str, user_ids, n, "Person.user_id"),
            _exactly(str, given, n, "Person.given_name"),
            _exactly(str, family, n, "Person.family_name"),
            _exactly(str, telephones, n, "Person.telephone"),
            _exactly(str, emails, n, "Person.email"),
            _exactly(str, languages, n, "Person.language_code"),
            _addresses(addresses, n),
        )
    )


def _addresses(value: object, n: int) -> Sequence[PostalAddress | None]:
    column = _array(value, n, "Person.address")
    if column.count(None) == n:  # (the common case: none given)
        return cast(tuple[None, ...], column)
    return [None if v is None else c._decode_address(v) for v in column]


def _exactly(kind: type, value: object, n: int, what: str) -> tuple[Any, ...]:
    """`value`: an array of `n` values, each of type `kind` exactly (no bool for int)."""
    column = _array(value, n, what)
    if n and set(map(type, column)) != {kind}:
        bad = next(v for v in column if type(v) is not kind)
        raise c.CorruptRecord(f"{what} is {c._describe(bad)}, not a {kind.__name__}")
    return column


def _members(members: Mapping[str, object], value: object, n: int, what: str) -> list[Any]:
    """The enum members that an array of `n` values names by value."""
    column: tuple[str, ...] = _exactly(str, value, n, what)
    found = [*map(members.get, column)]
    if None in found:
        bad = next(v for v in column if v not in members)
        raise c.CorruptRecord(f"{what} is {c._describe(bad)}, not one of {list(members)}")
    return found


def _slots(slots: list[SlotRef], value: object, n: int, what: str) -> list[SlotRef]:
    """The slots an array of `n` slot numbers names."""
    numbers: tuple[int, ...] = _exactly(int, value, n, what)
    if n and (min(numbers) < 0 or max(numbers) >= len(slots)):
        bad = next(v for v in numbers if not 0 <= v < len(slots))
        raise c.CorruptRecord(f"{what} is slot {bad}; the snapshot has {len(slots)}")
    return list(map(slots.__getitem__, numbers))


def _array(value: object, length: int | None, what: str) -> tuple[object, ...]:
    if type(value) is not tuple or (length is not None and len(value) != length):
        wanted = "an array" if length is None else f"an array of {length}"
        raise c.CorruptRecord(f"{what} is {c._describe(value)}, not {wanted}")
    return value
