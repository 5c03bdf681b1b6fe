"""The availability feed parser (core/_feed.py): expansion, validation, limits, refusal."""

from __future__ import annotations

import copy
import json

import pytest

from leasehold.core._feed import (
    DOCUMENT_FIELD,
    ENTRY_FIELD,
    MAX_INT32,
    MAX_TIMESTAMP_SEC,
    Feed,
    FeedError,
    FeedLimits,
    parse_feed,
    parse_feed_json,
)
from leasehold.core._model import SlotKey, SlotSpec

# The example of spec section 4, character for character.
SPEC_EXAMPLE = """\
{"metadata": {"processing_instruction": "PROCESS_AS_COMPLETE", "generation_timestamp": 1767225600},
 "service_availability": [{"availability": [
   {"merchant_id": "m1", "service_id": "haircut", "start_sec": 1767254400, "duration_sec": 1800,
    "spots_total": 1, "spots_open": 1, "availability_tag": "opaque-tag",
    "resources": {"staff_id": "st1", "staff_name": "Ann", "room_id": "", "party_size": 0},
    "recurrence": {"repeat_every_sec": 1800, "repeat_until_sec": 1767283200}}
 ]}]}
"""

REMOVE = object()  # an override that deletes the key


def entry(**overrides: object) -> dict[str, object]:
    """A valid non-recurring entry: slot [1000, 1100) of m1/haircut, 2 of 3 spots open."""
    fields: dict[str, object] = {
        "merchant_id": "m1",
        "service_id": "haircut",
        "start_sec": 1000,
        "duration_sec": 100,
        "spots_total": 3,
        "spots_open": 2,
    }
    for name, value in overrides.items():
        if value is REMOVE:
            del fields[name]
        else:
            fields[name] = value
    return fields


def recurring(start: int, every: int, until: int, **overrides: object) -> dict[str, object]:
    recurrence = {"repeat_every_sec": every, "repeat_until_sec": until}
    return entry(start_sec=start, recurrence=recurrence, **overrides)


def exceptions(*ranges: tuple[int, int]) -> list[object]:
    return [{"time_range": {"begin_sec": begin, "end_sec": end}} for begin, end in ranges]


def document(*entries: object) -> dict[str, object]:
    return {"service_availability": [{"availability": list(entries)}]}


def starts(feed: Feed) -> list[int]:
    return [slot.key.start_sec for slot in feed.slots]


# --- the spec's example ------------------------------------------------------------------


def test_spec_example_expands_to_one_slot_every_half_hour() -> None:
    feed = parse_feed_json(SPEC_EXAMPLE)

    assert (1767283200 - 1767254400) // 1800 == 16
    assert len(feed.slots) == 16
    assert starts(feed) == [1767254400 + 1800 * k for k in range(16)]
    assert feed.generation_timestamp == 1767225600
    assert feed.processing_instruction == "PROCESS_AS_COMPLETE"


def test_spec_example_carries_every_field() -> None:
    first = parse_feed_json(SPEC_EXAMPLE).slots[0]

    assert first == SlotSpec(
        key=SlotKey(
            merchant_id="m1",
            service_id="haircut",
            start_sec=1767254400,
            duration_sec=1800,
            staff_id="st1",
            room_id="",
            party_size=0,
        ),
        spots=1,
        spots_total=1,
        availability_tag="opaque-tag",
        staff_name="Ann",
        room_name="",
    )


def test_spec_example_as_a_decoded_document() -> None:
    assert parse_feed(json.loads(SPEC_EXAMPLE)) == parse_feed_json(SPEC_EXAMPLE)


# --- slots -------------------------------------------------------------------------------


def test_entry_without_recurrence_is_one_slot_with_defaults() -> None:
    feed = parse_feed(document(entry()))

    assert feed == Feed(
        generation_timestamp=0,
        processing_instruction="",
        slots=(SlotSpec(SlotKey("m1", "haircut", 1000, 100), spots=2, spots_total=3),),
    )


