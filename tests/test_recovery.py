"""Snapshots and recovery: snapshot + journal tail rebuild the state; damage stops the start."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from pathlib import Path

import msgpack  # type: ignore[import-untyped]  # no stubs; builds snapshot documents
import pytest
import trio

from leasehold import core
from leasehold.core import (
    ApiVersion,
    CancelBooking,
    CreateBooking,
    CreateLease,
    Person,
    ShardState,
    SlotKey,
    SlotRef,
    SlotSpec,
)
from leasehold.shards import _codec, _snapshots
from leasehold.shards._codec import encode_events
from leasehold.shards._journal import JournalWriter, segment_name
from leasehold.shards._persistence import RecoveryError, recover
from leasehold.shards._snapshots import (
    HEADER_BYTES,
    SnapshotCorrupt,
    decode_snapshot,
    encode_snapshot,
    load_latest,
    remove_covered,
    snapshot_files,
    write_snapshot,
)

S = core.NANOS_PER_SECOND
KEYS = [SlotKey("m1", "cut", 10_000 + 600 * i, 600) for i in range(4)]
SPECS = [SlotSpec(k, spots=3, spots_total=3) for k in KEYS]


def entropy() -> Callable[[], bytes]:
    counter = itertools.count()
    return lambda: next(counter).to_bytes(15, "big")


class Recorder:
    """A ShardState whose events are journaled like the shard's sink does (one record each)."""

    def __init__(self, directory: Path) -> None:
        self.state = ShardState(SPECS, entropy=entropy())
        self.writer = JournalWriter(directory)

    def record(self, events: tuple[core.Event, ...]) -> None:
        if events:
            self.writer.append(encode_events(events))

    def lease(self, i: int, ref: str, now_ns: int) -> core.Lease:
        outcome = self.state.create_lease(
            CreateLease(ApiVersion.V2, SlotRef(KEYS[i]), ref, None), now_ns
        )
        self.record(outcome.events)
        assert isinstance(outcome.result, core.Lease)
        return outcome.result

    def book(self, lease: core.Lease, token: str, now_ns: int) -> core.Booking:
        outcome = self.state.create_booking(
            CreateBooking(ApiVersion.V2, lease.slot, lease.lease_id, Person(user_id=token), token),
            now_ns,
        )
        self.record(outcome.events)
        assert isinstance(outcome.result, core.Booking)
        return outcome.result

    async def flush(self) -> None:
        await self.writer.flush(sync=True)


def fresh() -> ShardState:
    return ShardState(SPECS, entropy=entropy())


async def busy_history(directory: Path) -> Recorder:
    rec = Recorder(directory)
    leases = [rec.lease(i % 4, f"r{i}", i * S) for i in range(8)]
    booking = rec.book(leases[0], "t0", 10 * S)
    rec.book(leases[1], "t1", 11 * S)
    rec.record(rec.state.cancel_booking(CancelBooking(booking.booking_id), 12 * S).events)
    rec.record(rec.state.expire_due(400 * S))  # default TTL 300 s: the unbooked leases lapse
    rec.lease(2, "late", 401 * S)
    await rec.flush()
    return rec


async def test_journal_replay_rebuilds_the_state(tmp_path: Path) -> None:
    rec = await busy_history(tmp_path)
    restored = fresh()
    report = recover(restored, tmp_path)
    assert report.snapshot_seq is None
    assert report.records_replayed == rec.writer.next_seq
    assert restored.snapshot() == rec.state.snapshot()


async def test_snapshot_then_journal_tail(tmp_path: Path) -> None:
    rec = await busy_history(tmp_path)
    seq = rec.writer.next_seq
    await rec.writer.roll()
    write_snapshot(tmp_path, seq, encode_snapshot(seq, rec.state.snapshot()))
    removed = remove_covered(tmp_path, seq)
    assert [p.name for p in removed] == [segment_name(0)]
    rec.lease(3, "after-snapshot", 402 * S)  # lands in the journal after the snapshot
    await rec.flush()
    restored = fresh()
    report = recover(restored, tmp_path)
    assert report.snapshot_seq == seq
    assert report.records_replayed == 1
    assert restored.snapshot() == rec.state.snapshot()
    replay = CreateLease(ApiVersion.V2, SlotRef(KEYS[3]), "after-snapshot", None)
    assert (
        restored.create_lease(replay, 403 * S).result
        == rec.state.create_lease(replay, 403 * S).result
    )  # idempotency memory survives


async def test_a_newer_snapshot_replaces_older_ones(tmp_path: Path) -> None:
    rec = await busy_history(tmp_path)
    for _ in range(2):
        seq = rec.writer.next_seq
        await rec.writer.roll()
        write_snapshot(tmp_path, seq, encode_snapshot(seq, rec.state.snapshot()))
        remove_covered(tmp_path, seq)
        rec.lease(3, f"x{seq}", 500 * S)
        await rec.flush()
    assert len(snapshot_files(tmp_path)) == 1
    loaded = load_latest(tmp_path)
    assert loaded is not None
    assert loaded.seq == rec.writer.next_seq - 1


