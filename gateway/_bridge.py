"""The join between grpclib's asyncio and the trio shards: the only module that knows both.

Chosen by measurement (../shared/notes/grpclib-trio-bridge.md, re-measured in the
closing note of the lease-flow issue): trio runs as a *guest* of the asyncio
loop, on the same thread. A handler puts its request in the shard's mailbox
with `send_nowait` (legal from the host in guest mode) and awaits an asyncio
Future that the shard resolves directly when it replies; no locks, no thread
hops, no per-request trio task. To swap the join, replace this module.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from core import Command
from shards import Reply, ShardHandle, ShardRequest


class TrioGuest:
    """Runs one trio function as a guest of the running asyncio loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[Any] = self._loop.create_future()

    def start(
        self, async_fn: Callable[[], Awaitable[object]], clock: trio.abc.Clock | None = None
    ) -> None:
        def done_callback(outcome: Any) -> None:
            if not self._done.done():
                self._done.set_result(outcome)

        trio.lowlevel.start_guest_run(
            async_fn,
            run_sync_soon_threadsafe=self._loop.call_soon_threadsafe,
            done_callback=done_callback,
            # asyncio's loop.add_signal_handler (how SIGINT/SIGTERM stop the server) owns
            # signal.set_wakeup_fd; without this trio takes it and signals go unseen.
            host_uses_signal_set_wakeup_fd=True,
            clock=clock,
        )

    async def wait_done(self) -> None:
        """Wait for the trio run to finish; re-raise whatever it raised."""
        # Shielded: several waiters may be cancelled without cancelling the shared future.
        outcome = await asyncio.shield(self._done)
        outcome.unwrap()


async def call_shard(handle: ShardHandle, command: Command, remaining_s: float | None) -> Reply:
    """Run a command on a shard from asyncio code and await its reply.

    Raises ShardUnavailable at once when the mailbox is full or closed. `remaining_s`
    (seconds, from the caller's gRPC deadline) becomes an absolute deadline on
    trio's clock: grpclib measures deadlines with time.monotonic(), a different
    clock, so only the remaining time crosses over.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Reply] = loop.create_future()

    def deliver(reply: Reply) -> None:
        # A handler cancelled by its deadline or a disconnect leaves the future cancelled.
        if not future.done():
            future.set_result(reply)

    deadline = math.inf if remaining_s is None else trio.current_time() + remaining_s
    handle.submit(ShardRequest(command, deliver, deadline))
    return await future