def test_capacity_is_spots_open_and_spots_total_is_carried() -> None:
    (slot,) = parse_feed(document(entry(spots_total=20, spots_open=7))).slots

    assert (slot.spots, slot.spots_total) == (7, 20)


def test_resources_are_carried() -> None:
    resources = {
        "staff_id": "st1",
        "staff_name": "Ann",
        "room_id": "r2",
        "room_name": "Room 2",
        "party_size": 4,
    }
    (slot,) = parse_feed(document(entry(resources=resources))).slots

    assert slot.key == SlotKey("m1", "haircut", 1000, 100, "st1", "r2", 4)
    assert (slot.staff_name, slot.room_name) == ("Ann", "Room 2")


def test_slots_are_sorted_by_key_fields() -> None:
    feed = parse_feed(
        {
            "service_availability": [
                {"availability": [entry(merchant_id="m2", start_sec=50)]},
                {"availability": [recurring(300, 100, 500), entry(service_id="cut")]},
                {"availability": [entry(start_sec=10, resources={"staff_id": "b"})]},
                {"availability": [entry(start_sec=10, resources={"staff_id": "a"})]},
            ]
        }
    )

    assert [
        (s.key.merchant_id, s.key.service_id, s.key.start_sec, s.key.staff_id) for s in feed.slots
    ] == [
        ("m1", "cut", 1000, ""),
        ("m1", "haircut", 10, "a"),
        ("m1", "haircut", 10, "b"),
        ("m1", "haircut", 300, ""),
        ("m1", "haircut", 400, ""),
        ("m2", "haircut", 50, ""),
    ]


@pytest.mark.parametrize(
    ("until_offset", "count"),
    [
        pytest.param(1, 1, id="until just after start: only start"),
        pytest.param(100, 1, id="until on the second start: excluded"),
        pytest.param(101, 2, id="until just past the second start"),
        pytest.param(300, 3, id="until on the fourth start: excluded"),
        pytest.param(301, 4, id="until just past the fourth start"),
    ],
)
def test_recurrence_stops_before_repeat_until(until_offset: int, count: int) -> None:
    feed = parse_feed(document(recurring(1000, 100, 1000 + until_offset)))

    assert starts(feed) == [1000 + 100 * k for k in range(count)]


def test_recurring_slots_may_overlap_each_other() -> None:
    feed = parse_feed(document(recurring(0, 30, 120, duration_sec=60)))

    assert starts(feed) == [0, 30, 60, 90]
    assert {slot.key.duration_sec for slot in feed.slots} == {60}


def test_recurrence_may_end_its_last_slot_exactly_at_the_last_timestamp() -> None:
    start = MAX_TIMESTAMP_SEC - 250
    feed = parse_feed(document(recurring(start, 100, start + 201, duration_sec=50)))

    assert feed.slots[-1].key.end_sec == MAX_TIMESTAMP_SEC


# --- schedule exceptions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("begin", "end", "kept"),
    [
        pytest.param(1100, 1200, True, id="touches the slot's end: kept"),
        pytest.param(900, 1000, True, id="touches the slot's start: kept"),
        pytest.param(1099, 1100, False, id="its last second"),
        pytest.param(999, 1001, False, id="its first second"),
        pytest.param(1010, 1020, False, id="inside"),
        pytest.param(0, 5000, False, id="around"),
        pytest.param(2000, 3000, True, id="after"),
    ],
)
def test_schedule_exception_removes_slots_that_overlap(begin: int, end: int, kept: bool) -> None:
    feed = parse_feed(document(entry(schedule_exception=exceptions((begin, end)))))

    assert starts(feed) == ([1000] if kept else [])


