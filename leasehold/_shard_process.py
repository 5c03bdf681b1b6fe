"""A shard process: its share of the shards, run by trio natively, served over the link.

It recovers its shards from their journals (its share only, beside the other
shard processes doing theirs), then serves the link on a Unix socket in the
supervisor's runtime dir. On SIGTERM/SIGINT it stops taking link connections'
new requests, lets its shards answer what is queued and close their journals,
sends those replies, and exits 0.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from leasehold._recovery_log import recovery_warnings
from leasehold.core import LeaseSettings, SlotSpec
from leasehold.link import (
    LinkCounters,
    ShardProcessStats,
    open_unix_listener,
    process_figures,
    serve_link,
)
from leasehold.shards import (
    Persistence,
    ShardSet,
    buffered_entropy,
    run_shards,
    shards_of_process,
)

# Requests one link connection may have in a shard process at once; the gateway's own
# bound (per link) is the same, so this one only stops a peer that ignores it.
DEFAULT_LINK_IN_FLIGHT = 4096
# How long replies queued at stop may take to leave before the connections close.
_FLUSH_S = 1.0


@dataclass(frozen=True, slots=True)
class ShardProcessConfig:
    index: int
    process_count: int
    socket_path: Path
    slots: Sequence[SlotSpec]
    shard_count: int
    mailbox_capacity: int
    lease_settings: LeaseSettings
    persistence: Persistence | None
    max_in_flight: int = DEFAULT_LINK_IN_FLIGHT


async def run_shard_process(
    config: ShardProcessConfig,
    *,
    task_status: trio.TaskStatus[ShardSet] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Recover, serve the link, and return after SIGTERM/SIGINT once everything is answered."""
    owned = shards_of_process(config.index, config.shard_count, config.process_count)
    counters = LinkCounters()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            shards_done = trio.Event()
            shard_set: ShardSet = await nursery.start(_shards_then_set, config, owned, shards_done)

            def stats() -> ShardProcessStats:
                maxima = tuple(s.service_times.take_interval_max() for s in shard_set.shards)
                figures = process_figures("shard", config.index, counters)
                return figures, shard_set.statistics(), maxima

            listener = await open_unix_listener(config.socket_path)
            handler = partial(
                serve_link,
                shards=shard_set.by_id,
                stats=stats,
                max_in_flight=config.max_in_flight,
                counters=counters,
            )
            async with trio.open_nursery() as links:
                await links.start(trio.serve_listeners, handler, [listener])
                recovery_warnings(shard_set.recovery, owned)
                task_status.started(shard_set)
                await signals.__anext__()
                # Later signals are taken, not left pending: trio re-raises a pending one
                # when the receiver closes, and its default action would end us with 143.
                nursery.start_soon(_take_all, signals)
                shard_set.close()  # queued requests are still served, then journals close
                await shards_done.wait()
                with trio.move_on_after(_FLUSH_S):
                    await counters.wait_all_sent()
                links.cancel_scope.cancel()
            nursery.cancel_scope.cancel()


async def _take_all(signals: AsyncIterator[int]) -> None:
    async for _ in signals:
        pass


async def _shards_then_set(
    config: ShardProcessConfig,
    owned: Sequence[int],
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[ShardSet] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await run_shards(
            config.slots,
            shard_count=config.shard_count,
            mailbox_capacity=config.mailbox_capacity,
            entropy=buffered_entropy(),
            settings=config.lease_settings,
            persistence=config.persistence,
            owned=owned,
            task_status=task_status,
        )
    finally:
        done.set()
