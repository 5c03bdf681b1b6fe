"""Shard actors in virtual time: exact expiry instants, shedding, deadlines, stopping."""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from typing import get_args

import pytest
import trio
import trio.testing

from leasehold import core
from leasehold.core import (
    ApiVersion,
    CheckAvailability,
    CreateLease,
    Lease,
    SlotKey,
    SlotRef,
    SlotSpec,
)
from leasehold.shards import (
    AnchoredClock,
    EventSink,
    Shard,
    ShardFault,
    ShardRequest,
    ShardSet,
    ShardUnavailable,
    call,
    run_shards,
)
from leasehold.shards._dispatch import handled_commands
from leasehold.shards._shard import EXPIRY_CHUNK, EXPIRY_COALESCE_S

ANCHOR_NS = 1_767_225_600 * core.NANOS_PER_SECOND  # wall clock at trio time 0
KEY = SlotKey("m1", "haircut", 1_767_254_400, 1800)
SLOT = SlotRef(KEY, "tag")


def counting_entropy() -> Callable[[], bytes]:
    counter = itertools.count()
    return lambda: next(counter).to_bytes(15, "big")


@pytest.fixture
async def shard_set(nursery: trio.Nursery) -> AsyncIterator[ShardSet]:
    shard_set: ShardSet = await nursery.start(
        lambda task_status: run_shards(
            [SlotSpec(KEY, spots=2, spots_total=2)],
            shard_count=3,
            mailbox_capacity=4,
            entropy=counting_entropy(),
            wall_anchor_ns=ANCHOR_NS,
            task_status=task_status,
        )
    )
    yield shard_set
    shard_set.close()


def lease_for(ref: str, ttl_s: int) -> CreateLease:
    expiry = ANCHOR_NS + ttl_s * core.NANOS_PER_SECOND + int(trio.current_time() * 1e9)
    return CreateLease(ApiVersion.V2, SLOT, ref, expiry)


async def open_spots(shard_set: ShardSet) -> object:
    return await call(shard_set.for_key("m1", "haircut"), CheckAvailability(KEY))


