"""The availability feed: the Actions Center JSON that becomes the inventory (spec section 4).

`parse_feed` takes a document already decoded from JSON; `parse_feed_json`
takes the text. Both are all or nothing: every entry is checked and expanded
before anything is returned, and the first problem raises `FeedError` naming
the entry (its index and merchant_id) and the field, so a malformed feed is
never half loaded. The document's structure is checked first, then the
entries in document order.

Where the spec is silent, these are our policies (POLICY):
- Entries are counted from 0 across all `service_availability` items in
  document order: "entry 3" is the fourth `availability` object of the file.
- Integers may be JSON numbers or decimal strings, because the proto3 JSON
  mapping (what partners' protobuf printers emit) writes int64 as strings.
  Floats and booleans are refused.
- JSON null on an optional field means absent, as in proto3 JSON. The
  required fields (merchant_id, service_id, start_sec, duration_sec,
  spots_total, spots_open) must be present: a missing `spots_open` read as 0
  would silently close the slot.
- `spots_open <= spots_total` (spots_total counts the unavailable spots too);
  both, and `party_size`, fit an int32, their width on the wire.
- Every slot must end by 9999-12-31T23:59:59Z, the last second a protobuf
  Timestamp carries, so every slot can be answered on the wire.
- A schedule exception removes slots of its own entry, with or without a
  recurrence; ranges may overlap each other and come in any order.
- `metadata.processing_instruction` must be absent, PROCESS_AS_COMPLETE or
  PROCESS_INSTRUCTION_UNSPECIFIED, and `metadata.total_shards` absent or 1:
  the feed replaces the whole inventory, so an incremental feed or one shard
  of several would silently drop everything it leaves out.
- `FeedLimits.max_slots` counts slots *before* schedule exceptions remove
  any: that is the work expansion does.
- Unknown keys are ignored at every level (partners' feeds carry more fields).
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from leasehold.core._model import SlotKey, SlotSpec

# 9999-12-31T23:59:59Z: the last second a google.protobuf.Timestamp can carry.
MAX_TIMESTAMP_SEC = 253_402_300_799
MAX_INT32 = 2**31 - 1
# The `field` of a FeedError about the document as a whole, or an entry as a whole.
DOCUMENT_FIELD = "<document>"
ENTRY_FIELD = "<entry>"

# Instructions under which a feed is the complete inventory ("" = absent).
_COMPLETE_INSTRUCTIONS = frozenset({"", "PROCESS_AS_COMPLETE", "PROCESS_INSTRUCTION_UNSPECIFIED"})
# 20 digits hold any int64; a longer string is refused before int() has to work on it.
_DECIMAL = re.compile(r"-?[0-9]{1,20}")
_SHOWN_CHARS = 40


@dataclass(frozen=True, slots=True)
class FeedLimits:
    """Bounds that keep a hostile or mistaken feed from exhausting memory or time."""

    max_entries: int = 1_000_000
    # Counted before schedule exceptions remove any (module docstring).
    max_slots: int = 2_000_000
    # merchant_id, service_id, staff_id, room_id, in characters.
    max_id_length: int = 256
    # availability_tag, staff_name, room_name, in characters.
    max_text_length: int = 1_024

    def __post_init__(self) -> None:
        for name in ("max_entries", "max_slots", "max_id_length", "max_text_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"FeedLimits.{name} must be positive")


DEFAULT_LIMITS = FeedLimits()


@dataclass(frozen=True, slots=True)
class Feed:
    """A validated feed: its metadata and every slot after recurrence expansion."""

    # 0 when the metadata leaves it out.
    generation_timestamp: int
    # "" when the metadata leaves it out.
    processing_instruction: str
    # Invariant: sorted by key fields (merchant, service, start, duration, staff, room,
    # party size); no two slots share a key.
    slots: tuple[SlotSpec, ...]


class FeedError(ValueError):
    """A feed refused as a whole, naming where the first problem is.

    `index` is the entry's position, from 0, in the flattened list of all
    `availability` entries of all `service_availability` items in document
    order; None when the problem is outside any entry. `merchant_id` is the
    entry's merchant_id when that is itself valid, else None. `field` is a
    dotted path inside the entry (`resources.party_size`,
    `schedule_exception[0].time_range.end_sec`), or inside the document when
    index is None (`service_availability[1].availability`); `<entry>` and
    `<document>` name the whole entry or document. `reason` is the bare reason.
    """

    def __init__(
        self, reason: str, *, index: int | None, merchant_id: str | None, field: str
    ) -> None:
        super().__init__(_describe(reason, index, merchant_id, field))
        self.reason = reason
        self.index = index
        self.merchant_id = merchant_id
        self.field = field


def _describe(reason: str, index: int | None, merchant_id: str | None, field: str) -> str:
    where = "feed" if index is None else f"feed entry {index}"
    if merchant_id is not None:
        where += f" (merchant_id {merchant_id!r})"
    return f"{where}: field {field!r}: {reason}"


def parse_feed_json(
    text: str, *, limits: FeedLimits = DEFAULT_LIMITS, yielding: bool = False
) -> Feed:
    """Decode feed text and parse it; text that is not JSON is a FeedError too.

    `yielding`: let other threads run while decoding (a server parsing a feed in a worker
    thread): json's C decoder holds the GIL throughout (~0.4 s for 100,000 entries)
    unless it calls back into Python, as it does per object with an object_hook.
    """
    try:
        document = json.loads(text, object_hook=_same if yielding else None)
    except json.JSONDecodeError as problem:
        reason = f"not valid JSON: {problem.msg} at line {problem.lineno} column {problem.colno}"
        raise FeedError(reason, index=None, merchant_id=None, field=DOCUMENT_FIELD) from problem
    except (ValueError, RecursionError) as problem:
        # json refuses integers of over 4300 digits (ValueError) and nesting deeper
        # than the interpreter's recursion limit (RecursionError).
        reason = f"not loadable JSON: {problem}"
        raise FeedError(reason, index=None, merchant_id=None, field=DOCUMENT_FIELD) from problem
    return parse_feed(document, limits=limits)


def _same(value: dict[str, object]) -> dict[str, object]:
    return value


def parse_feed(document: object, *, limits: FeedLimits = DEFAULT_LIMITS) -> Feed:
    """Validate a decoded feed document and expand it into slots, or raise FeedError."""
    try:
        root = _object(document, DOCUMENT_FIELD)
        generation_timestamp, instruction = _metadata(root.get("metadata"))
        raw_entries = _flattened_entries(root)
    except _Invalid as problem:
        raise FeedError(problem.reason, index=None, merchant_id=None, field=problem.field) from None
    if len(raw_entries) > limits.max_entries:
        raise FeedError(
            f"the feed has more than {limits.max_entries} entries (FeedLimits.max_entries)",
            index=limits.max_entries,
            merchant_id=_merchant_of(raw_entries[limits.max_entries], limits),
            field=ENTRY_FIELD,
        )
    slots = _expand_all(raw_entries, limits)
    return Feed(generation_timestamp, instruction, tuple(slots))


# --- the document around the entries ---------------------------------------------------


def _metadata(raw: object) -> tuple[int, str]:
    """(generation_timestamp, processing_instruction), refusing a feed that is not complete."""
    if raw is None:
        return 0, ""
    metadata = _object(raw, "metadata")
    timestamp = _optional_integer(metadata, "metadata.generation_timestamp", default=0, minimum=0)
    instruction = _complete_instruction(metadata.get("processing_instruction"))
    _check_unsharded(metadata.get("total_shards"))
    return timestamp, instruction


def _complete_instruction(raw: object) -> str:
    instruction = "" if raw is None else raw
    if not isinstance(instruction, str) or instruction not in _COMPLETE_INSTRUCTIONS:
        raise _Invalid(
            "metadata.processing_instruction",
            "must be PROCESS_AS_COMPLETE: the feed replaces the whole inventory" + _got(raw),
        )
    return instruction


def _check_unsharded(total_shards: object) -> None:
    # proto3 JSON leaves a 0 out, so 0 and absent both mean "not sharded".
    if total_shards is not None and _as_integer(total_shards) not in (0, 1):
        raise _Invalid(
            "metadata.total_shards",
            "must be 1: the feed replaces the whole inventory, so load it unsharded"
            + _got(total_shards),
        )


def _flattened_entries(root: Mapping[str, object]) -> list[object]:
    """Every `availability` entry of every `service_availability` item, in document order."""
    entries: list[object] = []
    items = _list(_required(root, "service_availability"), "service_availability")
    for position, raw_item in enumerate(items):
        path = f"service_availability[{position}]"
        item = _object(raw_item, path)
        entries.extend(_list(_required(item, f"{path}.availability"), f"{path}.availability"))
    return entries


# --- entries ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    """One validated availability entry, before recurrence expansion."""

    # The slot at start_sec; every expanded slot is this one at another start.
    first: SlotSpec
    # Every start the recurrence gives (just start_sec without one).
    starts: range
    has_recurrence: bool
    # Invariant: the exception ranges merged, sorted, disjoint and not touching,
    # as parallel tuples of half-open [begin, end) bounds.
    exception_begins: tuple[int, ...]
    exception_ends: tuple[int, ...]


def _expand_all(raw_entries: Sequence[object], limits: FeedLimits) -> list[SlotSpec]:
    """Every entry's slots, sorted by key fields; refuses duplicates and a feed over the limit."""
    origin: dict[SlotKey, int] = {}  # slot key -> index of the entry that gave it
    slots: list[SlotSpec] = []
    budget = limits.max_slots
    for index, raw in enumerate(raw_entries):
        entry = _parse_entry_at(raw, index, limits)
        budget -= len(entry.starts)
        if budget < 0:
            raise FeedError(
                f"expands to {len(entry.starts)} slots, taking the feed over its limit of "
                f"{limits.max_slots} slots (FeedLimits.max_slots)",
                index=index,
                merchant_id=entry.first.key.merchant_id,
                field="recurrence" if entry.has_recurrence else ENTRY_FIELD,
            )
        for slot in _expand(entry):
            earlier = origin.setdefault(slot.key, index)
            if earlier != index:
                raise FeedError(
                    f"the slot at start_sec {slot.key.start_sec} repeats a slot of entry {earlier}",
                    index=index,
                    merchant_id=slot.key.merchant_id,
                    field="start_sec",
                )
            slots.append(slot)
    slots.sort(key=_slot_order)
    return slots


