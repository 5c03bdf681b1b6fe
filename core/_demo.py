"""A built-in demo availability feed, for `leasehold feed demo` and for trying the server.

The feed is in the JSON shape of spec section 4, so it can be printed with
`json.dumps` and read back by `parse_feed`. Four merchants (a hair salon, a
restaurant, a yoga studio, a dentist) open on daily schedules in UTC; each
service-day is one entry with a `recurrence`, the salon's haircuts have a
lunch break as a `schedule_exception`, and capacities run from 1 (a stylist,
a dentist) to 20 (a yoga class).

The window is the 7 days (168 hours) from the first whole hour at or after
`now_sec`, so every slot starts in the future and none past the window; a
slot also ends by its service's closing time. Core has no clock: the caller
passes now, and the same now always gives the same feed.
"""

from __future__ import annotations

from dataclasses import dataclass

HOUR = 3_600
DAY = 86_400
WINDOW_DAYS = 7
# 1970-01-01, day 0 of the epoch, was a Thursday (weekday 3, Monday being 0).
_EPOCH_WEEKDAY = 3
MONDAY, SATURDAY, SUNDAY = 0, 5, 6


@dataclass(frozen=True, slots=True)
class _Offer:
    """One service (with at most one staff, room or party size) on a daily schedule."""

    merchant_id: str
    service_id: str
    duration_sec: int
    every_sec: int
    # Opening hours, in seconds after midnight UTC; slots start at opens and end by closes.
    opens: int
    closes: int
    spots_total: int
    spots_open: int
    # The feed's `resources` object, as (key, value) pairs; () for none.
    resources: tuple[tuple[str, str | int], ...] = ()
    availability_tag: str = ""
    closed_weekdays: frozenset[int] = frozenset()
    # Daily (begin, end) seconds after midnight, sent as schedule exceptions.
    breaks: tuple[tuple[int, int], ...] = ()


def _staff(staff_id: str, staff_name: str) -> tuple[tuple[str, str | int], ...]:
    return (("staff_id", staff_id), ("staff_name", staff_name))


def _room(room_id: str, room_name: str) -> tuple[tuple[str, str | int], ...]:
    return (("room_id", room_id), ("room_name", room_name))


def _party(size: int) -> tuple[tuple[str, str | int], ...]:
    return (("party_size", size),)


_SALON = "salon-lucia"
_RESTAURANT = "trattoria-roma"
_YOGA = "yoga-lotus"
_DENTIST = "dentist-smile"

# fmt: off
_OFFERS: tuple[_Offer, ...] = (
    _Offer(
        _SALON, "haircut", duration_sec=30 * 60, every_sec=30 * 60,
        opens=9 * HOUR, closes=18 * HOUR, spots_total=1, spots_open=1,
        resources=_staff("st-ann", "Ann"),
        closed_weekdays=frozenset({SUNDAY}),
        breaks=((12 * HOUR, 13 * HOUR),),
    ),
    _Offer(
        _SALON, "haircut", duration_sec=30 * 60, every_sec=30 * 60,
        opens=9 * HOUR, closes=18 * HOUR, spots_total=1, spots_open=1,
        resources=_staff("st-bob", "Bob"),
        closed_weekdays=frozenset({SUNDAY, MONDAY}),
        breaks=((13 * HOUR, 14 * HOUR),),
    ),
    _Offer(
        _SALON, "coloring", duration_sec=90 * 60, every_sec=2 * HOUR,
        opens=10 * HOUR, closes=18 * HOUR, spots_total=1, spots_open=1,
        resources=_staff("st-ann", "Ann"),
        closed_weekdays=frozenset({SUNDAY}),
    ),
    _Offer(
        _RESTAURANT, "dinner", duration_sec=90 * 60, every_sec=30 * 60,
        opens=18 * HOUR, closes=23 * HOUR, spots_total=8, spots_open=8,
        resources=_party(2), availability_tag="dinner-table-2",
    ),
    _Offer(
        _RESTAURANT, "dinner", duration_sec=90 * 60, every_sec=30 * 60,
        opens=18 * HOUR, closes=23 * HOUR, spots_total=6, spots_open=5,
        resources=_party(4), availability_tag="dinner-table-4",
    ),
    _Offer(
        _RESTAURANT, "dinner", duration_sec=90 * 60, every_sec=30 * 60,
        opens=18 * HOUR, closes=23 * HOUR, spots_total=2, spots_open=2,
        resources=_party(6), availability_tag="dinner-table-6",
    ),
    _Offer(
        _RESTAURANT, "lunch", duration_sec=HOUR, every_sec=30 * 60,
        opens=12 * HOUR, closes=15 * HOUR, spots_total=6, spots_open=6,
        resources=_party(2), availability_tag="lunch-table-2",
        closed_weekdays=frozenset({MONDAY}),
    ),
    _Offer(
        _YOGA, "morning-flow", duration_sec=HOUR, every_sec=90 * 60,
        opens=7 * HOUR, closes=10 * HOUR, spots_total=20, spots_open=20,
        resources=_room("studio-a", "Studio A"),
    ),
    _Offer(
        _YOGA, "evening-class", duration_sec=75 * 60, every_sec=2 * HOUR,
        opens=17 * HOUR, closes=21 * HOUR, spots_total=20, spots_open=12,
        resources=_room("studio-b", "Studio B"),
    ),
    _Offer(
        _DENTIST, "checkup", duration_sec=30 * 60, every_sec=30 * 60,
        opens=8 * HOUR, closes=16 * HOUR, spots_total=1, spots_open=1,
        resources=_staff("dr-lee", "Dr. Lee"),
        closed_weekdays=frozenset({SATURDAY, SUNDAY}),
    ),
    _Offer(
        _DENTIST, "cleaning", duration_sec=HOUR, every_sec=HOUR,
        opens=9 * HOUR, closes=15 * HOUR, spots_total=1, spots_open=1,
        resources=_staff("hyg-kim", "Kim"),
        closed_weekdays=frozenset({SATURDAY, SUNDAY}),
    ),
)
# fmt: on


