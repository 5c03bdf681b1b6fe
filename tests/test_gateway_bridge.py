"""TrioGuest: trio as asyncio's guest, with the host loop waiting for trio's I/O."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest
import trio
from _gateway_harness import run

from leasehold.core import CheckAvailability, SlotKey
from leasehold.gateway._bridge import TrioGuest, _HostPolledTicks, call_shard
from leasehold.shards import ShardFault, ShardHandle, ShardRequest, ShardUnavailable

pytestmark = pytest.mark.timeout(30)


async def _guest(async_fn: object) -> TrioGuest:
    guest = TrioGuest()
    guest.start(async_fn)  # type: ignore[arg-type]
    return guest


@pytest.mark.skipif(sys.platform != "linux", reason="the host-polled driver reads trio's epoll")
def test_host_loop_drives_trio_on_linux() -> None:
    # A trio upgrade that moves the internals the driver reads falls back to the
    # thread silently; this is where that shows.
    async def body() -> None:
        threads_before = set(threading.enumerate())
        send, receive = trio.open_memory_channel[None](1)

        async def idle_until_closed() -> None:
            async for _ in receive:
                pass

        guest = await _guest(idle_until_closed)
        try:
            await asyncio.sleep(0.05)  # trio idle: stock guest mode would wait in a thread now
            threads_while_idle = set(threading.enumerate())
        finally:
            send.close()  # end the run even when an assert fails: one trio run per thread
            await guest.wait_done()
        assert guest.driver == "host-polled"
        assert threads_while_idle == threads_before

    run(body)


def test_round_trips_from_the_host_are_all_answered_in_order() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        send, receive = trio.open_memory_channel[tuple[int, asyncio.Future[int]]](100)

        async def echo_doubled() -> None:
            async for value, future in receive:
                future.set_result(2 * value)

        guest = await _guest(echo_doubled)
        answers = []
        for value in range(500):  # one in flight: trio goes idle between requests
            future: asyncio.Future[int] = loop.create_future()
            send.send_nowait((value, future))
            answers.append(await future)
        futures = [loop.create_future() for _ in range(50)]
        for value, future in enumerate(futures):
            send.send_nowait((value, future))
        assert answers == [2 * v for v in range(500)]
        assert await asyncio.gather(*futures) == [2 * v for v in range(50)]
        send.close()
        await guest.wait_done()

    run(body)


@pytest.mark.skipif(sys.platform != "linux", reason="the host-polled driver reads trio's epoll")
def test_the_host_wakes_an_idle_guest_without_its_wakeup_socket() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        send, receive = trio.open_memory_channel[asyncio.Future[None]](10)

        async def answer() -> None:
            async for future in receive:
                future.set_result(None)

        guest = await _guest(answer)
        socketpair = guest._ticks._state.runner.io_manager._force_wakeup._inner
        writes = 0
        write = socketpair.wakeup_thread_and_signal_safe

        def counted() -> None:
            nonlocal writes
            writes += 1
            write()

        socketpair.wakeup_thread_and_signal_safe = counted
        try:
            for _ in range(100):  # one in flight: trio is idle at each send
                future: asyncio.Future[None] = loop.create_future()
                send.send_nowait(future)
                await future
        finally:
            send.close()
            await guest.wait_done()
        assert writes == 0

    run(body)


@pytest.mark.skipif(sys.platform != "linux", reason="the host-polled driver reads trio's epoll")
def test_a_host_wake_queued_for_an_earlier_wait_does_not_end_a_later_one() -> None:
    async def body() -> None:
        send, receive = trio.open_memory_channel[None](1)

        async def idle_until_closed() -> None:
            async for _ in receive:
                pass

        guest = await _guest(idle_until_closed)
        ticks = guest._ticks
        try:
            await asyncio.sleep(0.01)  # trio is idle: waiting
            assert ticks._waiting
            current = ticks._wait_number
            ticks._wake_from_host(current - 1)  # stale: queued during the previous wait
            assert ticks._waiting
            assert ticks._wait_number == current
            ticks._wake_from_host(current)  # this wait's own: trio ticks, then waits anew
            await asyncio.sleep(0.01)
            assert ticks._waiting
            assert ticks._wait_number == current + 1
        finally:
            send.close()
            await guest.wait_done()

    run(body)


def test_trio_deadlines_fire_while_the_host_is_idle() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        woke: asyncio.Future[float] = loop.create_future()

        async def sleeper() -> None:
            started = trio.current_time()
            await trio.sleep(0.05)
            woke.set_result(trio.current_time() - started)

        guest = await _guest(sleeper)
        assert await woke >= 0.05
        await guest.wait_done()

    run(body)


def test_a_trio_worker_thread_wakes_the_idle_guest() -> None:
    # The thread's result comes back through trio's wakeup socket, which the host polls.
    async def body() -> None:
        async def in_thread() -> str:
            return await trio.to_thread.run_sync(lambda: threading.current_thread().name)

        outcome: list[str] = []

        async def main() -> None:
            outcome.append(await in_thread())

        guest = await _guest(main)
        await guest.wait_done()
        assert len(outcome) == 1
        assert outcome[0] != threading.current_thread().name

    run(body)


def test_an_error_in_trio_reaches_wait_done() -> None:
    async def body() -> None:
        async def fails() -> None:
            await trio.sleep(0.01)
            raise LookupError("from the guest")

        guest = await _guest(fails)
        with pytest.raises(LookupError, match="from the guest"):
            await guest.wait_done()
        # The crash path and the stop path both wait: each sees the error itself.
        with pytest.raises(LookupError, match="from the guest"):
            await guest.wait_done()

    run(body)


def test_a_callable_that_is_not_trios_tick_runs_on_the_stock_path() -> None:
    async def body() -> None:
        ticks = _HostPolledTicks(asyncio.get_running_loop())
        ran: list[str] = []
        ticks.schedule(lambda: ran.append("plain"))
        await asyncio.sleep(0)
        assert ran == ["plain"]
        assert not ticks.attached

    run(body)


@pytest.mark.parametrize("remaining_s", [None, 5.0])
def test_a_call_after_the_trio_run_ended_is_unavailable(remaining_s: float | None) -> None:
    # A journal failure ends the trio run while grpclib still takes calls until it stops.
    async def body() -> None:
        send, receive = trio.open_memory_channel[ShardRequest](4)

        async def shard_that_stops() -> None:
            receive.close()

        guest = await _guest(shard_that_stops)
        await guest.wait_done()
        command = CheckAvailability(SlotKey("m1", "haircut", 1_767_254_400, 1800))
        with pytest.raises(ShardUnavailable) as raised:
            await call_shard(ShardHandle(0, send), command, remaining_s)
        assert raised.value.fault is ShardFault.UNAVAILABLE

    run(body)
