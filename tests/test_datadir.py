"""The data directory's metadata: shard count, format version, recorded feed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leasehold.shards._datadir import (
    FORMAT_VERSION,
    DataDirError,
    ShardManifest,
    feed_digest,
    lock,
    prepare,
    read_manifest,
    read_meta,
    recorded_feed,
    shard_dir,
    write_manifest,
)


def test_a_new_directory_records_shards_and_feed(tmp_path: Path) -> None:
    meta = prepare(tmp_path / "d", shard_count=3, feed_text='{"a": 1}')
    assert meta.shard_count == 3
    assert meta.format_version == FORMAT_VERSION
    assert read_meta(tmp_path / "d") == meta
    assert recorded_feed(tmp_path / "d") == '{"a": 1}'
    assert all(shard_dir(tmp_path / "d", i).is_dir() for i in range(3))


def test_the_shard_process_count_is_recorded_and_may_change(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert prepare(data, shard_count=4, feed_text="{}").shard_processes == 1
    assert prepare(data, shard_count=4, feed_text="{}", shard_processes=2).shard_processes == 2
    meta = read_meta(data)
    assert meta is not None
    assert meta.shard_processes == 2
    assert json.loads((data / "leasehold.json").read_text())["shard_processes"] == 2


def test_the_kept_feed_and_the_shard_process_count_are_recorded_together(tmp_path: Path) -> None:
    data = tmp_path / "d"
    prepare(data, shard_count=2, feed_text='{"first": 1}')
    meta = prepare(data, shard_count=2, feed_text='{"second": 2}', shard_processes=2)
    assert (meta.format_version, meta.shard_processes) == (FORMAT_VERSION, 2)
    assert meta.feed_sha256 == feed_digest('{"first": 1}')  # the state was built on it
    assert recorded_feed(data) == '{"first": 1}'
    assert read_meta(data) == meta


def test_a_lock_held_elsewhere_is_waited_for_then_refused(tmp_path: Path) -> None:
    held = lock(tmp_path / "d")
    try:
        with pytest.raises(DataDirError, match="in use"):
            lock(tmp_path / "d", wait_s=0.05)
    finally:
        held.close()
    lock(tmp_path / "d", wait_s=0.05).close()  # free again: taken at once


def test_another_shard_count_is_refused_with_what_to_do(tmp_path: Path) -> None:
    prepare(tmp_path, shard_count=3, feed_text="{}")
    with pytest.raises(DataDirError, match="--shards 3"):
        prepare(tmp_path, shard_count=4, feed_text="{}")


def test_a_directory_keeps_the_feed_its_state_was_built_on(tmp_path: Path) -> None:
    """(A later --feed is applied over the recovered state as a change: _serve_cmd.)"""
    prepare(tmp_path, shard_count=1, feed_text="{}")
    meta = prepare(tmp_path, shard_count=1, feed_text='{"b": 2}')
    assert meta.feed_sha256 == feed_digest("{}")
    assert recorded_feed(tmp_path) == "{}"


# Marked 4 at its first start, a directory is refused whole, with the reason, by a build
# that reads up to format 3, rather than meeting a column snapshot it would take for damage.
@pytest.mark.parametrize("older", [2, 3])
def test_an_older_directory_becomes_the_current_format_keeping_its_feed(
    tmp_path: Path, older: int
) -> None:
    prepare(tmp_path, shard_count=1, feed_text="{}")
    meta_path = tmp_path / "leasehold.json"
    document = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(dict(document, format_version=older)))
    meta = prepare(tmp_path, shard_count=1, feed_text='{"b": 2}')
    assert meta.format_version == FORMAT_VERSION == 4
    assert read_meta(tmp_path) == meta
    assert json.loads(meta_path.read_text())["format_version"] == 4
    assert recorded_feed(tmp_path) == "{}"


def test_a_newer_format_is_refused_not_misread(tmp_path: Path) -> None:
    prepare(tmp_path, shard_count=1, feed_text="{}")
    meta_path = tmp_path / "leasehold.json"
    document = json.loads(meta_path.read_text())
    document["format_version"] = FORMAT_VERSION + 1
    meta_path.write_text(json.dumps(document))
    with pytest.raises(DataDirError, match="newer Leasehold"):
        prepare(tmp_path, shard_count=1, feed_text="{}")


def test_garbage_metadata_is_refused(tmp_path: Path) -> None:
    (tmp_path / "leasehold.json").write_text("not json")
    with pytest.raises(DataDirError, match="unreadable"):
        read_meta(tmp_path)


def test_a_second_process_is_refused_while_the_first_holds_the_dir(tmp_path: Path) -> None:
    held = lock(tmp_path)
    try:
        with pytest.raises(DataDirError, match="in use"):
            lock(tmp_path)
    finally:
        held.close()
    lock(tmp_path).close()  # free again once released


def test_a_format_1_directory_gets_manifests_then_the_current_format(tmp_path: Path) -> None:
    (tmp_path / "leasehold.json").write_text(
        json.dumps({"format_version": 1, "shard_count": 1, "feed_sha256": feed_digest("{}")})
    )
    shard = shard_dir(tmp_path, 0)
    shard.mkdir()
    for name in ("journal-000000000000.log", "journal-000000000040.log"):
        (shard / name).write_bytes(b"")
    (shard / "snapshot-000000000040.msgpack").write_bytes(b"")
    meta = prepare(tmp_path, shard_count=1, feed_text="{}")
    assert meta.format_version == FORMAT_VERSION == 4
    assert read_manifest(shard) == ShardManifest(40, 40, 0)


def test_a_format_2_directory_without_a_shards_manifest_is_refused(tmp_path: Path) -> None:
    prepare(tmp_path, shard_count=2, feed_text="{}")
    (shard_dir(tmp_path, 1) / "manifest.json").unlink()
    with pytest.raises(DataDirError, match=r"shard 1: .*manifest\.json is missing"):
        prepare(tmp_path, shard_count=2, feed_text="{}")


def test_manifests_round_trip_and_garbage_is_refused(tmp_path: Path) -> None:
    write_manifest(tmp_path, ShardManifest(None, 7, 9))
    assert read_manifest(tmp_path) == ShardManifest(None, 7, 9)
    (tmp_path / "manifest.json").write_text(
        '{"snapshot_seq": "x", "last_segment": 1, "durable_seq": 2}'
    )
    with pytest.raises(DataDirError, match="not a shard manifest"):
        read_manifest(tmp_path)
