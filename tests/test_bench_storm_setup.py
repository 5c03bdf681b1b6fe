"""The expiry-storm setup asks again for a lease the server shed, and counts only answers."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from leasehold.bench._behaviours import StormSetup
from leasehold.bench._history import OK, RESOURCE_EXHAUSTED, Kind, Op
from leasehold.bench._loadgen import Ctx
from leasehold.bench._scenarios import storm_setup_window


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


@pytest.mark.timeout(10)
def test_a_shed_lease_is_asked_for_again_and_not_counted() -> None:
    server = _Server([OK, RESOURCE_EXHAUSTED, RESOURCE_EXHAUSTED, OK, OK])
    ops: list[Op] = []

    async def call(request: Any) -> Op:
        op = cast(Op, await request)
        ops.append(op)
        return op

    ctx = SimpleNamespace(
        running=lambda: True,
        call=call,
        client=server,
        name=lambda prefix: f"{prefix}-{len(ops)}",
        spec=SimpleNamespace(end_ns=time.time_ns() + 5 * 10**9),
    )
    setup = StormSetup({"slots": [10, 11, 12], "per_worker": 3, "expiry_ns": 1}, [])
    asyncio.run(setup.caller(cast(Ctx, ctx), 0))
    assert server.asked == [10, 11, 11, 11, 12]  # the shed slot's lease asked again
    assert [op.lease_id for op in ops if op.lease_id] == ["L1", "L4", "L5"]
    assert setup.left == 0


def test_the_storm_setup_window_leaves_room_for_half_the_calibrated_rate() -> None:
    assert storm_setup_window(300, 587.0) == pytest.approx(300 / 293.5 + 5.0)
    assert storm_setup_window(10, 10_000.0) == 5.0 + 10 / 5_000
    assert storm_setup_window(100, 0.5) == 105.0  # a rate under 1 a second counts as 1
