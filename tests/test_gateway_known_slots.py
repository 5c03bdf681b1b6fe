"""KnownSlots: the one-probe decode of inventory slots answers exactly as slot_ref does."""

from __future__ import annotations

import pytest
from grpclib.exceptions import GRPCError

from leasehold.core import SlotKey, SlotRef, SlotSpec
from leasehold.core._demo import demo_feed
from leasehold.core._feed import parse_feed
from leasehold.gateway._v2_codec import KnownSlots, fill_slot, slot_ref
from leasehold.proto.v2 import booking_pb2 as pb

NOW_SEC = 1_767_225_600
DEMO = parse_feed(demo_feed(NOW_SEC)).slots


def wire(ref: SlotRef) -> pb.Slot:
    out = pb.Slot()
    fill_slot(out, ref)
    return out


def outcome(decode: object) -> object:
    """What a decode returned, or the status and message it raised."""
    assert callable(decode)
    try:
        return decode()
    except GRPCError as error:
        return (error.status, error.message)


def test_every_inventory_slot_decodes_to_the_inventorys_own_key() -> None:
    known = KnownSlots(DEMO)
    assert len(DEMO) > 100
    for spec in DEMO:
        slot = wire(SlotRef(spec.key, spec.availability_tag))
        decoded = known.slot_ref(slot, "slot")
        assert decoded == slot_ref(slot, "slot")
        assert decoded.key is spec.key  # the shard then matches it by identity


def variants(spec: SlotSpec) -> list[pb.Slot]:
    """Near misses of an inventory slot: each must get the full decoder's answer."""
    base = wire(SlotRef(spec.key, spec.availability_tag))
    found = []
    for change in (
        lambda s: setattr(s.start_time, "nanos", 1),
        lambda s: setattr(s.duration, "nanos", 500),
        lambda s: s.ClearField("start_time"),
        lambda s: s.ClearField("duration"),
        lambda s: setattr(s, "availability_tag", "the caller's own tag"),
        lambda s: setattr(s, "availability_tag", "bad\x00tag"),
        lambda s: setattr(s, "service_id", "no-such-service"),
        lambda s: setattr(s.resources, "party_size", -1),
        lambda s: setattr(s.start_time, "seconds", s.start_time.seconds + 1),
    ):
        slot = pb.Slot()
        slot.CopyFrom(base)
        change(slot)
        found.append(slot)
    return found


def test_near_misses_get_the_full_decoders_answer() -> None:
    known = KnownSlots(DEMO)
    for spec in DEMO[:20]:
        for slot in variants(spec):
            fast = outcome(lambda slot=slot: known.slot_ref(slot, "lease.slot"))
            assert fast == outcome(lambda slot=slot: slot_ref(slot, "lease.slot"))


def test_a_feed_slot_the_gateway_would_reject_is_still_rejected() -> None:
    too_long = SlotSpec(SlotKey("m" * 300, "svc", NOW_SEC, 1800), 1, 1)
    known = KnownSlots([too_long])
    with pytest.raises(GRPCError) as raised:
        known.slot_ref(wire(SlotRef(too_long.key)), "slot")
    assert "slot.merchant_id" in str(raised.value.message)