def _parse_entry_at(raw: object, index: int, limits: FeedLimits) -> _Entry:
    try:
        return _parse_entry(raw, limits)
    except _Invalid as problem:
        raise FeedError(
            problem.reason,
            index=index,
            merchant_id=_merchant_of(raw, limits),
            field=problem.field,
        ) from None


def _parse_entry(raw: object, limits: FeedLimits) -> _Entry:
    entry = _object(raw, ENTRY_FIELD)
    first = _first_slot(entry, limits)
    recurrence = entry.get("recurrence")
    begins, ends = _exception_ranges(entry.get("schedule_exception"))
    return _Entry(
        first=first,
        starts=_starts(recurrence, first.key),
        has_recurrence=recurrence is not None,
        exception_begins=begins,
        exception_ends=ends,
    )


def _first_slot(entry: Mapping[str, object], limits: FeedLimits) -> SlotSpec:
    merchant_id = _identifier(_required(entry, "merchant_id"), "merchant_id", limits)
    service_id = _identifier(_required(entry, "service_id"), "service_id", limits)
    start_sec = _integer(_required(entry, "start_sec"), "start_sec", minimum=0)
    duration_sec = _integer(_required(entry, "duration_sec"), "duration_sec", minimum=1)
    _check_representable_end(start_sec + duration_sec, "duration_sec")
    spots_total, spots_open = _capacity(entry)
    tag = _optional_text(entry, "availability_tag", limits)
    resources = _object_or_empty(entry.get("resources"), "resources")
    key = SlotKey(
        merchant_id=merchant_id,
        service_id=service_id,
        start_sec=start_sec,
        duration_sec=duration_sec,
        staff_id=_optional_identifier(resources, "resources.staff_id", limits),
        room_id=_optional_identifier(resources, "resources.room_id", limits),
        party_size=_optional_integer(
            resources, "resources.party_size", default=0, minimum=0, maximum=MAX_INT32
        ),
    )
    return SlotSpec(
        key=key,
        spots=spots_open,
        spots_total=spots_total,
        availability_tag=tag,
        staff_name=_optional_text(resources, "resources.staff_name", limits),
        room_name=_optional_text(resources, "resources.room_name", limits),
    )


