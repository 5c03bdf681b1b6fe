"""The data directory's identity: format version, shard count, and the feed it was built from.

`--data-dir` holds `leasehold.json` (this metadata), a copy of the feed the
state was built on (`feed.json`), and one directory per shard (`shard-NNN/`)
for its journal and snapshots. A restart must use the same shard count (the
journal of a shard only holds the keys that route to it); a directory written
by a newer on-disk format is refused, never misread. The feed copy lets a
restart without `--feed` serve the same inventory it recorded (the built-in
demo feed moves with the clock, so regenerating it would orphan stored state).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

FORMAT_VERSION = 1
_META = "leasehold.json"
_FEED = "feed.json"


class DataDirError(Exception):
    """The data directory cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class DataDirMeta:
    format_version: int
    shard_count: int
    feed_sha256: str


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
        return DataDirMeta(version, int(raw["shard_count"]), str(raw["feed_sha256"]))
    except (KeyError, TypeError, ValueError) as problem:
        raise DataDirError(f"{path} is unreadable: {problem}") from problem


def recorded_feed(data_dir: Path) -> str | None:
    path = data_dir / _FEED
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def prepare(data_dir: Path, *, shard_count: int, feed_text: str) -> DataDirMeta:
    """Check the directory against this start's settings and record them.

    Raises DataDirError when the shard count differs from the recorded one. A
    different feed is allowed here: recovery then checks that every slot the
    stored state uses is still in it (and refuses the start if not).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    meta = read_meta(data_dir)
    if meta is not None and meta.shard_count != shard_count:
        raise DataDirError(
            f"{data_dir} holds state for {meta.shard_count} shards, not {shard_count}: "
            f"start with --shards {meta.shard_count}, or use another --data-dir"
        )
    new = DataDirMeta(FORMAT_VERSION, shard_count, feed_digest(feed_text))
    if new != meta:
        _write_atomically(data_dir / _FEED, feed_text)
        document = {
            "format_version": new.format_version,
            "shard_count": new.shard_count,
            "feed_sha256": new.feed_sha256,
        }
        _write_atomically(data_dir / _META, json.dumps(document, indent=1) + "\n")
    for shard_id in range(shard_count):
        shard_dir(data_dir, shard_id).mkdir(exist_ok=True)
    return new


def lock(data_dir: Path) -> IO[bytes]:
    """Hold the data dir for this process (until the returned file is closed or it exits).

    Two servers on one data dir would interleave their journals; the second is refused.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "leasehold.lock").open("ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataDirError(f"{data_dir} is in use by another leasehold serve") from None
    return handle


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
