"""The data directory's identity: format version, shard count, and the feed it was built from.

`--data-dir` holds `leasehold.json` (this metadata), a copy of the feed the
state was built on (`feed.json`), and one directory per shard (`shard-NNN/`)
for its journal, its snapshots and its manifest (`manifest.json`, ShardManifest:
what must exist there, so that a lost file is seen, never taken for a new shard).
From format 2 on every shard directory has a manifest; a format 1 directory gets
them, from the files it holds, on its first start by this version. A restart must
use the same shard count (the journal of a shard only holds the keys that route
to it); a directory written by a newer on-disk format is refused, never misread.
The feed copy is what the shards' state was built on: a restart builds the
inventory from it, then the newest snapshot (which holds the inventory once live
changes made it differ) and the journal after it (inventory changes included)
bring it to where it was. So it is written once, for a new directory, and kept:
a later `--feed` is applied over the recovered state as a whole-feed change. (The
built-in demo feed moves with the clock, so regenerating it would orphan stored
state.)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

# 3: journals may hold inventory changes, snapshots their inventory (spec section 8).
# 4: snapshots may be written as columns (snapshot format 4): a build that reads up to
# 3 then refuses the whole directory as newer, instead of a snapshot as damaged.
FORMAT_VERSION = 4
# The first format whose shard directories each hold a manifest.
MANIFEST_FORMAT = 2
_META = "leasehold.json"
_FEED = "feed.json"
_MANIFEST = "manifest.json"


class DataDirError(Exception):
    """The data directory cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class DataDirMeta:
    format_version: int
    shard_count: int
    feed_sha256: str
    # The shard processes it last ran with (shard i in process i % this; 1: one process
    # serves all). A record for operators: the layout does not depend on it.
    shard_processes: int = 1


@dataclass(frozen=True, slots=True)
class ShardManifest:
    """What must exist in a shard's directory; the rest may have been lost in a crash.

    Rewritten atomically when it changes: at each start, after each snapshot (before
    the files it covers are removed) and at a clean stop. Never per commit: how far
    the journal reaches is only known to be at least `durable_seq`.
    """

    # The snapshot that must exist (or an older one plus the journal after it); None: none.
    snapshot_seq: int | None
    # The first record of the segment appended to; its header is durable. None: no segment.
    last_segment: int | None
    # Every record numbered below this was fsynced (at a roll or a clean stop).
    durable_seq: int


EMPTY_MANIFEST = ShardManifest(None, None, 0)


