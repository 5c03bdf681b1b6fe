"""The journal's event codec: exact round trips, a pinned on-disk format, and corruption
that is always reported as CorruptRecord (never a KeyError, IndexError or TypeError)."""

from __future__ import annotations

import typing

import msgpack  # type: ignore[import-untyped]  # no stubs; used only to build bad records
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
from leasehold.shards._codec import (
    RECORD_VERSION,
    CorruptRecord,
    SlotRefs,
    decode_events,
    encode_events,
)

# Strategies built from the model types; msgpack integers are 64-bit.
texts = st.text(max_size=12)
ints = st.integers(-(2**63), 2**63 - 1)
slot_refs = st.builds(
    SlotRef, st.builds(SlotKey, texts, texts, ints, ints, texts, texts, ints), texts
)
people = st.builds(
    Person,
    *[texts] * 6,
    st.none() | st.builds(PostalAddress, *[texts] * 6),
)
leases = st.builds(
    Lease,
    texts,
    st.sampled_from(ApiVersion),
    slot_refs,
    texts,
    ints,
    st.sampled_from(LeaseState),
    texts,
)
CONFIRMED = BookingStatus.CONFIRMED
bookings = st.builds(Booking, texts, slot_refs, people, st.sampled_from(BookingStatus), texts)
EVENT_STRATEGIES: dict[type[Event], st.SearchStrategy[Event]] = {
    LeaseGranted: st.builds(LeaseGranted, leases),
    LeaseExpiredEvent: st.builds(LeaseExpiredEvent, texts),
    ExpiredLeasesForgotten: st.builds(ExpiredLeasesForgotten, ints),
    BookingCreated: st.builds(BookingCreated, bookings, texts),
    BookingCancelled: st.builds(BookingCancelled, texts),
    BookingRescheduled: st.builds(BookingRescheduled, texts, slot_refs),
    InventoryChanged: st.builds(
        InventoryChanged,
        st.lists(
            st.builds(SlotSpec, slot_refs.map(lambda r: r.key), ints, ints, texts, texts, texts)
        ).map(tuple),
        st.lists(slot_refs.map(lambda r: r.key)).map(tuple),
        st.lists(texts).map(tuple),
    ),
}
events = st.one_of(*EVENT_STRATEGIES.values())


def test_every_event_kind_has_a_strategy() -> None:
    assert set(EVENT_STRATEGIES) == set(typing.get_args(Event))


@given(st.lists(events, max_size=6))
def test_events_round_trip_exactly(original: list[Event]) -> None:
    decoded = decode_events(encode_events(original))
    assert decoded == tuple(original)


# The on-disk format: one event of each kind (every field off its default), pinned to
# its bytes. If one of these changes, old journals no longer read: bump RECORD_VERSION
# and keep reading the old layout instead.
KEY = SlotKey("m1", "cut", 1_767_254_400, 1800, "st", "rm", 2)
REF = SlotRef(KEY, "tag")
LEASE = Lease("L1", ApiVersion.V2, REF, "ref", 1_767_254_400_000_000_001, LeaseState.CONSUMED, "B1")
PERSON = Person(
    "u", "Ann", "Lee", "+1", "a@b", "en", PostalAddress("US", "NYC", "NY", "7", "10001", "1 Main")
)
SLOT_HEX = "9297a26d31a3637574ce69562980cd0708a27374a2726d02a3746167"
GOLDEN: list[tuple[Event, str]] = [
    (
        LeaseGranted(LEASE),
        "92019192ad6c656173655f6772616e746564"
        f"97a24c31a27632{SLOT_HEX}a3726566cf18868c8373bf0001a8636f6e73756d6564a24231",
    ),
    (LeaseExpiredEvent("L1"), "92019192ad6c656173655f65787069726564a24c31"),
    (ExpiredLeasesForgotten(3), "92019192b8657870697265645f6c65617365735f666f72676f7474656e03"),
    (
        BookingCreated(Booking("B1", REF, PERSON, BookingStatus.CONFIRMED, "L1"), "tok"),
        "92019193af626f6f6b696e675f63726561746564"
        f"95a24231{SLOT_HEX}97a175a3416e6ea34c6565a22b31a3614062a2656e"
        "96a25553a34e5943a24e59a137a53130303031a631204d61696e"
        "a9636f6e6669726d6564a24c31a3746f6b",
    ),
    (
        BookingCreated(Booking("B2", REF, Person(), BookingStatus.NO_SHOW_PENALIZED)),
        "92019193af626f6f6b696e675f63726561746564"
        f"95a24232{SLOT_HEX}97a0a0a0a0a0a0c0b16e6f5f73686f775f70656e616c697a6564a0a0",
    ),
    (BookingCancelled("B1"), "92019192b1626f6f6b696e675f63616e63656c6c6564a24231"),
    (
        BookingRescheduled("B1", SlotRef(SlotKey("m1", "cut", 0, 60))),
        "92019193b3626f6f6b696e675f72657363686564756c6564a242319297a26d31a3637574003ca0a000a0",
    ),
    (
        InventoryChanged(
            (SlotSpec(KEY, 2, 3, "tag", "Ann", "Room"),), (SlotKey("m1", "cut", 0, 60),), ("L1",)
        ),
        "92019194b1696e76656e746f72795f6368616e676564"
        "919697a26d31a3637574ce69562980cd0708a27374a2726d020203a3746167a3416e6ea4526f6f6d"
        "9197a26d31a3637574003ca0a00091a24c31",
    ),
]


