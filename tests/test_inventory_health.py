"""Operators see live inventory: a real change through the admin port shows in the health
stream and on /metrics (slots, changes, the last change's time, orphaned bookings).

End to end on loopback: `leasehold serve` in a subprocess, a booking made over v2,
then one ReplaceServiceAvailability that removes the booked slot and raises
another. Absolute timeouts; no assertion on how long anything took.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trio
from _api import booking_v2, lease_v2
from _health_frames import next_health
from _server_process import ServerProcess, running_server, write_feed
from prometheus_client.parser import text_string_to_metric_families

from leasehold.bench._admin import window_request
from leasehold.core import SlotKey
from leasehold.health.frames import Health
from leasehold.health.watch import open_watch
from leasehold.proto.admin.v1 import inventory_pb2_grpc as pba_grpc
from leasehold.proto.v2 import booking_pb2_grpc as grpc2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

START = 4_102_444_800  # 2100-01-01: slots that have not ended, whenever the test runs
KEYS = [SlotKey("m1", "svc", START + i * 1800, 1800) for i in range(3)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    entries = [
        {
            "merchant_id": k.merchant_id,
            "service_id": k.service_id,
            "start_sec": k.start_sec,
            "duration_sec": k.duration_sec,
            "spots_total": 2,
            "spots_open": 2,
        }
        for k in KEYS
    ]
    feed = write_feed(tmp_path / "feed.json", {"service_availability": [{"availability": entries}]})
    with running_server(tmp_path / "data", "--feed", str(feed), "--shards", "2") as process:
        yield process


def admin_target(server: ServerProcess) -> str:
    target = server.admin_target()
    assert target is not None, "no admin service line:\n" + "".join(server.output)
    return target


def book_then_change(server: ServerProcess) -> tuple[float, float]:
    """Book KEYS[0]; then remove it (orphaning the booking) and raise KEYS[1] to 5."""
    with grpc.insecure_channel(server.target) as channel:
        stub = grpc2.BookingServiceStub(channel)
        lease = stub.CreateLease(lease_v2(KEYS[0], "ref-1"), timeout=10).lease
        booked = stub.CreateBooking(booking_v2(KEYS[0], "tok-1", lease_id=lease.lease_id))
        assert booked.booking.booking_id
    request = window_request(KEYS, [0, 1, 2], {1: 5, 2: 2})
    before = time.time()
    with grpc.insecure_channel(admin_target(server)) as channel:
        report = pba_grpc.InventoryServiceStub(channel).ReplaceServiceAvailability(
            request, timeout=10
        )
    after = time.time()
    assert (report.removed, report.kept_booked, report.changed) == (1, 1, 1), report
    return before, after


async def a_frame_after(url: str, since: float) -> Health:
    """The first health frame whose figures were taken after `since` (Unix seconds)."""
    async with open_watch(url, interval_s=0.1) as (ws, _):
        while True:
            frame = await next_health(ws)
            if frame.at > since:
                return frame


async def test_a_change_shows_in_the_health_stream(server: ServerProcess) -> None:
    url = server.health_url()
    assert url is not None
    with trio.fail_after(30):
        first = await a_frame_after(url, 0.0)
        assert sum(s.slots or 0 for s in first.shards) == 3
        assert sum(s.orphaned_bookings or 0 for s in first.shards) == 0
        changes_before = sum(s.inventory_changes_total or 0 for s in first.shards)
        before, after = await trio.to_thread.run_sync(book_then_change, server)
        frame = await a_frame_after(url, after)
    shards = frame.shards
    assert sum(s.slots or 0 for s in shards) == 2  # KEYS[0] is off sale
    assert sum(s.orphaned_bookings or 0 for s in shards) == 1
    assert sum(s.inventory_changes_total or 0 for s in shards) > changes_before
    last = max(s.inventory_last_change_at or 0.0 for s in shards)
    # The server's clock and ours are the same machine's; a little slack for its anchor.
    assert before - 1.0 <= last <= after + 1.0


async def test_a_change_shows_on_metrics(server: ServerProcess) -> None:
    url = server.health_url()
    assert url is not None
    with trio.fail_after(30):
        await trio.to_thread.run_sync(book_then_change, server)
        host = url.split("//", 1)[1].rstrip("/")
        text = await trio.to_thread.run_sync(scrape, f"http://{host}/metrics")
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    assert values["leasehold_slots"] == 2
    assert values["leasehold_orphaned_bookings"] == 1
    assert values["leasehold_inventory_changes_total"] >= 1
    assert values["leasehold_inventory_last_change_timestamp_seconds"] > 0


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return bytes(answer.read()).decode()
