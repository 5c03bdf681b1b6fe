"""The built-in demo feed (core/_demo.py): valid, deterministic, and a useful spread of slots."""

from __future__ import annotations

import json

import pytest

from leasehold.core._demo import DAY, HOUR, WINDOW_DAYS, demo_feed
from leasehold.core._feed import Feed, parse_feed, parse_feed_json

NOWS = [
    pytest.param(1_767_225_600, id="midnight"),
    pytest.param(1_767_225_601, id="just after midnight"),
    pytest.param(1_767_254_399, id="a second before 08:00"),
    pytest.param(1_767_300_000, id="mid-afternoon"),
    pytest.param(1_767_308_399, id="late evening"),
    pytest.param(0, id="the epoch"),
]


def first_whole_hour_at_or_after(now_sec: int) -> int:
    return (now_sec + HOUR - 1) // HOUR * HOUR


@pytest.mark.parametrize("now_sec", NOWS)
def test_demo_parses_as_json_and_as_a_document(now_sec: int) -> None:
    document = demo_feed(now_sec)

    feed = parse_feed(document)
    assert parse_feed_json(json.dumps(document)) == feed
    assert feed.generation_timestamp == now_sec
    assert feed.processing_instruction == "PROCESS_AS_COMPLETE"


@pytest.mark.parametrize("now_sec", NOWS)
def test_demo_is_deterministic(now_sec: int) -> None:
    assert json.dumps(demo_feed(now_sec)) == json.dumps(demo_feed(now_sec))


@pytest.mark.parametrize("now_sec", NOWS)
def test_demo_spans_the_seven_days_from_the_next_whole_hour(now_sec: int) -> None:
    feed = parse_feed(demo_feed(now_sec))
    window_start = first_whole_hour_at_or_after(now_sec)
    slot_starts = [slot.key.start_sec for slot in feed.slots]

    assert min(slot_starts) >= window_start >= now_sec
    assert max(slot_starts) < window_start + WINDOW_DAYS * DAY
    assert max(slot_starts) - min(slot_starts) > (WINDOW_DAYS - 1) * DAY
    # Every one of the 7 days of the window has slots.
    assert {(start - window_start) // DAY for start in slot_starts} == set(range(WINDOW_DAYS))


@pytest.mark.parametrize("now_sec", NOWS)
def test_demo_has_several_merchants_and_services(now_sec: int) -> None:
    feed = parse_feed(demo_feed(now_sec))

    assert len({slot.key.merchant_id for slot in feed.slots}) >= 3
    services_per_merchant: dict[str, set[str]] = {}
    for slot in feed.slots:
        services_per_merchant.setdefault(slot.key.merchant_id, set()).add(slot.key.service_id)
    assert all(1 <= len(services) <= 3 for services in services_per_merchant.values())


@pytest.mark.parametrize("now_sec", NOWS)
def test_demo_covers_capacities_from_1_to_20(now_sec: int) -> None:
    capacities = {slot.spots for slot in parse_feed(demo_feed(now_sec)).slots}

    assert min(capacities) == 1
    assert max(capacities) == 20
    assert len(capacities) >= 4


def test_demo_uses_recurrence_exceptions_and_resources() -> None:
    document = demo_feed(1_767_225_600)
    entries = demo_entries(document)

    assert any("recurrence" in entry for entry in entries)
    assert any("recurrence" not in entry for entry in entries)
    assert any("schedule_exception" in entry for entry in entries)
    feed = parse_feed(document)
    assert any(slot.key.staff_id and slot.staff_name for slot in feed.slots)
    assert any(slot.key.room_id for slot in feed.slots)
    assert any(slot.key.party_size for slot in feed.slots)
    assert any(slot.spots < slot.spots_total for slot in feed.slots)


def test_demo_lunch_break_removes_slots() -> None:
    """Ann's haircuts skip 12:00-13:00 UTC: nothing starts at 12:00 or 12:30."""
    feed = parse_feed(demo_feed(1_767_225_600))
    ann = [s for s in feed.slots if s.key.service_id == "haircut" and s.key.staff_id == "st-ann"]

    hours_of_day = {slot.key.start_sec % DAY / HOUR for slot in ann}
    assert 11.5 in hours_of_day
    assert 13.0 in hours_of_day
    assert not hours_of_day & {12.0, 12.5}


@pytest.mark.parametrize("now_sec", NOWS)
def test_demo_is_a_few_thousand_slots_at_most(now_sec: int) -> None:
    feed: Feed = parse_feed(demo_feed(now_sec))

    assert 100 <= len(feed.slots) <= 5_000


def demo_entries(document: dict[str, object]) -> list[dict[str, object]]:
    """Every availability entry of the document, checking its shape on the way."""
    items = document["service_availability"]
    assert isinstance(items, list)
    entries: list[dict[str, object]] = []
    for item in items:
        assert isinstance(item, dict)
        availability = item["availability"]
        assert isinstance(availability, list)
        entries.extend(availability)
    return entries
