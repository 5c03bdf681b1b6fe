"""The journal's segments: framing, torn tails cut at every byte, corruption refused by name."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leasehold.core import BookingCancelled, LeaseExpiredEvent
from leasehold.shards._codec import encode_events
from leasehold.shards._journal import (
    HEADER,
    MAX_PAYLOAD,
    JournalCorrupt,
    JournalFormatError,
    JournalWriter,
    TailRepair,
    frame,
    read_journal,
    segment_name,
)

pytestmark = pytest.mark.timeout(60)

PAYLOADS = [
    encode_events([LeaseExpiredEvent("L1")]),
    encode_events([BookingCancelled("B1"), LeaseExpiredEvent("L2")]),
    encode_events([LeaseExpiredEvent("L3")]),
]
SEGMENT = HEADER + b"".join(frame(p) for p in PAYLOADS)
# Where each record's frame starts in SEGMENT.
STARTS = [len(HEADER + b"".join(frame(p) for p in PAYLOADS[:i])) for i in range(len(PAYLOADS))]


def write_segment(directory: Path, data: bytes, first_seq: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / segment_name(first_seq)
    path.write_bytes(data)
    return path


def payloads_of(directory: Path) -> list[bytes]:
    return [record.payload for record in read_journal(directory).records]


async def append_and_sync(directory: Path, *payloads: bytes) -> None:
    writer = JournalWriter(directory)
    for payload in payloads:
        writer.append(payload)
    await writer.flush(sync=True)
    writer.close()


def test_an_empty_directory_has_no_records(tmp_path: Path) -> None:
    scan = read_journal(tmp_path)
    assert scan.records == []
    assert scan.repair is None
    assert scan.next_seq == 0


async def test_writer_round_trip_and_layout(tmp_path: Path) -> None:
    await append_and_sync(tmp_path, *PAYLOADS[:2])
    await append_and_sync(tmp_path, PAYLOADS[2])
    path = tmp_path / "journal-000000000000.log"
    # The layout: b"LHJ1", version 1, then [length][crc32][payload] big-endian frames.
    assert HEADER == b"LHJ1\x00\x00\x00\x01"
    assert frame(b"abc") == bytes.fromhex("00000003352441c2") + b"abc"
    assert path.read_bytes() == SEGMENT
    scan = read_journal(tmp_path)
    assert [(r.segment, r.offset, r.seq, r.payload) for r in scan.records] == [
        (path, STARTS[i], i, PAYLOADS[i]) for i in range(3)
    ]
    assert scan.repair is None
    assert scan.next_seq == 3


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=8), st.data())
def test_a_cut_anywhere_keeps_exactly_the_complete_records(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes], data: st.DataObject
) -> None:
    whole = HEADER + b"".join(frame(p) for p in payloads)
    cut = data.draw(st.integers(len(HEADER), len(whole)))
    directory = tmp_path_factory.mktemp("j")
    path = write_segment(directory, whole[:cut])
    ends = [
        len(HEADER + b"".join(frame(p) for p in payloads[: i + 1])) for i in range(len(payloads))
    ]
    kept = [p for p, end in zip(payloads, ends, strict=True) if end <= cut]
    scan = read_journal(directory)
    assert [r.payload for r in scan.records] == kept
    good_end = max([len(HEADER), *(end for end in ends if end <= cut)])
    assert path.stat().st_size == good_end
    assert (scan.repair is None) == (cut == good_end)


async def test_torn_at_every_byte_of_the_last_record(tmp_path: Path) -> None:
    last = STARTS[-1]
    for cut in range(last, len(SEGMENT)):
        directory = tmp_path / f"cut-{cut}"
        path = write_segment(directory, SEGMENT[:cut])
        scan = read_journal(directory)
        assert [r.payload for r in scan.records] == PAYLOADS[:-1], cut
        if cut == last:
            assert scan.repair is None
        else:
            assert scan.repair is not None
            assert (scan.repair.path, scan.repair.offset) == (path, last)
            assert scan.repair.bytes_cut == cut - last
        assert path.read_bytes() == SEGMENT[:last]
        assert scan.next_seq == 2
        # Repaired: appending continues where the good records end.
        await append_and_sync(directory, b"new")
        assert payloads_of(directory) == [*PAYLOADS[:-1], b"new"]


async def test_torn_inside_the_segment_header(tmp_path: Path) -> None:
    for cut in range(len(HEADER)):
        directory = tmp_path / f"cut-{cut}"
        path = write_segment(directory, SEGMENT[:cut])
        scan = read_journal(directory)
        assert scan.records == []
        assert scan.repair == TailRepair(path, 0, cut, "incomplete segment header")
        assert path.read_bytes() == HEADER
        await append_and_sync(directory, b"new")
        assert payloads_of(directory) == [b"new"]


def test_a_torn_header_in_a_new_last_segment_keeps_the_earlier_ones(tmp_path: Path) -> None:
    write_segment(tmp_path, SEGMENT)
    write_segment(tmp_path, HEADER[:5], first_seq=3)
    scan = read_journal(tmp_path)
    assert [r.payload for r in scan.records] == PAYLOADS
    assert scan.repair is not None
    assert scan.repair.path.name == "journal-000000000003.log"
    assert scan.next_seq == 3


def flipped(data: bytes, position: int) -> bytes:
    damaged = bytearray(data)
    damaged[position] ^= 0x41
    return bytes(damaged)


def test_any_damaged_byte_of_a_middle_record_is_corruption_named_by_file_and_offset(
    tmp_path: Path,
) -> None:
    path = write_segment(tmp_path, SEGMENT)
    middle = STARTS[1]
    for position in range(middle, STARTS[2]):
        path.write_bytes(flipped(SEGMENT, position))
        with pytest.raises(JournalCorrupt) as caught:
            read_journal(tmp_path)
        assert caught.value.offset == middle
        assert f"{path}: at byte offset {middle}:" in str(caught.value)
        assert f"an intact record follows at byte offset {STARTS[2]}" in str(caught.value)
        assert path.read_bytes() == flipped(SEGMENT, position), "corruption is never cut"


def test_any_damaged_byte_of_the_last_record_is_a_repaired_tail(tmp_path: Path) -> None:
    path = write_segment(tmp_path, SEGMENT)
    for position in range(STARTS[2], len(SEGMENT)):
        path.write_bytes(flipped(SEGMENT, position))
        scan = read_journal(tmp_path)
        assert [r.payload for r in scan.records] == PAYLOADS[:2]
        assert scan.repair is not None
        assert scan.repair.offset == STARTS[2]
        assert path.read_bytes() == SEGMENT[: STARTS[2]]


def test_damage_in_a_segment_that_is_not_the_last_is_corruption(tmp_path: Path) -> None:
    first = write_segment(tmp_path, flipped(SEGMENT, len(SEGMENT) - 1))
    write_segment(tmp_path, HEADER + frame(b"later"), first_seq=3)
    with pytest.raises(JournalCorrupt, match=r"checksum mismatch.*not the last") as caught:
        read_journal(tmp_path)
    assert (caught.value.path, caught.value.offset) == (first, STARTS[2])


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (b"\x00" * 20, "empty record \\(length 0\\)"),
        (b"\x00\x00\x00", "incomplete frame header \\(3 of 8 bytes\\)"),
        ((MAX_PAYLOAD + 1).to_bytes(4, "big") + b"\x00" * 12, "exceeds the 16777216-byte limit"),
        ((100).to_bytes(4, "big") + b"\x00" * 12, "length 100 runs past the end"),
    ],
    ids=["zeros", "short-header", "over-limit", "past-end"],
)
def test_what_a_crash_leaves_at_the_end_is_cut_with_a_reason(
    tmp_path: Path, tail: bytes, reason: str
) -> None:
    path = write_segment(tmp_path, SEGMENT + tail)
    scan = read_journal(tmp_path)
    assert [r.payload for r in scan.records] == PAYLOADS
    assert scan.repair is not None
    assert (scan.repair.offset, scan.repair.bytes_cut) == (len(SEGMENT), len(tail))
    assert re.search(reason, scan.repair.reason)
    assert path.read_bytes() == SEGMENT


def test_a_newer_format_is_refused_not_misread(tmp_path: Path) -> None:
    path = write_segment(tmp_path, b"LHJ1\x00\x00\x00\x02" + SEGMENT[len(HEADER) :])
    with pytest.raises(JournalFormatError, match="newer on-disk format \\(journal format 2"):
        read_journal(tmp_path)
    with pytest.raises(JournalFormatError, match=str(path)):
        JournalWriter(tmp_path)
    assert path.read_bytes()[:8] == b"LHJ1\x00\x00\x00\x02", "nothing was cut or rewritten"


def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path) -> None:
    write_segment(tmp_path, b"PK\x03\x04" + SEGMENT[4:])
    with pytest.raises(JournalFormatError, match="not a Leasehold journal segment"):
        read_journal(tmp_path)


def test_a_missing_segment_is_corruption(tmp_path: Path) -> None:
    write_segment(tmp_path, SEGMENT)
    write_segment(tmp_path, HEADER + frame(b"x"), first_seq=5)
    with pytest.raises(
        JournalCorrupt, match="starts at record 5 but the one before it ends at record 3"
    ):
        read_journal(tmp_path)


def test_other_files_in_the_directory_are_ignored(tmp_path: Path) -> None:
    write_segment(tmp_path, SEGMENT)
    (tmp_path / "snapshot-000000000002.bin").write_bytes(b"whatever")
    (tmp_path / "journal-1.log").write_bytes(b"misnamed")
    assert payloads_of(tmp_path) == PAYLOADS


async def test_roll_continues_in_a_new_segment(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    assert await writer.roll() == tmp_path / segment_name(0), "nothing to roll yet"
    writer.append(b"a")
    writer.append(b"b")
    new = await writer.roll()
    assert new == tmp_path / segment_name(2)
    writer.append(b"c")
    await writer.flush(sync=True)
    writer.close()
    scan = read_journal(tmp_path)
    assert [(r.seq, r.payload, r.segment.name) for r in scan.records] == [
        (0, b"a", segment_name(0)),
        (1, b"b", segment_name(0)),
        (2, b"c", segment_name(2)),
    ]
    assert {r.segment for r in scan.records} == {tmp_path / segment_name(0), new}
    reopened = JournalWriter(tmp_path)
    assert (reopened.path, reopened.next_seq) == (new, 3)
    reopened.close()


async def test_flush_without_sync_writes_and_counts_what_is_unsynced(tmp_path: Path) -> None:
    synced: list[int] = []
    writer = JournalWriter(tmp_path, fsync=synced.append)
    writer.append(b"a")
    writer.append(b"b")
    assert writer.unsynced_records == 2
    await writer.flush(sync=False)
    assert (writer.records_written, writer.unsynced_records, writer.fsyncs) == (2, 2, 0)
    assert payloads_of(tmp_path) == [b"a", b"b"]
    await writer.flush(sync=True)  # nothing buffered, but written bytes still need their fsync
    assert (writer.unsynced_records, writer.fsyncs, len(synced)) == (0, 1, 1)
    await writer.flush(sync=True)
    assert writer.fsyncs == 1, "nothing left to sync"
    assert writer.bytes_written == len(frame(b"a")) * 2
    writer.close()


async def test_empty_or_oversized_records_are_refused(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    with pytest.raises(ValueError, match="1 to 16777216 bytes, not 0"):
        writer.append(b"")
    with pytest.raises(ValueError, match="not 16777217"):
        writer.append(b"x" * (MAX_PAYLOAD + 1))
    writer.close()


async def test_a_failed_fsync_breaks_the_writer(tmp_path: Path) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    writer = JournalWriter(tmp_path, fsync=failing_fsync)
    writer.append(b"a")
    with pytest.raises(OSError, match="I/O error"):
        await writer.flush(sync=True)
    with pytest.raises(RuntimeError, match="failed earlier"):
        writer.append(b"b")
    with pytest.raises(RuntimeError, match="failed earlier"):
        await writer.flush(sync=True)
    writer.close()


async def test_a_writer_resumes_where_a_scan_found_the_end_without_rescanning(
    tmp_path: Path,
) -> None:
    write_segment(tmp_path, SEGMENT + frame(PAYLOADS[0])[:-2])  # a torn tail
    scan = read_journal(tmp_path)  # cuts the tail
    assert scan.repair is not None
    writer = JournalWriter(tmp_path, resume=scan.end)
    assert writer.next_seq == len(PAYLOADS)
    assert writer.repair is None  # the scan repaired it, the writer did not look
    writer.append(PAYLOADS[1])
    await writer.flush(sync=True)
    writer.close()
    assert [r.payload for r in read_journal(tmp_path).records] == [*PAYLOADS, PAYLOADS[1]]


def test_a_writer_refuses_an_end_from_before_the_journal_changed(tmp_path: Path) -> None:
    write_segment(tmp_path, SEGMENT)
    stale = read_journal(tmp_path).end
    write_segment(tmp_path, HEADER, first_seq=len(PAYLOADS))
    with pytest.raises(ValueError, match="changed since it was read"):
        JournalWriter(tmp_path, resume=stale)
