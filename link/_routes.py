"""A gateway worker's routing: key or id -> shard -> the link to the process that owns it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from leasehold.core import Command, SlotSpec, bucket_of_id, routing_bucket, shard_for_bucket
from leasehold.link._client import ShardLink, call_over_link
from leasehold.shards import Reply, process_of_shard


class RemoteShard:
    """A shard as a gateway worker sees it: its id and the link to its process."""

    __slots__ = ("link", "shard_id")

    def __init__(self, shard_id: int, link: ShardLink) -> None:
        self.shard_id = shard_id
        self.link = link


class LinkedShards:
    """Routes as shards.ShardSet does (same digest, same shard), then over a link."""

    def __init__(self, links: Sequence[ShardLink], shard_count: int, slots: Iterable[SlotSpec]):
        self.links = tuple(links)
        self.handles = tuple(
            RemoteShard(i, self.links[process_of_shard(i, len(self.links))])
            for i in range(shard_count)
        )
        # The inventory's keys routed once (as ShardSet does): a dict probe per request.
        self._inventory_routes = {
            (s.key.merchant_id, s.key.service_id): self._by_bucket(
                routing_bucket(s.key.merchant_id, s.key.service_id)
            )
            for s in slots
        }

    def for_key(self, merchant_id: str, service_id: str) -> RemoteShard:
        known = self._inventory_routes.get((merchant_id, service_id))
        if known is not None:
            return known
        return self._by_bucket(routing_bucket(merchant_id, service_id))

    def for_id(self, prefix: str, some_id: str) -> RemoteShard | None:
        bucket = bucket_of_id(prefix, some_id)
        return None if bucket is None else self._by_bucket(bucket)

    def _by_bucket(self, bucket: int) -> RemoteShard:
        return self.handles[shard_for_bucket(bucket, len(self.handles))]


async def call_linked(
    handle: RemoteShard,
    command: Command,
    remaining_s: float | None,
    waiting: set[asyncio.Future[Any]] | None = None,
    resumed_after: Callable[[float], None] | None = None,
) -> Reply:
    """gateway.Router's ShardCaller over the link."""
    return await call_over_link(
        handle.link, handle.shard_id, command, remaining_s, waiting, resumed_after
    )