def _capacity(entry: Mapping[str, object]) -> tuple[int, int]:
    """(spots_total, spots_open); spots_total counts unavailable spots too, so it bounds open."""
    total = _integer(_required(entry, "spots_total"), "spots_total", minimum=0, maximum=MAX_INT32)
    open_ = _integer(_required(entry, "spots_open"), "spots_open", minimum=0, maximum=MAX_INT32)
    if open_ > total:
        raise _Invalid("spots_open", f"must not exceed spots_total ({total}){_got(open_)}")
    return total, open_


def _starts(raw: object, key: SlotKey) -> range:
    """The starts an entry gives: one every repeat_every_sec while start < repeat_until_sec."""
    if raw is None:
        return range(key.start_sec, key.start_sec + 1)
    recurrence = _object(raw, "recurrence")
    every_field, until_field = "recurrence.repeat_every_sec", "recurrence.repeat_until_sec"
    every = _integer(_required(recurrence, every_field), every_field, minimum=1)
    until = _integer(_required(recurrence, until_field), until_field, minimum=0)
    if until <= key.start_sec:
        raise _Invalid(until_field, f"must be later than start_sec ({key.start_sec}){_got(until)}")
    starts = range(key.start_sec, until, every)
    _check_representable_end(starts[-1] + key.duration_sec, until_field)
    return starts


