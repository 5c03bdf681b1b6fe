"""A roll under load: a commit that lands while the roll flushes keeps the journal whole.

The roll race (issue 20): the new segment was named from a count that included
records still buffered, so a commit during the roll's flush left a gap in the
segment names and the next start was refused. Real files and threads, the real
clock; the fsync is gated so the commit lands exactly inside the roll's flush.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from _journal_harness import GatedFsync, journalled_shard, lease_command, recovered

from leasehold.core import Lease
from leasehold.shards._journal import read_journal, segment_name

pytestmark = pytest.mark.timeout(30)


async def test_a_commit_during_the_rolls_flush_goes_first_in_the_new_segment(
    tmp_path: Path,
) -> None:
    fsync = GatedFsync()
    async with trio.open_nursery() as nursery, journalled_shard(tmp_path, fsync) as stack:
        stack.submit("a", lease_command("a"))
        await fsync.started()  # the loop's fsync of "a" holds the journal
        nursery.start_soon(stack.sink.roll)
        await trio.testing.wait_all_tasks_blocked()  # the roll waits its turn
        stack.submit("b", lease_command("b"))
        await trio.testing.wait_all_tasks_blocked()
        fsync.allow()
        await fsync.started()  # the roll's own flush (of "b"): hold it there
        stack.submit("c", lease_command("c"))  # buffered while the roll flushes
        await trio.testing.wait_all_tasks_blocked()
        fsync.allow()
        await fsync.started()  # the loop's fsync of "c", now in the new segment
        fsync.allow()
        await stack.wait_for(3)
    acknowledged = {name: stack.reply(name) for name in "abc"}
    scan = read_journal(tmp_path)  # raised "a segment is missing or misnamed" before the fix
    assert [(s.path.name, len(s)) for s in scan.segments] == [
        (segment_name(0), 2),
        (segment_name(2), 1),
    ]
    state, report = recovered(tmp_path)
    assert report.records_replayed == 3
    for lease in acknowledged.values():
        assert isinstance(lease, Lease)
        assert state.lease(lease.lease_id) == lease


async def test_a_restart_after_the_race_keeps_numbering_where_the_journal_ends(
    tmp_path: Path,
) -> None:
    fsync = GatedFsync()
    async with trio.open_nursery() as nursery, journalled_shard(tmp_path, fsync) as stack:
        stack.submit("a", lease_command("a"))
        await fsync.started()
        nursery.start_soon(stack.sink.roll)
        await trio.testing.wait_all_tasks_blocked()
        stack.submit("b", lease_command("b"))
        await trio.testing.wait_all_tasks_blocked()
        fsync.allow()
        await fsync.started()
        stack.submit("c", lease_command("c"))
        await trio.testing.wait_all_tasks_blocked()
        fsync.allow(2)
        await stack.wait_for(3)
    before = [stack.reply(name) for name in "abc"]
    fsync.allow(10)
    async with journalled_shard(tmp_path, fsync) as again:
        again.submit("d", lease_command("d"))
        await again.wait_for(1)
        # A replayed reference answers with the original lease: the restart kept them.
        for name, lease in zip("abc", before, strict=True):
            again.submit(f"{name}-again", lease_command(name))
            await again.wait_for(len(again.replies) + 1)
            assert again.reply(f"{name}-again") == lease
    state, report = recovered(tmp_path)
    assert (report.records_replayed, report.next_seq) == (4, 4)
    for lease in [*before, again.reply("d")]:
        assert isinstance(lease, Lease)
        assert state.lease(lease.lease_id) == lease