def test_schedule_exceptions_remove_recurring_slots() -> None:
    lunch_break = (1250, 1300)  # overlaps the 1200 slot only; touches the 1300 slot
    overlapping_unsorted = [(1550, 1650), (1400, 1560)]  # 1400, 1500, 1600
    feed = parse_feed(
        document(
            recurring(
                1000, 100, 2000, schedule_exception=exceptions(lunch_break, *overlapping_unsorted)
            )
        )
    )

    assert starts(feed) == [1000, 1100, 1300, 1700, 1800, 1900]


def test_schedule_exceptions_that_touch_each_other_remove_what_they_overlap() -> None:
    feed = parse_feed(
        document(recurring(0, 100, 500, schedule_exception=exceptions((150, 200), (200, 250))))
    )

    assert starts(feed) == [0, 300, 400]


def test_feed_of_no_slots_is_valid() -> None:
    removed = entry(schedule_exception=exceptions((0, 10_000)))

    assert parse_feed(document(removed)).slots == ()
    assert parse_feed(document()).slots == ()
    assert parse_feed({"service_availability": []}) == Feed(0, "", ())


# --- what is accepted --------------------------------------------------------------------


def test_null_optional_fields_are_absent() -> None:
    nulls = entry(
        availability_tag=None,
        resources=None,
        recurrence=None,
        schedule_exception=None,
    )
    null_resources = entry(
        resources={
            "staff_id": None,
            "staff_name": None,
            "room_id": None,
            "room_name": None,
            "party_size": None,
        }
    )

    assert parse_feed(document(nulls)) == parse_feed(document(entry()))
    assert parse_feed(document(null_resources)) == parse_feed(document(entry()))
    assert parse_feed({"metadata": None, "service_availability": []}) == Feed(0, "", ())


def test_unknown_keys_are_ignored_at_every_level() -> None:
    extra = recurring(
        1000,
        100,
        1200,
        resources={"staff_id": "s", "extra": [1]},
        schedule_exception=[{"time_range": {"begin_sec": 0, "end_sec": 1, "x": {}}, "y": 2}],
        payment_option_id="p",
    )
    extra["recurrence"] = {"repeat_every_sec": 100, "repeat_until_sec": 1200, "z": None}
    feed = parse_feed(
        {
            "metadata": {"nonce": "n", "shard_number": 0},
            "service_availability": [{"availability": [extra], "service_id": "x"}],
            "more": True,
        }
    )

    assert starts(feed) == [1000, 1100]


def test_integers_may_be_decimal_strings_as_in_proto3_json() -> None:
    as_strings = entry(
        start_sec="1000",
        recurrence={"repeat_every_sec": "100", "repeat_until_sec": "1200"},
        duration_sec="100",
        spots_total="3",
        spots_open="2",
        resources={"party_size": "4"},
        schedule_exception=[{"time_range": {"begin_sec": "5", "end_sec": "6"}}],
    )
    as_numbers = recurring(
        1000,
        100,
        1200,
        resources={"party_size": 4},
        schedule_exception=exceptions((5, 6)),
    )
    metadata = {"generation_timestamp": "1767225600"}

    assert parse_feed({**document(as_strings), "metadata": metadata}) == parse_feed(
        {**document(as_numbers), "metadata": {"generation_timestamp": 1767225600}}
    )


@pytest.mark.parametrize(
    "instruction", ["PROCESS_AS_COMPLETE", "PROCESS_INSTRUCTION_UNSPECIFIED", ""]
)
def test_complete_processing_instructions_are_accepted(instruction: str) -> None:
    feed = parse_feed({"metadata": {"processing_instruction": instruction}, **document(entry())})

    assert feed.processing_instruction == instruction


def test_limits_on_strings_are_inclusive() -> None:
    limits = FeedLimits(max_id_length=4, max_text_length=5)
    at_limit = entry(
        merchant_id="mmmm",
        service_id="ssss",
        availability_tag="ttttt",
        resources={"staff_id": "aaaa", "staff_name": "nnnnn", "room_id": "rrrr"},
    )

    (slot,) = parse_feed(document(at_limit), limits=limits).slots
    assert slot.key.merchant_id == "mmmm"


