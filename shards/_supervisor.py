"""Building the shards from the inventory, starting them, and routing to them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import trio

from leasehold.core import LeaseSettings, ShardState, SlotSpec, bucket_of_id, shard_for_bucket
from leasehold.core import routing_bucket as _bucket
from leasehold.shards._clock import AnchoredClock
from leasehold.shards._collector import collector_paused_then_frozen
from leasehold.shards._compaction import Compactor
from leasehold.shards._datadir import (
    EMPTY_MANIFEST,
    MANIFEST_FORMAT,
    DataDirError,
    ManifestKeeper,
    ShardManifest,
    read_manifest,
    read_meta,
    shard_dir,
)
from leasehold.shards._durable_sink import JournalSink
from leasehold.shards._journal import JournalWriter
from leasehold.shards._messages import ShardStats
from leasehold.shards._persistence import RecoveryError, RecoveryReport, recover
from leasehold.shards._settings import Durability, Persistence
from leasehold.shards._shard import EventSink, Shard, ShardHandle


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

    def __init__(self, shards: Sequence[Shard], recovery: Sequence[RecoveryReport] = ()) -> None:
        self.shards = tuple(shards)
        # What each shard loaded from disk at start (empty when memory-only).
        self.recovery = tuple(recovery)
        self.handles = tuple(s.handle for s in shards)
        # The shards by their id: a shard process's share need not start at 0.
        self.by_id = {s.shard_id: s.handle for s in shards}
        # The inventory's routing keys, routed once: a dict probe per request instead of a
        # digest. Bounded by the inventory; keys outside it are hashed (and refused later).
        self._inventory_routes = {
            (spec.key.merchant_id, spec.key.service_id): shard.handle
            for shard in self.shards
            for spec in shard.state.slot_specs()
        }

    def for_key(self, merchant_id: str, service_id: str) -> ShardHandle:
        known = self._inventory_routes.get((merchant_id, service_id))
        if known is not None:
            return known
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
    persistence: Persistence | None = None,
    owned: Sequence[int] | None = None,
    task_status: trio.TaskStatus[ShardSet] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Recover each shard, start it with `nursery.start` (so it serves), then report the set.

    `owned`: run only these shards of `shard_count` (a shard process's share; the set
    reported then serves its shards by id, `ShardSet.by_id`, and routes nothing).

    Returns when all shards have stopped (after ShardSet.close(), or on cancellation);
    each shard's journal is drained and closed after its shard stops. Raises
    RecoveryError (before reporting anything) if stored state cannot be loaded.
    """
    clock = AnchoredClock(wall_anchor_ns)
    parts = partition_inventory(slots, shard_count)
    ids = list(range(shard_count)) if owned is None else list(owned)
    states = [ShardState(parts[i], entropy=entropy, settings=settings) for i in ids]
    sinks, reports, keepers = await _open_storage(ids, states, persistence)
    shards = [
        Shard(i, state, clock, mailbox_capacity=mailbox_capacity, sink=sink)
        for i, state, sink in zip(ids, states, sinks, strict=True)
    ]
    async with trio.open_nursery() as nursery:
        for position, (index, state, sink) in enumerate(zip(ids, states, sinks, strict=True)):
            if isinstance(sink, JournalSink):
                assert persistence is not None
                await nursery.start(sink.run)
                compactor = Compactor(
                    state,
                    sink,
                    shard_dir(persistence.data_dir, index),
                    every_records=persistence.snapshot_every,
                    interval_s=persistence.snapshot_interval_s,
                    manifest=keepers[position],
                )
                await nursery.start(compactor.run)
        for position, (shard, sink) in enumerate(zip(shards, sinks, strict=True)):
            keeper = keepers[position] if keepers else None
            await nursery.start(_serve_then_close, shard, sink, keeper)
        task_status.started(ShardSet(shards, reports))


async def _serve_then_close(
    shard: Shard,
    sink: EventSink,
    keeper: ManifestKeeper | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await shard.run(task_status=task_status)
    finally:
        if isinstance(sink, JournalSink):
            with trio.CancelScope(shield=True):
                await sink.aclose()  # writes and answers what the shard committed
                if keeper is not None and not sink.failed:
                    # Everything is fsynced now: a restart must find all of it.
                    await trio.to_thread.run_sync(keeper.stopped_cleanly, sink.next_seq)


async def _open_storage(
    ids: list[int], states: list[ShardState], persistence: Persistence | None
) -> tuple[list[EventSink], list[RecoveryReport], list[ManifestKeeper]]:
    """Recover every shard from disk (in a worker thread, one after another), open its journal.

    Raises RecoveryError (damage) or DataDirError (a missing manifest, or a directory
    that cannot be written: found here, before anything is served).
    """
    if persistence is None or persistence.durability is Durability.NONE:
        return [EventSink() for _ in states], [], []
    data_dir = persistence.data_dir
    meta = read_meta(data_dir)
    need_manifests = meta is not None and meta.format_version >= MANIFEST_FORMAT
    opened: list[tuple[RecoveryReport, JournalWriter, ManifestKeeper]] = []
    # Recovery is CPU-bound Python: shards recovering side by side in threads only
    # fight over the GIL (docs/performance.md). A worker thread keeps the event loop
    # free; one shard at a time.
    with collector_paused_then_frozen():
        try:
            for index, state in zip(ids, states, strict=True):
                directory = shard_dir(data_dir, index)
                try:
                    opened.append(
                        await trio.to_thread.run_sync(_open_shard, state, directory, need_manifests)
                    )
                except RecoveryError as problem:  # the file and offset, and which shard
                    raise RecoveryError(f"shard {index}: {problem}") from problem
        except BaseException:
            for _, writer, _ in opened:
                writer.close()
            raise
    sinks: list[EventSink] = [JournalSink(persistence.durability, w) for _, w, _ in opened]
    return sinks, [r for r, _, _ in opened], [k for _, _, k in opened]


def _open_shard(
    state: ShardState, directory: Path, need_manifest: bool
) -> tuple[RecoveryReport, JournalWriter, ManifestKeeper]:
    """(Worker thread) recover one shard, open its journal, rewrite its manifest."""
    expected = read_manifest(directory)
    if expected is None and need_manifest:
        raise DataDirError(
            f"{directory}: the shard's manifest is missing, so what it held cannot be "
            "checked: restore the shard's directory from a copy"
        )
    expected = expected or EMPTY_MANIFEST
    report = recover(state, directory, expected)
    try:
        writer = JournalWriter(directory, resume=report.journal_end)
    except OSError as problem:
        raise DataDirError(f"cannot write in {directory}: {problem.strerror or problem}") from None
    end = report.journal_end
    last = end.last_segment[0] if end is not None and end.last_segment is not None else 0
    keeper = ManifestKeeper(directory, expected)
    try:
        # Also proves the directory takes writes, before the shard serves anything.
        keeper.write(ShardManifest(report.snapshot_seq, last, expected.durable_seq))
    except DataDirError:
        writer.close()
        raise
    return report, writer, keeper
