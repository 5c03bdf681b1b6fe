"""Recovering a shard from its directory: the newest snapshot, then the journal after it.

Recovery is all or nothing: any damage other than a torn journal tail (which
read_journal reports and cuts), a gap between the snapshot and the journal, or
stored state that the feed no longer fits stops the start with a
RecoveryError that names the file and what to do. Nothing half-loaded is served.
Given the shard's manifest (shards._datadir.ShardManifest), what it lists must be
there: its journal segment with a durable header, its records below `durable_seq`
(a bad frame among them is damage, not a torn tail), its snapshot. A damaged or
missing snapshot may be replaced by an older intact one (or none) when the journal
reaches back to it; the report's `notes` say so.
Leases get their timers back from their wall-clock expiry: the state's deadline
heap is rebuilt by restore/apply (a replayed grant's entry once the state next reads
the heap, so only if still live then), and the first command or timer expires every
lease that lapsed while the server was down.

How long a restart takes: `leasehold bench restart` (README, Benchmarks).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from leasehold.core import ShardState, StateSnapshot
from leasehold.shards._codec import CorruptRecord, SlotRefs
from leasehold.shards._datadir import EMPTY_MANIFEST, ShardManifest
from leasehold.shards._journal import (
    HEADER,
    JournalEnd,
    JournalError,
    JournalScan,
    TailRepair,
    read_journal,
    segment_name,
)
from leasehold.shards._replay import apply_record
from leasehold.shards._snapshots import (
    LoadedSnapshot,
    SnapshotCorrupt,
    decode_snapshot,
    snapshot_files,
    snapshot_name,
)


class RecoveryError(Exception):
    """The shard's stored state cannot be loaded; the server must not start."""


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    directory: Path
    snapshot_seq: int | None
    records_replayed: int
    events_replayed: int
    next_seq: int
    tail_repair: TailRepair | None
    seconds: float
    # Where the journal ends, for the shard's JournalWriter (no second scan).
    journal_end: JournalEnd | None = None
    # What the start had to work around (a damaged snapshot replaced by an older one).
    notes: tuple[str, ...] = ()


def recover(
    state: ShardState, directory: Path, expected: ShardManifest = EMPTY_MANIFEST
) -> RecoveryReport:
    """Load `directory`'s snapshot and journal into the fresh `state` (blocking I/O).

    `expected`: the shard's manifest; the default expects nothing (a new shard).
    """
    started = time.perf_counter()
    refs = SlotRefs(state.canonical_ref)
    _check_last_segment(directory, expected)
    try:
        scan = read_journal(directory, durable_before=expected.durable_seq)
    except JournalError as problem:
        raise RecoveryError(str(problem)) from problem
    journal_first = scan.segments[0].first_seq if scan.segments else None
    loaded, notes = _choose_snapshot(directory, refs, journal_first, expected)
    start = 0
    if loaded is not None:
        _restore(state, loaded.state, loaded.path)
        start = loaded.seq
    _check_joins(directory, scan, start, expected)
    records, events = _replay(state, scan, start, refs)
    return RecoveryReport(
        directory=directory,
        snapshot_seq=None if loaded is None else loaded.seq,
        records_replayed=records,
        events_replayed=events,
        next_seq=scan.next_seq,
        tail_repair=scan.repair,
        journal_end=scan.end,
        seconds=time.perf_counter() - started,
        notes=notes,
    )


def _check_last_segment(directory: Path, expected: ShardManifest) -> None:
    """The segment the manifest names was created with a durable header: it must be whole."""
    if expected.last_segment is None:
        return
    path = directory / segment_name(expected.last_segment)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise RecoveryError(
            f"{path}: missing (the shard's manifest lists it): records from "
            f"{expected.last_segment} on are lost; restore it from a copy"
        ) from None
    if size < len(HEADER):
        raise RecoveryError(
            f"{path}: {size} bytes, but it was created whole (the shard's manifest lists it): "
            f"records from {expected.last_segment} on are lost; restore it from a copy"
        )


