"""A shard's append-only journal: length- and checksum-framed records in segment files.

On disk, in the shard's directory, segments `journal-{first_seq:012d}.log`
(`first_seq` numbers the segment's first record; records are numbered from 0
across the journal, so consecutive segments must join up). A segment is

    header  = b"LHJ1" + format version (4 bytes, big-endian)      8 bytes
    frame   = payload length (4 bytes, big-endian, 1..MAX_PAYLOAD)
            + CRC-32 of the payload (zlib.crc32, 4 bytes, big-endian)
            + payload
    segment = header frame*

Payloads are opaque here (shards._codec gives them meaning). They are never
empty, so zeros left by a crash (length 0, and crc32(b"") == 0) never pass for
a record.

Torn tail or corruption? A crash can leave the end of the LAST segment torn:
an incomplete header or frame, a length running past the end, a checksum
mismatch, zeros. Such a tail was never acknowledged as durable in sync mode, so
it is reported (TailRepair) and cut off. The rule is conservative: a bad frame
is a torn tail only if no complete, intact frame can be parsed at ANY byte
offset after it; otherwise (some good record follows it) it is corruption in
the middle and reading stops with JournalCorrupt naming the file and offset.
Any bad frame in a segment other than the last is corruption too. Never is a
bad record skipped. The price of the rule: if the storage persisted the pages
of one crashed write out of order (a later page kept, an earlier one lost), the
start is refused and an operator decides (the error says where to truncate).

Threads: JournalWriter's blocking writes and fsyncs run in the process's disk
thread (shards._disk_thread), so they never block the event loop; its
constructor and `read_journal` do blocking I/O at start-up, before the shard
serves.
"""

from __future__ import annotations

import os
import re
import struct
import time
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from leasehold.shards._datadir import fsync_dir
from leasehold.shards._disk_thread import DISK
from leasehold.shards._metrics import LatencyHistogram

MAGIC = b"LHJ1"
FORMAT_VERSION = 1
HEADER = MAGIC + FORMAT_VERSION.to_bytes(4, "big")
_HEADER = struct.Struct(">4sI")
_FRAME = struct.Struct(">II")  # payload length, CRC-32 of the payload
FRAME_OVERHEAD = _FRAME.size
# A length above this is damage, never a record: it is not allocated or read.
MAX_PAYLOAD = 16 * 1024 * 1024
_SEGMENT_NAME = re.compile(r"journal-(\d{12})\.log")


def segment_name(first_seq: int) -> str:
    return f"journal-{first_seq:012d}.log"


