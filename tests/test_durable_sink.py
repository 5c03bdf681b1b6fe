"""The journal sink: replies only after their fsync, group commit, order, modes, shutdown.

These tests write real files with real worker threads, so they run on the real
clock (no autojump) under an absolute timeout. The fsync is injected: a gate the
test opens one fsync at a time, to look at the sink while an fsync is running, or
one that records how far each file was synced.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from _journal_harness import GatedFsync, RecordingFsync

from leasehold.core import BookingCancelled, Event, ExpiredLeasesForgotten, LeaseExpiredEvent
from leasehold.shards._codec import decode_events
from leasehold.shards._durable_sink import JournalFailed, JournalSink, JournalStats
from leasehold.shards._journal import JournalWriter, read_journal, segment_name
from leasehold.shards._settings import Durability

pytestmark = pytest.mark.timeout(30)

EVENTS: list[Event] = [LeaseExpiredEvent("L1")]


class Replies:
    def __init__(self) -> None:
        self.order: list[str] = []
        self._changed = trio.Event()

    def to(self, name: str) -> Callable[[], None]:
        def deliver() -> None:
            self.order.append(name)
            self._changed.set()

        return deliver

    async def wait_for(self, count: int) -> None:
        with trio.fail_after(10):
            while len(self.order) < count:
                self._changed = trio.Event()
                await self._changed.wait()


async def started_sink(
    nursery: trio.Nursery,
    directory: Path,
    durability: Durability = Durability.SYNC,
    fsync: Callable[[int], None] = os.fsync,
    **options: float,
) -> JournalSink:
    sink = JournalSink(durability, JournalWriter(directory, fsync=fsync), **options)
    await nursery.start(sink.run)
    return sink


async def until_synced(sink: JournalSink) -> None:
    # Polled: the sink has no event for "all synced", and only tests would need one.
    with trio.fail_after(5):
        while sink.statistics().unsynced_records:  # noqa: ASYNC110
            await trio.sleep(0.005)


def journal_events(directory: Path) -> list[Event]:
    return [e for record in read_journal(directory).records for e in decode_events(record.payload)]


async def test_a_reply_waits_for_its_fsync_without_blocking_the_loop(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    fsync = GatedFsync()
    sink = await started_sink(nursery, tmp_path, fsync=fsync)
    replies = Replies()
    sink.commit(EVENTS, replies.to("a"))
    await fsync.started()
    assert replies.order == []
    assert sink.statistics().pending_replies == 1
    # The fsync blocks a worker thread, not the event loop.
    await trio.sleep(0.01)
    assert replies.order == []
    fsync.allow()
    await replies.wait_for(1)
    assert sink.statistics().pending_replies == 0
    assert journal_events(tmp_path) == EVENTS


async def test_commits_during_an_fsync_share_the_next_one(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    fsync = GatedFsync()
    sink = await started_sink(nursery, tmp_path, fsync=fsync)
    replies = Replies()
    sink.commit([LeaseExpiredEvent("first")], replies.to("first"))
    await fsync.started()
    for i in range(50):
        sink.commit([LeaseExpiredEvent(f"L{i}")], replies.to(f"r{i}"))
    assert sink.statistics().pending_replies == 51
    fsync.allow()
    await fsync.started()  # the second fsync: the 50 others are written, and wait for it
    assert replies.order == ["first"]
    fsync.allow()
    await replies.wait_for(51)
    assert replies.order == ["first", *(f"r{i}" for i in range(50))]
    stats = sink.statistics()
    assert (fsync.calls, stats.fsyncs, stats.records_written) == (2, 2, 51)
    assert len(journal_events(tmp_path)) == 51


async def test_a_reply_without_events_keeps_its_place_in_line(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    fsync = GatedFsync()
    sink = await started_sink(nursery, tmp_path, fsync=fsync)
    replies = Replies()
    sink.commit([], replies.to("read-while-idle"))
    assert replies.order == ["read-while-idle"], "nothing waits for the disk: at once"
    sink.commit(EVENTS, replies.to("write-1"))
    await fsync.started()
    sink.commit([], replies.to("read-1"))  # behind write-1, which is being fsynced
    sink.commit([BookingCancelled("B1")], replies.to("write-2"))
    sink.commit([], replies.to("read-2"))  # behind write-2, which waits for the next fsync
    assert replies.order == ["read-while-idle"]
    fsync.allow(2)
    await replies.wait_for(5)
    assert replies.order == ["read-while-idle", "write-1", "read-1", "write-2", "read-2"]
    assert fsync.calls == 2


SCOPE_A = ("merchant-a", "haircut")
SCOPE_B = ("merchant-b", "haircut")


async def test_a_read_waits_only_for_writes_it_could_have_seen(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    fsync = GatedFsync()
    sink = await started_sink(nursery, tmp_path, fsync=fsync)
    replies = Replies()
    sink.commit(EVENTS, replies.to("write-a"), SCOPE_A)
    await fsync.started()
    sink.commit([], replies.to("read-b"), SCOPE_B)
    assert replies.order == ["read-b"], "another scope: nothing it read waits for the disk"
    sink.commit([], replies.to("read-a"), SCOPE_A)  # may have read write-a
    sink.commit([], replies.to("read-shard"))  # the whole shard: may have read write-a
    assert replies.order == ["read-b"]
    assert sink.statistics().pending_replies == 3
    fsync.allow()
    await replies.wait_for(4)
    assert replies.order == ["read-b", "write-a", "read-a", "read-shard"]
    sink.commit([], replies.to("read-a-again"), SCOPE_A)
    assert replies.order[-1] == "read-a-again", "write-a is on disk: nothing to wait for"
    assert fsync.calls == 1


async def test_a_write_to_the_whole_shard_holds_the_reads_of_every_scope(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    fsync = GatedFsync()
    sink = await started_sink(nursery, tmp_path, fsync=fsync)
    replies = Replies()
    sink.commit([BookingCancelled("B1")], replies.to("cancel"))  # scope None
    await fsync.started()
    sink.commit(EVENTS, replies.to("write-b"), SCOPE_B)  # a write waits for its own fsync
    sink.commit([], replies.to("read-a"), SCOPE_A)
    assert replies.order == []
    fsync.allow()
    await fsync.started()  # write-b's fsync; read-a waits in its batch
    assert replies.order == ["cancel"]
    sink.commit([], replies.to("read-a-2"), SCOPE_A)
    assert replies.order == ["cancel", "read-a-2"], "only write-b (another scope) is unsynced"
    fsync.allow()
    await replies.wait_for(4)
    assert replies.order == ["cancel", "read-a-2", "write-b", "read-a"]


async def test_async_replies_at_once_and_fsyncs_on_its_own_at_most_every_interval(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    fsyncs: list[int] = []

    def counted_fsync(fd: int) -> None:
        fsyncs.append(fd)
        os.fsync(fd)

    sink = await started_sink(nursery, tmp_path, Durability.ASYNC, fsync=counted_fsync)
    replies = Replies()
    started = trio.current_time()
    commits = 0
    while trio.current_time() < started + 0.2:
        sink.commit([LeaseExpiredEvent(f"L{commits}")], replies.to("r"))
        commits += 1
        assert len(replies.order) == commits, "delivered within commit, before any fsync"
        await trio.sleep(0.001)
    await until_synced(sink)  # with no further commit, on its own
    elapsed = trio.current_time() - started
    # At most one fsync per 10 ms interval (the first one at once).
    assert 1 <= len(fsyncs) <= elapsed / 0.010 + 1
    assert len(journal_events(tmp_path)) == commits


async def test_none_delivers_at_once_and_writes_nothing(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    sink = JournalSink(Durability.NONE)
    await nursery.start(sink.run)
    replies = Replies()
    sink.commit(EVENTS, replies.to("a"))
    sink.commit([], replies.to("b"))
    assert replies.order == ["a", "b"]
    assert sink.statistics() == JournalStats(Durability.NONE, 0, 0.0, 0.0, 0, 0, 0, 0)
    await sink.aclose()
    assert read_journal(tmp_path).records == []


def test_a_writer_is_needed_exactly_when_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a writer"):
        JournalSink(Durability.SYNC)
    writer = JournalWriter(tmp_path)
    with pytest.raises(ValueError, match="needs a writer"):
        JournalSink(Durability.NONE, writer)
    writer.close()


async def test_commit_before_run_is_refused(tmp_path: Path) -> None:
    sink = JournalSink(Durability.SYNC, JournalWriter(tmp_path))
    with pytest.raises(RuntimeError, match="not running"):
        sink.commit(EVENTS, lambda: None)
    await sink.aclose()


async def test_aclose_writes_fsyncs_and_closes(nursery: trio.Nursery, tmp_path: Path) -> None:
    sink = await started_sink(nursery, tmp_path, Durability.ASYNC, flush_interval_s=3600)
    replies = Replies()
    sink.commit(EVENTS, replies.to("a"))  # the loop was idle: fsynced at once
    await until_synced(sink)
    sink.commit([ExpiredLeasesForgotten(2)], replies.to("b"))  # waits out the interval: an hour
    await trio.sleep(0.05)
    assert sink.statistics().unsynced_records == 1
    with trio.fail_after(5):
        await sink.aclose()  # cuts the pause short
    stats = sink.statistics()
    assert (stats.fsyncs, stats.unsynced_records, stats.records_written) == (2, 0, 2)
    assert journal_events(tmp_path) == [*EVENTS, ExpiredLeasesForgotten(2)]
    with pytest.raises(RuntimeError, match="closed"):
        sink.commit(EVENTS, replies.to("late"))


async def test_cancelling_run_drains_pending_replies_then_propagates(tmp_path: Path) -> None:
    fsync = GatedFsync()
    replies = Replies()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            sink = await started_sink(nursery, tmp_path, fsync=fsync)
            sink.commit(EVENTS, replies.to("in-flight"))
            await fsync.started()
            scope.cancel()
            # Committed while the sink is stopping: still written and answered.
            sink.commit([BookingCancelled("B1")], replies.to("queued"))
            fsync.allow(2)
    assert scope.cancelled_caught, "Cancelled reached the scope: run() did not swallow it"
    assert replies.order == ["in-flight", "queued"]
    assert journal_events(tmp_path) == [*EVENTS, BookingCancelled("B1")]
    assert fsync.calls == 2


async def test_cancelled_while_a_roll_holds_the_journal_still_answers_every_reply(
    tmp_path: Path,
) -> None:
    fsync = GatedFsync()
    replies = Replies()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            sink = await started_sink(nursery, tmp_path, fsync=fsync)
            sink.commit(EVENTS, replies.to("a"))
            await fsync.started()  # the loop's fsync of "a" holds the journal
            nursery.start_soon(sink.roll)
            await trio.testing.wait_all_tasks_blocked()  # the roll waits for the journal
            sink.commit([BookingCancelled("B1")], replies.to("b"))
            fsync.allow()
            await fsync.started()  # the roll's fsync (of "b" too); the loop waits for it
            await replies.wait_for(1)
            scope.cancel()
            fsync.allow()
    assert scope.cancelled_caught
    assert replies.order == ["a", "b"]
    records = read_journal(tmp_path).records
    assert [r.segment.name for r in records] == ["journal-000000000000.log"] * 2
    assert journal_events(tmp_path) == [*EVENTS, BookingCancelled("B1")]


async def test_a_failed_fsync_withholds_replies_and_stops(tmp_path: Path) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    replies = Replies()
    with pytest.RaisesGroup(pytest.RaisesExc(JournalFailed, match="replies withheld: 2")):
        async with trio.open_nursery() as nursery:
            sink = await started_sink(nursery, tmp_path, fsync=failing_fsync)
            sink.commit(EVENTS, replies.to("a"))
            sink.commit([], replies.to("b"))
            await trio.sleep_forever()
    assert replies.order == []
    with pytest.raises(JournalFailed, match="I/O error"):
        sink.commit([], replies.to("c"))
    assert replies.order == []


async def test_statistics_for_operators(nursery: trio.Nursery, tmp_path: Path) -> None:
    sink = await started_sink(nursery, tmp_path)
    replies = Replies()
    for i in range(3):
        sink.commit([LeaseExpiredEvent(f"L{i}")], replies.to(f"r{i}"))
    await replies.wait_for(3)
    stats = sink.statistics()
    assert stats.durability is Durability.SYNC
    assert 1 <= stats.fsyncs <= 3
    assert 0 < stats.last_fsync_s <= stats.max_fsync_s
    assert stats.records_written == 3
    assert stats.bytes_written == sum(8 + len(r.payload) for r in read_journal(tmp_path).records)
    assert (stats.pending_replies, stats.unsynced_records) == (0, 0)
    figures = sink.journal_figures()
    assert figures is not None
    assert sum(figures.fsync_times.counts) == stats.fsyncs
    assert figures.fsync_times.sum_s >= stats.max_fsync_s


async def test_what_is_answered_is_journalled_in_order(tmp_path: Path) -> None:
    committed: list[Event] = [
        LeaseExpiredEvent("L1"),
        BookingCancelled("B1"),
        ExpiredLeasesForgotten(4),
    ]
    async with trio.open_nursery() as nursery:
        sink = await started_sink(nursery, tmp_path)
        sink.commit(committed[:2], lambda: None)
        sink.commit([], lambda: None)  # no events: no record
        sink.commit(committed[2:], lambda: None)
        await sink.aclose()
    assert journal_events(tmp_path) == committed
    assert read_journal(tmp_path).next_seq == 2


async def test_cancelling_an_async_sink_writes_and_fsyncs_what_is_buffered(
    tmp_path: Path,
) -> None:
    fsync = RecordingFsync()
    replies = Replies()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            sink = await started_sink(
                nursery, tmp_path, Durability.ASYNC, fsync=fsync, flush_interval_s=3600
            )
            sink.commit(EVENTS, replies.to("a"))  # the loop was idle: fsynced at once
            await until_synced(sink)
            sink.commit([BookingCancelled("B1")], replies.to("b"))  # waits out the hour
            sink.commit([ExpiredLeasesForgotten(2)], replies.to("c"))
            await trio.testing.wait_all_tasks_blocked()
            assert sink.statistics().unsynced_records == 2
            scope.cancel()
    assert scope.cancelled_caught
    assert replies.order == ["a", "b", "c"]  # ASYNC: answered at once, before any fsync
    assert journal_events(tmp_path) == [*EVENTS, BookingCancelled("B1"), ExpiredLeasesForgotten(2)]
    segment = tmp_path / segment_name(0)
    assert fsync.durable_size(segment) == segment.stat().st_size, "written but not fsynced"
    assert sink.statistics().unsynced_records == 0


async def test_cancelling_a_sync_sink_before_its_loop_runs_still_syncs_and_answers(
    tmp_path: Path,
) -> None:
    fsync = RecordingFsync()
    replies = Replies()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            sink = await started_sink(nursery, tmp_path, fsync=fsync)
            sink.commit(EVENTS, replies.to("a"))
            sink.commit([], replies.to("read"))  # may have seen "a": waits for it
            scope.cancel()  # no checkpoint since: the loop never took the batch
    assert scope.cancelled_caught
    assert replies.order == ["a", "read"]
    assert journal_events(tmp_path) == EVENTS
    segment = tmp_path / segment_name(0)
    assert fsync.durable_size(segment) == segment.stat().st_size
