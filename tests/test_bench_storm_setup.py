"""The expiry-storm setup asks again for a lease the server shed, moves on from a full slot,
and its callers side by side ask for no more than their count."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from leasehold.bench._behaviours import StormSetup
from leasehold.bench._history import OK, RESOURCE_EXHAUSTED, Kind, Op
from leasehold.bench._loadgen import Ctx


class _Server:
    """Answers leases from a script of statuses; records the slot of each ask."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.asked: list[int] = []

    async def lease(self, slot: int, reference: str, expiry_ns: int) -> Op:
        self.asked.append(slot)
        status = self.statuses.pop(0)
        lease_id = f"L{len(self.asked)}" if status == OK else ""
        return Op(
            len(self.asked), Kind.LEASE, "setup", 0, slot=slot, lease_id=lease_id, status=status
        )


def _ctx(server: object, ops: list[Op]) -> Ctx:
    """A load generator's context around `server`, noting every answer in `ops`."""

    async def call(request: Any) -> Op:
        op = cast(Op, await request)
        ops.append(op)
        return op

    return cast(
        Ctx,
        SimpleNamespace(
            running=lambda: True,
            call=call,
            client=server,
            name=lambda prefix: f"{prefix}-{len(ops)}",
            spec=SimpleNamespace(end_ns=time.time_ns() + 5 * 10**9),
        ),
    )


@pytest.mark.timeout(10)
def test_a_shed_lease_is_asked_for_again_and_not_counted() -> None:
    server = _Server([OK, RESOURCE_EXHAUSTED, RESOURCE_EXHAUSTED, OK, OK])
    ops: list[Op] = []
    setup = StormSetup({"slots": [10, 11, 12], "per_worker": 3, "expiry_ns": 1}, [])
    asyncio.run(setup.caller(_ctx(server, ops), 0))
    assert server.asked == [10, 11, 11, 11, 12]  # the shed slot's lease asked again
    assert [op.lease_id for op in ops if op.lease_id] == ["L1", "L4", "L5"]
    assert setup.left == 0


class _FullSlots:
    """Grants while a slot has spots left, else answers SLOT_UNAVAILABLE; each answer
    after the others asked at the same time (all callers await at once)."""

    def __init__(self, spots: dict[int, int]) -> None:
        self.spots = spots
        self.asked: list[int] = []

    async def lease(self, slot: int, reference: str, expiry_ns: int) -> Op:
        self.asked.append(slot)
        await asyncio.sleep(0)  # let every caller ask before any is answered
        if self.spots[slot] == 0:
            return Op(len(self.asked), Kind.LEASE, "setup", 0, slot=slot, cause="SLOT_UNAVAILABLE")
        self.spots[slot] -= 1
        return Op(
            len(self.asked), Kind.LEASE, "setup", 0, slot=slot, lease_id=f"L{len(self.asked)}"
        )


@pytest.mark.timeout(10)
def test_callers_side_by_side_ask_for_their_count_over_the_slots_with_room() -> None:
    server = _FullSlots({10: 1, 11: 2, 12: 2})
    ops: list[Op] = []
    setup = StormSetup({"slots": [10, 11, 12], "per_worker": 4, "expiry_ns": 1}, [])
    ctx = _ctx(server, ops)

    async def eight_callers() -> None:
        await asyncio.gather(*(setup.caller(ctx, i) for i in range(8)))

    asyncio.run(eight_callers())
    granted = [op for op in ops if op.lease_id]
    assert len(granted) == 4  # the count, not one per caller
    assert setup.left == 0
    assert server.asked[:4] == [10, 11, 12, 10]  # one slot each, then on round
    assert sorted(op.slot for op in granted) == [10, 11, 11, 12]  # the full 10 passed over
