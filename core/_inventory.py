"""Inventory changes while serving (spec section 8): windows, the shard's slot index, reports.

A change is a `Window`: a complete listing of the slots whose start lies in
[start_sec, end_sec) and whose identity matches every restriction given; every
existing slot inside the window that the listing leaves out is removed. A whole
feed is one window covering everything. `ChangeInventory` asks a shard to apply
one (or, with `max_slots`, the part of it up to a cut the shard chooses, so that
a big change holds the shard for a bounded time: see `split_at`); its answer is
an `InventoryReport`. `InventoryChanged` is the event that carries it out.

Policies (docs/inventory.md): capacity raised is available at once; lowered below
the holders, nobody is evicted and no new grant is made while holders >= capacity;
a removed slot keeps its CONFIRMED bookings (orphaned) and its live leases are
released; a slot listed again is re-added with its orphaned bookings counting
against it again.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator, Sequence
from typing import ClassVar

from leasehold.core._errors import InvalidArgument
from leasehold.core._frozen import value_type
from leasehold.core._model import SlotKey, SlotSpec
from leasehold.core._routing import shard_for_key
from leasehold.core._slots import SlotAccount

DAY_SEC = 86_400
# The most slots one step may add, change or remove: one step is one journal record
# (of at most 16 MiB; a slot with the longest ids and texts the feed allows takes ~4 KiB).
MAX_STEP_SLOTS = 3_000
# How many slots a step of a big change touches (listed plus existing): docs/inventory.md
# has what a step of this size holds a shard for.
STEP_SLOTS = 250
# Past the last second a protobuf Timestamp carries: a window ending here is unbounded.
END_OF_TIME = 253_402_300_800


@value_type
class Window:
    """A complete listing of the slots in a window; "" or None restricts nothing."""

    start_sec: int
    end_sec: int
    merchant_id: str = ""
    service_id: str = ""
    duration_sec: int | None = None
    # (staff_id, room_id, party_size): the resources' identity fields.
    resources: tuple[str, str, int] | None = None
    # Invariant: sorted by start_sec; no two share a key; each slot matches the
    # restrictions, and those starting in [start_sec, end_sec) are the window's listing
    # (slots before start_sec are ignored: what is left of a window after a step,
    # Window.from_cut, shares the listing).
    slots: tuple[SlotSpec, ...] = ()

    def covers(self, key: SlotKey) -> bool:
        return (
            self.start_sec <= key.start_sec < self.end_sec
            and (not self.merchant_id or key.merchant_id == self.merchant_id)
            and (not self.service_id or key.service_id == self.service_id)
            and (self.duration_sec is None or key.duration_sec == self.duration_sec)
            and (
                self.resources is None
                or (key.staff_id, key.room_id, key.party_size) == self.resources
            )
        )

    def from_cut(self, cut_sec: int) -> Window:
        """What is left of this window once the part before `cut_sec` is applied. (The
        listing is shared, not copied: a step takes the listed slots inside its window.)"""
        return Window(
            max(cut_sec, self.start_sec),
            self.end_sec,
            self.merchant_id,
            self.service_id,
            self.duration_sec,
            self.resources,
            self.slots,
        )

    def listed(self) -> Sequence[SlotSpec]:
        """The listed slots whose start lies in [start_sec, end_sec) (by bisection: the
        listing is in start order)."""
        slots = self.slots
        first = bisect_left(slots, self.start_sec, key=start_of)
        return slots[first : bisect_left(slots, self.end_sec, lo=first, key=start_of)]


def start_of(spec: SlotSpec) -> int:
    return spec.key.start_sec


def step_window(window: Window, step_slots: int) -> Window:
    """The window up to the start of its first listed slot past `step_slots` (at a start
    boundary), listing only its own slots: a step takes no more, and over the link each
    step then carries its own part, not the whole rest of the listing."""
    listed = window.listed()
    if len(listed) > step_slots:
        end = listed[step_slots].key.start_sec
        if end <= listed[0].key.start_sec:  # the first start alone holds more: all of it
            after = bisect_right(listed, end, key=start_of)
            end = listed[after].key.start_sec if after < len(listed) else window.end_sec
        if end < window.end_sec:
            return _within(window, end, listed[: bisect_left(listed, end, key=start_of)])
    return _within(window, window.end_sec, listed)


def _within(window: Window, end_sec: int, listed: Sequence[SlotSpec]) -> Window:
    return dataclasses.replace(window, end_sec=end_sec, slots=tuple(listed))


def whole_inventory(slots: Sequence[SlotSpec]) -> Window:
    """A whole feed as one window: what it does not list is removed."""
    return Window(0, END_OF_TIME, slots=tuple(sorted(slots, key=start_order)))


def start_order(spec: SlotSpec) -> tuple[int, tuple[str, str, int, int, str, str, int]]:
    return spec.key.start_sec, spec.key.as_tuple()


@value_type
class ChangeInventory:
    """Apply `window` (the part before the shard's cut, when `max_slots` is given)."""

    window: Window
    # 0: all of it in one go; else stop after about this many slots, at a start boundary.
    max_slots: int = 0
    dry_run: bool = False


@value_type
class ListInventory:
    merchant_id: str
    service_id: str = ""  # "": every service of the merchant
    start_from: int = 0
    start_to: int = END_OF_TIME
    limit: int = 1000


@value_type
class InventoryReport:
    added: int = 0
    changed: int = 0
    removed: int = 0
    kept_booked: int = 0  # of the removed: kept (orphaned) because of CONFIRMED bookings
    unchanged: int = 0
    leases_released: int = 0
    # The window is done for slot starts before this (its end_sec: all of it).
    cut_sec: int = END_OF_TIME
    applied: bool = True


@value_type
class SlotState:
    spec: SlotSpec  # spec.spots is the current capacity
    leases: int  # live leases
    bookings: int  # CONFIRMED bookings
    removed: bool


@value_type
class InventoryFigures:
    slots: int  # bookable slots
    removed_slots: int
    orphaned_bookings: int  # CONFIRMED bookings on removed slots


@value_type
class InventoryChanged:
    """Live leases `released` (of slots in `removals`) end, those slots leave sale, and
    `upserts` are added, changed or re-added: in that order."""

    kind: ClassVar[str] = "inventory_changed"
    upserts: tuple[SlotSpec, ...]
    removals: tuple[SlotKey, ...]
    released: tuple[str, ...]


def shard_windows(window: Window, shard_count: int) -> dict[int, Window]:
    """`window` split by the shard owning each slot: a window of one (merchant, service)
    goes to its shard; any other goes to every shard (each removes its own slots)."""
    if window.merchant_id and window.service_id:
        return {shard_for_key(window.merchant_id, window.service_id, shard_count): window}
    parts: dict[int, list[SlotSpec]] = {shard: [] for shard in range(shard_count)}
    for spec in window.slots:
        parts[shard_for_key(spec.key.merchant_id, spec.key.service_id, shard_count)].append(spec)
    return {
        shard: Window(
            window.start_sec,
            window.end_sec,
            window.merchant_id,
            window.service_id,
            window.duration_sec,
            window.resources,
            tuple(slots),
        )
        for shard, slots in parts.items()
    }


def check_listing(window: Window, where: str) -> None:
    """Refuse a window whose listing strays outside it, repeats a slot, or is unsorted, or
    that puts more slots at one start than one step may take (InvalidArgument naming
    `where`, the window's field path)."""
    if not 0 <= window.start_sec < window.end_sec:
        raise InvalidArgument(
            "the window's end must be later than its start", field=f"{where}.end_timestamp_restrict"
        )
    seen: set[SlotKey] = set()
    previous, same_start = -1, 0
    for spec in window.slots:
        key = spec.key
        if not window.covers(key):
            raise InvalidArgument(
                f"the slot of {key.merchant_id!r}/{key.service_id!r} at start_sec "
                f"{key.start_sec} lies outside the window's restrictions",
                field=f"{where}.availability",
            )
        if key in seen:
            raise InvalidArgument(
                f"lists the slot at start_sec {key.start_sec} twice", field=f"{where}.availability"
            )
        seen.add(key)
        if key.start_sec < previous:
            raise InvalidArgument(
                "the listing is not in start order", field=f"{where}.availability"
            )
        same_start = same_start + 1 if key.start_sec == previous else 1
        previous = key.start_sec
        if same_start > MAX_STEP_SLOTS // 2:
            raise InvalidArgument(
                f"more than {MAX_STEP_SLOTS // 2} slots start at {key.start_sec}",
                field=f"{where}.availability",
            )


def split_at(
    listed_starts: Sequence[int],
    existing_starts: Sequence[int],
    budget: int,
    listed: int,
    more_existing: bool,
) -> int:
    """Where a step that may touch about `budget` slots cuts a window (a slot start + 1), or
    -1 when all fits. The starts are sorted, the first `budget` of the window's `listed`
    slots and the existing slots up to a whole start past the budget (`more_existing`:
    the window holds more than those); every slot with start < cut is taken."""
    if budget <= 0 or (not more_existing and listed + len(existing_starts) <= budget):
        return -1
    merged = sorted([*listed_starts[:budget], *existing_starts[:budget]])
    return merged[budget - 1] + 1


class _ByStart:
    """Slots by their exact start, and those starts sorted (for windows in start order)."""

    __slots__ = ("groups", "starts")

    def __init__(self) -> None:
        self.groups: dict[int, dict[SlotKey, SlotAccount]] = {}
        self.starts: list[int] = []  # Invariant: the keys of groups, sorted

    def add(self, slot: SlotAccount) -> None:
        key = slot.spec.key
        group = self.groups.get(key.start_sec)
        if group is None:
            group = self.groups[key.start_sec] = {}
            insort(self.starts, key.start_sec)
        group[key] = slot

    def discard(self, slot: SlotAccount) -> None:
        key = slot.spec.key
        group = self.groups[key.start_sec]
        del group[key]
        if not group:
            del self.groups[key.start_sec]
            del self.starts[bisect_left(self.starts, key.start_sec)]

    def covered(self, window: Window) -> Iterator[SlotAccount]:
        starts, groups = self.starts, self.groups
        at = bisect_left(starts, window.start_sec)
        while at < len(starts) and starts[at] < window.end_sec:
            for slot in groups[starts[at]].values():
                if window.covers(slot.spec.key):
                    yield slot
            at += 1


class SlotIndex:
    """The bookable slots by start, overall and per (merchant, service), for finding a
    window's slots in start order without looking at the others.

    Invariant: holds exactly the slots of ShardState._slots (removed slots leave it).
    """

    def __init__(self) -> None:
        self._all = _ByStart()
        self._by_service: dict[tuple[str, str], _ByStart] = {}

    def add(self, slot: SlotAccount) -> None:
        key = slot.spec.key
        self._all.add(slot)
        service = self._by_service.get((key.merchant_id, key.service_id))
        if service is None:
            service = self._by_service[(key.merchant_id, key.service_id)] = _ByStart()
        service.add(slot)

    def discard(self, slot: SlotAccount) -> None:
        key = slot.spec.key
        self._all.discard(slot)
        service_key = (key.merchant_id, key.service_id)
        service = self._by_service[service_key]
        service.discard(slot)
        if not service.starts:
            del self._by_service[service_key]

    def covered(self, window: Window) -> Iterator[SlotAccount]:
        """The slots inside `window`, in start order (lazily: stop early for fewer)."""
        if window.merchant_id and window.service_id:
            service = self._by_service.get((window.merchant_id, window.service_id))
            return iter(()) if service is None else service.covered(window)
        return self._all.covered(window)

    def of_service(self, merchant_id: str, service_id: str) -> Iterator[SlotAccount]:
        service = self._by_service.get((merchant_id, service_id))
        if service is not None:
            for start in service.starts:
                yield from service.groups[start].values()
