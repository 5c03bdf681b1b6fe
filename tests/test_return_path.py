"""The return path (gateway/_return_path.py): from a reply's arrival in the gateway to the
end of its handler's task, and the router handing a shard the time left less it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _gateway_harness import FakeHandle, OneShard
from grpclib.metadata import Deadline

from leasehold.core import ListBookings
from leasehold.gateway import Router
from leasehold.gateway._return_path import HANDLER_TASK, ReturnPath

LIMIT_S = 10.0
COMMAND = ListBookings("u1")


def run(coro: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(LIMIT_S):
            return await coro

    return asyncio.run(bounded())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_quantile_is_of_the_last_window_only() -> None:
    clock = FakeClock()
    path = ReturnPath(clock)
    for _ in range(8):
        path.observe(0.002)
    path.observe(0.040)
    path.observe(0.050)
    assert path.seconds() == pytest.approx(0.050)  # the 90th of 10 is the largest but none
    clock.now += ReturnPath.WINDOW_S + 0.1
    assert path.seconds() == 0.0  # forgotten: a stale high figure drops nothing for good


@pytest.mark.timeout(30)
def test_measured_from_the_reply_to_the_end_of_the_handler_task() -> None:
    clock = FakeClock()
    path = ReturnPath(clock)

    async def handler() -> None:
        clock.now += 0.005  # the reply came 5 ms before the handler resumed
        path.received(0.005)
        clock.now += 0.030  # encode and write (the clock stands for the loop's backlog)

    async def body() -> float:
        await asyncio.create_task(handler())
        await asyncio.sleep(0)  # the done callback runs an iteration after the task ends
        clock.now += 1.0  # (seconds() is refreshed at most every 50 ms)
        return path.seconds()

    assert run(body()) == pytest.approx(0.035)
    assert not path._received_at  # nothing kept once the call ended


@pytest.mark.timeout(30)
def test_replies_awaited_in_child_tasks_are_measured_to_the_handlers_end() -> None:
    clock = FakeClock()
    path = ReturnPath(clock)

    async def ask_one_shard() -> None:
        path.received(0.0)

    async def handler() -> None:
        HANDLER_TASK.set(asyncio.current_task())
        await asyncio.gather(ask_one_shard(), ask_one_shard())  # as ListBookings does
        await asyncio.sleep(0)
        clock.now += 0.020  # the merge, encode and write, after both children ended

    async def body() -> float:
        await asyncio.create_task(handler())
        await asyncio.sleep(0)
        clock.now += 1.0
        return path.seconds()

    assert run(body()) == pytest.approx(0.020)  # one sample, from the handler's end


@pytest.mark.timeout(30)
def test_a_shard_is_given_the_time_left_less_the_return_path() -> None:
    """The old rule took off only how long handlers waited to resume after a reply (0
    here): a handler slow to write its reply after resuming did not count."""
    clock = FakeClock()
    given: list[float] = []

    async def shard(_h: object, _c: object, remaining: float, _w: object, received: Any) -> object:
        given.append(remaining)
        received(0.0)  # the handler resumes at once...
        return ()

    async def handler(router: Router) -> None:
        await router.call(FakeHandle(), COMMAND, Deadline.from_timeout(5.0))
        clock.now += 0.030  # ...and takes 30 ms to write its answer

    async def body() -> None:
        router = Router(OneShard(), call=shard)
        router.return_path = ReturnPath(clock)
        await asyncio.create_task(handler(router))
        await asyncio.sleep(0)
        clock.now += 1.0
        await asyncio.create_task(handler(router))

    run(body())
    assert 4.9 < given[0] <= 5.0
    assert 4.9 < given[1] <= 5.0 - 0.030


@pytest.mark.timeout(30)
def test_a_call_cancelled_while_its_shard_had_it_counts_as_long_as_it_waited() -> None:
    """Measured only once answered, a window of abandoned calls would read 0 and the
    next calls would be given their whole time."""
    clock = FakeClock()

    async def never_answered(*_: object) -> object:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def body() -> float:
        router = Router(OneShard(), call=never_answered)
        router.return_path = ReturnPath(clock)
        call = asyncio.create_task(router.call(FakeHandle(), COMMAND, Deadline.from_timeout(0.1)))
        await asyncio.sleep(0)
        clock.now += 0.120  # the caller's deadline passed, and then some
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        clock.now += 1.0
        return router.return_path.seconds()

    assert run(body()) == pytest.approx(0.120)