def test_int32_fields_accept_their_maximum() -> None:
    big = entry(spots_total=MAX_INT32, spots_open=MAX_INT32, resources={"party_size": MAX_INT32})

    (slot,) = parse_feed(document(big)).slots
    assert (slot.spots, slot.key.party_size) == (MAX_INT32, MAX_INT32)


# --- validation: every error names the entry, its merchant and the field -----------------

BAD_ENTRY_INDEX = 3  # after two entries in the first item and one in the second


def feed_with_bad_entry(bad: object) -> dict[str, object]:
    """Three valid entries across two service_availability items, then the bad one."""
    return {
        "service_availability": [
            {"availability": [entry(start_sec=0), entry(start_sec=200)]},
            {"availability": [entry(start_sec=400), bad]},
        ]
    }


BAD_ENTRIES = [
    # (overrides of a valid entry of merchant "m-bad", field named, merchant_id named)
    ({"merchant_id": REMOVE}, "merchant_id", None),
    ({"merchant_id": None}, "merchant_id", None),
    ({"merchant_id": ""}, "merchant_id", None),
    ({"merchant_id": 5}, "merchant_id", None),
    ({"merchant_id": True}, "merchant_id", None),
    ({"merchant_id": "m" * 257}, "merchant_id", None),
    ({"merchant_id": "m\n1"}, "merchant_id", None),
    ({"merchant_id": "m\ud800"}, "merchant_id", None),
    ({"service_id": REMOVE}, "service_id", "m-bad"),
    ({"service_id": ""}, "service_id", "m-bad"),
    ({"service_id": ["haircut"]}, "service_id", "m-bad"),
    ({"service_id": "s" * 257}, "service_id", "m-bad"),
    ({"service_id": "a\tb"}, "service_id", "m-bad"),
    ({"start_sec": REMOVE}, "start_sec", "m-bad"),
    ({"start_sec": -1}, "start_sec", "m-bad"),
    ({"start_sec": True}, "start_sec", "m-bad"),
    ({"start_sec": 1000.0}, "start_sec", "m-bad"),
    ({"start_sec": "1e3"}, "start_sec", "m-bad"),
    ({"start_sec": " 1000"}, "start_sec", "m-bad"),
    ({"start_sec": "-1"}, "start_sec", "m-bad"),
    ({"start_sec": "1" * 21}, "start_sec", "m-bad"),
    ({"start_sec": MAX_TIMESTAMP_SEC}, "duration_sec", "m-bad"),
    ({"start_sec": 10**5000}, "duration_sec", "m-bad"),
    ({"duration_sec": REMOVE}, "duration_sec", "m-bad"),
    ({"duration_sec": 0}, "duration_sec", "m-bad"),
    ({"duration_sec": -100}, "duration_sec", "m-bad"),
    ({"duration_sec": False}, "duration_sec", "m-bad"),
    ({"duration_sec": "0"}, "duration_sec", "m-bad"),
    ({"duration_sec": 100.5}, "duration_sec", "m-bad"),
    ({"spots_total": REMOVE}, "spots_total", "m-bad"),
    ({"spots_total": -1}, "spots_total", "m-bad"),
    ({"spots_total": True}, "spots_total", "m-bad"),
    ({"spots_total": MAX_INT32 + 1}, "spots_total", "m-bad"),
    ({"spots_open": REMOVE}, "spots_open", "m-bad"),
    ({"spots_open": None}, "spots_open", "m-bad"),
    ({"spots_open": -1}, "spots_open", "m-bad"),
    ({"spots_open": True}, "spots_open", "m-bad"),
    ({"spots_open": 4}, "spots_open", "m-bad"),
    ({"availability_tag": 5}, "availability_tag", "m-bad"),
    ({"availability_tag": ["t"]}, "availability_tag", "m-bad"),
    ({"availability_tag": "t" * 1025}, "availability_tag", "m-bad"),
    ({"availability_tag": "\udc80"}, "availability_tag", "m-bad"),
    ({"resources": "st1"}, "resources", "m-bad"),
    ({"resources": []}, "resources", "m-bad"),
    ({"resources": {"staff_id": 5}}, "resources.staff_id", "m-bad"),
    ({"resources": {"staff_id": "a\x00"}}, "resources.staff_id", "m-bad"),
    ({"resources": {"staff_id": "s" * 257}}, "resources.staff_id", "m-bad"),
    ({"resources": {"room_id": 7}}, "resources.room_id", "m-bad"),
    ({"resources": {"staff_name": 3}}, "resources.staff_name", "m-bad"),
    ({"resources": {"room_name": {}}}, "resources.room_name", "m-bad"),
    ({"resources": {"party_size": -1}}, "resources.party_size", "m-bad"),
    ({"resources": {"party_size": True}}, "resources.party_size", "m-bad"),
    ({"resources": {"party_size": 2.0}}, "resources.party_size", "m-bad"),
    ({"resources": {"party_size": MAX_INT32 + 1}}, "resources.party_size", "m-bad"),
    ({"recurrence": "daily"}, "recurrence", "m-bad"),
    ({"recurrence": {}}, "recurrence.repeat_every_sec", "m-bad"),
    (
        {"recurrence": {"repeat_every_sec": 0, "repeat_until_sec": 2000}},
        "recurrence.repeat_every_sec",
        "m-bad",
    ),
    (
        {"recurrence": {"repeat_every_sec": True, "repeat_until_sec": 2000}},
        "recurrence.repeat_every_sec",
        "m-bad",
    ),
    ({"recurrence": {"repeat_every_sec": 60}}, "recurrence.repeat_until_sec", "m-bad"),
    (
        {"recurrence": {"repeat_every_sec": 60, "repeat_until_sec": 1000}},
        "recurrence.repeat_until_sec",
        "m-bad",
    ),
    (
        {"recurrence": {"repeat_every_sec": 60, "repeat_until_sec": 999}},
        "recurrence.repeat_until_sec",
        "m-bad",
    ),
    (
        {"recurrence": {"repeat_every_sec": 60, "repeat_until_sec": "2000.0"}},
        "recurrence.repeat_until_sec",
        "m-bad",
    ),
    (
        # The first slot fits; the second would end after the last Timestamp.
        {
            "start_sec": MAX_TIMESTAMP_SEC - 150,
            "recurrence": {"repeat_every_sec": 100, "repeat_until_sec": MAX_TIMESTAMP_SEC},
        },
        "recurrence.repeat_until_sec",
        "m-bad",
    ),
    ({"schedule_exception": {}}, "schedule_exception", "m-bad"),
    ({"schedule_exception": ["lunch"]}, "schedule_exception[0]", "m-bad"),
    ({"schedule_exception": [{}]}, "schedule_exception[0].time_range", "m-bad"),
    ({"schedule_exception": [{"time_range": []}]}, "schedule_exception[0].time_range", "m-bad"),
    (
        {"schedule_exception": [{"time_range": {"end_sec": 5}}]},
        "schedule_exception[0].time_range.begin_sec",
        "m-bad",
    ),
    (
        {"schedule_exception": [{"time_range": {"begin_sec": 5}}]},
        "schedule_exception[0].time_range.end_sec",
        "m-bad",
    ),
    (
        {"schedule_exception": exceptions((-1, 5))},
        "schedule_exception[0].time_range.begin_sec",
        "m-bad",
    ),
    (
        {"schedule_exception": exceptions((5, 5))},
        "schedule_exception[0].time_range.end_sec",
        "m-bad",
    ),
    (
        {"schedule_exception": exceptions((0, 10), (6, 5))},
        "schedule_exception[1].time_range.end_sec",
        "m-bad",
    ),
    (
        {"schedule_exception": exceptions((10**5000, 5))},
        "schedule_exception[0].time_range.end_sec",
        "m-bad",
    ),
    (
        {"schedule_exception": [{"time_range": {"begin_sec": False, "end_sec": 5}}]},
        "schedule_exception[0].time_range.begin_sec",
        "m-bad",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "field", "merchant_id"),
    BAD_ENTRIES,
    ids=[f"{field}-{n}" for n, (_, field, _) in enumerate(BAD_ENTRIES)],
)
def test_bad_entry_is_named_by_index_merchant_and_field(
    overrides: dict[str, object], field: str, merchant_id: str | None
) -> None:
    bad = entry(**{"merchant_id": "m-bad", **overrides})

    with pytest.raises(FeedError) as caught:
        parse_feed(feed_with_bad_entry(bad))

    error = caught.value
    assert (error.index, error.merchant_id, error.field) == (BAD_ENTRY_INDEX, merchant_id, field)
    where = f"feed entry {BAD_ENTRY_INDEX}"
    if merchant_id is not None:
        where += f" (merchant_id {merchant_id!r})"
    assert str(error) == f"{where}: field {field!r}: {error.reason}"