def _choose_snapshot(
    directory: Path, refs: SlotRefs, journal_first: int | None, expected: ShardManifest
) -> tuple[LoadedSnapshot | None, tuple[str, ...]]:
    """The newest intact snapshot the journal reaches back to; notes on any passed over."""
    problems: list[str] = []
    wanted = expected.snapshot_seq
    files = snapshot_files(directory)
    if wanted is not None and wanted not in {seq for seq, _ in files}:
        problems.append(f"{directory / snapshot_name(wanted)}: missing")
    for seq, path in reversed(files):
        try:
            loaded = decode_snapshot(path.read_bytes(), path, refs)
            if loaded.seq != seq:
                raise SnapshotCorrupt(path, f"holds seq {loaded.seq}, its name says {seq}")
        except SnapshotCorrupt as problem:
            problems.append(str(problem))
            continue
        if problems and (journal_first is None or journal_first > seq):
            break  # an older snapshot is of use only with the journal after it
        return loaded, _fallback_notes(problems, str(path))
    if not problems:
        return None, ()
    if journal_first == 0:
        return None, _fallback_notes(problems, "the whole journal")
    reach = "no journal" if journal_first is None else f"the journal starts at {journal_first}"
    raise RecoveryError(
        f"{problems[0]}; no intact older snapshot that the journal reaches ({reach}): "
        f"records 0 to {(wanted or files[-1][0]) - 1} are lost; restore the file from a copy"
    )


def _fallback_notes(problems: list[str], used: str) -> tuple[str, ...]:
    return tuple(f"{problem}; recovered from {used} instead" for problem in problems)


def _check_joins(directory: Path, scan: JournalScan, start: int, expected: ShardManifest) -> None:
    """The journal runs on from the snapshot, and as far as the manifest says it must."""
    # The segments join up, so the records from `start` on run from here to next_seq.
    first = next(
        (max(start, s.first_seq) for s in scan.segments if s.first_seq + len(s) > start),
        scan.next_seq,
    )
    if first > start or (start > 0 and not scan.segments):
        raise RecoveryError(
            f"{directory}: the journal resumes at record {first} but the stored state ends at "
            f"record {start}: records {start} to {first - 1} are missing"
            if first > start
            else f"{directory}: snapshot {start} has no journal after it: "
            f"{directory / segment_name(start)} is missing"
        )
    # Also without a manifest: the journal must reach the snapshot's end, or new records
    # would be numbered inside what the snapshot counts and skipped by the next recovery.
    must_reach = max(expected.durable_seq, expected.snapshot_seq or 0, start)
    if scan.next_seq < must_reach:
        last = scan.segments[-1].path if scan.segments else directory
        raise RecoveryError(
            f"{last}: the journal ends at record {scan.next_seq}, but records up to "
            f"{must_reach - 1} were durable: records {scan.next_seq} to {must_reach - 1} "
            "are missing"
        )


def _replay(state: ShardState, scan: JournalScan, start: int, refs: SlotRefs) -> tuple[int, int]:
    records = events = 0
    for segment in scan.segments:
        for seq, offset, payload in segment.payloads(start):
            try:
                applied = apply_record(state, payload, refs, list_later=True)
            except CorruptRecord as problem:
                raise RecoveryError(
                    f"{segment.path}: at byte offset {offset}: record {seq}: {problem}"
                ) from problem
            except (ValueError, KeyError) as problem:
                raise RecoveryError(
                    f"{segment.path}: at byte offset {offset}: record {seq} does not apply to "
                    f"this inventory ({problem}); start with the feed the data dir was built from"
                ) from problem
            records += 1
            events += applied
    return records, events


def _restore(state: ShardState, snapshot: StateSnapshot, path: Path) -> None:
    try:
        state.restore(snapshot)
    except ValueError as problem:
        raise RecoveryError(
            f"{path}: the snapshot does not fit this inventory ({problem}); start with the "
            "feed the data dir was built from"
        ) from problem
