"""The inventory a bench run uses: an availability feed made for the scenario.

Each scenario's slots carry a role in their service_id (`flow`, `race`,
`storm`, `background`, `mixed-*`), so a feed written by `leasehold bench feed`
and served by `leasehold serve --feed` tells a later `leasehold bench --target
--feed` which slot is which. Slots start on a whole day at least two days ahead
(the server refuses nothing in the past, but ListBookings lists only slots that
have not ended).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from leasehold.bench._history import BenchSlot
from leasehold.core import SlotKey, parse_feed_json

DAY = 86_400
HOUR = 3_600
SLOT_SECONDS = 1_800


@dataclass(frozen=True, slots=True)
class SlotGroup:
    """`count` slots of `spots` each, for one role, spread over `merchants` merchants."""

    role: str
    count: int
    spots: int
    merchants: int = 8


def first_start(now_sec: int) -> int:
    return (now_sec // DAY + 2) * DAY


def build_slots(groups: Sequence[SlotGroup], now_sec: int) -> list[BenchSlot]:
    """The slot table: one slot per (merchant, start) within each group, in a stable order.

    A group's merchants each get `count / merchants` consecutive half-hour starts, so
    every merchant has several starts of the same service to reschedule between.
    """
    start = first_start(now_sec)
    slots: list[BenchSlot] = []
    for group in groups:
        merchants = max(1, min(group.merchants, group.count))
        for i in range(group.count):
            merchant, nth = i % merchants, i // merchants
            key = SlotKey(
                merchant_id=f"bench-m{merchant}",
                service_id=group.role,
                start_sec=start + nth * SLOT_SECONDS,
                duration_sec=SLOT_SECONDS,
            )
            slots.append(BenchSlot(key, group.spots))
    return slots


def feed_document(slots: Sequence[BenchSlot], now_sec: int) -> dict[str, object]:
    """The slots as an Actions Center availability feed (spec section 4)."""
    entries = [
        {
            "merchant_id": s.key.merchant_id,
            "service_id": s.key.service_id,
            "start_sec": s.key.start_sec,
            "duration_sec": s.key.duration_sec,
            "spots_total": s.spots,
            "spots_open": s.spots,
        }
        for s in slots
    ]
    return {
        "metadata": {
            "processing_instruction": "PROCESS_AS_COMPLETE",
            "generation_timestamp": now_sec,
        },
        "service_availability": [{"availability": entries}],
    }


def write_feed(path: Path, slots: Sequence[BenchSlot], now_sec: int) -> Path:
    path.write_text(json.dumps(feed_document(slots, now_sec)), encoding="utf-8")
    return path


def read_feed(path: Path, roles: Sequence[str]) -> list[BenchSlot]:
    """The slots of a served feed whose service_id is one of `roles`, in a stable order."""
    feed = parse_feed_json(path.read_text(encoding="utf-8"))
    wanted = [s for s in feed.slots if s.key.service_id in roles]
    wanted.sort(key=lambda s: (roles.index(s.key.service_id), s.key.start_sec, s.key.merchant_id))
    return [BenchSlot(s.key, s.spots) for s in wanted]