@pytest.mark.parametrize("bad", ["entry", 5, None, [entry()], True])
def test_entry_that_is_not_an_object_is_named(bad: object) -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed(feed_with_bad_entry(bad))

    error = caught.value
    assert (error.index, error.merchant_id, error.field) == (BAD_ENTRY_INDEX, None, ENTRY_FIELD)
    assert "must be an object" in str(error)


def test_error_message_reads_as_documented() -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed(feed_with_bad_entry(entry(duration_sec=0)))

    assert str(caught.value) == (
        "feed entry 3 (merchant_id 'm1'): field 'duration_sec': must be a positive integer (got 0)"
    )
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "field",
    [
        "start_sec",
        "duration_sec",
        "spots_total",
        "spots_open",
        "resources.party_size",
        "recurrence.repeat_every_sec",
        "recurrence.repeat_until_sec",
        "schedule_exception[0].time_range.begin_sec",
        "schedule_exception[0].time_range.end_sec",
    ],
)
@pytest.mark.parametrize("boolean", [True, False])
def test_a_boolean_is_never_an_integer(field: str, boolean: bool) -> None:
    bad = recurring(
        1000,
        100,
        1200,
        spots_total=1,
        spots_open=1,
        resources={"party_size": 1},
        schedule_exception=exceptions((0, 1)),
    )
    _set_path(bad, field, boolean)

    with pytest.raises(FeedError) as caught:
        parse_feed(document(bad))

    assert caught.value.field == field
    assert f"(got {boolean})" in str(caught.value)


