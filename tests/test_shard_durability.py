"""A shard's reply waits for its events to be durable: the reply path through the sink.

The shard must hand its events to the sink and let the sink deliver the reply;
a shard that replied first would acknowledge what a crash can still lose, and
a kill -9 test cannot see that (the page cache survives a killed process). So
these tests look at the moment each reply leaves: a sink that holds every
delivery, a gated fsync, and an fsync that records how far the journal was
synced when each reply left.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing
from _journal_harness import (
    ANCHOR_NS,
    KEY,
    OTHER,
    GatedFsync,
    RecordingFsync,
    fresh_state,
    journalled_shard,
    lease_command,
)

from leasehold.core import CheckAvailability, Command, Event, Lease, LeaseGranted
from leasehold.shards import AnchoredClock, EventSink, Reply, Shard, ShardRequest
from leasehold.shards._codec import decode_events
from leasehold.shards._journal import FRAME_OVERHEAD, read_journal, segment_name

pytestmark = pytest.mark.timeout(30)


class HoldingSink(EventSink):
    """Keeps every commit's events and reply until the test releases them, in order."""

    def __init__(self) -> None:
        self.held: list[tuple[tuple[Event, ...], Callable[[], None]]] = []

    def commit(
        self, events: Sequence[Event], deliver: Callable[[], None], scope: Hashable | None = None
    ) -> None:
        del scope
        self.held.append((tuple(events), deliver))

    def release_one(self) -> tuple[Event, ...]:
        events, deliver = self.held.pop(0)
        deliver()
        return events


async def test_no_reply_leaves_before_the_sink_delivers_it(nursery: trio.Nursery) -> None:
    sink = HoldingSink()
    shard = Shard(0, fresh_state(), AnchoredClock(ANCHOR_NS), mailbox_capacity=8, sink=sink)
    await nursery.start(shard.run)
    replies: list[tuple[str, Reply]] = []

    def submit(name: str, command: Command) -> None:
        shard.handle.submit(ShardRequest(command, lambda r: replies.append((name, r))))

    submit("lease", lease_command("a"))
    submit("read", CheckAvailability(KEY))  # sees the spot the lease took
    await trio.testing.wait_all_tasks_blocked()
    assert replies == [], "a reply left before the sink delivered it"
    assert [len(events) for events, _ in sink.held] == [1, 0]
    [granted] = sink.release_one()
    assert isinstance(granted, LeaseGranted)
    assert [name for name, _ in replies] == ["lease"]
    assert replies[0][1] == granted.lease
    sink.release_one()
    assert replies[1] == ("read", 99)
    shard.close()


async def test_a_read_that_saw_an_unsynced_write_waits_for_its_fsync(tmp_path: Path) -> None:
    fsync = GatedFsync()
    async with journalled_shard(tmp_path, fsync) as stack:
        stack.submit("lease", lease_command("a"))
        await fsync.started()
        stack.submit("read-same-slot", CheckAvailability(KEY))  # sees the lease
        stack.submit("read-other-merchant", CheckAvailability(OTHER))  # cannot see it
        await trio.testing.wait_all_tasks_blocked()
        assert stack.answered() == ["read-other-merchant"]
        assert stack.reply("read-other-merchant") == 100
        fsync.allow()
        await stack.wait_for(3)
        assert stack.answered() == ["read-other-merchant", "lease", "read-same-slot"]
        assert stack.reply("read-same-slot") == 99


async def test_every_acknowledged_record_was_fsynced_before_its_reply(tmp_path: Path) -> None:
    fsync = RecordingFsync()
    # Per reply: (name, bytes of the segment an fsync had covered when it left).
    durable_at_reply: dict[str, int] = {}
    async with journalled_shard(tmp_path, fsync) as stack:
        segment = tmp_path / segment_name(0)

        def submit(name: str, command: Command) -> None:
            def deliver(reply: Reply) -> None:
                durable_at_reply[name] = fsync.durable_size(segment)
                stack.replies.append((name, reply))

            stack.shard.handle.submit(ShardRequest(command, deliver))

        for burst in range(4):  # bursts, so that group commits cover several at once
            for i in range(10):
                submit(f"w{burst}-{i}", lease_command(f"w{burst}-{i}", (KEY, OTHER)[i % 2]))
                submit(f"r{burst}-{i}", CheckAvailability(KEY))
            await stack.wait_for(20 * (burst + 1))
    frame_end = {}
    for record in read_journal(tmp_path).records:
        [event] = decode_events(record.payload)
        assert isinstance(event, LeaseGranted)
        frame_end[event.lease.reference] = record.offset + FRAME_OVERHEAD + len(record.payload)
    writes = [name for name in durable_at_reply if name.startswith("w")]
    assert len(writes) == 40
    assert all(isinstance(stack.reply(name), Lease) for name in writes)
    assert sorted(frame_end) == sorted(writes)
    for name in writes:
        assert durable_at_reply[name] >= frame_end[name], f"{name} replied before its fsync"
    # A read of KEY left only once the last write to KEY before it was durable.
    for b in range(4):
        for i in range(10):
            seen = f"w{b}-{i - i % 2}"  # writes alternate KEY (even i) and OTHER
            read = f"r{b}-{i}"
            assert durable_at_reply[read] >= frame_end[seen], f"{read} revealed unsynced {seen}"
