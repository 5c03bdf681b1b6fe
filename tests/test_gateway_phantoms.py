"""What the gateway does about changes a caller never hears of (phantom holds, issue 15):
the loop's lag charged to arriving calls (gateway/_looplag.py), and calls abandoned while
their command was at a shard counted (gateway/_router.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from _gateway_harness import FakeHandle, OneShard

from leasehold.core import ListBookings
from leasehold.gateway import Refusal, Refusals, Router
from leasehold.gateway._looplag import LoopLag

LIMIT_S = 10.0
COMMAND = ListBookings("u1")


def run(coro: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(LIMIT_S):
            return await coro

    return asyncio.run(bounded())


@pytest.mark.timeout(30)
def test_a_loop_held_up_is_charged_to_the_calls_arriving_after() -> None:
    async def body() -> tuple[float, float]:
        lag = LoopLag()
        before = lag.seconds()  # the first call starts the ticking
        for _ in range(20):  # 20 iterations each held for 30 ms, as by a big batch
            await asyncio.sleep(LoopLag.PERIOD_S)
            time.sleep(0.030)  # noqa: ASYNC251 (the point: a loop held up)
        await asyncio.sleep(0.1)  # refreshes the quantile
        return before, lag.seconds()

    before, after = run(body())
    assert before == 0.0
    assert after >= 0.025  # a timer due in an iteration held 30 ms runs that late


@pytest.mark.timeout(30)
def test_the_ticking_stops_when_no_call_arrives_and_starts_again_with_one() -> None:
    async def body() -> tuple[bool, bool, bool]:
        lag = LoopLag()
        lag.IDLE_S = 0.05
        lag.seconds()
        ticking = lag._timer is not None
        await asyncio.sleep(0.2)
        stopped = lag._timer is None
        lag.seconds()
        return ticking, stopped, lag._timer is not None

    assert run(body()) == (True, True, True)


@pytest.mark.timeout(30)
def test_a_call_cancelled_while_its_command_is_at_a_shard_is_counted() -> None:
    refusals = Refusals()

    async def never_answered(*_: object) -> object:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def body() -> None:
        router = Router(OneShard(), call=never_answered, refusals=refusals)
        call = asyncio.ensure_future(router.call(FakeHandle(), COMMAND, None))
        await asyncio.sleep(0.01)
        call.cancel()  # grpclib's deadline, or the caller's RST_STREAM
        with pytest.raises(asyncio.CancelledError):
            await call
        refusals.close()

    run(body())
    assert refusals.snapshot()[Refusal.ABANDONED] == 1