def _exception_ranges(raw: object) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The schedule exceptions merged into sorted, disjoint, non-touching [begin, end) ranges."""
    if raw is None:
        return (), ()
    ranges = sorted(
        _time_range(item, f"schedule_exception[{position}]")
        for position, item in enumerate(_list(raw, "schedule_exception"))
    )
    begins: list[int] = []
    ends: list[int] = []
    for begin, end in ranges:
        if ends and begin <= ends[-1]:
            ends[-1] = max(ends[-1], end)
        else:
            begins.append(begin)
            ends.append(end)
    return tuple(begins), tuple(ends)


def _time_range(raw: object, path: str) -> tuple[int, int]:
    exception = _object(raw, path)
    time_range = _object(_required(exception, f"{path}.time_range"), f"{path}.time_range")
    begin_field, end_field = f"{path}.time_range.begin_sec", f"{path}.time_range.end_sec"
    begin = _integer(_required(time_range, begin_field), begin_field, minimum=0)
    end = _integer(_required(time_range, end_field), end_field, minimum=0)
    if end <= begin:
        raise _Invalid(end_field, f"must be later than begin_sec ({_shown(begin)}){_got(end)}")
    return begin, end


def _expand(entry: _Entry) -> Iterator[SlotSpec]:
    first = entry.first
    key = first.key
    for start in entry.starts:
        if _excluded(entry, start, start + key.duration_sec):
            continue
        # Built field by field: dataclasses.replace is several times slower, and a
        # feed may expand to millions of slots.
        yield SlotSpec(
            key=SlotKey(
                merchant_id=key.merchant_id,
                service_id=key.service_id,
                start_sec=start,
                duration_sec=key.duration_sec,
                staff_id=key.staff_id,
                room_id=key.room_id,
                party_size=key.party_size,
            ),
            spots=first.spots,
            spots_total=first.spots_total,
            availability_tag=first.availability_tag,
            staff_name=first.staff_name,
            room_name=first.room_name,
        )


def _slot_order(slot: SlotSpec) -> tuple[str, str, int, int, str, str, int]:
    """A slot's key fields in SlotKey's field order: the order of Feed.slots."""
    return slot.key.as_tuple()


def _excluded(entry: _Entry, start: int, end: int) -> bool:
    """Whether [start, end) overlaps an exception range; touching at an edge is no overlap."""
    # The last range beginning before the slot ends is the only candidate: the
    # ranges are disjoint and sorted, so every earlier one also ends before it begins.
    candidate = bisect_left(entry.exception_begins, end) - 1
    return candidate >= 0 and entry.exception_ends[candidate] > start


def _merchant_of(raw: object, limits: FeedLimits) -> str | None:
    """The entry's merchant_id for an error message, if it is a valid one (else None)."""
    if not isinstance(raw, dict):
        return None
    try:
        return _identifier(raw.get("merchant_id"), "merchant_id", limits)
    except _Invalid:
        return None


