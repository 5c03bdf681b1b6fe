"""Snapshot format 4: leases and bookings as columns, each slot once in a table."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]  # no stubs; builds snapshot documents
import pytest

from leasehold.core import (
    ApiVersion,
    Booking,
    BookingStatus,
    Lease,
    LeaseState,
    Person,
    PostalAddress,
    SlotKey,
    SlotRef,
    StateSnapshot,
)
from leasehold.shards._snapshots import (
    HEADER_BYTES,
    SNAPSHOT_VERSION,
    SnapshotCorrupt,
    decode_snapshot,
    encode_snapshot,
)

KEYS = [SlotKey("m1", "cut", 10_000 + 600 * i, 600, staff_id=f"s{i}") for i in range(3)]
LEASES = (
    Lease("L-1", ApiVersion.V2, SlotRef(KEYS[0], "t0"), "r1", 5, LeaseState.LIVE),
    Lease("L-2", ApiVersion.V0, SlotRef(KEYS[1]), "r2", 6, LeaseState.CONSUMED, "B-1"),
    Lease("L-3", ApiVersion.V2, SlotRef(KEYS[0], "t0"), "r3", 7, LeaseState.EXPIRED),
)
ADDRESS = PostalAddress("FR", "Paris", street_address="1 rue")
BOOKINGS = (
    Booking("B-1", SlotRef(KEYS[1]), Person("u1", email="a@b"), BookingStatus.CONFIRMED, "L-2"),
    Booking("B-2", SlotRef(KEYS[2], "x"), Person("u2", address=ADDRESS), BookingStatus.CANCELED),
)
SNAPSHOT = StateSnapshot(
    leases=LEASES,
    expired_order=("L-3",),
    bookings=BOOKINGS,
    # t1's response is the booking as it is (written by id), t2's one since changed (whole).
    tokens=(
        ("m1", "cut", "t1", BOOKINGS[0]),
        ("m1", "cut", "t2", dataclasses.replace(BOOKINGS[1], status=BookingStatus.CONFIRMED)),
    ),
    totals=(3, 1, 2),
)
LEASE_FIELDS = ["lease_id", "version", "slot", "reference", "expires_ns", "state", "booking_id"]
BOOKING_FIELDS = ["booking_id", "slot", "person", "status", "lease_id"]


def document() -> list[object]:
    return list(msgpack.unpackb(encode_snapshot(7, SNAPSHOT)[HEADER_BYTES:], use_list=True))


def table(doc: list[object], index: int) -> list[Any]:
    """The document's array at `index` (a table of columns, the slots, ...), to edit."""
    value = doc[index]
    assert isinstance(value, list)
    return value


def decode(doc: list[object], tmp_path: Path) -> StateSnapshot:
    return decode_snapshot(msgpack.packb(doc), tmp_path).state


def test_a_snapshot_writes_each_slot_once_and_reads_back_equal(tmp_path: Path) -> None:
    doc = document()
    assert doc[0] == SNAPSHOT_VERSION == 4
    assert len(table(doc, 8)) == 3  # KEYS[0] with tag t0 (twice), KEYS[1], KEYS[2] with tag x
    tokens = table(doc, 5)
    assert tokens[3][0] == "B-1"  # (by id)
    assert isinstance(tokens[3][1], list)  # (whole)
    assert decode(doc, tmp_path) == SNAPSHOT


def test_decoded_leases_and_bookings_share_one_ref_per_slot(tmp_path: Path) -> None:
    state = decode(document(), tmp_path)
    assert state.leases[0].slot is state.leases[2].slot
    assert state.leases[1].slot is state.bookings[0].slot


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lease_id", 7, "Lease.lease_id is int 7, not a string"),
        ("version", "v9", "Lease.version is str 'v9', not one of"),
        ("slot", 3, "Lease.slot is slot 3; the snapshot has 3"),
        ("slot", -1, "Lease.slot is slot -1; the snapshot has 3"),
        ("slot", True, "Lease.slot is bool True, not an integer"),
        ("expires_ns", 1.5, "Lease.expires_ns is float 1.5, not an integer"),
        ("state", "gone", "Lease.state is str 'gone', not one of"),
        ("booking_id", None, "Lease.booking_id is NoneType None, not a string"),
    ],
)
def test_a_lease_column_value_of_the_wrong_kind_is_corrupt(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    doc = document()
    table(doc, 2)[LEASE_FIELDS.index(field)][1] = value
    with pytest.raises(SnapshotCorrupt, match=message):
        decode(doc, tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("booking_id", b"B", "Booking.booking_id is bytes b'B', not a string"),
        ("slot", 9, "Booking.slot is slot 9; the snapshot has 3"),
        ("status", "maybe", "Booking.status is str 'maybe', not one of"),
        ("lease_id", 0, "Booking.lease_id is int 0, not a string"),
    ],
)
def test_a_booking_column_value_of_the_wrong_kind_is_corrupt(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    doc = document()
    table(doc, 4)[BOOKING_FIELDS.index(field)][0] = value
    with pytest.raises(SnapshotCorrupt, match=message):
        decode(doc, tmp_path)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (0, 1, "Person.user_id is int 1, not a string"),
        (4, None, "Person.email is NoneType None, not a string"),
        (6, "FR", "PostalAddress is str 'FR', not an array of 6"),
    ],
)
def test_a_person_column_value_of_the_wrong_kind_is_corrupt(
    tmp_path: Path, column: int, value: object, message: str
) -> None:
    doc = document()
    table(doc, 4)[BOOKING_FIELDS.index("person")][column][0] = value
    with pytest.raises(SnapshotCorrupt, match=message):
        decode(doc, tmp_path)


@pytest.mark.parametrize(("index", "column"), [(2, 6), (4, 4), (4, 0), (5, 3), (5, 0)])
def test_columns_of_unequal_length_are_corrupt(tmp_path: Path, index: int, column: int) -> None:
    doc = document()
    values = table(doc, index)[column]
    values.append(values[0])
    with pytest.raises(SnapshotCorrupt, match="not an array of"):
        decode(doc, tmp_path)


def test_a_slot_table_entry_that_is_not_a_slot_ref_is_corrupt(tmp_path: Path) -> None:
    doc = document()
    table(doc, 8)[1] = ["m1", "cut"]
    with pytest.raises(SnapshotCorrupt, match="SlotKey is str 'm1', not an array of 7"):
        decode(doc, tmp_path)


def test_an_empty_snapshot_has_empty_tables(tmp_path: Path) -> None:
    empty = StateSnapshot(leases=(), expired_order=(), bookings=(), tokens=(), totals=(0, 0, 0))
    assert decode_snapshot(encode_snapshot(0, empty), tmp_path).state == empty
