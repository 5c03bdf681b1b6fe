"""The link over a real Unix socket: trio shards on one side, the gateway's asyncio client on
the other (here in two threads of one process, as two processes would run them)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest
import trio
from _core_helpers import CUT_A, CUT_FULL, SPECS, lease_v2

from leasehold import core
from leasehold.link import (
    LinkCounters,
    ProcessFigures,
    ShardLink,
    StatsLink,
    call_over_link,
    encode_frames,
    open_unix_listener,
    process_figures,
    serve_link,
)
from leasehold.shards import ShardFault, ShardSet, ShardUnavailable, buffered_entropy, run_shards

pytestmark = pytest.mark.timeout(60)


class ShardSide:
    """Two shards served over the link from a trio run in a thread; stop() ends it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = threading.Event()
        self.counters = LinkCounters()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self.thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            shards: ShardSet = await nursery.start(
                partial(
                    run_shards,
                    SPECS,
                    shard_count=2,
                    mailbox_capacity=64,
                    entropy=buffered_entropy(),
                )
            )
            listener = await open_unix_listener(self.path)
            handler = partial(
                serve_link,
                shards=shards.by_id,
                stats=lambda: (
                    process_figures("shard", 0, self.counters),
                    shards.statistics(),
                    (0.0,) * len(shards.shards),
                ),
                max_in_flight=64,
                counters=self.counters,
            )
            nursery.start_soon(trio.serve_listeners, handler, [listener])
            self.started.set()
            await self._stop.wait()
            shards.close()
            nursery.cancel_scope.cancel()

    def start(self) -> ShardSide:
        self.thread.start()
        assert self.started.wait(10)
        return self

    def stop(self) -> None:
        assert self._token is not None
        assert self._stop is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self.thread.join(10)
        assert not self.thread.is_alive()


@contextmanager
def shard_side(tmp_path: Path) -> Iterator[ShardSide]:
    side = ShardSide(tmp_path / "s.sock").start()
    try:
        yield side
    finally:
        if side.thread.is_alive():
            side.stop()


def run_client(
    path: Path, body: Callable[[ShardLink], Awaitable[None]], max_in_flight: int = 64
) -> None:
    async def main() -> None:
        link = ShardLink(str(path), max_in_flight=max_in_flight)
        task = asyncio.ensure_future(link.run())
        try:
            await asyncio.wait_for(link.wait_connected(), 10)
            await body(link)
        finally:
            link.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def shard_of(key: core.SlotKey) -> int:
    return core.shard_for_key(key.merchant_id, key.service_id, 2)


def test_a_lease_is_granted_over_the_link_and_its_replay_answers_the_same(tmp_path: Path) -> None:
    async def body(link: ShardLink) -> None:
        first = await call_over_link(link, shard_of(CUT_A), lease_v2(CUT_A, "r1"), 5.0)
        again = await call_over_link(link, shard_of(CUT_A), lease_v2(CUT_A, "r1"), 5.0)
        assert isinstance(first, core.Lease)
        assert first == again
        spots = await call_over_link(link, shard_of(CUT_A), core.CheckAvailability(CUT_A), 5.0)
        assert spots == 2  # three spots, one held

    with shard_side(tmp_path) as side:
        run_client(side.path, body)


def test_many_calls_of_one_iteration_are_all_answered(tmp_path: Path) -> None:
    async def body(link: ShardLink) -> None:
        calls = [
            call_over_link(link, shard_of(CUT_FULL), lease_v2(CUT_FULL, f"r{i}"), 5.0)
            for i in range(40)
        ]
        replies = await asyncio.gather(*calls)
        granted = [r for r in replies if isinstance(r, core.Lease)]
        assert len(granted) == 1  # one spot: never more holders than spots
        assert all(isinstance(r, core.SlotUnavailable) for r in replies if r not in granted)

    with shard_side(tmp_path) as side:
        run_client(side.path, body)


def test_a_full_link_refuses_at_once_without_sending(tmp_path: Path) -> None:
    async def body(link: ShardLink) -> None:
        held = [link.call(shard_of(CUT_A), core.CheckAvailability(CUT_A), 5.0) for _ in range(2)]
        with pytest.raises(ShardUnavailable) as refused:
            link.call(shard_of(CUT_A), core.CheckAvailability(CUT_A), 5.0)
        assert refused.value.fault is ShardFault.OVERLOADED
        await asyncio.gather(*held)
        assert link.in_flight == 0

    with shard_side(tmp_path) as side:
        run_client(side.path, body, max_in_flight=2)


def test_a_command_past_its_deadline_is_not_applied(tmp_path: Path) -> None:
    async def body(link: ShardLink) -> None:
        late = await call_over_link(link, shard_of(CUT_FULL), lease_v2(CUT_FULL, "late"), -0.001)
        assert late is ShardFault.DEADLINE_EXCEEDED
        spots = await call_over_link(
            link, shard_of(CUT_FULL), core.CheckAvailability(CUT_FULL), 5.0
        )
        assert spots == 1  # nothing held

    with shard_side(tmp_path) as side:
        run_client(side.path, body)


def test_calls_to_a_gone_shard_process_are_unavailable_and_the_link_comes_back(
    tmp_path: Path,
) -> None:
    side = ShardSide(tmp_path / "s.sock").start()

    async def body(link: ShardLink) -> None:
        await asyncio.to_thread(side.stop)
        await asyncio.wait_for(link.wait_lost(), 10)
        with pytest.raises(ShardUnavailable) as down:
            link.call(shard_of(CUT_A), core.CheckAvailability(CUT_A), 5.0)
        assert down.value.fault is ShardFault.UNAVAILABLE
        again = ShardSide(tmp_path / "s.sock").start()
        try:
            await asyncio.wait_for(link.wait_connected(), 10)
            spots = await call_over_link(link, shard_of(CUT_A), core.CheckAvailability(CUT_A), 5.0)
            assert spots == 3
        finally:
            await asyncio.to_thread(again.stop)

    run_client(side.path, body)


def test_a_peer_sending_garbage_is_dropped_and_others_are_still_served(tmp_path: Path) -> None:
    with shard_side(tmp_path) as side:
        with socket.socket(socket.AF_UNIX) as rogue:
            rogue.settimeout(10)
            rogue.connect(str(side.path))
            rogue.sendall(encode_frames([(0, 1, "gateway")]) + b"\x00\x00\x00\x03abc")
            while rogue.recv(4096):  # the shard side's hello, then end-of-file
                pass

        async def body(link: ShardLink) -> None:
            spots = await call_over_link(link, shard_of(CUT_A), core.CheckAvailability(CUT_A), 5.0)
            assert spots == 3

        run_client(side.path, body)
        assert side.counters.protocol_errors == 1


def test_the_supervisor_reads_a_shard_process_s_figures(tmp_path: Path) -> None:
    with shard_side(tmp_path) as side:

        async def ask() -> tuple[ProcessFigures, int]:
            link = StatsLink(side.path)
            answer = await link.ask()
            await link.aclose()
            assert answer is not None
            process, shards, maxima = answer
            assert len(maxima) == len(shards)
            return process, len(shards)

        process, shard_count = trio.run(ask)
        assert process.role == "shard"
        assert process.rss_bytes > 0
        assert shard_count == 2
