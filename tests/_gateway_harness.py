"""The gateway over grpclib's in-memory channel, with real shards running as trio's guest."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import trio
from grpclib.client import Channel
from grpclib.testing import ChannelFor

from leasehold._app import ServeConfig, start_shards
from leasehold.core import LeaseSettings, SlotSpec
from leasehold.gateway import Admission, Router, build_services

TEST_TIMEOUT_S = 30.0


@dataclass
class Harness:
    channel: Channel
    router: Router


@contextlib.asynccontextmanager
async def in_memory_gateway(
    slots: Sequence[SlotSpec],
    *,
    shard_count: int = 2,
    mailbox_capacity: int = 64,
    settings: LeaseSettings | None = None,
    trio_clock: trio.abc.Clock | None = None,
    admission: Admission | None = None,
) -> AsyncIterator[Harness]:
    config = ServeConfig(
        slots=slots,
        shard_count=shard_count,
        mailbox_capacity=mailbox_capacity,
        lease_settings=settings or LeaseSettings(),
        trio_clock=trio_clock,
    )
    shard_set, guest = await start_shards(config)
    router = Router(shard_set)
    try:
        async with ChannelFor(build_services(router, slots, admission)) as channel:
            yield Harness(channel, router)
    finally:
        shard_set.close()
        await guest.wait_done()


def run(body: Callable[[], Awaitable[None]]) -> None:
    """Run an asyncio test body (grpclib is asyncio-only) with an absolute time limit."""

    async def bounded() -> None:
        await asyncio.wait_for(body(), TEST_TIMEOUT_S)

    asyncio.run(bounded())


@dataclass(frozen=True)
class FakeHandle:
    shard_id: int = 0


class OneShard:
    """Routes to one shard that is never reached: a test's call function stands for it."""

    handles: Sequence[FakeHandle] = (FakeHandle(),)

    def for_key(self, merchant_id: str, service_id: str) -> FakeHandle:
        return self.handles[0]

    def for_id(self, prefix: str, some_id: str) -> FakeHandle:
        return self.handles[0]
