"""Recovering a shard from its directory: the newest snapshot, then the journal after it.

Recovery is all or nothing: any damage other than a torn journal tail (which
read_journal reports and cuts), a gap between the snapshot and the journal, or
stored state that the feed no longer fits stops the start with a
RecoveryError that names the file and what to do. Nothing half-loaded is served.
Leases get their timers back from their wall-clock expiry: the state's deadline
heap is rebuilt by restore/apply, and the first command or timer expires every
lease that lapsed while the server was down.

How long a restart takes: `leasehold bench restart` (README, Benchmarks).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from leasehold.core import ShardState, StateSnapshot
from leasehold.shards._codec import CorruptRecord, SlotRefs, decode_events
from leasehold.shards._journal import JournalEnd, JournalError, TailRepair, read_journal
from leasehold.shards._snapshots import SnapshotCorrupt, load_latest


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


def recover(state: ShardState, directory: Path) -> RecoveryReport:
    """Load `directory`'s snapshot and journal into the fresh `state` (blocking I/O)."""
    started = time.perf_counter()
    refs = SlotRefs(state.canonical_ref)
    try:
        loaded = load_latest(directory, refs)
        scan = read_journal(directory)
    except (SnapshotCorrupt, JournalError) as problem:
        raise RecoveryError(str(problem)) from problem
    start = 0
    if loaded is not None:
        _restore(state, loaded.state, loaded.path)
        start = loaded.seq
    # The segments join up, so the records from `start` on run from here to next_seq.
    first = next(
        (max(start, s.first_seq) for s in scan.segments if s.first_seq + len(s) > start),
        scan.next_seq,
    )
    if first > start:
        raise RecoveryError(
            f"{directory}: the journal resumes at record {first} but the stored state ends at "
            f"record {start}: records are missing"
        )
    records = events = 0
    for segment in scan.segments:
        for seq, offset, payload in segment.payloads(start):
            try:
                decoded = decode_events(payload, refs)
                for event in decoded:
                    state.apply(event)
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
            events += len(decoded)
    return RecoveryReport(
        directory=directory,
        snapshot_seq=None if loaded is None else loaded.seq,
        records_replayed=records,
        events_replayed=events,
        next_seq=scan.next_seq,
        tail_repair=scan.repair,
        journal_end=scan.end,
        seconds=time.perf_counter() - started,
    )


def _restore(state: ShardState, snapshot: StateSnapshot, path: Path) -> None:
    try:
        state.restore(snapshot)
    except ValueError as problem:
        raise RecoveryError(
            f"{path}: the snapshot does not fit this inventory ({problem}); start with the "
            "feed the data dir was built from"
        ) from problem
