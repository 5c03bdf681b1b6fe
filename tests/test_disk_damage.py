"""Disk damage is detected, never absorbed: every lost, emptied or flipped file stops the start.

Each test builds a real data dir (prepare, shards with a journal, a clean stop),
damages one file the way a bad disk or a careless operator would, and starts again.
"""

from __future__ import annotations

import secrets
from functools import partial
from pathlib import Path

import pytest
import trio

from leasehold import core
from leasehold.core import ApiVersion, CreateLease, SlotKey, SlotRef, SlotSpec
from leasehold.shards import (
    DataDirError,
    Durability,
    Persistence,
    RecoveryError,
    ShardSet,
    call,
    prepare,
    run_shards,
)
from leasehold.shards._datadir import shard_dir
from leasehold.shards._journal import segment_files
from leasehold.shards._snapshots import snapshot_files

pytestmark = pytest.mark.timeout(60)

KEY = SlotKey("m1", "cut", 4_102_444_800, 1800)
SLOTS = [SlotSpec(KEY, 1000, 1000)]


async def start(nursery: trio.Nursery, data_dir: Path, snapshot_every: int = 10**9) -> ShardSet:
    prepare(data_dir, shard_count=1, feed_text="{}")
    shard_set: ShardSet = await nursery.start(
        partial(
            run_shards,
            SLOTS,
            shard_count=1,
            mailbox_capacity=64,
            entropy=partial(secrets.token_bytes, 15),
            persistence=Persistence(data_dir, Durability.SYNC, snapshot_every=snapshot_every),
        )
    )
    return shard_set


async def leases(shard_set: ShardSet, prefix: str, count: int) -> set[str]:
    ids = set()
    for i in range(count):
        reply = await call(
            shard_set.handles[0], CreateLease(ApiVersion.V2, SlotRef(KEY), f"{prefix}{i}", None)
        )
        assert isinstance(reply, core.Lease)
        ids.add(reply.lease_id)
    return ids


async def build(data_dir: Path, *, snapshot: bool) -> set[str]:
    """Leases, then (if asked) a snapshot and more leases; a clean stop."""
    async with trio.open_nursery() as nursery:
        shard_set = await start(nursery, data_dir, 5 if snapshot else 10**9)
        made = await leases(shard_set, "a", 5)
        if snapshot:
            await snapshot_now(shard_set, data_dir)
            made |= await leases(shard_set, "b", 3)
        shard_set.close()
    return made


async def snapshot_now(shard_set: ShardSet, data_dir: Path) -> None:
    """Wait for the shard's compactor (it looks once a second) to snapshot."""
    with trio.fail_after(10):
        while not snapshot_files(shard_dir(data_dir, 0)):  # noqa: ASYNC110 - polls the disk
            await trio.sleep(0.05)


async def restart(data_dir: Path) -> set[str]:
    try:
        async with trio.open_nursery() as nursery:
            shard_set = await start(nursery, data_dir)
            held = {lease.lease_id for lease in shard_set.shards[0].state.snapshot().leases}
            shard_set.close()
    except ExceptionGroup as group:
        raise _first_leaf(group) from group
    return held


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def only(paths: list[tuple[int, Path]]) -> Path:
    assert len(paths) == 1
    return paths[0][1]


async def test_a_clean_restart_sees_everything(tmp_path: Path) -> None:
    made = await build(tmp_path, snapshot=True)
    assert await restart(tmp_path) == made


async def test_a_deleted_only_segment_stops_the_start(tmp_path: Path) -> None:
    await build(tmp_path, snapshot=False)
    segment = only(segment_files(shard_dir(tmp_path, 0)))
    segment.unlink()
    with pytest.raises(RecoveryError, match=rf"{segment.name}: missing.*records from 0 on"):
        await restart(tmp_path)


async def test_a_segment_truncated_to_zero_bytes_stops_the_start(tmp_path: Path) -> None:
    await build(tmp_path, snapshot=False)
    segment = only(segment_files(shard_dir(tmp_path, 0)))
    segment.write_bytes(b"")
    with pytest.raises(RecoveryError, match=rf"{segment.name}: 0 bytes"):
        await restart(tmp_path)


async def test_a_deleted_snapshot_whose_journal_is_gone_stops_the_start(tmp_path: Path) -> None:
    await build(tmp_path, snapshot=True)
    ((seq, path),) = snapshot_files(shard_dir(tmp_path, 0))
    path.unlink()
    with pytest.raises(RecoveryError, match=rf"{path.name}: missing.*records 0 to {seq - 1}"):
        await restart(tmp_path)


async def test_a_gap_between_segments_stops_the_start(tmp_path: Path) -> None:
    directory = shard_dir(tmp_path, 0)
    async with trio.open_nursery() as nursery:
        shard_set = await start(nursery, tmp_path)
        await leases(shard_set, "a", 3)
        await shard_set.shards[0]._sink.roll()  # type: ignore[attr-defined]
        await leases(shard_set, "b", 3)
        await shard_set.shards[0]._sink.roll()  # type: ignore[attr-defined]
        await leases(shard_set, "c", 3)
        shard_set.close()
    middle = segment_files(directory)[1][1]
    middle.unlink()
    with pytest.raises(RecoveryError, match="a segment is missing"):
        await restart(tmp_path)


async def test_the_newest_segment_lost_after_a_snapshot_stops_the_start(tmp_path: Path) -> None:
    await build(tmp_path, snapshot=True)
    newest = segment_files(shard_dir(tmp_path, 0))[-1][1]
    newest.unlink()
    with pytest.raises(RecoveryError, match=rf"{newest.name}: missing"):
        await restart(tmp_path)


async def test_every_bit_flip_in_the_journal_after_a_clean_stop_is_refused(
    tmp_path: Path,
) -> None:
    await build(tmp_path, snapshot=False)
    segment = only(segment_files(shard_dir(tmp_path, 0)))
    data = segment.read_bytes()
    for bit in range(0, len(data) * 8, 7):  # every 7th bit: each byte of each frame part
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        segment.write_bytes(bytes(flipped))
        with pytest.raises(RecoveryError):
            await restart(tmp_path)
        assert segment.read_bytes() == bytes(flipped)  # refused, and nothing was cut
    segment.write_bytes(data)
    assert len(await restart(tmp_path)) == 5


async def test_a_deleted_manifest_stops_the_start(tmp_path: Path) -> None:
    await build(tmp_path, snapshot=False)
    (shard_dir(tmp_path, 0) / "manifest.json").unlink()
    with pytest.raises(DataDirError, match="manifest"):
        await restart(tmp_path)


async def test_a_shard_directory_wiped_whole_stops_the_start(tmp_path: Path) -> None:
    await build(tmp_path, snapshot=False)
    for path in shard_dir(tmp_path, 0).iterdir():
        path.unlink()
    with pytest.raises(DataDirError, match="manifest"):
        await restart(tmp_path)


async def test_a_lost_metadata_file_does_not_reset_the_manifests(tmp_path: Path) -> None:
    await build(tmp_path, snapshot=False)
    (tmp_path / "leasehold.json").unlink()
    segment = only(segment_files(shard_dir(tmp_path, 0)))
    segment.unlink()
    with pytest.raises(RecoveryError, match=rf"{segment.name}: missing"):
        await restart(tmp_path)
