"""Recovery reads each record's payload straight from its segment's bytes: records before
the snapshot are skipped wherever they lie (a whole leftover segment, or the start of one),
and what is replayed is exactly the records from the snapshot on."""

from __future__ import annotations

import itertools
from pathlib import Path

from leasehold import core
from leasehold.core import ApiVersion, CreateLease, ShardState, SlotKey, SlotRef, SlotSpec
from leasehold.shards._codec import encode_events
from leasehold.shards._journal import JournalWriter, read_journal, segment_name
from leasehold.shards._persistence import recover
from leasehold.shards._snapshots import encode_snapshot, write_snapshot

S = core.NANOS_PER_SECOND
KEYS = [SlotKey("m1", "cut", 10_000 + 600 * i, 600) for i in range(3)]
SPECS = [SlotSpec(k, spots=50, spots_total=50) for k in KEYS]


def fresh() -> ShardState:
    counter = itertools.count()
    return ShardState(SPECS, entropy=lambda: next(counter).to_bytes(15, "big"))


def segment_names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("journal-*"))


def grant(state: ShardState, writer: JournalWriter, n: int) -> None:
    command = CreateLease(ApiVersion.V2, SlotRef(KEYS[n % 3]), f"r{n}", None)
    outcome = state.create_lease(command, n * S)
    writer.append(encode_events(outcome.events))


async def test_a_snapshot_inside_a_segment_replays_only_the_records_after_it(
    tmp_path: Path,
) -> None:
    state, writer = fresh(), JournalWriter(tmp_path)
    for n in range(5):
        grant(state, writer, n)
    # A snapshot at 5 while the segment goes on; a crash before the roll and the removal
    # leaves both segments (records 0-6 and 7-9) beside it.
    write_snapshot(tmp_path, 5, encode_snapshot(5, state.snapshot()))
    for n in range(5, 7):
        grant(state, writer, n)
    await writer.roll()
    for n in range(7, 10):
        grant(state, writer, n)
    await writer.flush(sync=True)
    writer.close()
    assert segment_names(tmp_path) == [segment_name(0), segment_name(7)]
    restored = fresh()
    report = recover(restored, tmp_path)
    assert (report.snapshot_seq, report.records_replayed, report.next_seq) == (5, 5, 10)
    assert restored.snapshot() == state.snapshot()


async def test_segments_expose_each_payload_with_its_seq_and_offset(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    for payload in (b"a", b"bb", b"ccc"):
        writer.append(payload)
    await writer.roll()
    writer.append(b"dddd")
    await writer.flush(sync=True)
    writer.close()
    scan = read_journal(tmp_path)
    assert [len(segment) for segment in scan.segments] == [3, 1]
    first, second = scan.segments
    assert list(first.payloads()) == [(0, 8, b"a"), (1, 17, b"bb"), (2, 27, b"ccc")]
    assert list(first.payloads(2)) == [(2, 27, b"ccc")]
    assert list(first.payloads(3)) == []
    assert list(second.payloads(1)) == [(3, 8, b"dddd")]
    assert [(r.seq, r.payload) for r in scan.records] == [
        (0, b"a"),
        (1, b"bb"),
        (2, b"ccc"),
        (3, b"dddd"),
    ]