def demo_feed(now_sec: int) -> dict[str, object]:
    """The demo feed for the 7 days from the first whole hour at or after `now_sec`."""
    window_start = -(-now_sec // HOUR) * HOUR
    window_end = window_start + WINDOW_DAYS * DAY
    by_service: dict[tuple[str, str], list[object]] = {}
    for offer in _OFFERS:
        entries = by_service.setdefault((offer.merchant_id, offer.service_id), [])
        entries.extend(_daily_entries(offer, window_start, window_end))
    by_service[(_YOGA, "sunset-meditation")] = [_one_off_event(window_start)]
    return {
        "metadata": {
            "processing_instruction": "PROCESS_AS_COMPLETE",
            "generation_timestamp": now_sec,
        },
        "service_availability": [
            {"availability": entries} for entries in by_service.values() if entries
        ],
    }


def _daily_entries(offer: _Offer, window_start: int, window_end: int) -> list[object]:
    """One recurring entry per open day whose hours meet the window."""
    entries: list[object] = []
    first_midnight = window_start - window_start % DAY
    # WINDOW_DAYS + 1 calendar days: a window that starts mid-day ends mid-day too.
    for day in range(WINDOW_DAYS + 1):
        midnight = first_midnight + day * DAY
        if _weekday(midnight) in offer.closed_weekdays:
            continue
        start = _first_start_at_or_after(midnight + offer.opens, offer.every_sec, window_start)
        # The last slot must end by closing time and start inside the window.
        until = min(midnight + offer.closes - offer.duration_sec + 1, window_end)
        if start < until:
            entries.append(_entry(offer, midnight, start, until))
    return entries


def _first_start_at_or_after(opens: int, every_sec: int, earliest: int) -> int:
    """The first start on the day's grid (opens + k * every_sec) that is not before earliest."""
    if opens >= earliest:
        return opens
    steps = -(-(earliest - opens) // every_sec)
    return opens + steps * every_sec


def _entry(offer: _Offer, midnight: int, start: int, until: int) -> dict[str, object]:
    entry: dict[str, object] = {
        "merchant_id": offer.merchant_id,
        "service_id": offer.service_id,
        "start_sec": start,
        "duration_sec": offer.duration_sec,
        "spots_total": offer.spots_total,
        "spots_open": offer.spots_open,
        "recurrence": {"repeat_every_sec": offer.every_sec, "repeat_until_sec": until},
    }
    if offer.availability_tag:
        entry["availability_tag"] = offer.availability_tag
    if offer.resources:
        entry["resources"] = dict(offer.resources)
    if offer.breaks:
        entry["schedule_exception"] = [
            {"time_range": {"begin_sec": midnight + begin, "end_sec": midnight + end}}
            for begin, end in offer.breaks
        ]
    return entry


def _one_off_event(window_start: int) -> dict[str, object]:
    """A single class with no recurrence, 19:00 UTC on the fourth calendar day of the window.

    The window starts within that calendar's first day, so this is always inside it.
    """
    first_midnight = window_start - window_start % DAY
    return {
        "merchant_id": _YOGA,
        "service_id": "sunset-meditation",
        "start_sec": first_midnight + 3 * DAY + 19 * HOUR,
        "duration_sec": 90 * 60,
        "spots_total": 20,
        "spots_open": 20,
        "resources": dict(_room("studio-a", "Studio A")),
    }


def _weekday(midnight: int) -> int:
    return (midnight // DAY + _EPOCH_WEEKDAY) % 7
