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
STEP_SLOTS = 1_000
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
    # Invariant: sorted by start_sec; every slot inside the window; no two share a key.
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
        """What is left of this window once the part before `cut_sec` is applied."""
        rest = tuple(s for s in self.slots if s.key.start_sec >= cut_sec)
        return Window(
            max(cut_sec, self.start_sec),
            self.end_sec,
            self.merchant_id,
            self.service_id,
            self.duration_sec,
            self.resources,
            rest,
        )


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


def split_at(listed_starts: Sequence[int], existing_starts: Sequence[int], budget: int) -> int:
    """Where a step that may touch about `budget` slots cuts a window (a slot start + 1), or
    -1 when all fits. Both sequences are sorted; every slot with start < cut is taken."""
    if budget <= 0 or len(listed_starts) + len(existing_starts) <= budget:
        return -1
    merged = sorted([*listed_starts[:budget], *existing_starts[:budget]])
    return merged[budget - 1] + 1


class SlotIndex:
    """The bookable slots by (merchant, service) and day of start, for finding a window's.

    Invariant: holds exactly the slots of ShardState._slots (removed slots leave it).
    """

    def __init__(self) -> None:
        self._by_day: dict[int, dict[SlotKey, SlotAccount]] = {}
        self._by_service: dict[tuple[str, str], dict[int, dict[SlotKey, SlotAccount]]] = {}

    def add(self, slot: SlotAccount) -> None:
        key = slot.spec.key
        day = key.start_sec // DAY_SEC
        self._by_day.setdefault(day, {})[key] = slot
        service = self._by_service.setdefault((key.merchant_id, key.service_id), {})
        service.setdefault(day, {})[key] = slot

    def discard(self, slot: SlotAccount) -> None:
        key = slot.spec.key
        day = key.start_sec // DAY_SEC
        _drop(self._by_day, day, key)
        service_key = (key.merchant_id, key.service_id)
        service = self._by_service[service_key]
        _drop(service, day, key)
        if not service:
            del self._by_service[service_key]

    def covered(self, window: Window) -> Iterator[SlotAccount]:
        """The slots inside `window`, in start order (day by day: stop early for less)."""
        source = self._by_day
        if window.merchant_id and window.service_id:
            source = self._by_service.get((window.merchant_id, window.service_id), {})
        first, last = window.start_sec // DAY_SEC, (window.end_sec - 1) // DAY_SEC
        if last - first < len(source):
            days: Sequence[int] = [d for d in range(first, last + 1) if d in source]
        else:
            days = sorted(d for d in source if first <= d <= last)
        for day in days:
            found = [s for s in source[day].values() if window.covers(s.spec.key)]
            found.sort(key=_slot_start_order)
            yield from found

    def of_service(self, merchant_id: str, service_id: str) -> Iterator[SlotAccount]:
        for day in sorted(self._by_service.get((merchant_id, service_id), {})):
            yield from self._by_service[(merchant_id, service_id)][day].values()

    def services(self) -> list[tuple[str, str]]:
        return sorted(self._by_service)


def _drop(days: dict[int, dict[SlotKey, SlotAccount]], day: int, key: SlotKey) -> None:
    slots = days[day]
    del slots[key]
    if not slots:
        del days[day]


def _slot_start_order(slot: SlotAccount) -> tuple[int, tuple[str, str, int, int, str, str, int]]:
    return start_order(slot.spec)
