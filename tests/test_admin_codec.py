"""The admin API's requests decoded and validated whole (gateway/_admin_codec.py): every
refusal is INVALID_ARGUMENT naming the field or the entry, and bounded work."""

from __future__ import annotations

import json

import pytest
from grpclib import Status
from grpclib.exceptions import GRPCError

from leasehold.gateway import _admin_codec as codec
from leasehold.proto.admin.v1 import inventory_pb2 as pb


def entry(**fields: object) -> pb.Availability:
    base: dict[str, object] = {
        "merchant_id": "m1",
        "service_id": "s",
        "start_sec": 1000,
        "duration_sec": 60,
        "spots_total": 1,
        "spots_open": 1,
    }
    return pb.Availability(**(base | fields))  # type: ignore[arg-type]


def window(*entries: pb.Availability, **fields: object) -> pb.ServiceAvailability:
    item = pb.ServiceAvailability(start_timestamp_restrict=0, end_timestamp_restrict=10**6)
    for name, value in fields.items():
        setattr(item, name, value)
    item.availability.extend(entries)
    return item


def refusal(request: pb.ReplaceServiceAvailabilityRequest) -> str:
    with pytest.raises(GRPCError) as refused:
        codec.windows(request)
    assert refused.value.status is Status.INVALID_ARGUMENT
    return str(refused.value.message)


def test_windows_keep_their_restrictions_and_listing_in_start_order() -> None:
    request = pb.ReplaceServiceAvailabilityRequest(
        service_availability=[
            window(
                entry(start_sec=2000), entry(), merchant_id_restrict="m1", duration_restrict_sec=60
            )
        ]
    )
    (decoded,) = codec.windows(request)
    assert (decoded.merchant_id, decoded.duration_sec, decoded.resources) == ("m1", 60, None)
    assert [s.key.start_sec for s in decoded.slots] == [1000, 2000]


def test_entries_are_counted_across_windows_and_named_with_their_field() -> None:
    bad = entry(spots_open=2)
    request = pb.ReplaceServiceAvailabilityRequest(
        service_availability=[window(entry()), window(entry(start_sec=5000), bad)]
    )
    assert refusal(request).startswith("entry 2 (merchant_id 'm1'): field 'spots_open'")


def test_a_window_with_no_end_or_a_bad_duration_is_refused_by_its_path() -> None:
    no_end = window(entry(), end_timestamp_restrict=0)
    message = refusal(pb.ReplaceServiceAvailabilityRequest(service_availability=[no_end]))
    assert message.startswith("service_availability[0].end_timestamp_restrict")
    zero = window(entry(), duration_restrict_sec=0)
    message = refusal(pb.ReplaceServiceAvailabilityRequest(service_availability=[zero]))
    assert message.startswith("service_availability[0].duration_restrict_sec")
    astray = window(entry(merchant_id="m2"), merchant_id_restrict="m1")
    message = refusal(pb.ReplaceServiceAvailabilityRequest(service_availability=[astray]))
    assert message.startswith("service_availability[0].availability: the slot of 'm2'")


def test_the_slot_budget_spans_the_whole_request() -> None:
    every_second = pb.Recurrence(repeat_every_sec=1, repeat_until_sec=601)
    item = window(entry(start_sec=1, recurrence=every_second))  # 600 slots each
    request = pb.ReplaceServiceAvailabilityRequest(service_availability=[item, item])
    assert len(codec.windows(request, max_slots=1200)) == 2
    with pytest.raises(GRPCError, match="over its limit of 199 slots"):
        codec.windows(request, max_slots=799)
    three = pb.ReplaceServiceAvailabilityRequest(service_availability=[item, item, item])
    with pytest.raises(GRPCError, match="entry 2: the request expands to more slots"):
        codec.windows(three, max_slots=1200)


def test_an_apply_feed_of_no_slots_is_refused() -> None:
    empty = json.dumps({"service_availability": []}).encode()
    with pytest.raises(GRPCError, match="lists no slots"):
        codec.feed_window(pb.ApplyFeedRequest(feed_json=empty))
    with pytest.raises(GRPCError, match="not UTF-8"):
        codec.feed_window(pb.ApplyFeedRequest(feed_json=b"\xff"))