async def test_missing_records_between_snapshot_and_journal_stop_the_start(
    tmp_path: Path,
) -> None:
    rec = await busy_history(tmp_path)
    await rec.writer.roll()
    rec.lease(3, "more", 402 * S)
    await rec.flush()
    (tmp_path / segment_name(0)).unlink()  # the journal now starts after a gap, no snapshot
    with pytest.raises(RecoveryError, match="missing"):
        recover(fresh(), tmp_path)


async def test_state_that_the_feed_no_longer_fits_stops_the_start(tmp_path: Path) -> None:
    await busy_history(tmp_path)
    smaller = ShardState(SPECS[:1], entropy=entropy())
    with pytest.raises(RecoveryError, match="feed the data dir was built from"):
        recover(smaller, tmp_path)


async def test_a_damaged_snapshot_gives_way_to_the_whole_journal_and_says_so(
    tmp_path: Path,
) -> None:
    rec = await busy_history(tmp_path)
    seq = rec.writer.next_seq
    path = write_snapshot(tmp_path, seq, encode_snapshot(seq, rec.state.snapshot()))
    path.write_bytes(path.read_bytes()[:-5])
    restored = fresh()
    report = recover(restored, tmp_path)
    assert restored.snapshot() == rec.state.snapshot()
    assert report.snapshot_seq is None
    assert len(report.notes) == 1
    assert path.name in report.notes[0]
    assert "recovered from the whole journal instead" in report.notes[0]


async def test_a_damaged_snapshot_without_the_journal_before_it_stops_the_start(
    tmp_path: Path,
) -> None:
    rec = await busy_history(tmp_path)
    await rec.writer.roll()
    seq = rec.writer.next_seq
    path = write_snapshot(tmp_path, seq, encode_snapshot(seq, rec.state.snapshot()))
    remove_covered(tmp_path, seq)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(RecoveryError, match=rf"{path.name}.*records 0 to {seq - 1} are lost"):
        recover(fresh(), tmp_path)


async def test_leases_that_lapsed_while_down_expire_on_the_first_command(
    tmp_path: Path,
) -> None:
    rec = Recorder(tmp_path)
    granted = rec.lease(0, "r", 0)
    await rec.flush()
    restored = fresh()
    recover(restored, tmp_path)
    assert restored.open_spots(KEYS[0]) == 2
    outcome = restored.check_availability(core.CheckAvailability(KEYS[0]), 301 * S)
    assert outcome.result == 3
    assert outcome.events == (core.LeaseExpiredEvent(granted.lease_id),)


async def test_empty_directory_recovers_nothing(tmp_path: Path) -> None:
    report = await trio.to_thread.run_sync(recover, fresh(), tmp_path)
    assert report.records_replayed == 0
    assert report.snapshot_seq is None


async def test_a_record_that_does_not_decode_stops_the_start_naming_file_and_offset(
    tmp_path: Path,
) -> None:
    rec = await busy_history(tmp_path)
    rec.writer.append(b"\x93\x01\x02\x03")  # a valid frame (good CRC), not a valid record
    rec.lease(3, "after", 402 * S)
    await rec.flush()
    with pytest.raises(RecoveryError, match=rf"{segment_name(0)}: at byte offset \d+: record"):
        recover(fresh(), tmp_path)


async def test_snapshot_tokens_name_unchanged_bookings_by_id_and_keep_changed_ones_whole(
    tmp_path: Path,
) -> None:
    rec = await busy_history(tmp_path)  # t0's booking was cancelled since; t1's was not
    snapshot = rec.state.snapshot()
    document = msgpack.unpackb(encode_snapshot(7, snapshot)[HEADER_BYTES:], use_list=False)
    _, _, tokens, originals_column = document[5]  # (format 4: one column per field)
    originals = dict(zip(tokens, originals_column, strict=True))
    t1_booking = next(b for _, _, t, b in snapshot.tokens if t == "t1")
    assert originals["t1"] == t1_booking.booking_id
    assert isinstance(originals["t0"], tuple)  # the original CONFIRMED answer, in full
    assert decode_snapshot(encode_snapshot(7, snapshot), tmp_path).state == snapshot


def version_3_document(seq: int, snapshot: core.StateSnapshot) -> list[object]:
    """`snapshot` as format 3 wrote it: leases and bookings as rows of the journal's layouts.
    (Format 4 writes them as columns, so older documents are built here, field by field,
    where these tests once cut them from the current one.)"""
    current = {booking.booking_id: booking for booking in snapshot.bookings}
    return [
        3,
        seq,
        [_codec._lease(lease) for lease in snapshot.leases],
        list(snapshot.expired_order),
        [_codec._booking(booking) for booking in snapshot.bookings],
        [
            (m, sv, t, b.booking_id if current.get(b.booking_id) is b else _codec._booking(b))
            for m, sv, t, b in snapshot.tokens
        ],
        list(snapshot.totals),
        _snapshots._encode_inventory(snapshot),
    ]


