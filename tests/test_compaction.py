"""Shards snapshot periodically and drop the journal the snapshot covers; restarts still see all."""

from __future__ import annotations

import secrets
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from _journal_harness import (
    GatedFsync,
    JournalledShard,
    fresh_state,
    journalled_shard,
    lease_command,
    recovered,
)

from leasehold import core
from leasehold.core import ApiVersion, CreateLease, SlotKey, SlotRef, SlotSpec
from leasehold.shards import Durability, Persistence, ShardSet, call, run_shards
from leasehold.shards._compaction import Compactor
from leasehold.shards._datadir import (
    EMPTY_MANIFEST,
    ManifestKeeper,
    ShardManifest,
    read_manifest,
    shard_dir,
)
from leasehold.shards._journal import JournalWriter, read_journal, segment_files, segment_name
from leasehold.shards._persistence import RecoveryError
from leasehold.shards._snapshots import (
    decode_snapshot,
    encode_snapshot,
    snapshot_files,
    write_snapshot,
)

pytestmark = pytest.mark.timeout(60)

KEY = SlotKey("m1", "cut", 4_102_444_800, 1800)
SLOTS = [SlotSpec(KEY, 1000, 1000)]


async def start(nursery: trio.Nursery, data_dir: Path) -> ShardSet:
    shard_set: ShardSet = await nursery.start(
        partial(
            run_shards,
            SLOTS,
            shard_count=1,
            mailbox_capacity=64,
            entropy=partial(secrets.token_bytes, 15),
            persistence=Persistence(data_dir, Durability.SYNC, snapshot_every=10),
        )
    )
    return shard_set


async def lease(shard_set: ShardSet, ref: str) -> core.Lease:
    reply = await call(shard_set.handles[0], CreateLease(ApiVersion.V2, SlotRef(KEY), ref, None))
    assert isinstance(reply, core.Lease)
    return reply


async def test_snapshots_bound_the_journal_and_restarts_see_everything(tmp_path: Path) -> None:
    directory = shard_dir(tmp_path, 0)
    directory.mkdir(parents=True)
    async with trio.open_nursery() as nursery:
        shard_set = await start(nursery, tmp_path)
        leases = [await lease(shard_set, f"r{i}") for i in range(25)]
        with trio.fail_after(10):
            while not snapshot_files(directory):  # noqa: ASYNC110 - polls the disk
                await trio.sleep(0.1)  # the compactor looks once a second
        leases += [await lease(shard_set, f"s{i}") for i in range(3)]
        shard_set.close()
    snapshot_seq = snapshot_files(directory)[-1][0]
    assert snapshot_seq >= 10
    journal = read_journal(directory)
    # Covered segments are gone: the journal holds exactly the records from the snapshot on.
    assert [r.seq for r in journal.records] == list(range(snapshot_seq, len(leases)))
    async with trio.open_nursery() as nursery:
        shard_set = await start(nursery, tmp_path)
        assert shard_set.recovery[0].snapshot_seq == snapshot_seq
        for original in leases:
            assert await lease(shard_set, original.reference) == original
        shard_set.close()


async def roll_with_a_commit_inside(
    stack: JournalledShard, fsync: GatedFsync, nursery: trio.Nursery, compactor: Compactor
) -> list[int]:
    """Start a checkpoint while "a" is being fsynced; "b" lands before the roll's flush and
    "c" inside it. Returns, once "c" is being fsynced, a list the checkpoint's seq goes in."""
    done: list[int] = []

    async def checkpoint() -> None:
        done.append(await compactor.checkpoint())

    stack.submit("a", lease_command("a"))
    await fsync.started()
    nursery.start_soon(checkpoint)
    await trio.testing.wait_all_tasks_blocked()  # its roll waits for the journal
    stack.submit("b", lease_command("b"))
    await trio.testing.wait_all_tasks_blocked()
    fsync.allow()
    await fsync.started()  # the roll's flush
    stack.submit("c", lease_command("c"))
    await trio.testing.wait_all_tasks_blocked()
    fsync.allow()
    await fsync.started()  # the loop's fsync of "c": the roll is done
    return done


async def test_the_snapshot_is_the_state_at_the_sequence_it_names(tmp_path: Path) -> None:
    fsync = GatedFsync()
    async with trio.open_nursery() as nursery, journalled_shard(tmp_path, fsync) as stack:
        keeper = ManifestKeeper(tmp_path, EMPTY_MANIFEST)
        compactor = Compactor(stack.state, stack.sink, tmp_path, manifest=keeper)
        done = await roll_with_a_commit_inside(stack, fsync, nursery, compactor)
        fsync.allow()
        await stack.wait_for(3)
        with trio.fail_after(10):
            while not done:  # noqa: ASYNC110 - the checkpoint runs in its own task
                await trio.sleep(0.001)
    # "c" was committed inside the roll: the snapshot counts it (seq 3), so it must hold it.
    assert done == [3]
    [(seq, path)] = snapshot_files(tmp_path)
    snapshot = decode_snapshot(path.read_bytes(), path)
    assert seq == snapshot.seq == 3
    assert {lease.reference for lease in snapshot.state.leases} == {"a", "b", "c"}
    assert [p.name for _, p in segment_files(tmp_path)] == [segment_name(2)]  # 0 was covered
    # The manifest lists the segment the roll made, which starts below the snapshot.
    assert read_manifest(tmp_path) == ShardManifest(3, 2, 3)
    state, report = recovered(tmp_path)
    assert (report.snapshot_seq, report.records_replayed) == (3, 0)
    for name in "abc":
        lease = stack.reply(name)
        assert isinstance(lease, core.Lease)
        assert state.lease(lease.lease_id) == lease


async def test_no_snapshot_is_durable_before_the_records_it_counts(tmp_path: Path) -> None:
    fsync = GatedFsync()
    async with trio.open_nursery() as nursery, journalled_shard(tmp_path, fsync) as stack:
        compactor = Compactor(stack.state, stack.sink, tmp_path)
        done = await roll_with_a_commit_inside(stack, fsync, nursery, compactor)
        # "c" is counted by the snapshot (seq 3) but its fsync is held: no snapshot yet.
        # (Without the wait, the snapshot appears within milliseconds.)
        with trio.move_on_after(1):
            while not snapshot_files(tmp_path):  # noqa: ASYNC110 - polls the disk
                await trio.sleep(0.005)
        assert snapshot_files(tmp_path) == []
        assert done == []
        fsync.allow()
        await stack.wait_for(3)
        with trio.fail_after(10):
            while not done:  # noqa: ASYNC110 - the checkpoint runs in its own task
                await trio.sleep(0.001)
    assert [seq for seq, _ in snapshot_files(tmp_path)] == [3]


def test_a_journal_that_ends_before_the_snapshot_stops_the_start(tmp_path: Path) -> None:
    # What an unsynced tail under a durable snapshot would leave: restarting there would
    # number new records inside the snapshot's range, and the next recovery skip them.
    JournalWriter(tmp_path).close()
    write_snapshot(tmp_path, 3, encode_snapshot(3, fresh_state().snapshot()))
    with pytest.raises(
        RecoveryError,
        match=rf"{segment_name(0)}: the journal ends at record 0, but records up to 2 were "
        "durable",
    ):
        recovered(tmp_path)