# --- field readers: each raises _Invalid(field, reason) --------------------------------


class _Invalid(Exception):
    """A problem at `field`; the caller adds which entry, if any, it is in."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _key_of(field: str) -> str:
    """The JSON key a dotted field path ends in: `resources.party_size` -> `party_size`."""
    return field.rpartition(".")[2]


def _required(mapping: Mapping[str, object], field: str) -> object:
    value = mapping.get(_key_of(field))
    if value is None:
        raise _Invalid(field, "is required")
    return value


def _object(value: object, field: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise _Invalid(field, "must be an object" + _got(value))
    return value


def _object_or_empty(value: object, field: str) -> Mapping[str, object]:
    return {} if value is None else _object(value, field)


def _list(value: object, field: str) -> list[object]:
    if not isinstance(value, list):
        raise _Invalid(field, "must be a list" + _got(value))
    return value


def _as_integer(value: object) -> int | None:
    """An integer from a JSON number or a decimal string (proto3 JSON), else None."""
    if isinstance(value, bool):  # bool is an int subclass, but never a count or a time
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    return None


def _integer(value: object, field: str, *, minimum: int, maximum: int | None = None) -> int:
    number = _as_integer(value)
    if number is None or number < minimum or (maximum is not None and number > maximum):
        raise _Invalid(field, _integer_requirement(minimum, maximum) + _got(value))
    return number


def _integer_requirement(minimum: int, maximum: int | None) -> str:
    if maximum is not None:
        return f"must be an integer from {minimum} to {maximum}"
    if minimum == 1:
        return "must be a positive integer"
    if minimum == 0:
        return "must be a non-negative integer"
    return f"must be an integer of at least {minimum}"


def _optional_integer(
    mapping: Mapping[str, object],
    field: str,
    *,
    default: int,
    minimum: int,
    maximum: int | None = None,
) -> int:
    value = mapping.get(_key_of(field))
    if value is None:
        return default
    return _integer(value, field, minimum=minimum, maximum=maximum)


def _check_representable_end(end_sec: int, field: str) -> None:
    if end_sec > MAX_TIMESTAMP_SEC:
        raise _Invalid(
            field,
            f"the slot must end by {MAX_TIMESTAMP_SEC} (9999-12-31T23:59:59Z), "
            f"the last second a protobuf Timestamp carries (got an end of {_shown(end_sec)})",
        )


def _identifier(value: object, field: str, limits: FeedLimits, *, allow_empty: bool = False) -> str:
    """An id: printable (no control or unpaired surrogate characters) and bounded."""
    length = limits.max_id_length
    if (
        not isinstance(value, str)
        or len(value) > length
        or not value.isprintable()
        or (not value and not allow_empty)
    ):
        adjective = "printable" if allow_empty else "non-empty printable"
        requirement = f"must be a {adjective} string of at most {length} characters"
        raise _Invalid(field, requirement + _got(value))
    return value


def _optional_identifier(mapping: Mapping[str, object], field: str, limits: FeedLimits) -> str:
    value = mapping.get(_key_of(field))
    return "" if value is None else _identifier(value, field, limits, allow_empty=True)


def _optional_text(mapping: Mapping[str, object], field: str, limits: FeedLimits) -> str:
    """Free text, carried and echoed on the wire: bounded, and encodable as UTF-8."""
    value = mapping.get(_key_of(field))
    if value is None:
        return ""
    length = limits.max_text_length
    if not isinstance(value, str) or len(value) > length or not _encodes_as_utf8(value):
        requirement = f"must be a UTF-8 string of at most {length} characters"
        raise _Invalid(field, requirement + _got(value))
    return value


def _encodes_as_utf8(text: str) -> bool:
    # json.loads accepts escaped unpaired surrogates ("\ud800"); protobuf cannot send them.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _got(value: object) -> str:
    """A short account of an offending value, for the end of a reason."""
    return f" (got {_shown(value)})"


def _shown(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int) and value.bit_length() > 64:
        return "an integer too large"  # str() itself refuses ints of over 4300 digits
    shown = repr(value)
    return shown if len(shown) <= _SHOWN_CHARS else shown[: _SHOWN_CHARS - 3] + "..."