async def test_a_version_3_snapshot_with_an_inventory_is_still_read(tmp_path: Path) -> None:
    rec = await busy_history(tmp_path)
    changed = dataclasses.replace(
        rec.state.snapshot(), inventory=tuple((spec, i == 3) for i, spec in enumerate(SPECS))
    )
    document = version_3_document(7, changed)
    assert decode_snapshot(msgpack.packb(document), tmp_path).state == changed


async def test_a_version_2_snapshot_without_an_inventory_is_still_read(tmp_path: Path) -> None:
    rec = await busy_history(tmp_path)
    snapshot = rec.state.snapshot()
    assert snapshot.inventory is None  # (no inventory change: the inventory as built)
    document = version_3_document(7, snapshot)
    document = [2, *document[1:7]]  # version 2: no inventory field
    assert decode_snapshot(msgpack.packb(document), tmp_path).state == snapshot


async def test_a_version_1_snapshot_with_whole_token_bookings_is_still_read(
    tmp_path: Path,
) -> None:
    rec = await busy_history(tmp_path)
    snapshot = rec.state.snapshot()
    tokens = [(m, sv, t, _codec._booking(b)) for m, sv, t, b in snapshot.tokens]
    document = version_3_document(7, snapshot)
    document[0], document[5] = 1, tokens
    document = document[:7]  # (version 3 added the inventory)
    assert decode_snapshot(msgpack.packb(document), tmp_path).state == snapshot


def current_document(seq: int, snapshot: core.StateSnapshot) -> list[object]:
    return list(msgpack.unpackb(encode_snapshot(seq, snapshot)[HEADER_BYTES:], use_list=False))


def with_tokens(document: list[object], tokens: list[tuple[object, ...]]) -> list[object]:
    """`document` holding these token rows, as its format writes tokens (3: rows, 4: columns)."""
    changed = list(document)
    changed[5] = (
        tokens if document[0] == 3 else [list(column) for column in zip(*tokens, strict=True)]
    )
    return changed


@pytest.mark.parametrize("layout", [current_document, version_3_document])
async def test_a_token_naming_a_booking_not_in_the_snapshot_is_corrupt(
    tmp_path: Path, layout: Callable[[int, core.StateSnapshot], list[object]]
) -> None:
    rec = await busy_history(tmp_path)
    document = with_tokens(layout(7, rec.state.snapshot()), [("m1", "cut", "t9", "B-nowhere")])
    with pytest.raises(SnapshotCorrupt, match="token names booking 'B-nowhere'"):
        decode_snapshot(msgpack.packb(document), tmp_path)


async def test_recovered_leases_and_bookings_share_the_inventorys_slot_refs(
    tmp_path: Path,
) -> None:
    rec = await busy_history(tmp_path)
    seq = rec.writer.next_seq
    write_snapshot(tmp_path, seq, encode_snapshot(seq, rec.state.snapshot()))
    rec.lease(3, "after-snapshot", 402 * S)
    await rec.flush()
    restored = fresh()
    recover(restored, tmp_path)
    restored_snapshot = restored.snapshot()
    refs = {id(lease.slot) for lease in restored_snapshot.leases}
    refs |= {id(booking.slot) for booking in restored_snapshot.bookings}
    assert refs <= {id(restored.canonical_ref(SlotRef(key))) for key in KEYS}


async def test_every_single_bit_flip_in_a_snapshot_file_is_refused(tmp_path: Path) -> None:
    rec = await busy_history(tmp_path)
    data = encode_snapshot(9, rec.state.snapshot())
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SnapshotCorrupt):
            decode_snapshot(bytes(flipped), tmp_path)


async def test_a_snapshot_renamed_to_another_seq_is_refused(tmp_path: Path) -> None:
    rec = await busy_history(tmp_path)
    path = write_snapshot(tmp_path, 9, encode_snapshot(9, rec.state.snapshot()))
    path.rename(tmp_path / "snapshot-000000000008.msgpack")
    with pytest.raises(SnapshotCorrupt, match="name says 8"):
        load_latest(tmp_path)


@pytest.mark.parametrize("layout", [current_document, version_3_document])
@pytest.mark.parametrize(("index", "field"), [(0, "merchant_id"), (1, "service_id"), (2, "token")])
async def test_a_token_with_a_field_of_the_wrong_type_is_corrupt(
    tmp_path: Path,
    index: int,
    field: str,
    layout: Callable[[int, core.StateSnapshot], list[object]],
) -> None:
    """Also where its response names a booking of the snapshot by id (the common case)."""
    rec = await busy_history(tmp_path)
    snapshot = rec.state.snapshot()
    current = {booking.booking_id: booking for booking in snapshot.bookings}
    token: list[object] = next(
        [m, sv, t, b.booking_id]
        for m, sv, t, b in snapshot.tokens
        if current.get(b.booking_id) is b
    )
    token[index] = 7
    document = with_tokens(layout(7, snapshot), [tuple(token)])
    with pytest.raises(SnapshotCorrupt, match=rf"token\.{field} is int 7, not a string"):
        decode_snapshot(msgpack.packb(document), tmp_path)
