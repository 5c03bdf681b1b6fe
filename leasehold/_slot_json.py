"""A slot as grpcurl's JSON, and which slot to name first: for `leasehold slots` and the
start-up lines of both modes. Light on purpose (json, datetime, core): a shard process
imports it, and nothing of gRPC."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable

from leasehold.core import SlotSpec


def slot_order(spec: SlotSpec) -> tuple[int, str, str, str, str, int]:
    key = spec.key
    return (
        key.start_sec,
        key.merchant_id,
        key.service_id,
        key.staff_id,
        key.room_id,
        key.party_size,
    )


def slot_json(spec: SlotSpec) -> dict[str, object]:
    """The slot as a v2 `Slot` in protobuf's JSON form (what grpcurl -d takes)."""
    key = spec.key
    slot: dict[str, object] = {
        "merchant_id": key.merchant_id,
        "service_id": key.service_id,
        "start_time": rfc3339(key.start_sec),
        "duration": f"{key.duration_sec}s",
    }
    resources = {
        name: value
        for name, value in (
            ("staff_id", key.staff_id),
            ("room_id", key.room_id),
            ("party_size", key.party_size),
        )
        if value
    }
    if resources:
        slot["resources"] = resources
    if spec.availability_tag:
        slot["availability_tag"] = spec.availability_tag
    return slot


def slot_time_json(spec: SlotSpec) -> dict[str, object]:
    """The slot as a v2 `SlotTime` (BatchAvailabilityLookup), int64s as JSON strings."""
    slot = slot_json(spec)
    shown: dict[str, object] = {
        "service_id": spec.key.service_id,
        "start_sec": str(spec.key.start_sec),
        "duration_sec": str(spec.key.duration_sec),
    }
    for name in ("resources", "availability_tag"):
        if name in slot:
            shown[name] = slot[name]
    return shown


def example_slot(slots: Iterable[SlotSpec]) -> str | None:
    """One open slot to try first (the earliest), as grpcurl's compact JSON."""
    found = ordered_example(slots)
    return None if found is None else found[1]


def ordered_example(slots: Iterable[SlotSpec]) -> tuple[list[object], str] | None:
    """example_slot with its sort key (as JSON gives it back), so that the earliest of
    several processes' examples can be chosen."""
    open_slots = [s for s in slots if s.spots > 0]
    if not open_slots:
        return None
    first = min(open_slots, key=slot_order)
    return list(slot_order(first)), json.dumps(slot_json(first), separators=(",", ":"))


def rfc3339(unix_sec: int) -> str:
    return datetime.datetime.fromtimestamp(unix_sec, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
