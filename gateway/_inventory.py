"""Applying an inventory change through the shards that own its slots (spec section 8).

A change is a list of windows. Each window is split by owning shard; each shard's
part goes through that shard's mailbox as ChangeInventory commands, serialised
with its leases and bookings. A part of more than STEP_SLOTS slots is applied in
steps: each step is the window's part before a cut the shard picks (a slot start),
itself a complete window, so after every step the shard's inventory is consistent:
slots starting before the cut are as the change says, the rest as before
(docs/inventory.md, "What a reader sees mid-change"). Shards apply their parts
one after another, one step in flight at a time; changes are applied one at a
time (Changes), so steps of two changes never interleave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from grpclib import Status
from grpclib.exceptions import GRPCError

from leasehold.core import (
    STEP_SLOTS,
    BookingError,
    ChangeInventory,
    InventoryReport,
    ListInventory,
    SlotState,
    Window,
    shard_for_key,
    shard_windows,
    step_window,
)
from leasehold.gateway._router import Router

# A full mailbox is retried (a change should not fail for a burst of bookings) this often,
# this far apart, before the change is answered RESOURCE_EXHAUSTED.
_FULL_RETRIES = 200
_FULL_PAUSE_S = 0.005
# Changes that may wait behind the one being applied; more are refused at once.
MAX_WAITING_CHANGES = 4


class Changes:
    """One change at a time, and a bounded queue of changes waiting for their turn."""

    def __init__(self, router: Router, step_slots: int = STEP_SLOTS) -> None:
        self._router = router
        self._step_slots = step_slots
        self._lock = asyncio.Lock()
        self._waiting = 0

    async def apply(self, windows: Sequence[Window], dry_run: bool) -> dict[int, InventoryReport]:
        """Every window in order, each shard's part in steps; the reports summed per shard."""
        if self._lock.locked() and self._waiting >= MAX_WAITING_CHANGES:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED, "other inventory changes are waiting; retry later"
            )
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        try:
            return await self._apply(windows, dry_run)
        finally:
            self._lock.release()

    async def _apply(self, windows: Sequence[Window], dry_run: bool) -> dict[int, InventoryReport]:
        totals: dict[int, InventoryReport] = {}
        shard_count = len(self._router.handles)
        for window in windows:
            # (Routing each listed slot is a digest each: in a worker thread, as parsing.)
            parts = await asyncio.to_thread(shard_windows, window, shard_count)
            # One shard after another, one step in flight at a time: steps of several
            # shards back to back would hold trio's one thread (and the event loop, whose
            # guest it is) for their sum, and the partner calls queued behind them would
            # be refused as the server looking behind (gateway/_admission.py).
            for shard, part in parts.items():
                report = await self._apply_part(shard, part, dry_run)
                totals[shard] = _summed(totals.get(shard), report)
        return totals

    async def _apply_part(self, shard: int, window: Window, dry_run: bool) -> InventoryReport:
        total: InventoryReport | None = None
        while True:
            step = step_window(window, self._step_slots)
            report = await self._call(shard, ChangeInventory(step, self._step_slots, dry_run))
            total = _summed(total, report)
            if report.cut_sec >= window.end_sec:
                return total
            await asyncio.sleep(0)  # calls that arrived during the step go first
            window = window.from_cut(report.cut_sec)

    async def _call(self, shard: int, command: ChangeInventory) -> InventoryReport:
        handle = self._router.handles[shard]
        for _ in range(_FULL_RETRIES):
            try:
                reply = await self._router.call(handle, command, None)
            except GRPCError as error:
                if error.status is not Status.RESOURCE_EXHAUSTED:
                    raise
                await asyncio.sleep(_FULL_PAUSE_S)
                continue
            if isinstance(reply, BookingError):
                # Validated whole before any step: a refusal here is a step over its bound.
                raise GRPCError(Status.INVALID_ARGUMENT, f"{reply.field}: {reply.message}")
            assert isinstance(reply, InventoryReport), reply
            return reply
        raise GRPCError(Status.RESOURCE_EXHAUSTED, f"shard {shard} stayed overloaded; retry later")


async def list_inventory(router: Router, query: ListInventory) -> list[SlotState]:
    """The slots of the query from the shard(s) that own them, merged in order."""
    count = len(router.handles)
    if query.service_id:
        shards = [shard_for_key(query.merchant_id, query.service_id, count)]
    else:
        shards = list(range(count))
    found: list[SlotState] = []
    for shard in shards:
        reply = await router.call(router.handles[shard], query, None)
        if isinstance(reply, BookingError):
            raise GRPCError(Status.INVALID_ARGUMENT, f"{reply.field}: {reply.message}")
        assert isinstance(reply, tuple), reply
        found.extend(reply)
    found.sort(key=lambda s: s.spec.key.as_tuple())
    return found


def _summed(total: InventoryReport | None, step: InventoryReport) -> InventoryReport:
    if total is None:
        return step
    return InventoryReport(
        added=total.added + step.added,
        changed=total.changed + step.changed,
        removed=total.removed + step.removed,
        kept_booked=total.kept_booked + step.kept_booked,
        unchanged=total.unchanged + step.unchanged,
        leases_released=total.leases_released + step.leases_released,
        cut_sec=step.cut_sec,
        applied=total.applied and step.applied,
    )