async def test_lease_frees_its_spot_at_exactly_its_expiry(
    shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    handle = shard_set.for_key("m1", "haircut")
    lease = await call(handle, lease_for("r1", 30))
    assert isinstance(lease, Lease)
    assert await open_spots(shard_set) == 1

    await trio.sleep(30 - 1e-6)
    assert await open_spots(shard_set) == 1
    stats = shard_set.shards[handle.shard_id].statistics()
    assert stats.live_leases == 1
    assert stats.expirations == 0

    await trio.sleep(1e-6)
    assert trio.current_time() == pytest.approx(30.0)
    assert await open_spots(shard_set) == 2


async def test_timer_expires_an_idle_shard_without_any_request(
    shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    handle = shard_set.for_key("m1", "haircut")
    await call(handle, lease_for("r1", 30))
    await trio.sleep(31)
    # No request since the grant: only the deadline heap's timer can have expired it.
    stats = shard_set.shards[handle.shard_id].statistics()
    assert stats.live_leases == 0
    assert stats.expirations == 1
    assert stats.last_expiry_lag_s == pytest.approx(0.0, abs=1e-6)


async def test_a_shorter_lease_brings_the_idle_timer_forward(
    shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    handle = shard_set.for_key("m1", "haircut")
    await call(handle, lease_for("long", 60))  # the timer now sleeps until t=60
    await call(handle, lease_for("short", 10))
    await trio.sleep(11)
    stats = shard_set.shards[handle.shard_id].statistics()
    assert stats.expirations == 1
    assert stats.live_leases == 1
    assert stats.last_expiry_lag_s == pytest.approx(0.0, abs=1e-6)
    await trio.sleep(50)
    assert shard_set.shards[handle.shard_id].statistics().expirations == 2


async def test_full_mailbox_is_shed_at_once(shard_set: ShardSet) -> None:
    handle = shard_set.for_key("m1", "haircut")
    replies: list[object] = []
    # The idle shard takes the first request straight from its receive; four more fill
    # the mailbox (capacity 4) because the shard task cannot run until we yield.
    for _ in range(5):
        handle.submit(ShardRequest(CheckAvailability(KEY), replies.append))
    with pytest.raises(ShardUnavailable) as refused:
        handle.submit(ShardRequest(CheckAvailability(KEY), replies.append))
    assert refused.value.fault is ShardFault.OVERLOADED
    assert handle.shed == 1
    await trio.testing.wait_all_tasks_blocked()
    assert replies == [2, 2, 2, 2, 2]


async def test_request_past_its_deadline_is_not_applied(shard_set: ShardSet) -> None:
    handle = shard_set.for_key("m1", "haircut")
    reply = await call(handle, lease_for("late", 30), deadline=trio.current_time())
    assert reply is ShardFault.DEADLINE_EXCEEDED
    assert await open_spots(shard_set) == 2


async def test_closed_shard_answers_unavailable(shard_set: ShardSet) -> None:
    handle = shard_set.for_key("m1", "haircut")
    shard_set.close()
    with pytest.raises(ShardUnavailable) as refused:
        handle.submit(ShardRequest(CheckAvailability(KEY), lambda reply: None, math.inf))
    assert refused.value.fault is ShardFault.UNAVAILABLE


async def test_ids_route_back_to_the_owning_shard(shard_set: ShardSet) -> None:
    handle = shard_set.for_key("m1", "haircut")
    lease = await call(handle, lease_for("r1", 30))
    assert isinstance(lease, Lease)
    assert shard_set.for_id(core.LEASE_ID_PREFIX, lease.lease_id) is handle
    assert shard_set.for_id(core.LEASE_ID_PREFIX, "not-an-id") is None


async def test_many_concurrent_grants_never_exceed_spots(
    shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    handle = shard_set.for_key("m1", "haircut")
    results: list[object] = []

    async def one(i: int) -> None:
        while True:
            try:
                results.append(await call(handle, lease_for(f"r{i}", 60)))
                return
            except ShardUnavailable:
                await trio.sleep(0.001)  # shed: retry like a client would

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(one, i)
    granted = [r for r in results if isinstance(r, Lease)]
    assert len(granted) == 2
    assert sum(isinstance(r, core.SlotUnavailable) for r in results) == 48


def test_every_command_has_a_shard_method() -> None:
    assert handled_commands() == frozenset(get_args(core.Command))


async def test_inventory_keys_route_as_the_digest_does(shard_set: ShardSet) -> None:
    for merchant_id, service_id in [(KEY.merchant_id, KEY.service_id), ("m2", "other")]:
        expected = core.shard_for_key(merchant_id, service_id, len(shard_set.handles))
        assert shard_set.for_key(merchant_id, service_id) is shard_set.handles[expected]


async def test_a_storm_is_expired_in_chunks_with_requests_served_between(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    storm_key = SlotKey("m1", "haircut", 1_767_258_000, 1800)
    leases = 8 * EXPIRY_CHUNK
    shard_set: ShardSet = await nursery.start(
        lambda task_status: run_shards(
            [SlotSpec(KEY, spots=2, spots_total=2), SlotSpec(storm_key, leases, leases)],
            shard_count=1,
            mailbox_capacity=4,
            entropy=counting_entropy(),
            wall_anchor_ns=ANCHOR_NS,
            task_status=task_status,
        )
    )
    handle = shard_set.for_key("m1", "haircut")
    shard = shard_set.shards[handle.shard_id]
    at_ns = ANCHOR_NS + 30 * core.NANOS_PER_SECOND  # every storm lease expires at t=30
    for n in range(leases):
        granted = await call(handle, CreateLease(ApiVersion.V2, SlotRef(storm_key), f"s{n}", at_ns))
        assert isinstance(granted, Lease)
    await trio.sleep_until(30 + EXPIRY_COALESCE_S)  # the timer's sweep is due now too

    # Ask about the other slot again and again while the timer sweeps the storm.
    expired_at_replies: list[int] = []
    for _ in range(100):  # (virtual time stands still while this loop runs)
        assert await open_spots(shard_set) == 2
        expired_at_replies.append(shard.statistics().expirations)
        if expired_at_replies[-1] == leases:
            break
    assert expired_at_replies[-1] == leases, expired_at_replies
    assert any(0 < n < leases for n in expired_at_replies), expired_at_replies
    assert shard.statistics().last_expiry_lag_s == pytest.approx(0.0, abs=1e-6)
    shard_set.close()


async def test_a_command_on_a_slot_does_not_wait_for_the_sweep(
    shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    handle = shard_set.for_key("m1", "haircut")
    shard = shard_set.shards[handle.shard_id]
    await call(handle, lease_for("r1", 30))
    await call(handle, lease_for("r2", 30))
    shard._expire_on_timer = lambda: False  # type: ignore[method-assign]  # (no sweep at all)
    await trio.sleep(30)
    assert await open_spots(shard_set) == 2  # the check settled its own slot
    assert shard.statistics().expirations == 2


class RecordingSink(EventSink):
    def __init__(self) -> None:
        self.scopes: list[tuple[str, object]] = []

    def commit(
        self,
        events: Sequence[core.Event],
        deliver: Callable[[], None],
        scope: Hashable | None = None,
    ) -> None:
        self.scopes.append((type(events[0]).__name__ if events else "", scope))
        deliver()


async def recording_shard(nursery: trio.Nursery, spots: int) -> tuple[Shard, RecordingSink]:
    """A running shard of one slot with `spots`, whose commits a RecordingSink keeps."""
    sink = RecordingSink()
    state = core.ShardState([SlotSpec(KEY, spots, spots)], entropy=counting_entropy())
    shard = Shard(0, state, AnchoredClock(ANCHOR_NS), mailbox_capacity=4, sink=sink)
    await nursery.start(shard.run)
    return shard, sink


async def test_each_commit_names_the_scope_its_command_reached(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    shard, sink = await recording_shard(nursery, spots=1)
    granted = await call(shard.handle, lease_for("r1", 30))
    assert isinstance(granted, Lease)
    await call(shard.handle, lease_for("r2", 30))  # refused: the one spot is held
    await call(shard.handle, core.CancelBooking("B-unknown"))
    assert sink.scopes == [
        ("LeaseGranted", ("m1", "haircut")),
        ("", ("m1", "haircut")),
        ("", None),
    ]
    shard.close()


async def test_leases_due_close_together_expire_in_one_sweep_and_one_commit(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    shard, sink = await recording_shard(nursery, spots=3)
    for ref, at_s in (("r1", 0.0), ("r2", 0.01), ("r3", 0.04)):  # due at 30, 30.01, 30.04
        await trio.sleep_until(at_s)
        assert isinstance(await call(shard.handle, lease_for(ref, 30)), Lease)
    await trio.sleep_until(30 + EXPIRY_COALESCE_S - 0.001)
    assert shard.statistics().expirations == 0  # the sweep waits for the ones due next
    await trio.sleep_until(30 + EXPIRY_COALESCE_S + 0.001)
    assert shard.statistics().expirations == 3
    assert [name for name, _ in sink.scopes].count("LeaseExpired") == 1  # one commit
    assert shard.statistics().last_expiry_lag_s == pytest.approx(0.0, abs=1e-6)
    shard.close()


async def test_statistics_count_refusals_and_time_each_command_kind(shard_set: ShardSet) -> None:
    handle = shard_set.for_key("m1", "haircut")
    for ref in ("r1", "r2", "r3"):  # two spots: the third is refused
        await call(handle, lease_for(ref, 30))
    stats = shard_set.shards[handle.shard_id].statistics()
    assert stats.operations_by_kind == {"CreateLease": 3}
    assert stats.refusals == {("CreateLease", "SlotUnavailable"): 1}
    times = stats.service_times_by_kind["CreateLease"]
    assert sum(times.counts) == 3
    assert times.counts == stats.service_time_counts
    assert times.sum_s > 0
