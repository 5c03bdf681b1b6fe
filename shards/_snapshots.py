"""Snapshot files of a shard's state, and which journal segments they make redundant.

A snapshot taken at journal sequence S holds the state after every record with
seq < S. Its file `snapshot-{S:012d}.msgpack` is written to a temp file,
fsynced, renamed into place and the directory fsynced: a crash leaves either
the old set of files or the new one. Only then may the journal segments whose
records all precede S, and older snapshots, be removed.

    file     = header + snapshot
    header   = b"LHSN" + file format (4 bytes) + S (8 bytes) + snapshot length (8 bytes)
               + CRC-32 of the header's first 24 bytes and the snapshot (4 bytes), big-endian
    snapshot = [SNAPSHOT_VERSION, S, leases, [expired lease id...], bookings, tokens,
                [granted, expired, booked], inventory, slots]
    inventory = nil (the inventory the shard was built on) | [[SlotSpec, removed]...]
    leases, bookings, tokens, slots: columns, slots by number (shards._snapshot_tables)

The header makes damage visible: any single-bit flip, a cut, a file renamed to
another sequence number all fail the checks before anything is decoded. Files
written before the header (a bare snapshot document) are still read, unchecked.

A token's original response is written as its booking_id when it is the very
booking in the bookings list (not cancelled or moved since), else whole in the
journal codec's layout (shards._codec): version 2. Version 1 always wrote the
whole booking. Version 3 adds `inventory`, every slot account after live inventory
changes (spec section 8). Versions 1-3 wrote leases, bookings and tokens as rows:
[Lease...] and [Booking...] in the journal's layouts, [[merchant_id, service_id,
token, Booking | booking_id]...]; version 4 writes them as columns, each slot
once in the `slots` table. All four are read.
"""

from __future__ import annotations

import itertools
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import msgpack  # type: ignore[import-untyped]

from leasehold.core import Booking, SlotSpec, StateSnapshot
from leasehold.shards import _codec as c
from leasehold.shards import _snapshot_tables as tables
from leasehold.shards._datadir import fsync_dir
from leasehold.shards._journal import segment_files

SNAPSHOT_VERSION = 4
_READABLE_VERSIONS = (1, 2, 3, 4)
# The document's fields by version (any other version: read as 7, then refused).
_FIELDS = {3: 8, 4: 9}
FILE_MAGIC = b"LHSN"
FILE_FORMAT = 1
_HEADER = struct.Struct(">4sIQQ")  # magic, file format, seq, snapshot length; then the CRC
_CRC = struct.Struct(">I")
HEADER_BYTES = _HEADER.size + _CRC.size
_PREFIX = "snapshot-"
_SUFFIX = ".msgpack"


