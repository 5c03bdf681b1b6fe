"""A shard on a real journal with an injected fsync, for tests of the shard <-> journal seam.

The fsync is the test's lever: `GatedFsync` holds each fsync until the test lets
it through (to act while one runs), `RecordingFsync` notes how far the journal
was synced. Real files and worker threads: these tests run on the real clock.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from leasehold import core
from leasehold.core import ApiVersion, CreateLease, ShardState, SlotKey, SlotRef, SlotSpec
from leasehold.shards import AnchoredClock, Reply, Shard, ShardRequest
from leasehold.shards._datadir import EMPTY_MANIFEST, read_manifest
from leasehold.shards._durable_sink import JournalSink
from leasehold.shards._journal import JournalWriter
from leasehold.shards._persistence import RecoveryReport, recover
from leasehold.shards._settings import Durability

ANCHOR_NS = 1_767_225_600 * core.NANOS_PER_SECOND
KEY = SlotKey("m1", "haircut", 1_767_254_400, 1800)
OTHER = SlotKey("m2", "haircut", 1_767_254_400, 1800)  # another scope (merchant)
SPECS = [SlotSpec(KEY, spots=100, spots_total=100), SlotSpec(OTHER, spots=100, spots_total=100)]


class GatedFsync:
    """An fsync that tells the test it has started, then waits (in the disk thread) for a
    permit from `allow`. Made in the trio run whose shards it gates."""

    def __init__(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self.calls = 0
        self._entered = trio.Event()
        self._permits = threading.Semaphore(0)

    def __call__(self, fd: int) -> None:
        trio.from_thread.run_sync(self._enter, trio_token=self._token)
        if not self._permits.acquire(timeout=20):
            raise TimeoutError("the test never let this fsync through")
        os.fsync(fd)

    def _enter(self) -> None:
        self.calls += 1
        self._entered.set()

    async def started(self) -> None:
        """Wait until an fsync is running (one not waited for yet)."""
        with trio.fail_after(10):
            await self._entered.wait()
        self._entered = trio.Event()

    def allow(self, count: int = 1) -> None:
        for _ in range(count):
            self._permits.release()


class RecordingFsync:
    """A real fsync that records, after each, how many bytes of which file it made durable."""

    def __init__(self) -> None:
        # (inode, file size) after each fsync, in order; bounded by the test's commits.
        self.synced: list[tuple[int, int]] = []

    def __call__(self, fd: int) -> None:
        os.fsync(fd)
        status = os.fstat(fd)
        self.synced.append((status.st_ino, status.st_size))

    def durable_size(self, path: Path) -> int:
        """How many bytes of `path` an fsync has covered so far (0: none)."""
        inode = path.stat().st_ino
        return max((size for ino, size in self.synced if ino == inode), default=0)


def lease_command(ref: str, key: SlotKey = KEY) -> CreateLease:
    return CreateLease(ApiVersion.V2, SlotRef(key), ref, None)


def fresh_state() -> ShardState:
    # Random ids, as in production: a restarted counter would mint a recovered lease's id.
    return ShardState(SPECS, entropy=partial(secrets.token_bytes, 15))


def recovered(directory: Path) -> tuple[ShardState, RecoveryReport]:
    """A new state loaded from `directory`, as a restart would load it (manifest checked)."""
    state = fresh_state()
    return state, recover(state, directory, read_manifest(directory) or EMPTY_MANIFEST)


@dataclass
class JournalledShard:
    """One shard whose events go to a JournalSink on `directory`."""

    state: ShardState
    sink: JournalSink
    shard: Shard
    # Every reply, in the order delivered: (the request's name, the reply).
    replies: list[tuple[str, Reply]] = field(default_factory=list)

    def submit(self, name: str, command: core.Command) -> None:
        """Queue a command; its reply lands in `replies` under `name` when delivered."""

        def deliver(reply: Reply) -> None:
            self.replies.append((name, reply))

        self.shard.handle.submit(ShardRequest(command, deliver))

    def reply(self, name: str) -> Reply:
        return next(reply for named, reply in self.replies if named == name)

    def answered(self) -> list[str]:
        return [name for name, _ in self.replies]

    async def wait_for(self, count: int) -> None:
        with trio.fail_after(10):
            while len(self.replies) < count:  # noqa: ASYNC110 - a callback, not a task, replies
                await trio.sleep(0.001)


@asynccontextmanager
async def journalled_shard(
    directory: Path, fsync: Callable[[int], None]
) -> AsyncIterator[JournalledShard]:
    """Run a shard on a SYNC journal in `directory`; on exit, stop it and drain the sink,
    as run_shards does. Recovers what `directory` holds first."""
    state, report = recovered(directory)
    writer = JournalWriter(directory, fsync=fsync, resume=report.journal_end)
    sink = JournalSink(Durability.SYNC, writer)
    shard = Shard(0, state, AnchoredClock(ANCHOR_NS), mailbox_capacity=64, sink=sink)

    async def serve_then_close(task_status: trio.TaskStatus[None]) -> None:
        try:
            await shard.run(task_status=task_status)
        finally:
            with trio.CancelScope(shield=True):
                await sink.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(sink.run)
        await nursery.start(serve_then_close)
        yield JournalledShard(state, sink, shard)
        shard.close()
