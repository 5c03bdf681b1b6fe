"""Shards snapshot periodically and drop the journal the snapshot covers; restarts still see all."""

from __future__ import annotations

import secrets
from functools import partial
from pathlib import Path

import pytest
import trio

from leasehold import core
from leasehold.core import ApiVersion, CreateLease, SlotKey, SlotRef, SlotSpec
from leasehold.shards import Durability, Persistence, ShardSet, call, run_shards
from leasehold.shards._datadir import shard_dir
from leasehold.shards._journal import read_journal
from leasehold.shards._snapshots import snapshot_files

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
