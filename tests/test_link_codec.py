"""Commands, replies and shard figures cross the link through shards' codec, checked."""

from __future__ import annotations

import contextlib
import typing

import msgpack  # type: ignore[import-untyped]
import pytest
from _core_helpers import (
    CUT_A,
    DAY_START,
    NOW,
    SPECS,
    YOGA,
    book_v0,
    book_v2,
    grant,
    lease_v2,
    new_state,
)
from hypothesis import given
from hypothesis import strategies as st

from leasehold import core
from leasehold.shards import (
    CorruptRecord,
    ShardFault,
    ShardStats,
    decode_command,
    decode_reply,
    decode_value,
    encode_command,
    encode_reply,
    encode_value,
)
from leasehold.shards._dispatch import handled_commands
from leasehold.shards._shard import Shard


def wire(value: object) -> object:
    """Through msgpack as the link sends it (arrays come back as tuples)."""
    return msgpack.unpackb(msgpack.packb(value), raw=False, use_list=False)


COMMANDS: list[core.Command] = [
    core.CheckAvailability(CUT_A),
    core.BatchAvailability((CUT_A, YOGA)),
    lease_v2(CUT_A, "ref-1", NOW + 5),
    lease_v2(YOGA, "ref-2", None, tag="t"),
    book_v2(CUT_A, "lease-1"),
    book_v0("lease-1"),
    core.CreateBooking(
        core.ApiVersion.V2,
        core.SlotRef(CUT_A),
        "",
        core.Person(
            "u", "A", "B", "+1", "a@b", "en", core.PostalAddress("DE", "B", "", "", "1", "S")
        ),
        "tok",
    ),
    core.CancelBooking("b-1"),
    core.RescheduleBooking("b-1", 100, None),
    core.GetBooking("b-1"),
    core.ListBookings("u1"),
    core.ChangeInventory(
        core.Window(DAY_START, core.END_OF_TIME, "m1", "cut", 1800, ("st1", "", 0), SPECS[:2]),
        max_slots=250,
        dry_run=True,
    ),
    core.ChangeInventory(core.whole_inventory(SPECS)),
    core.ListInventory("m1", "cut", DAY_START, DAY_START + 3600, limit=10),
]


def test_every_command_type_has_an_example_here() -> None:
    assert {type(c) for c in COMMANDS} == set(typing.get_args(core.Command))
    assert handled_commands() == set(typing.get_args(core.Command))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_a_command_crosses_unchanged(command: core.Command) -> None:
    assert decode_command(wire(encode_command(command))) == command


def test_replies_cross_unchanged() -> None:
    state = new_state()
    lease = grant(state, lease_v2(CUT_A, "r"))
    booking = core.Booking(
        "b-1", core.SlotRef(CUT_A), core.Person(user_id="u"), core.BookingStatus.CONFIRMED, ""
    )
    cases: list[tuple[type[core.Command], object]] = [
        (core.CreateLease, lease),
        (core.CheckAvailability, 3),
        (core.BatchAvailability, (1, None, 0)),
        (core.GetBooking, booking),
        (core.ListBookings, (booking, booking)),
        (core.ListBookings, ()),
        (core.ChangeInventory, core.InventoryReport(1, 2, 3, 1, 4, 2, DAY_START, False)),
        (core.ChangeInventory, core.InventoryReport()),
        (
            core.ListInventory,
            (core.SlotState(SPECS[0], 1, 2, False), core.SlotState(SPECS[1], 0, 1, True)),
        ),
        (core.ListInventory, ()),
    ]
    for kind, reply in cases:
        assert decode_reply(kind, wire(encode_reply(reply))) == reply


def test_refusals_and_faults_cross_with_their_type_and_field() -> None:
    refusal = decode_reply(
        core.CreateLease, wire(encode_reply(core.SlotUnavailable("full", field="slot")))
    )
    assert isinstance(refusal, core.SlotUnavailable)
    assert (refusal.message, refusal.field) == ("full", "slot")
    for fault in ShardFault:
        assert decode_reply(core.GetBooking, wire(encode_reply(fault))) is fault


def test_shard_stats_cross_unchanged() -> None:
    import trio

    from leasehold.shards import AnchoredClock

    async def stats_after_work() -> ShardStats:
        shard = Shard(3, new_state(SPECS), AnchoredClock(NOW), mailbox_capacity=4)
        return shard.statistics()

    stats = trio.run(stats_after_work)
    assert decode_value(ShardStats, wire(encode_value(stats))) == stats


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ((), "non-empty array"),
        (("NoSuchCommand",), "unknown command"),
        (("GetBooking",), "array of 1"),
        (("GetBooking", 5), "GetBooking.booking_id is int 5, not a str"),
        (
            ("CheckAvailability", ("m", "s", 1, 2, "", "", True)),
            "party_size is bool True, not a int",
        ),
        (("CreateLease", "v9", (("m", "s", 1, 2, "", "", 0), ""), "r", None), "ApiVersion"),
    ],
)
def test_a_malformed_command_is_a_clean_error(value: object, says: str) -> None:
    with pytest.raises(CorruptRecord, match=says):
        decode_command(value)


@pytest.mark.parametrize(
    "value",
    [
        (),
        ("v",),
        ("x", 1),
        ("f", "melted"),
        ("e", "NoSuchError", "m", ""),
        ("e", "NotFound", 1, ""),
    ],
)
def test_a_malformed_reply_is_a_clean_error(value: object) -> None:
    with pytest.raises(CorruptRecord):
        decode_reply(core.GetBooking, value)


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, min_size=1, max_size=6).map(tuple) | st.just(()),
    max_leaves=30,
)


@given(values)
def test_any_value_is_a_command_or_a_clean_error(value: object) -> None:
    try:
        command = decode_command(value)
    except CorruptRecord:
        return
    assert type(command) in typing.get_args(core.Command)
    assert decode_command(wire(encode_command(command))) == command


@given(values)
def test_any_value_is_a_reply_or_a_clean_error(value: object) -> None:
    kinds = (core.CreateLease, core.ListBookings, core.ChangeInventory, core.ListInventory)
    for kind in (*kinds, core.BatchAvailability):
        with contextlib.suppress(CorruptRecord):
            decode_reply(kind, value)
