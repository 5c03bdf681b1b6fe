"""The decoders' fast path (one comparison of the fields' types) decodes exactly what the
field-by-field decoder does, and what it passes over is still refused by field name."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs; used only to build records
import pytest
from hypothesis import given
from test_codec import EVENT_STRATEGIES

from leasehold.core import (
    ApiVersion,
    Booking,
    BookingCreated,
    BookingStatus,
    Lease,
    LeaseGranted,
    Person,
    SlotKey,
    SlotRef,
)
from leasehold.shards import _codec
from leasehold.shards._codec import CorruptRecord, SlotRefs, decode_events, encode_events


def _value(event: LeaseGranted | BookingCreated) -> list[object]:
    """The event as msgpack gives it back (tuples), to edit one field."""
    record = msgpack.unpackb(encode_events((event,)), raw=False, use_list=True)
    return list(record[1][0])


def _with_field(event: LeaseGranted | BookingCreated, path: tuple[int, ...], new: object) -> bytes:
    value = _value(event)
    target: list[Any] = value
    for index in path[:-1]:
        target[index] = list(target[index])
        target = target[index]
    target[path[-1]] = new
    return bytes(msgpack.packb((1, [value])))


@given(EVENT_STRATEGIES[LeaseGranted])
def test_a_lease_decodes_alike_both_ways(event: LeaseGranted) -> None:
    value = msgpack.unpackb(encode_events((event,)), raw=False, use_list=False)[1][0][1]
    refs = SlotRefs()
    assert _codec._decode_lease(value, refs) == _codec._lease_field_by_field(value, refs)
    assert decode_events(encode_events((event,))) == (event,)


@given(EVENT_STRATEGIES[BookingCreated])
def test_a_booking_and_its_person_decode_alike_both_ways(event: BookingCreated) -> None:
    value = msgpack.unpackb(encode_events((event,)), raw=False, use_list=False)[1][0][1]
    refs = SlotRefs()
    assert _codec._decode_booking(value, refs) == _codec._booking_field_by_field(value, refs)
    person = value[2]
    assert _codec._decode_person(person) == _codec._person_field_by_field(person)
    assert decode_events(encode_events((event,))) == (event,)


LEASE_FIELDS = [
    ((1, 0), "Lease.lease_id"),
    ((1, 1), "Lease.version"),
    ((1, 3), "Lease.reference"),
    ((1, 4), "Lease.expires_ns"),
    ((1, 5), "Lease.state"),
    ((1, 6), "Lease.booking_id"),
]
BOOKING_FIELDS = [
    ((1, 0), "Booking.booking_id"),
    ((1, 3), "Booking.status"),
    ((1, 4), "Booking.lease_id"),
    ((1, 2, 0), "Person.user_id"),
    ((1, 2, 5), "Person.language_code"),
    ((2,), "BookingCreated.idempotency_token"),
]
# Each wrong in a way a type comparison alone would let through or catch: another type,
# a boolean for an integer, an unknown enum value.
WRONG = [7, True, None, b"bytes", "not-a-member", 1.5]


@pytest.mark.parametrize(("path", "field"), LEASE_FIELDS)
@pytest.mark.parametrize("wrong", WRONG)
def test_a_bad_lease_field_is_refused_by_name(
    path: tuple[int, ...], field: str, wrong: object
) -> None:
    event = _example(LeaseGranted)
    data = _with_field(event, path, wrong)
    _refused_naming(data, field, expect_ok=_fits(field, wrong))


@pytest.mark.parametrize(("path", "field"), BOOKING_FIELDS)
@pytest.mark.parametrize("wrong", WRONG)
def test_a_bad_booking_field_is_refused_by_name(
    path: tuple[int, ...], field: str, wrong: object
) -> None:
    event = _example(BookingCreated)
    data = _with_field(event, path, wrong)
    _refused_naming(data, field, expect_ok=_fits(field, wrong))


def _fits(field: str, value: object) -> bool:
    """Whether `value` is valid for `field` after all (a string where any string goes)."""
    if field.endswith("expires_ns"):
        return type(value) is int
    enum_fields = ("Lease.version", "Lease.state", "Booking.status")
    return type(value) is str and field not in enum_fields


def _refused_naming(data: bytes, field: str, *, expect_ok: bool) -> None:
    if expect_ok:
        decode_events(data)
        return
    with pytest.raises(CorruptRecord, match=field.replace(".", r"\.")):
        decode_events(data)


REF = SlotRef(SlotKey("m", "s", 1_800_000_000, 1800, "staff", "room", 2), "tag")
LEASE = Lease("lease-1", ApiVersion.V2, REF, "ref-1", 1_800_000_000_000_000_000)
PERSON = Person("user-1", "Ann", "Lee", "+15550000001", "ann@example.com", "en")
BOOKING = Booking("booking-1", REF, PERSON, BookingStatus.CONFIRMED, "lease-1")


def _example(kind: type[LeaseGranted] | type[BookingCreated]) -> LeaseGranted | BookingCreated:
    return LeaseGranted(LEASE) if kind is LeaseGranted else BookingCreated(BOOKING, "token-1")