class JournalError(Exception):
    """The journal cannot be read as it is; the message names the file and byte offset."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path}: at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class JournalCorrupt(JournalError):
    """Damage that is not a torn tail: a bad record with good ones after it, a missing segment."""


class JournalFormatError(JournalError):
    """Not a Leasehold journal segment, or one written in a newer on-disk format."""


@dataclass(frozen=True, slots=True)
class JournalRecord:
    segment: Path
    # Where its frame starts in `segment` (for error messages about its payload).
    offset: int
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class TailRepair:
    """A torn or corrupt tail that was cut off: `path` now ends at `offset`."""

    path: Path
    offset: int
    bytes_cut: int
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.path}: cut {self.bytes_cut} bytes at byte offset {self.offset}: {self.reason}"
        )


@dataclass(frozen=True, slots=True)
class JournalEnd:
    """Where the journal ends, as a scan just found it: what a writer appends after."""

    # The last segment and the number of its first record; None: no segment yet.
    last_segment: tuple[int, Path] | None
    # The number the next appended record gets.
    next_seq: int


@dataclass(frozen=True, slots=True)
class ScannedSegment:
    """One segment as a scan read it: its bytes, and where each intact frame lies in them.

    Records are not copied out one by one: recovery takes each payload as it
    decodes it (`payloads`), with no JournalRecord objects and no second copy of
    the journal in memory (docs/performance.md: what they cost a restart).
    """

    path: Path
    first_seq: int
    data: bytes
    # Frame i spans data[bounds[i]:bounds[i + 1]]: the start of each intact frame, then
    # where the last one ends (one element for a segment without records).
    bounds: array[int]

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def payloads(self, from_seq: int = 0) -> Iterator[tuple[int, int, bytes]]:
        """(seq, frame offset, payload) of each record numbered `from_seq` or later."""
        data, bounds, first_seq = self.data, self.bounds, self.first_seq
        for index in range(max(0, from_seq - first_seq), len(bounds) - 1):
            offset = bounds[index]
            yield first_seq + index, offset, data[offset + FRAME_OVERHEAD : bounds[index + 1]]

    def records(self) -> list[JournalRecord]:
        return [JournalRecord(self.path, o, s, p) for s, o, p in self.payloads()]


@dataclass(frozen=True, slots=True)
class JournalScan:
    # In order; consecutive segments join up (the scan checked it).
    segments: list[ScannedSegment]
    repair: TailRepair | None
    end: JournalEnd

    @property
    def next_seq(self) -> int:
        return self.end.next_seq

    @property
    def records(self) -> list[JournalRecord]:
        """Every record, in order, as objects (made on each call: recovery reads `segments`)."""
        return [record for segment in self.segments for record in segment.records()]


def frame(payload: bytes) -> bytes:
    """The bytes one record takes in a segment."""
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def read_journal(directory: Path, *, durable_before: int = 0) -> JournalScan:
    """Every record of the journal in `directory`, in order; a torn tail is cut off.

    `durable_before`: records numbered below it are known to have been fsynced (the
    shard's manifest says so), so a bad frame among them is damage, never a torn tail.

    Blocking I/O, for start-up; every segment's bytes are held in memory
    (snapshots, with `JournalWriter.roll`, are what bound a journal's length).
    Every frame is checked (and a torn tail cut) before this returns.

    Raises:
        JournalCorrupt: damage other than a torn tail of the last segment.
        JournalFormatError: a segment that is not ours or is newer than this code.
    """
    scanned_segments: list[ScannedSegment] = []
    repair = None
    segments = segment_files(directory)
    next_seq = segments[0][0] if segments else 0
    for index, (first_seq, path) in enumerate(segments):
        if first_seq != next_seq:
            raise JournalCorrupt(
                path,
                0,
                f"the segment starts at record {first_seq} but the one before it ends at "
                f"record {next_seq}: a segment is missing or misnamed",
            )
        is_last = index == len(segments) - 1
        if is_last:
            _check_durable_tail(path, first_seq, durable_before)
        scanned = _scan_segment(path, last=is_last, durable_before=durable_before - first_seq)
        segment = ScannedSegment(path, first_seq, scanned.data, scanned.bounds)
        scanned_segments.append(segment)
        next_seq = first_seq + len(segment)
        repair = scanned.repair
    last = segments[-1] if segments else None
    return JournalScan(scanned_segments, repair, JournalEnd(last, next_seq))


# fdatasync is enough for appends (it flushes the size change too) and skips the
# inode's timestamps; where the OS lacks it, fsync.
_default_fsync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


class JournalWriter:
    """Appends records to the last segment of the journal in `directory`.

    One task drives it: `append` buffers in memory (cheap, synchronous) and
    `flush` writes the buffer, and fsyncs it if asked, in the disk thread.
    After a failed write or fsync the writer is broken: every later call
    raises, because what reached the disk is unknown (and after a failed fsync
    Linux may have dropped the dirty pages: retrying could report success for
    data that is gone).

    The constructor does blocking I/O: it validates the last segment (cutting
    a torn tail, see `repair`), or creates the first one. Given `resume`, the
    end a `read_journal` of this directory just found (and repaired), it trusts
    that instead of scanning the last segment again.
    """

    def __init__(
        self,
        directory: Path,
        *,
        fsync: Callable[[int], None] = _default_fsync,
        resume: JournalEnd | None = None,
    ) -> None:
        self.directory = directory
        self._fsync = fsync
        self._buffer = bytearray()
        self._buffered_records = 0
        self._busy = False
        self._broken: BaseException | None = None
        # Records written (os.write) since the last fsync: the async-mode loss window.
        self._written_unsynced = 0
        self.repair: TailRepair | None = None
        self.fsyncs = 0
        self.last_fsync_s = 0.0
        self.max_fsync_s = 0.0
        self.fsync_times = LatencyHistogram()
        self.bytes_written = 0
        self.records_written = 0
        segments = segment_files(directory)
        last = segments[-1] if segments else None
        if resume is not None and resume.last_segment != last:
            raise ValueError(f"{directory}: the journal changed since it was read")
        if last is None:
            first_seq, path = 0, directory / segment_name(0)
            self._segment_records = 0
            self._fd = _open_new_segment(path)
        else:
            first_seq, path = last
            if resume is None:
                scanned = _scan_segment(path, last=True)
                self.repair = scanned.repair
                self._segment_records = len(scanned.bounds) - 1
            else:
                self._segment_records = resume.next_seq - first_seq
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._first_seq = first_seq
        self.path = path

    @property
    def next_seq(self) -> int:
        return self._first_seq + self._segment_records + self._buffered_records

    @property
    def segment_first_seq(self) -> int:
        """The number of the first record of the segment appended to (in its name)."""
        return self._first_seq

    @property
    def unsynced_records(self) -> int:
        """Records appended but not yet fsynced (buffered or written)."""
        return self._buffered_records + self._written_unsynced

    def append(self, payload: bytes) -> None:
        """Buffer one record; it reaches the file at the next `flush`."""
        self._check_usable()
        if not 0 < len(payload) <= MAX_PAYLOAD:
            raise ValueError(f"a journal record holds 1 to {MAX_PAYLOAD} bytes, not {len(payload)}")
        self._buffer += frame(payload)
        self._buffered_records += 1

    async def flush(self, *, sync: bool) -> None:
        """Write what is buffered, then fsync if `sync` (also what earlier flushes left unsynced).

        The buffer is taken when the call starts, before its first checkpoint:
        records appended after the call wait for the next flush. A flush never
        raises Cancelled: once called it finishes (a cancelled one would leave
        the caller not knowing what reached the disk).

        Raises:
            OSError: the write or fsync failed; the writer is broken from then on.
        """
        self._check_usable()
        if self._busy:
            raise RuntimeError("JournalWriter is already flushing (one task drives a writer)")
        data = bytes(self._buffer)
        records = self._buffered_records
        do_sync = sync and (records + self._written_unsynced) > 0
        if not data and not do_sync:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self._buffer.clear()
        self._buffered_records = 0
        self._busy = True
        try:
            with trio.CancelScope(shield=True):
                fsync_s = await DISK.run(
                    partial(_write_and_sync, self._fd, data, self._fsync if do_sync else None)
                )
        except BaseException as problem:
            self._broken = problem
            raise
        finally:
            self._busy = False
        self._segment_records += records
        self.bytes_written += len(data)
        self.records_written += records
        if do_sync:
            self._written_unsynced = 0
            self.fsyncs += 1
            self.last_fsync_s = fsync_s
            self.max_fsync_s = max(self.max_fsync_s, fsync_s)
            self.fsync_times.record(fsync_s)
        else:
            self._written_unsynced += records

    async def roll(self) -> Path:
        """Flush and fsync, then continue in a new segment (a no-op if this one is empty).

        The new segment is named after the first record it will hold: records
        appended while this awaits stay in the buffer and go to the new segment,
        so they are not counted in its name. For snapshots: once a snapshot
        covers every record before `next_seq`, the segments before the new one can go.
        """
        await self.flush(sync=True)
        if self._segment_records == 0:
            return self.path
        # Not next_seq: it counts what is still buffered, which the new segment will hold.
        first_seq = self._first_seq + self._segment_records
        path = self.directory / segment_name(first_seq)
        self._busy = True
        try:
            fd = await trio.to_thread.run_sync(_open_new_segment, path)
        finally:
            self._busy = False
        os.close(self._fd)
        self._fd, self.path, self._first_seq, self._segment_records = fd, path, first_seq, 0
        return path

    def close(self) -> None:
        """Release the file. Records not flushed are dropped: flush first to keep them."""
        if self._busy:
            raise RuntimeError("JournalWriter.close during a flush: await the flush first")
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise RuntimeError(f"the journal writer for {self.path} failed earlier: {self._broken}")
        if self._fd < 0:
            raise RuntimeError(f"the journal writer for {self.path} is closed")


def _write_and_sync(fd: int, data: bytes, fsync: Callable[[int], None] | None) -> float:
    """(Worker thread) write all of `data`, then fsync if given; the fsync's duration in s."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if fsync is None:
        return 0.0
    # perf_counter, not trio's clock: this is the disk's real latency, measured off the loop.
    started = time.perf_counter()
    fsync(fd)
    return time.perf_counter() - started


def _open_new_segment(path: Path) -> int:
    """Create `path` with its header, durably (file and directory fsynced); an append fd."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, HEADER)
        os.fsync(fd)
        fsync_dir(path.parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def segment_files(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in directory.iterdir():
        match = _SEGMENT_NAME.fullmatch(path.name)
        if match:
            found.append((int(match[1]), path))
    return sorted(found)


@dataclass(frozen=True, slots=True)
class _Scanned:
    data: bytes
    bounds: array[int]  # as ScannedSegment.bounds
    repair: TailRepair | None


def _check_durable_tail(path: Path, first_seq: int, durable_before: int) -> None:
    """A last segment holding durable records cannot have lost its header to a crash."""
    size = path.stat().st_size
    if first_seq < durable_before and size < len(HEADER):
        raise JournalCorrupt(
            path,
            0,
            f"the segment is {size} bytes, but records {first_seq} to {durable_before - 1} "
            "were durable in it: they are missing",
        )


def _scan_segment(path: Path, *, last: bool, durable_before: int = 0) -> _Scanned:
    """Check a segment frame by frame; cut a torn tail off the last one (see the module doc).

    `durable_before`: how many of its first records are known to be durable (never cut).
    """
    data = path.read_bytes()
    if len(data) < len(HEADER):
        if last and HEADER.startswith(data):
            # Created, then torn before its header was down: no record was ever in it.
            _rewrite_header(path)
            repair = TailRepair(path, 0, len(data), "incomplete segment header")
            return _Scanned(HEADER, array("q", [len(HEADER)]), repair)
        raise JournalFormatError(path, 0, f"no segment header ({len(data)} bytes)")
    magic, version = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise JournalFormatError(path, 0, f"not a Leasehold journal segment (magic {magic!r})")
    if version != FORMAT_VERSION:
        newer = "a newer on-disk format" if version > FORMAT_VERSION else "an unknown format"
        raise JournalFormatError(
            path,
            4,
            f"written in {newer} (journal format {version}; this Leasehold reads format "
            f"{FORMAT_VERSION}): upgrade Leasehold, or use another --data-dir",
        )
    bounds = array("q", [len(HEADER)])
    with memoryview(data) as view:
        position = _intact_frames(data, view, bounds)
    if position < len(data):
        _refuse_cutting_durable(path, data, position, len(bounds) - 1, durable_before)
        repair = _cut_damaged_tail(path, data, position, last=last)
        return _Scanned(data, bounds, repair)
    return _Scanned(data, bounds, None)


def _intact_frames(data: bytes, view: memoryview, bounds: array[int]) -> int:
    """Append to `bounds` the end of each intact frame from its last element on; return
    where the first frame that is not intact starts (or the end of `data`).

    The checks of _intact_frame_end, in one loop: a call per frame was a third of the
    scan (docs/performance.md, restart, fourth pass).
    """
    position, size = bounds[-1], len(data)
    unpack, crc32, append = _FRAME.unpack_from, zlib.crc32, bounds.append
    while position + FRAME_OVERHEAD <= size:
        length, crc = unpack(data, position)
        start = position + FRAME_OVERHEAD
        end = start + length
        if not 0 < length <= MAX_PAYLOAD or end > size or crc32(view[start:end]) != crc:
            break
        append(end)
        position = end
    return position


def _refuse_cutting_durable(
    path: Path, data: bytes, position: int, index: int, durable_before: int
) -> None:
    """A bad frame at record `index` of the segment is damage if that record was durable."""
    if index < durable_before:
        raise JournalCorrupt(
            path,
            position,
            f"{_frame_problem(data, position)}, in the segment's record {index}, which was "
            f"durable (its first {durable_before} were): damage, not a torn tail",
        )


def _cut_damaged_tail(path: Path, data: bytes, position: int, *, last: bool) -> TailRepair:
    """Cut the segment at the bad frame at `position` if it is a torn tail; else raise."""
    reason = _frame_problem(data, position)
    if not last:
        raise JournalCorrupt(path, position, f"{reason}, in a segment that is not the last")
    following = _next_intact_frame(data, position + 1)
    if following is not None:
        raise JournalCorrupt(
            path,
            position,
            f"{reason}; an intact record follows at byte offset {following}, so this is not "
            f"a torn tail. Restore the journal from a copy, or accept losing every record "
            f"from here on by truncating the file to {position} bytes",
        )
    _truncate(path, position)
    return TailRepair(path, position, len(data) - position, reason)


def _intact_frame_end(data: bytes, view: memoryview, position: int) -> int | None:
    """The end of the complete frame with a sane length and a matching CRC at `position`.

    `view` is a memoryview of `data`, made once by the caller (one per frame was
    costly: docs/performance.md), and the CRC reads through it without a copy.
    """
    if position + FRAME_OVERHEAD > len(data):
        return None
    length, crc = _FRAME.unpack_from(data, position)
    end = position + FRAME_OVERHEAD + length
    if not 0 < length <= MAX_PAYLOAD or end > len(data):
        return None
    return end if zlib.crc32(view[position + FRAME_OVERHEAD : end]) == crc else None


def _frame_problem(data: bytes, position: int) -> str:
    """Why the frame at `position` is not intact (only called once one is not)."""
    left = len(data) - position
    if left < FRAME_OVERHEAD:
        return f"incomplete frame header ({left} of {FRAME_OVERHEAD} bytes)"
    length, crc = _FRAME.unpack_from(data, position)
    if length == 0:
        return "empty record (length 0)"
    if length > MAX_PAYLOAD:
        return f"record length {length} exceeds the {MAX_PAYLOAD}-byte limit"
    if length > left - FRAME_OVERHEAD:
        return f"record length {length} runs past the end of the file ({left} bytes left)"
    start = position + FRAME_OVERHEAD
    actual = zlib.crc32(data[start : start + length])
    return f"checksum mismatch (stored {crc:08x}, computed {actual:08x})"


def _next_intact_frame(data: bytes, start: int) -> int | None:
    """The first offset at or after `start` where an intact frame can be parsed."""
    with memoryview(data) as view:
        for position in range(start, len(data) - FRAME_OVERHEAD + 1):
            if _intact_frame_end(data, view, position) is not None:
                return position
    return None


def _truncate(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def _rewrite_header(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, HEADER)
        os.fsync(fd)
    finally:
        os.close(fd)
