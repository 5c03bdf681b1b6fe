"""From a decoded command to the owning shard and back: routing, deadlines, faults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from grpclib import Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import Deadline

from leasehold.core import BOOKING_ID_PREFIX, LEASE_ID_PREFIX, Command, SlotKey
from leasehold.gateway._refusals import Refusal, Refusals
from leasehold.gateway._return_path import ReturnPath
from leasehold.gateway._status import fault_error
from leasehold.shards import Reply, ShardFault, ShardUnavailable


class Handle(Protocol):
    """Where a shard's requests go: its mailbox in-process, or a link to its process."""

    @property
    def shard_id(self) -> int: ...


class ShardRoutes(Protocol):
    """Routing from a key or an id to the owning shard (shards.ShardSet, link.LinkedShards)."""

    def for_key(self, merchant_id: str, service_id: str) -> Handle: ...

    def for_id(self, prefix: str, some_id: str) -> Handle | None: ...

    @property
    def handles(self) -> Sequence[Handle]: ...


# (handle, command, remaining seconds, the awaited replies, told the time the call has
# spent outside the shard so far: link transit and the wait since its reply) -> reply.
ShardCaller = Callable[..., Awaitable[Reply]]


class Router:
    def __init__(
        self,
        shard_set: ShardRoutes,
        call: ShardCaller | None = None,
        refusals: Refusals | None = None,
    ) -> None:
        self.shard_set = shard_set
        # How a command reaches its shard: in-process (_bridge, the default) or over the link.
        self._call = call if call is not None else _in_process_caller()
        # Set when the server starts stopping: new calls are answered UNAVAILABLE.
        self.draining = False
        self.in_flight = 0
        # The replies awaited now (at most one per call in flight).
        self._waiting: set[asyncio.Future[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        # A call's time outside its shard (link, reply to written): kept off the shard's.
        self.return_path = ReturnPath()
        self._refusals = refusals

    def for_slot(self, key: SlotKey) -> Handle:
        return self.shard_set.for_key(key.merchant_id, key.service_id)

    def for_lease_id(self, lease_id: str) -> Handle | None:
        return self.shard_set.for_id(LEASE_ID_PREFIX, lease_id)

    def for_booking_id(self, booking_id: str) -> Handle | None:
        return self.shard_set.for_id(BOOKING_ID_PREFIX, booking_id)

    @property
    def handles(self) -> Sequence[Handle]:
        return self.shard_set.handles

    async def drain(self, timeout_s: float) -> None:
        """Refuse new calls and wait (at most timeout_s) for calls under way to be answered."""
        self.draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)

    def fail_in_flight(self) -> None:
        """The shards are gone (a journal failure): answer every awaited call UNAVAILABLE now."""
        self.draining = True
        for future in self._waiting:
            if not future.done():
                future.set_exception(ShardUnavailable(ShardFault.UNAVAILABLE))

    async def call(self, handle: Handle, command: Command, deadline: Deadline | None) -> Reply:
        """The shard's reply: a result or a domain refusal. Faults raise their GRPCError."""
        if self.draining:
            raise fault_error(ShardFault.UNAVAILABLE)
        remaining = None if deadline is None else deadline.time_remaining()
        if remaining is not None:
            # The shard must finish in time for the reply to cross back and be written.
            remaining -= self.return_path.seconds()
            if remaining <= 0:
                raise GRPCError(
                    Status.DEADLINE_EXCEEDED, "deadline too close to be met; nothing was changed"
                )
        self.in_flight += 1
        self._idle.clear()
        sent_at = self.return_path.now()
        try:
            reply = await self._call(
                handle, command, remaining, self._waiting, self.return_path.received
            )
        except ShardUnavailable as unavailable:
            raise fault_error(unavailable.fault) from None
        except asyncio.CancelledError:
            self.return_path.abandoned(sent_at)
            if self._refusals is not None:
                self._refusals.count(Refusal.ABANDONED)
            raise
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()
        if isinstance(reply, ShardFault):
            raise fault_error(reply)
        return reply


def _in_process_caller() -> ShardCaller:
    """The in-process join to trio shards, imported only when used: a gateway worker
    routes over the link and imports no trio."""
    from leasehold.gateway._bridge import call_shard

    return call_shard
