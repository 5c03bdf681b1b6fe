"""The journal as a shard's EventSink: a reply goes out only once its events are as durable
as asked.

Durability (`--durability`):
- SYNC (default): a reply waits for the fsync of its command's events, and of
  everything committed before it. Group commit: while one fsync runs, every
  command that arrives is appended to the buffer; the next fsync covers them
  all, so throughput grows with concurrency instead of being one fsync per
  request. A command without events is answered at once unless a command
  that may have changed what it read still waits for the disk (what it read
  must not be seen before it is durable); then after the next fsync. Each
  commit names its scope (core.commit_scope): the (merchant, service) it read
  and changed, or None, the whole shard; a reply waits only for writes of its
  own scope and for whole-shard ones.
- ASYNC: replies go out at once; the run loop fsyncs at most every
  `flush_interval_s` (10 ms) and never while idle, so a crash loses about the
  last interval plus one fsync of acknowledged commands.
- NONE: memory only; nothing is written.

Running it: `await nursery.start(sink.run)` before the shard starts, in the
same nursery or an outer one; the sink's blocking writes and fsyncs run in
the process's disk thread (shards._disk_thread), never on the event loop. To
stop: close the shard and let it finish, then `await sink.aclose()`; or cancel
`run()`. Either way the sink writes and fsyncs what is pending, delivers those
replies, and closes the file.

A failed write or fsync (OSError): the sink withholds every reply not yet
delivered, `run()` raises JournalFailed and every later `commit()` raises it
too. A crash is better than acknowledging what may not be on disk: the
supervisor's nursery stops the server, and on restart the journal's tail is
checked and a torn one cut (see shards._journal).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import assert_never

import trio

from leasehold.core import Event
from leasehold.shards._codec import encode_events
from leasehold.shards._journal import JournalWriter
from leasehold.shards._messages import JournalFigures
from leasehold.shards._settings import Durability
from leasehold.shards._shard import EventSink

FLUSH_INTERVAL_S = 0.010

# A queued reply whose command wrote nothing (see JournalSink._waiting).
_READ_ONLY = object()


class JournalFailed(Exception):
    """The journal could not be written: replies are withheld and the shard must stop."""


@dataclass(frozen=True, slots=True)
class JournalStats:
    """A snapshot for operators (the health stream)."""

    durability: Durability
    fsyncs: int
    last_fsync_s: float
    max_fsync_s: float
    bytes_written: int
    records_written: int
    # Replies held until an fsync covers their events (SYNC only).
    pending_replies: int
    # Records appended but not yet fsynced: what a crash now would lose.
    unsynced_records: int


class JournalSink(EventSink):
    """Journals each command's events and delivers its reply per `durability` (module doc)."""

    # TODO(issue 4): SYNC's closed-loop throughput trails NONE's on latency (host loop
    # passes per group commit), not CPU; see docs/performance.md, "Journal and durability".

    def __init__(
        self,
        durability: Durability,
        writer: JournalWriter | None = None,
        *,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        if (writer is None) != (durability is Durability.NONE):
            raise ValueError(f"durability {durability.value} needs a writer exactly when it writes")
        self.durability = durability
        self._writer = writer
        self._interval = flush_interval_s
        # Invariant: in submission order; each waits for an fsync covering everything
        # appended before it was queued. With each reply, the scope its command wrote
        # (None: the whole shard), or _READ_ONLY.
        self._waiting: list[tuple[Callable[[], None], object]] = []
        # Scope -> commits of that scope whose events are not yet fsynced (None: whole
        # shard). Invariant: no zero counts; empty when nothing written waits.
        self._unsynced_writes: dict[Hashable | None, int] = {}
        # Replies of the batch whose flush is running (taken out of _waiting).
        self._held = 0
        self._work = trio.Event()
        self._running = False
        self._closing = False
        self._closed = False
        self._stopped = trio.Event()
        self._failure: JournalFailed | None = None
        # The writer has one driver at a time: the flush loop, or a roll for a snapshot.
        self._writer_lock = trio.Lock()

    def commit(
        self, events: Sequence[Event], deliver: Callable[[], None], scope: Hashable | None = None
    ) -> None:
        """Journal `events` (one record) and deliver the reply when `durability` allows.

        `scope`: all the command read and changed lies within it (core.commit_scope);
        None, the whole shard.

        Raises:
            JournalFailed: an earlier write failed.
            ValueError: the events encode to more than one record can hold (16 MiB).
            RuntimeError: `run()` is not running.
        """
        self._check_open()
        writer = self._writer
        if writer is None:
            deliver()
            return
        if events:
            writer.append(encode_events(events))
        if self.durability is Durability.ASYNC:
            if events:
                self._work.set()
            deliver()
        elif events:
            self._waiting.append((deliver, scope))
            writes = self._unsynced_writes
            writes[scope] = writes.get(scope, 0) + 1
            self._work.set()
        elif self._may_see_unsynced(scope):
            self._waiting.append((deliver, _READ_ONLY))
            self._work.set()
        else:
            deliver()  # nothing it read waits for the disk

    def _may_see_unsynced(self, scope: Hashable | None) -> bool:
        writes = self._unsynced_writes
        if not writes:
            return False
        return scope is None or None in writes or scope in writes

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write and fsync in the background until `aclose()` or cancellation, then drain.

        Start it with `nursery.start` before the shard commits anything.

        Raises:
            JournalFailed: a write or fsync failed (the cause is chained).
        """
        if self._running or self._closed:
            raise RuntimeError("JournalSink.run() runs once")
        self._running = True
        task_status.started()
        try:
            match self.durability:
                case Durability.SYNC:
                    await self._group_commit()
                case Durability.ASYNC:
                    await self._flush_periodically()
                case Durability.NONE:
                    await self._wait_for(lambda: self._closing)
                case _:
                    assert_never(self.durability)
        finally:
            # Also when cancelled: what was committed is written and answered before we go.
            with trio.CancelScope(shield=True):
                await self._drain()
            self._stopped.set()

    async def aclose(self) -> None:
        """Write and fsync what is pending, deliver its replies, close the journal."""
        self._closing = True
        self._work.set()
        if self._running:
            await self._stopped.wait()
        elif not self._closed:
            with trio.CancelScope(shield=True):
                await self._drain()

    @property
    def next_seq(self) -> int:
        """The sequence number the next committed record gets (0 when nothing is written)."""
        return 0 if self._writer is None else self._writer.next_seq

    async def roll(self) -> int | None:
        """Flush, fsync and continue in a new segment, between two flushes of the loop.

        For snapshots: a snapshot taken after this covers the old segments, which can
        then be removed. Returns the first record number of the segment now appended
        to (it may hold records committed during the roll); None when the journal is
        not written (NONE).
        """
        if self._writer is None:
            return None
        if not self._closing and not self._closed:  # else the drain owns the writer now
            async with self._writer_lock:
                if not self._closed:
                    await self._writer.roll()
        return self._writer.segment_first_seq

    async def sync(self) -> None:
        """Write and fsync every record committed so far (replies still go out from the loop).

        For snapshots: one that counts a record must not be durable before the record is,
        or a restart would number new records from before the snapshot's end.
        """
        if self._writer is None:
            return
        async with self._writer_lock:
            if not self._closed:
                await self._writer.flush(sync=True)
                return
        # Closed: the drain wrote and fsynced everything, unless the journal failed.
        if self._failure is not None:
            raise JournalFailed(str(self._failure)) from self._failure

    @property
    def failed(self) -> bool:
        """A write or fsync failed: replies were withheld, and the journal's end is unknown."""
        return self._failure is not None

    @property
    def closing(self) -> bool:
        return self._closing or self._closed

    def statistics(self) -> JournalStats:
        writer = self._writer
        if writer is None:
            return JournalStats(self.durability, 0, 0.0, 0.0, 0, 0, 0, 0)
        return JournalStats(
            durability=self.durability,
            fsyncs=writer.fsyncs,
            last_fsync_s=writer.last_fsync_s,
            max_fsync_s=writer.max_fsync_s,
            bytes_written=writer.bytes_written,
            records_written=writer.records_written,
            pending_replies=len(self._waiting) + self._held,
            unsynced_records=writer.unsynced_records,
        )

    def journal_figures(self) -> JournalFigures | None:
        writer = self._writer
        if writer is None:  # Durability.NONE: nothing is written, so there is nothing to show
            return None
        return JournalFigures(
            writer.last_fsync_s,
            writer.max_fsync_s,
            writer.bytes_written,
            writer.fsync_times.snapshot(),
        )

    async def _group_commit(self) -> None:
        while True:
            await self._wait_for(lambda: self._closing or bool(self._waiting))
            if self._closing:
                return
            await self._commit_batch()

    async def _flush_periodically(self) -> None:
        assert self._writer is not None
        writer = self._writer
        last_flush = -math.inf
        while True:
            await self._wait_for(lambda: self._closing or writer.unsynced_records > 0)
            if self._closing:
                return
            # At most one fsync per interval; closing cuts the pause short (the drain flushes).
            with trio.move_on_at(last_flush + self._interval):
                await self._wait_for(lambda: self._closing)
            last_flush = trio.current_time()
            await self._commit_batch()

    async def _commit_batch(self) -> None:
        """Flush and fsync everything appended so far, then deliver the replies waiting on it."""
        assert self._writer is not None
        async with self._writer_lock:
            # The batch and the writer's buffer are taken together, with no checkpoint
            # between (flush takes the buffer before its first): what is committed from
            # now on waits for the next batch. Waiting for the lock comes first, so a
            # cancellation there leaves the batch queued for the drain.
            batch, self._waiting = self._waiting, []
            self._held = len(batch)
            try:
                await self._writer.flush(sync=True)
            except Exception as problem:
                self._failure = JournalFailed(
                    f"the journal {self._writer.path} could not be written ({problem!r}); "
                    f"replies withheld: {self._held + len(self._waiting)}; the shard must stop"
                )
                raise self._failure from problem
        self._held = 0
        writes = self._unsynced_writes
        for _, scope in batch:
            if scope is not _READ_ONLY:
                left = writes[scope] - 1
                if left:
                    writes[scope] = left
                else:
                    del writes[scope]
        for deliver, _ in batch:
            deliver()

    async def _drain(self) -> None:
        self._closing = True
        try:
            writer = self._writer
            if writer is not None and self._failure is None:
                while self._waiting or writer.unsynced_records:
                    await self._commit_batch()
        finally:
            # Under the lock: a roll that started before the drain may still be flushing.
            async with self._writer_lock:
                self._closed = True
                if self._writer is not None:
                    self._writer.close()

    async def _wait_for(self, ready: Callable[[], bool]) -> None:
        # A checkpoint even when ready, so that a busy loop can still be cancelled.
        await trio.lowlevel.checkpoint_if_cancelled()
        while not ready():
            self._work = trio.Event()
            await self._work.wait()

    def _check_open(self) -> None:
        if self._failure is not None:
            raise JournalFailed(str(self._failure)) from self._failure
        if self._closed:
            raise RuntimeError("JournalSink is closed: stop the shard before closing its sink")
        if not self._running:
            raise RuntimeError("JournalSink.run() is not running: start it before the shard")