def _set_path(target: dict[str, object], path: str, value: object) -> None:
    """Set a dotted path such as `schedule_exception[0].time_range.end_sec` in place."""
    *parents, last = path.split(".")
    node: object = target
    for part in parents:
        name, _, position = part.partition("[")
        assert isinstance(node, dict)
        node = node[name]
        if position:
            assert isinstance(node, list)
            node = node[int(position.rstrip("]"))]
    assert isinstance(node, dict)
    node[last] = value


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ([], DOCUMENT_FIELD),
        ("feed", DOCUMENT_FIELD),
        (None, DOCUMENT_FIELD),
        ({}, "service_availability"),
        ({"service_availability": None}, "service_availability"),
        ({"service_availability": {}}, "service_availability"),
        ({"service_availability": [5]}, "service_availability[0]"),
        ({"service_availability": [{}]}, "service_availability[0].availability"),
        (
            {"service_availability": [{"availability": [entry()]}, {"availability": "x"}]},
            "service_availability[1].availability",
        ),
        ({"metadata": [], **document()}, "metadata"),
        ({"metadata": {"generation_timestamp": -1}, **document()}, "metadata.generation_timestamp"),
        (
            {"metadata": {"generation_timestamp": "x"}, **document()},
            "metadata.generation_timestamp",
        ),
        (
            {"metadata": {"generation_timestamp": True}, **document()},
            "metadata.generation_timestamp",
        ),
        (
            {"metadata": {"processing_instruction": "PROCESS_AS_INCREMENTAL"}, **document()},
            "metadata.processing_instruction",
        ),
        (
            {"metadata": {"processing_instruction": 1}, **document()},
            "metadata.processing_instruction",
        ),
        ({"metadata": {"total_shards": 2}, **document()}, "metadata.total_shards"),
    ],
)
def test_bad_document_outside_entries_is_named_by_field(bad: object, field: str) -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed(bad)

    error = caught.value
    assert (error.index, error.merchant_id, error.field) == (None, None, field)
    assert str(error) == f"feed: field {field!r}: {error.reason}"