def test_golden_covers_every_event_kind() -> None:
    assert {type(event) for event, _ in GOLDEN} == set(typing.get_args(Event))


@pytest.mark.parametrize(("event", "hex_bytes"), GOLDEN, ids=lambda v: type(v).__name__)
def test_golden_bytes(event: Event, hex_bytes: str) -> None:
    assert encode_events([event]).hex() == hex_bytes
    assert decode_events(bytes.fromhex(hex_bytes)) == (event,)


def test_a_record_holds_its_version_then_the_events_in_order() -> None:
    assert encode_events([]) == bytes.fromhex("920190")  # [1, []]
    both = (LeaseExpiredEvent("L1"), BookingCancelled("B1"))
    assert msgpack.unpackb(encode_events(both))[0] == RECORD_VERSION
    assert decode_events(encode_events(both)) == both


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ((2, []), "version 2 \\(written by a newer Leasehold\\)"),
        ((0, []), "record version 0"),
        ((True, []), "version is bool"),
        ([1, [], 3], "record is an array of 3"),
        ({"a": 1}, "record is dict"),
        ((1, [["no_such_event", "x"]]), "event 0 has unknown kind 'no_such_event'"),
        ((1, [[]]), "event 0 is an array of 0"),
        ((1, [[7]]), "event 0 has unknown kind 7"),
        ((1, [["lease_expired"]]), "event 0 \\(lease_expired\\): LeaseExpired is an array of 1"),
        ((1, [["lease_expired", 5]]), "LeaseExpired.lease_id is int 5, not a string"),
        ((1, [["expired_leases_forgotten", True]]), "count is bool True, not an integer"),
        ((1, [["booking_cancelled", b"B1"]]), "booking_id is bytes"),
        (
            (1, [["lease_expired", "L1"], ["booking_rescheduled", "B1", ["k", "t"]]]),
            "event 1 \\(booking_rescheduled\\): SlotKey is str",
        ),
        (
            (
                1,
                [["lease_granted", ["L", "v9", [[*"ms", 0, 1, "", "", 0], ""], "", 0, "live", ""]]],
            ),
            "Lease.version is str 'v9', not one of \\['v0', 'v2'\\]",
        ),
    ],
)
def test_malformed_records_name_what_is_wrong(record: object, message: str) -> None:
    with pytest.raises(CorruptRecord, match=message):
        decode_events(msgpack.packb(record))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"\x92\x01",
        encode_events([LeaseExpiredEvent("L1")]) + b"\x00",
        b"\xa2\xff\xfe",
        b"\x91" * 100_000,
        b"\xdd\xff\xff\xff\xff",
    ],
    ids=["empty", "reserved-byte", "incomplete", "trailing-bytes", "bad-utf8", "deep", "huge"],
)
def test_bytes_that_are_not_one_msgpack_value_are_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptRecord, match="not a msgpack record"):
        decode_events(data)


def decodes_or_is_corrupt(data: bytes) -> None:
    try:
        decoded = decode_events(data)
    except CorruptRecord:
        return
    assert all(type(event) in typing.get_args(Event) for event in decoded)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_are_corrupt(data: bytes) -> None:
    decodes_or_is_corrupt(data)


msgpack_values = st.recursive(
    st.none() | st.booleans() | ints | st.floats() | texts | st.binary(max_size=4),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=30,
)


@given(msgpack_values)
def test_arbitrary_msgpack_values_decode_or_are_corrupt(value: object) -> None:
    decodes_or_is_corrupt(msgpack.packb(value))


@given(st.lists(events, min_size=1, max_size=3), st.data())
def test_damaged_records_decode_or_are_corrupt(original: list[Event], data: st.DataObject) -> None:
    record = bytearray(encode_events(original))
    position = data.draw(st.integers(0, len(record) - 1))
    record[position] = data.draw(st.integers(0, 255))
    decodes_or_is_corrupt(bytes(record))
    decodes_or_is_corrupt(bytes(record[:position]))


def test_one_slot_refs_decodes_each_slot_once_and_hands_out_the_canonical_ref() -> None:
    inventory_ref = SlotRef(SlotKey("m", "s", 1, 2), "tag")
    asked: list[SlotRef] = []

    def canonical(ref: SlotRef) -> SlotRef:
        asked.append(ref)
        return inventory_ref if ref == inventory_ref else ref

    refs = SlotRefs(canonical, limit=1)
    other = SlotRef(SlotKey("m", "s", 3, 2), "tag")
    records = [
        encode_events([LeaseGranted(Lease("L1", ApiVersion.V2, inventory_ref, "r", 5))]),
        encode_events([BookingCreated(Booking("B1", inventory_ref, Person("u"), CONFIRMED), "")]),
        encode_events([BookingRescheduled("B1", other)]),
        encode_events([BookingRescheduled("B1", other)]),
    ]
    decoded = [decode_events(record, refs)[0] for record in records]
    assert isinstance(decoded[0], LeaseGranted)
    assert decoded[0].lease.slot is inventory_ref
    assert isinstance(decoded[1], BookingCreated)
    assert decoded[1].booking.slot is inventory_ref
    # Past the limit nothing more is kept: equal refs still decode, each on its own.
    assert decoded[2] == decoded[3] == BookingRescheduled("B1", other)
    assert asked == [inventory_ref, other, other]


def test_a_map_where_a_slot_ref_belongs_is_corrupt_not_a_type_error() -> None:
    record = (1, [["booking_rescheduled", "B1", {"key": 1}]])
    with pytest.raises(CorruptRecord, match="SlotRef is dict"):
        decode_events(msgpack.packb(record), SlotRefs())
