"""`leasehold slots`: the concrete bookable slots of a feed, ready to paste into a call.

The feed is the one `leasehold serve` would serve from the same directory: `--feed`,
else the one recorded in `--data-dir`, else the built-in demo feed. With `--target`
each slot also gets the running server's live count (CheckAvailability).
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from leasehold._slot_json import rfc3339, slot_json, slot_order, slot_time_json
from leasehold.core import FeedError, SlotSpec, demo_feed, parse_feed_json
from leasehold.shards import recorded_feed

FORMATS = ("table", "json", "grpcurl", "slot_time")
DEFAULT_LIMIT = 10


class SlotsError(Exception):
    """Why the slots could not be listed (one line for the user)."""


@dataclass(frozen=True, slots=True)
class Filters:
    merchant: str | None = None
    service: str | None = None
    # Unix seconds; slots starting in [after, before).
    after: int = 0
    before: int | None = None


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "slots",
        help="list bookable slots (demo feed, --feed, or a live server with --target)",
        description="List concrete bookable slots, earliest first, as leasehold serve "
        "would serve them from the same directory.",
    )
    cmd.add_argument("--feed", type=Path, help="feed JSON (default: as serve picks it)")
    cmd.add_argument("--data-dir", type=Path, default=Path("data"), help="serve's --data-dir")
    cmd.add_argument("--target", metavar="HOST:PORT", help="add live counts from this server")
    cmd.add_argument("--merchant", help="only this merchant_id")
    cmd.add_argument("--service", help="only this service_id")
    cmd.add_argument("--from", dest="after", type=_instant, help="RFC 3339 (default: now)")
    cmd.add_argument("--to", dest="before", type=_instant, help="RFC 3339: slots starting before")
    cmd.add_argument("--format", choices=FORMATS, default="table", help="output (default: table)")
    cmd.add_argument(
        "--limit", type=_count, default=DEFAULT_LIMIT, help=f"at most N (default {DEFAULT_LIMIT})"
    )


def slots_main(args: argparse.Namespace) -> int:
    """Print the slots; SlotsError for a bad feed or an unreachable target."""
    feed_text = _feed_text(args.feed, args.data_dir)
    try:
        feed = parse_feed_json(feed_text)
    except FeedError as problem:
        raise SlotsError(f"cannot load the feed: {problem}") from problem
    now = int(time.time())
    filters = Filters(args.merchant, args.service, args.after or now, args.before)
    chosen = select(feed.slots, filters, args.limit)
    counts = None
    if args.target is not None:
        import asyncio

        from leasehold._slots_live import live_counts  # grpclib and protobuf: only with --target

        counts = asyncio.run(live_counts(args.target, chosen))
    print(render(chosen, counts, args.format))
    return 0


def select(slots: Iterable[SlotSpec], filters: Filters, limit: int) -> list[SlotSpec]:
    """The first `limit` slots by start time (then merchant, service) that pass the filters."""
    kept = [
        spec
        for spec in slots
        if (filters.merchant is None or spec.key.merchant_id == filters.merchant)
        and (filters.service is None or spec.key.service_id == filters.service)
        and spec.key.start_sec >= filters.after
        and (filters.before is None or spec.key.start_sec < filters.before)
    ]
    kept.sort(key=slot_order)
    return kept[:limit]


def render(slots: Sequence[SlotSpec], counts: Sequence[int] | None, fmt: str) -> str:
    if fmt == "grpcurl":
        return "\n".join(json.dumps(slot_json(s), separators=(",", ":")) for s in slots)
    if fmt == "slot_time":
        return "\n".join(json.dumps(slot_time_json(s), separators=(",", ":")) for s in slots)
    if fmt == "json":
        rows = [_json_row(s, None if counts is None else counts[i]) for i, s in enumerate(slots)]
        return json.dumps(rows, indent=1)
    return _table(slots, counts)


def _json_row(spec: SlotSpec, available: int | None) -> dict[str, object]:
    row = slot_json(spec)
    row["spots_open"], row["spots_total"] = spec.spots, spec.spots_total
    if available is not None:
        row["available_now"] = available
    return row


def _table(slots: Sequence[SlotSpec], counts: Sequence[int] | None) -> str:
    head = ["merchant_id", "service_id", "start_time", "duration", "resources", "spots"]
    if counts is not None:
        head.append("available_now")
    rows = [head]
    for index, spec in enumerate(slots):
        resources = slot_json(spec).get("resources", {})
        assert isinstance(resources, dict)
        row = [
            spec.key.merchant_id,
            spec.key.service_id,
            rfc3339(spec.key.start_sec),
            f"{spec.key.duration_sec}s",
            ",".join(f"{k}={v}" for k, v in resources.items()) or "-",
            f"{spec.spots}/{spec.spots_total}",
        ]
        if counts is not None:
            row.append(str(counts[index]))
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _feed_text(path: Path | None, data_dir: Path) -> str:
    try:
        if path is not None:
            return path.read_text(encoding="utf-8")
        recorded = recorded_feed(data_dir)
    except (OSError, UnicodeDecodeError) as problem:
        raise SlotsError(f"cannot read the feed: {problem}") from problem
    return recorded if recorded is not None else json.dumps(demo_feed(int(time.time())))


def _instant(text: str) -> int:
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)  # the feed's times are UTC
    return int(moment.timestamp())


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count of at least 1")
    return value
