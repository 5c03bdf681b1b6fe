"""Periodic snapshots, so restart time and disk use stay bounded however long a shard runs.

Every `interval_s` the compactor looks at how many journal records the shard
wrote since its last snapshot; past `every_records` it rolls the journal to a
new segment, takes the state's snapshot (synchronously, in the shard's thread,
so it is consistent with the journal position), encodes and writes it durably
in worker threads, records it in the shard's manifest, and only then removes
the segments and snapshots it covers.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from leasehold.core import ShardState
from leasehold.shards._datadir import DataDirError, ManifestKeeper
from leasehold.shards._durable_sink import JournalSink
from leasehold.shards._settings import DEFAULT_EVERY_RECORDS, DEFAULT_INTERVAL_S
from leasehold.shards._snapshots import (
    encode_snapshot,
    remove_covered,
    snapshot_files,
    snapshot_name,
    write_snapshot,
)


class Compactor:
    def __init__(
        self,
        state: ShardState,
        sink: JournalSink,
        directory: Path,
        *,
        every_records: int = DEFAULT_EVERY_RECORDS,
        interval_s: float = DEFAULT_INTERVAL_S,
        manifest: ManifestKeeper | None = None,
    ) -> None:
        self._state = state
        self._sink = sink
        self._directory = directory
        self._every = every_records
        self._interval = interval_s
        self._manifest = manifest
        existing = snapshot_files(directory)
        self.last_snapshot_seq = existing[-1][0] if existing else 0
        self.snapshots = 0
        self.last_snapshot_s = 0.0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Snapshot whenever enough records accumulated; ends once the sink is closing."""
        task_status.started()
        while not self._sink.closing:
            await trio.sleep(self._interval)
            if self._sink.next_seq - self.last_snapshot_seq >= self._every:
                await self.checkpoint()

    async def checkpoint(self) -> int:
        """Snapshot now; returns the journal sequence the snapshot covers up to (exclusive)."""
        started = time.perf_counter()
        segment = await self._sink.roll()
        # No checkpoint between these two lines: the snapshot is the state after exactly
        # the records numbered below `seq` (appended ones included, flushed or not).
        seq = self._sink.next_seq
        # freeze() is quick on this (the shards') thread; encoding is not, so it runs in a
        # worker thread (docs/performance.md).
        frozen = self._state.freeze()
        data = await trio.to_thread.run_sync(lambda: encode_snapshot(seq, frozen.materialize()))
        # Records appended during the roll are counted in `seq` but may not be written yet.
        await self._sink.sync()
        try:
            await trio.to_thread.run_sync(write_snapshot, self._directory, seq, data)
        except OSError as problem:
            name = self._directory / snapshot_name(seq)
            raise DataDirError(f"cannot write {name}: {problem.strerror or problem}") from problem
        if self._manifest is not None:
            await trio.to_thread.run_sync(self._manifest.snapshot_taken, seq, segment)
        await trio.to_thread.run_sync(remove_covered, self._directory, seq)
        self.last_snapshot_seq = seq
        self.snapshots += 1
        self.last_snapshot_s = time.perf_counter() - started
        return seq