def test_structure_is_checked_before_entries() -> None:
    bad = {"service_availability": [{"availability": [entry(start_sec=-1)]}, "x"]}

    with pytest.raises(FeedError) as caught:
        parse_feed(bad)

    assert (caught.value.index, caught.value.field) == (None, "service_availability[1]")


def test_first_bad_entry_in_document_order_is_named() -> None:
    bad = {
        "service_availability": [
            {"availability": [entry(), entry(start_sec=5, spots_open=-1)]},
            {"availability": [entry(duration_sec=0)]},
        ]
    }

    with pytest.raises(FeedError) as caught:
        parse_feed(bad)

    assert (caught.value.index, caught.value.field) == (1, "spots_open")


# --- duplicates --------------------------------------------------------------------------


def test_duplicate_slot_names_the_second_entry() -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed(feed_with_bad_entry(entry(start_sec=200)))

    error = caught.value
    assert (error.index, error.merchant_id, error.field) == (3, "m1", "start_sec")
    assert "repeats a slot of entry 1" in str(error)


def test_duplicate_from_a_recurrence() -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed(document(recurring(1000, 100, 2000), entry(start_sec=1500)))

    assert (caught.value.index, caught.value.field) == (1, "start_sec")
    assert "start_sec 1500" in str(caught.value)


def test_tag_and_names_are_not_identity() -> None:
    first = entry(availability_tag="a", resources={"staff_id": "s", "staff_name": "Ann"})
    second = entry(availability_tag="b", resources={"staff_id": "s", "staff_name": "Bob"})

    with pytest.raises(FeedError) as caught:
        parse_feed(document(first, second))

    assert caught.value.index == 1


@pytest.mark.parametrize(
    "different",
    [
        {"merchant_id": "m2"},
        {"service_id": "color"},
        {"start_sec": 1001},
        {"duration_sec": 101},
        {"resources": {"staff_id": "s2"}},
        {"resources": {"room_id": "r2"}},
        {"resources": {"party_size": 2}},
    ],
)
def test_slots_differing_in_one_identity_field_are_distinct(different: dict[str, object]) -> None:
    feed = parse_feed(document(entry(), entry(**different)))

    assert len(feed.slots) == 2


def test_slot_removed_by_an_exception_is_no_duplicate() -> None:
    with_gap = recurring(1000, 100, 1300, schedule_exception=exceptions((1100, 1200)))

    feed = parse_feed(document(with_gap, entry(start_sec=1100)))

    assert starts(feed) == [1000, 1100, 1200]


# --- limits ------------------------------------------------------------------------------


def test_max_entries() -> None:
    limits = FeedLimits(max_entries=3)
    three = [entry(start_sec=s) for s in (0, 200, 400)]

    assert len(parse_feed(document(*three), limits=limits).slots) == 3
    with pytest.raises(FeedError) as caught:
        parse_feed(feed_with_bad_entry(entry(merchant_id="m4", start_sec=600)), limits=limits)

    error = caught.value
    assert (error.index, error.merchant_id, error.field) == (3, "m4", ENTRY_FIELD)
    assert "more than 3 entries" in str(error)