class SnapshotCorrupt(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


@dataclass(frozen=True, slots=True)
class LoadedSnapshot:
    seq: int
    state: StateSnapshot
    path: Path


def snapshot_name(seq: int) -> str:
    return f"{_PREFIX}{seq:012d}{_SUFFIX}"


def encode_snapshot(seq: int, snapshot: StateSnapshot) -> bytes:
    """The snapshot file's bytes: the checked header, then the snapshot document."""
    body = _encode_document(seq, snapshot)
    header = _HEADER.pack(FILE_MAGIC, FILE_FORMAT, seq, len(body))
    return header + _CRC.pack(zlib.crc32(body, zlib.crc32(header))) + body


def _encode_document(seq: int, snapshot: StateSnapshot) -> bytes:
    slots = tables.SlotTable()
    document = (
        SNAPSHOT_VERSION,
        seq,
        tables.encode_leases(snapshot.leases, slots),
        list(snapshot.expired_order),
        tables.encode_bookings(snapshot.bookings, slots),
        tables.encode_tokens(snapshot),
        list(snapshot.totals),
        _encode_inventory(snapshot),
        slots.encoded(),
    )
    return cast(bytes, msgpack.packb(document))


def _encode_inventory(snapshot: StateSnapshot) -> list[tuple[object, bool]] | None:
    if snapshot.inventory is None:
        return None
    return [(c.slot_spec(spec), removed) for spec, removed in snapshot.inventory]


def _decode_inventory(value: object) -> tuple[tuple[SlotSpec, bool], ...] | None:
    if value is None:
        return None
    decoded = []
    for item in _tuple(value):
        spec, removed = c._array(item, 2, "inventory slot")
        if type(removed) is not bool:
            raise c.CorruptRecord("inventory slot: removed is not a boolean")
        decoded.append((c.decode_slot_spec(spec), removed))
    return tuple(decoded)


def decode_snapshot(data: bytes, path: Path, refs: c.SlotRefs | None = None) -> LoadedSnapshot:
    """Check and decode a snapshot file; `refs` (see shards._codec.SlotRefs) shares slot refs."""
    if not data:
        raise SnapshotCorrupt(path, "empty (0 bytes)")
    if data.startswith(FILE_MAGIC):
        seq, data = _checked_body(data, path)
        loaded = _decode_document(data, path, refs)
        if loaded.seq != seq:
            raise SnapshotCorrupt(path, f"its header says seq {seq}, its snapshot {loaded.seq}")
        return loaded
    return _decode_document(data, path, refs)  # written before snapshots had a header


def _checked_body(data: bytes, path: Path) -> tuple[int, bytes]:
    """The header's seq and the snapshot document, once the header and checksum agree."""
    size = HEADER_BYTES
    if len(data) < size:
        raise SnapshotCorrupt(path, f"incomplete header ({len(data)} of {size} bytes)")
    _, file_format, seq, length = _HEADER.unpack_from(data)
    if file_format != FILE_FORMAT:
        raise SnapshotCorrupt(
            path, f"snapshot file format {file_format}; this version reads {FILE_FORMAT}"
        )
    if len(data) != size + length:
        raise SnapshotCorrupt(path, f"{len(data)} bytes, its header says {size + length}")
    (stored,) = _CRC.unpack_from(data, _HEADER.size)
    computed = zlib.crc32(memoryview(data)[size:], zlib.crc32(memoryview(data)[: _HEADER.size]))
    if stored != computed:
        raise SnapshotCorrupt(
            path, f"checksum mismatch (stored {stored:08x}, computed {computed:08x})"
        )
    return seq, data[size:]


def _decode_document(data: bytes, path: Path, refs: c.SlotRefs | None) -> LoadedSnapshot:
    refs = refs or c.SlotRefs()
    try:
        document = msgpack.unpackb(data, raw=False, use_list=False)
        version = document[0] if type(document) is tuple and document else None
        length = _FIELDS.get(version, 7) if type(version) is int else 7
        fields = c._array(document, length, "snapshot")
        version, seq, leases, expired, bookings, tokens, totals = fields[:7]
        inventory = fields[7] if length >= 8 else None
        if version not in _READABLE_VERSIONS:
            raise SnapshotCorrupt(
                path, f"snapshot format {version}; this version reads {_READABLE_VERSIONS}"
            )
        granted, expired_total, booked = c._array(totals, 3, "totals")
        if length == 9:
            slots = tables.decode_slot_table(fields[8], refs)
            decoded_leases = tables.decode_leases(leases, slots)
            decoded_bookings = tables.decode_bookings(bookings, slots)
        else:
            decoded_leases = tuple(c._decode_lease(v, refs) for v in _tuple(leases))
            decoded_bookings = tuple(c._decode_booking(v, refs) for v in _tuple(bookings))
        by_id = {booking.booking_id: booking for booking in decoded_bookings}
        if length == 9:
            decoded_tokens = tables.decode_tokens(tokens, by_id, refs)
        else:
            decoded_tokens = tuple(_token(v, refs, by_id) for v in _tuple(tokens))
        state = StateSnapshot(
            leases=decoded_leases,
            expired_order=tables.strings(expired, "expired lease id"),
            bookings=decoded_bookings,
            tokens=decoded_tokens,
            totals=(
                c._int(granted, "totals.granted"),
                c._int(expired_total, "totals.expired"),
                c._int(booked, "totals.booked"),
            ),
            inventory=_decode_inventory(inventory),
        )
        return LoadedSnapshot(c._int(seq, "seq"), state, path)
    except c.CorruptRecord as problem:
        raise SnapshotCorrupt(path, str(problem)) from None
    except (ValueError, TypeError, msgpack.UnpackException) as problem:
        raise SnapshotCorrupt(path, f"not a msgpack snapshot: {problem}") from None


def _tuple(value: object) -> tuple[object, ...]:
    if type(value) is not tuple:
        raise c.CorruptRecord(f"expected an array, found {type(value).__name__}")
    return cast(tuple[object, ...], value)


# A token whose response is the booking of this id in the snapshot (formats 2 and 3).
_TOKEN_BY_ID_TYPES = (str, str, str, str)


def _token(
    value: object, refs: c.SlotRefs, by_id: dict[str, Booking]
) -> tuple[str, str, str, Booking]:
    if type(value) is tuple and tuple(map(type, value)) == _TOKEN_BY_ID_TYPES:
        original = by_id.get(value[3])  # (the common case, checked in one comparison)
        if original is not None:
            return value[0], value[1], value[2], original
    merchant, service, token, booking = c._array(value, 4, "token")
    if type(booking) is str:
        original = by_id.get(booking)
        if original is None:
            raise c.CorruptRecord(f"token names booking {booking!r}, not in the snapshot")
    else:
        original = c._decode_booking(booking, refs)
    return (
        c._str(merchant, "token.merchant_id"),
        c._str(service, "token.service_id"),
        c._str(token, "token.token"),
        original,
    )


def write_snapshot(directory: Path, seq: int, data: bytes) -> Path:
    """Durably write encoded snapshot bytes (blocking: run it in a worker thread)."""
    path = directory / snapshot_name(seq)
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    fsync_dir(directory)
    return path


def snapshot_files(directory: Path) -> list[tuple[int, Path]]:
    """(seq, path) of every complete snapshot file, oldest first."""
    found = []
    for path in directory.glob(f"{_PREFIX}*{_SUFFIX}"):
        digits = path.name[len(_PREFIX) : -len(_SUFFIX)]
        if digits.isdigit():
            found.append((int(digits), path))
    return sorted(found)


def load_latest(directory: Path, refs: c.SlotRefs | None = None) -> LoadedSnapshot | None:
    """The newest snapshot, or None. A damaged newest snapshot stops the start (raises)."""
    files = snapshot_files(directory)
    if not files:
        return None
    seq, path = files[-1]
    loaded = decode_snapshot(path.read_bytes(), path, refs)
    if loaded.seq != seq:
        raise SnapshotCorrupt(path, f"holds seq {loaded.seq}, its name says {seq}")
    return loaded


def remove_covered(directory: Path, seq: int) -> list[Path]:
    """Remove what the durable snapshot at `seq` makes redundant; return the removed files.

    Older snapshots go, and every journal segment whose records all precede `seq`
    (the segment after it starts at or before `seq`). Call only after the snapshot
    at `seq` is durable.
    """
    removed = [path for s, path in snapshot_files(directory) if s < seq]
    segments = segment_files(directory)
    for (_, path), (next_first, _) in itertools.pairwise(segments):
        if next_first <= seq:
            removed.append(path)
    for path in removed:
        path.unlink()
    if removed:
        fsync_dir(directory)
    return removed
