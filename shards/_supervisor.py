"""Building the shards from the inventory, starting them, and routing to them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import trio

from core import LeaseSettings, ShardState, SlotSpec, bucket_of_id, shard_for_bucket
from core import routing_bucket as _bucket
from shards._clock import AnchoredClock
from shards._messages import ShardStats
from shards._shard import Shard, ShardHandle


def partition_inventory(slots: Iterable[SlotSpec], shard_count: int) -> list[list[SlotSpec]]:
    """Each slot goes to the shard its (merchant_id, service_id) routes to."""
    if shard_count < 1:
        raise ValueError("shard_count must be at least 1")
    parts: list[list[SlotSpec]] = [[] for _ in range(shard_count)]
    for spec in slots:
        bucket = _bucket(spec.key.merchant_id, spec.key.service_id)
        parts[shard_for_bucket(bucket, shard_count)].append(spec)
    return parts


class ShardSet:
    """The running shards, and routing from a key or an id to the owning shard."""

    def __init__(self, shards: Sequence[Shard]) -> None:
        self.shards = tuple(shards)
        self.handles = tuple(s.handle for s in shards)

    def for_key(self, merchant_id: str, service_id: str) -> ShardHandle:
        bucket = _bucket(merchant_id, service_id)
        return self.handles[shard_for_bucket(bucket, len(self.handles))]

    def for_id(self, prefix: str, some_id: str) -> ShardHandle | None:
        """The shard that owns an id of ours, or None if the id is not one of ours."""
        bucket = bucket_of_id(prefix, some_id)
        if bucket is None:
            return None
        return self.handles[shard_for_bucket(bucket, len(self.handles))]

    def statistics(self) -> tuple[ShardStats, ...]:
        return tuple(s.statistics() for s in self.shards)

    def close(self) -> None:
        for shard in self.shards:
            shard.close()


async def run_shards(
    slots: Iterable[SlotSpec],
    *,
    shard_count: int,
    mailbox_capacity: int,
    entropy: Callable[[], bytes],
    settings: LeaseSettings | None = None,
    wall_anchor_ns: int | None = None,
    task_status: trio.TaskStatus[ShardSet] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Start every shard with `nursery.start` (so each is serving), then report the set.

    Returns when all shards have stopped (after ShardSet.close(), or on cancellation).
    """
    clock = AnchoredClock(wall_anchor_ns)
    shards = [
        Shard(
            i,
            ShardState(part, entropy=entropy, settings=settings),
            clock,
            mailbox_capacity=mailbox_capacity,
        )
        for i, part in enumerate(partition_inventory(slots, shard_count))
    ]
    async with trio.open_nursery() as nursery:
        for shard in shards:
            await nursery.start(shard.run)
        task_status.started(ShardSet(shards))
