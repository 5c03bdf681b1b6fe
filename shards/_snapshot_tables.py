"""Snapshot format 4's leases, bookings and tokens: one array per field, slots by number.

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
    tokens   = [[merchant_id...], [service_id...], [token...], [booking_id | Booking...]]

A token's original response is the booking of that id in `bookings` when it is
the very one (not cancelled or moved since), else the whole booking as the
journal writes it (shards._codec, its slot in full).

A slot number is an index into `slots`. Every column of a table has as many
values as its first; each value's exact type is checked (enums by value), and
anything else raises CorruptRecord naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from leasehold.core import Booking, Lease, Person, PostalAddress, SlotRef, StateSnapshot
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


def encode_tokens(snapshot: StateSnapshot) -> Columns:
    current = {booking.booking_id: booking for booking in snapshot.bookings}
    tokens = snapshot.tokens
    return (
        [m for m, _, _, _ in tokens],
        [s for _, s, _, _ in tokens],
        [t for _, _, t, _ in tokens],
        [b.booking_id if current.get(b.booking_id) is b else c._booking(b) for *_, b in tokens],
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


Token = tuple[str, str, str, Booking]


def decode_tokens(value: object, by_id: dict[str, Booking], refs: c.SlotRefs) -> tuple[Token, ...]:
    """The tokens, their responses found by booking id in `by_id` (or decoded whole)."""
    merchants, services, tokens, responses = _array(value, 4, "tokens")
    n = len(_array(merchants, None, "token.merchant_id"))
    return tuple(
        zip(
            _exactly(str, merchants, n, "token.merchant_id"),
            _exactly(str, services, n, "token.service_id"),
            _exactly(str, tokens, n, "token.token"),
            _responses(responses, n, by_id, refs),
            strict=True,
        )
    )


def _responses(value: object, n: int, by_id: dict[str, Booking], refs: c.SlotRefs) -> list[Booking]:
    column = _array(value, n, "token.booking")
    if n and set(map(type, column)) == {str}:  # (the common case: all by id)
        ids: tuple[str, ...] = column
        found = [*map(by_id.get, ids)]
        if all(found):  # (not `None in`: that would call Booking.__eq__ on each)
            return cast(list[Booking], found)
    return [_response(v, by_id, refs) for v in column]


def _response(value: object, by_id: dict[str, Booking], refs: c.SlotRefs) -> Booking:
    if type(value) is not str:
        return c._decode_booking(value, refs)
    original = by_id.get(value)
    if original is None:
        raise c.CorruptRecord(f"token names booking {value!r}, not in the snapshot")
    return original


def strings(value: object, what: str) -> tuple[str, ...]:
    """An array of strings."""
    column = _array(value, None, what)
    return _exactly(str, column, len(column), what)


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
        raise c.CorruptRecord(f"{what} is {c._describe(bad)}, not {_KINDS[kind]}")
    return column


# As the journal codec names them (shards._codec._str, _int).
_KINDS = {str: "a string", int: "an integer"}


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


def _array(value: object, length: int | None, what: str) -> tuple[Any, ...]:
    if type(value) is not tuple or (length is not None and len(value) != length):
        wanted = "an array" if length is None else f"an array of {length}"
        raise c.CorruptRecord(f"{what} is {c._describe(value)}, not {wanted}")
    return value
