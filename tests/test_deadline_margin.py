"""A shard does not start a command whose reply could not reach the caller before its deadline."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from leasehold import core
from leasehold.core import ApiVersion, CheckAvailability, CreateLease, SlotKey, SlotRef, SlotSpec
from leasehold.shards import ShardFault, ShardSet, call, run_shards
from leasehold.shards._shard import ReplyMargin

ANCHOR_NS = 1_767_225_600 * core.NANOS_PER_SECOND
KEY = SlotKey("m1", "haircut", 1_767_254_400, 1800)


@pytest.fixture
async def shard_set(nursery: trio.Nursery) -> AsyncIterator[ShardSet]:
    shard_set: ShardSet = await nursery.start(
        lambda task_status: run_shards(
            [SlotSpec(KEY, spots=2, spots_total=2)],
            shard_count=1,
            mailbox_capacity=4,
            entropy=lambda: bytes(15),
            wall_anchor_ns=ANCHOR_NS,
            task_status=task_status,
        )
    )
    yield shard_set
    shard_set.close()


def lease(ref: str) -> CreateLease:
    expiry = ANCHOR_NS + 30 * core.NANOS_PER_SECOND + int(trio.current_time() * 1e9)
    return CreateLease(ApiVersion.V2, SlotRef(KEY, "tag"), ref, expiry)


async def test_a_lease_too_close_to_its_deadline_is_not_applied(shard_set: ShardSet) -> None:
    handle = shard_set.handles[0]
    # Half the margin's floor left: the reply could not be sent in time.
    close = trio.current_time() + ReplyMargin.FLOOR_S / 2
    assert await call(handle, lease("close"), deadline=close) is ShardFault.DEADLINE_EXCEEDED
    assert await call(handle, CheckAvailability(KEY)) == 2
    roomy = trio.current_time() + 1.0
    assert not isinstance(await call(handle, lease("roomy"), deadline=roomy), ShardFault)
    assert await call(handle, CheckAvailability(KEY)) == 1


def test_the_margin_is_the_recent_99th_percentile_of_commits_above_its_floor() -> None:
    margin = ReplyMargin()
    assert margin.seconds(now=0.0) == ReplyMargin.FLOOR_S
    for i in range(99):
        margin.observe(0.002, now=i / 1000)
    margin.observe(0.050, now=0.1)  # one slow commit in a hundred: covered
    assert margin.seconds(now=0.2) == pytest.approx(ReplyMargin.FLOOR_S + 0.050)
    # One in a thousand is not: the margin is what 99 % of recent commits took.
    for i in range(900):
        margin.observe(0.002, now=0.3 + i / 10_000)
    assert margin.seconds(now=0.5) == pytest.approx(ReplyMargin.FLOOR_S + 0.002)
    # Slow commits are forgotten after the window, replies or not.
    for _ in range(20):
        margin.observe(0.080, now=0.6)
    assert margin.seconds(now=0.7) == pytest.approx(ReplyMargin.FLOOR_S + 0.080)
    assert margin.seconds(now=0.6 + ReplyMargin.WINDOW_S + 0.1) == ReplyMargin.FLOOR_S
