"""The admin API's messages <-> the core's inventory values (spec section 8).

A request is validated whole before anything is applied: every entry is parsed by
the feed parser (core/_feed.py), so an error names the entry (its index, counted
from 0 across all `service_availability` items, and its merchant_id) and the field,
as a malformed feed at start does; the windows' own fields are named by their path
(`service_availability[1].end_timestamp_restrict`).
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import json_format
from grpclib import Status
from grpclib.exceptions import GRPCError

from leasehold.core import (
    DEFAULT_FEED_LIMITS as DEFAULT_LIMITS,
)
from leasehold.core import (
    END_OF_TIME,
    FeedError,
    FeedLimits,
    InvalidArgument,
    InventoryReport,
    SlotSpec,
    SlotState,
    Window,
    check_listing,
    parse_feed,
    parse_feed_json,
    start_order,
    whole_inventory,
)
from leasehold.proto.admin.v1 import inventory_pb2 as pb

# The most windows one ReplaceServiceAvailability may carry (each is a step per shard).
MAX_WINDOWS = 1_000
# GetInventory answers at most this many slots (and says when more matched).
MAX_LISTED = 10_000


def feed_window(request: pb.ApplyFeedRequest) -> Window:
    """The whole feed as one window, or INVALID_ARGUMENT naming entry and field."""
    try:
        text = request.feed_json.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise invalid("feed_json", f"not UTF-8 text (at byte {problem.start})") from None
    try:
        feed = parse_feed_json(text, yielding=True)
    except FeedError as problem:
        raise invalid("feed_json", str(problem)) from None
    if not feed.slots:
        # As at start: a whole feed of nothing would take every slot off sale.
        raise invalid("feed_json", "the feed lists no slots (it would remove every slot)")
    return whole_inventory(feed.slots)


def windows(
    request: pb.ReplaceServiceAvailabilityRequest, max_slots: int = DEFAULT_LIMITS.max_slots
) -> list[Window]:
    """Each entry as a Window, validated whole; INVALID_ARGUMENT at the first problem.
    `max_slots`: the most slots the request's entries may expand to, all windows together."""
    items = request.service_availability
    if not items:
        raise invalid("service_availability", "is required (one window at least)")
    if len(items) > MAX_WINDOWS:
        raise invalid("service_availability", f"more than {MAX_WINDOWS} windows")
    found: list[Window] = []
    first_entry = 0
    budget = max_slots
    for position, item in enumerate(items):
        where = f"service_availability[{position}]"
        slots = _slots(item, first_entry, FeedLimits(max_slots=budget) if budget else None)
        budget -= len(slots)
        window = _window(item, where, slots)
        try:
            check_listing(window, where)
        except InvalidArgument as problem:
            raise invalid(problem.field, problem.message) from None
        found.append(window)
        first_entry += len(item.availability)
    return found


def _window(item: pb.ServiceAvailability, where: str, slots: Sequence[SlotSpec]) -> Window:
    start, end = item.start_timestamp_restrict, item.end_timestamp_restrict
    if start < 0:
        raise invalid(f"{where}.start_timestamp_restrict", "must not be negative")
    if end == 0 and start == 0:
        raise invalid(f"{where}.end_timestamp_restrict", "a window needs a start and an end")
    if not start < end <= END_OF_TIME:
        raise invalid(
            f"{where}.end_timestamp_restrict",
            f"must be later than start_timestamp_restrict ({start}) and at most {END_OF_TIME}",
        )
    resources = None
    if item.HasField("resources_restrict"):
        r = item.resources_restrict
        resources = (r.staff_id, r.room_id, r.party_size)
    duration = item.duration_restrict_sec if item.HasField("duration_restrict_sec") else None
    if duration is not None and duration < 1:
        raise invalid(f"{where}.duration_restrict_sec", "must be a positive number of seconds")
    return Window(
        start,
        end,
        item.merchant_id_restrict,
        item.service_id_restrict,
        duration,
        resources,
        tuple(sorted(slots, key=start_order)),
    )


def _slots(
    item: pb.ServiceAvailability, first_entry: int, limits: FeedLimits | None
) -> list[SlotSpec]:
    """The entries' slots (recurrences expanded), parsed as a feed's would be; `limits`:
    None when the request's slot budget is spent."""
    if not item.availability:
        return []
    if limits is None:
        raise GRPCError(
            Status.INVALID_ARGUMENT,
            f"entry {first_entry}: the request expands to more slots than its limit "
            "(FeedLimits.max_slots)",
        )
    entries = [
        json_format.MessageToDict(
            entry, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        for entry in item.availability
    ]
    try:
        document = {"service_availability": [{"availability": entries}]}
        return list(parse_feed(document, limits=limits).slots)
    except FeedError as problem:
        index = None if problem.index is None else problem.index + first_entry
        where = "request" if index is None else f"entry {index}"
        if problem.merchant_id is not None:
            where += f" (merchant_id {problem.merchant_id!r})"
        raise GRPCError(
            Status.INVALID_ARGUMENT, f"{where}: field {problem.field!r}: {problem.reason}"
        ) from None


def change_report(parts: dict[int, InventoryReport], dry_run: bool) -> pb.ChangeReport:
    report = pb.ChangeReport(dry_run=dry_run)
    for shard in sorted(parts):
        part = parts[shard]
        report.shards.append(
            pb.ShardChange(
                shard=shard,
                added=part.added,
                changed=part.changed,
                removed=part.removed,
                kept_booked=part.kept_booked,
                unchanged=part.unchanged,
                leases_released=part.leases_released,
                applied=part.applied,
            )
        )
        report.added += part.added
        report.changed += part.changed
        report.removed += part.removed
        report.kept_booked += part.kept_booked
        report.unchanged += part.unchanged
        report.leases_released += part.leases_released
    return report


def slot_state(state: SlotState) -> pb.SlotState:
    spec = state.spec
    key = spec.key
    return pb.SlotState(
        slot=pb.Availability(
            merchant_id=key.merchant_id,
            service_id=key.service_id,
            start_sec=key.start_sec,
            duration_sec=key.duration_sec,
            spots_total=spec.spots_total,
            spots_open=spec.spots,
            availability_tag=spec.availability_tag,
            resources=pb.Resources(
                staff_id=key.staff_id,
                staff_name=spec.staff_name,
                room_id=key.room_id,
                room_name=spec.room_name,
                party_size=key.party_size,
            ),
        ),
        capacity=spec.spots,
        leases=state.leases,
        bookings=state.bookings,
        removed=state.removed,
    )


def invalid(field: str, message: str) -> GRPCError:
    return GRPCError(Status.INVALID_ARGUMENT, f"{field}: {message}")