def test_max_slots_is_inclusive_and_names_the_entry_that_crosses_it() -> None:
    limits = FeedLimits(max_slots=10)
    five = recurring(0, 100, 500)
    five_more = recurring(1000, 100, 1500)
    six_more = recurring(1000, 100, 1600, merchant_id="m2")

    assert len(parse_feed(document(five, five_more), limits=limits).slots) == 10
    with pytest.raises(FeedError) as caught:
        parse_feed(document(five, six_more), limits=limits)

    error = caught.value
    assert (error.index, error.merchant_id, error.field) == (1, "m2", "recurrence")
    assert "limit of 10 slots" in str(error)


def test_max_slots_counts_single_slots_too() -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed(document(entry(start_sec=0), entry()), limits=FeedLimits(max_slots=1))

    assert (caught.value.index, caught.value.field) == (1, ENTRY_FIELD)


def test_max_slots_counts_slots_before_exceptions_remove_them() -> None:
    mostly_removed = recurring(0, 100, 1000, schedule_exception=exceptions((0, 900)))

    assert starts(parse_feed(document(mostly_removed))) == [900]
    with pytest.raises(FeedError):
        parse_feed(document(mostly_removed), limits=FeedLimits(max_slots=5))


def test_huge_recurrence_is_refused_without_expanding_it() -> None:
    every_second_for_ages = recurring(0, 1, MAX_TIMESTAMP_SEC - 1000)

    with pytest.raises(FeedError) as caught:
        parse_feed(document(every_second_for_ages))

    assert caught.value.field == "recurrence"


def test_max_id_length() -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed(document(entry(service_id="abcd")), limits=FeedLimits(max_id_length=3))

    assert caught.value.field == "service_id"
    assert "at most 3 characters" in str(caught.value)


@pytest.mark.parametrize("name", ["max_entries", "max_slots", "max_id_length", "max_text_length"])
def test_limits_must_be_positive(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        FeedLimits(**{name: 0})


# --- refusal is whole --------------------------------------------------------------------


def test_refusal_returns_nothing_and_leaves_the_document_alone() -> None:
    good_then_bad = feed_with_bad_entry(entry(spots_open=9))
    before = copy.deepcopy(good_then_bad)

    with pytest.raises(FeedError):
        parse_feed(good_then_bad)

    assert good_then_bad == before


def test_parsing_leaves_the_document_alone() -> None:
    doc = json.loads(SPEC_EXAMPLE)
    before = copy.deepcopy(doc)

    parse_feed(doc)

    assert doc == before


# --- JSON text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("", "line 1 column 1"),
        ("{", "line 1 column 2"),
        ('{"service_availability": [1,]}', "line 1 column 29"),
        ('{"a": 1}\n{"b": 2}', "line 2 column 1"),
        ("nul", "line 1 column 1"),
    ],
)
def test_text_that_is_not_json_is_refused_with_its_position(text: str, where: str) -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed_json(text)

    error = caught.value
    assert (error.index, error.merchant_id, error.field) == (None, None, DOCUMENT_FIELD)
    assert str(error).startswith("feed: field '<document>': not valid JSON: ")
    assert where in str(error)


@pytest.mark.parametrize(
    "text",
    [pytest.param("[" * 100_000, id="too deep"), pytest.param("1" * 5_000, id="too many digits")],
)
def test_json_that_python_cannot_load_is_refused(text: str) -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed_json(text)

    assert (caught.value.index, caught.value.field) == (None, DOCUMENT_FIELD)


def test_json_text_is_validated_like_a_document() -> None:
    text = json.dumps(feed_with_bad_entry(entry(duration_sec=-1)))

    with pytest.raises(FeedError) as caught:
        parse_feed_json(text)

    assert (caught.value.index, caught.value.field) == (3, "duration_sec")


def test_json_text_respects_limits() -> None:
    with pytest.raises(FeedError) as caught:
        parse_feed_json(SPEC_EXAMPLE, limits=FeedLimits(max_slots=15))

    assert (caught.value.index, caught.value.field) == (0, "recurrence")