def read_manifest(directory: Path) -> ShardManifest | None:
    """The shard's manifest, None if it has none; DataDirError if it is unreadable."""
    path = directory / _MANIFEST
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        snapshot, last, durable = raw["snapshot_seq"], raw["last_segment"], raw["durable_seq"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as problem:
        raise DataDirError(f"{path} is unreadable: {problem}") from problem
    if not all(v is None or type(v) is int for v in (snapshot, last)) or type(durable) is not int:
        raise DataDirError(f"{path} is unreadable: not a shard manifest")
    return ShardManifest(snapshot, last, durable)


def write_manifest(directory: Path, manifest: ShardManifest) -> None:
    """Replace the shard's manifest atomically (blocking); DataDirError if it cannot be written."""
    document = {
        "snapshot_seq": manifest.snapshot_seq,
        "last_segment": manifest.last_segment,
        "durable_seq": manifest.durable_seq,
    }
    path = directory / _MANIFEST
    try:
        _write_atomically(path, json.dumps(document) + "\n")
    except OSError as problem:
        raise DataDirError(f"cannot write {path}: {problem.strerror or problem}") from problem


class ManifestKeeper:
    """A shard's manifest as it changes (blocking writes: call from worker threads).

    The compactor and the shard's stop may write at once; a lock keeps each
    rewrite whole and each built from the last.
    """

    def __init__(self, directory: Path, current: ShardManifest) -> None:
        self.directory = directory
        self.current = current
        self._lock = threading.Lock()

    def write(self, manifest: ShardManifest) -> None:
        with self._lock:
            write_manifest(self.directory, manifest)
            self.current = manifest

    def snapshot_taken(self, seq: int, last_segment: int | None) -> None:
        """A durable snapshot at `seq`, after a roll to segment `last_segment`, and every
        record below `seq` fsynced. The segment may start below `seq`: records committed
        during the roll go first in it, and the snapshot counts them.

        Written before the files the snapshot covers are removed, never after.
        """
        with self._lock:
            durable = max(self.current.durable_seq, seq)
            manifest = ShardManifest(seq, last_segment, durable)
            write_manifest(self.directory, manifest)
            self.current = manifest

    def stopped_cleanly(self, next_seq: int) -> None:
        """The journal was drained and fsynced: every record below `next_seq` is durable."""
        with self._lock:
            durable = max(self.current.durable_seq, next_seq)
            manifest = replace(self.current, durable_seq=durable)
            write_manifest(self.directory, manifest)
            self.current = manifest


def feed_digest(feed_text: str) -> str:
    return hashlib.sha256(feed_text.encode("utf-8")).hexdigest()


def shard_dir(data_dir: Path, shard_id: int) -> Path:
    return data_dir / f"shard-{shard_id:03d}"


def read_meta(data_dir: Path) -> DataDirMeta | None:
    """The recorded metadata, None for a new directory; DataDirError if unreadable or newer."""
    path = data_dir / _META
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        version = int(raw["format_version"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as problem:
        raise DataDirError(f"{path} is unreadable: {problem}") from problem
    if version > FORMAT_VERSION:
        raise DataDirError(
            f"{data_dir} was written by a newer Leasehold (on-disk format {version}; this "
            f"version reads up to {FORMAT_VERSION}); upgrade, or use another --data-dir"
        )
    try:
        processes = int(raw.get("shard_processes", 1))
        return DataDirMeta(version, int(raw["shard_count"]), str(raw["feed_sha256"]), processes)
    except (KeyError, TypeError, ValueError) as problem:
        raise DataDirError(f"{path} is unreadable: {problem}") from problem


def recorded_feed(data_dir: Path) -> str | None:
    path = data_dir / _FEED
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def prepare(
    data_dir: Path, *, shard_count: int, feed_text: str, shard_processes: int = 1
) -> DataDirMeta:
    """Check the directory against this start's settings and record them.

    Raises DataDirError when the shard count differs from the recorded one. A
    directory that records a feed keeps it (its digest is what the metadata keeps
    too): pass that feed, and apply a new one over the recovered state.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    meta = read_meta(data_dir)
    if meta is not None and meta.shard_count != shard_count:
        raise DataDirError(
            f"{data_dir} holds state for {meta.shard_count} shards, not {shard_count}: "
            f"start with --shards {meta.shard_count}, or use another --data-dir"
        )
    keeps_feed = meta is not None and recorded_feed(data_dir) is not None
    digest = meta.feed_sha256 if keeps_feed and meta is not None else feed_digest(feed_text)
    new = DataDirMeta(FORMAT_VERSION, shard_count, digest, shard_processes)
    if meta is not None and meta.format_version >= MANIFEST_FORMAT:
        _check_shard_dirs(data_dir, shard_count)
    else:
        # New, or format 1: every shard gets its manifest before the metadata says so
        # (one it has is kept: the metadata file may be what was lost).
        for shard_id in range(shard_count):
            directory = shard_dir(data_dir, shard_id)
            directory.mkdir(exist_ok=True)
            if read_manifest(directory) is None:
                write_manifest(directory, manifest_of_files(directory))
    if new != meta:
        if not keeps_feed:
            _write_atomically(data_dir / _FEED, feed_text)
        document = {
            "format_version": new.format_version,
            "shard_count": new.shard_count,
            "feed_sha256": new.feed_sha256,
            "shard_processes": new.shard_processes,
        }
        _write_atomically(data_dir / _META, json.dumps(document, indent=1) + "\n")
    return new


def _check_shard_dirs(data_dir: Path, shard_count: int) -> None:
    for shard_id in range(shard_count):
        directory = shard_dir(data_dir, shard_id)
        if read_manifest(directory) is None:
            raise DataDirError(
                f"shard {shard_id}: {directory / _MANIFEST} is missing, so what the shard "
                "held cannot be checked: restore the shard's directory from a copy"
            )


def manifest_of_files(directory: Path) -> ShardManifest:
    """A manifest of what a directory holds now (for directories made before manifests)."""
    snapshots = sorted(_numbered(directory, "snapshot-", ".msgpack"))
    segments = sorted(_numbered(directory, "journal-", ".log"))
    return ShardManifest(
        snapshots[-1] if snapshots else None, segments[-1] if segments else None, 0
    )


def _numbered(directory: Path, prefix: str, suffix: str) -> list[int]:
    names = (p.name[len(prefix) : -len(suffix)] for p in directory.glob(f"{prefix}*{suffix}"))
    return [int(digits) for digits in names if digits.isdigit()]


def lock(data_dir: Path, wait_s: float = 0.0) -> IO[bytes]:
    """Hold the data dir for this process (until the returned file is closed or it exits).

    Two servers on one data dir would interleave their journals; the second is refused,
    after waiting up to `wait_s` for the holder to go (a killed server's shard processes
    share its lock and need a moment to exit after it).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "leasehold.lock").open("ab")
    give_up = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= give_up:
                handle.close()
                raise DataDirError(f"{data_dir} is in use by another leasehold serve") from None
            time.sleep(0.02)


def _write_atomically(path: Path, text: str) -> None:
    """Write a temp file, fsync it, rename it over `path`, fsync the directory."""
    temp = path.with_name(path.name + ".tmp")
    with temp.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    temp.replace(path)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
