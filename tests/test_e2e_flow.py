"""The flow of the public booking-server test client, against `leasehold serve` on its defaults.

Health check; CheckAvailability on 10 slots from the feed; CreateBooking on each;
ListBookings returns them; GetBookingStatus says CONFIRMED; reschedule one;
cancel all; ListBookings is then empty. Every availability count is checked
after each step.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import grpc
import pytest
from _api import booking_v2, slot_v2
from _server_process import leasehold_executable, running_server
from google.protobuf.field_mask_pb2 import FieldMask
from grpclib.health.v1 import health_pb2

from leasehold.core import SlotKey
from leasehold.core._feed import parse_feed
from leasehold.proto.v2 import booking_pb2 as pb2
from leasehold.proto.v2 import booking_pb2_grpc as grpc2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
T = 10.0  # per-call timeout, seconds
USER = "flow-user"


def demo_slots() -> list[tuple[SlotKey, int]]:
    """Ten multi-spot slots from the demo feed, from the middle of its 7-day window.

    The server builds its demo feed at its own start: slots well inside the window
    exist in both even if an hour boundary passes in between.
    """
    printed = subprocess.run(
        [leasehold_executable(), "feed", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    slots = parse_feed(json.loads(printed.stdout)).slots
    first = min(s.key.start_sec for s in slots)
    middle = [s for s in slots if first + 2 * 86400 <= s.key.start_sec < first + 3 * 86400]
    by_service: dict[tuple[str, str], list[tuple[SlotKey, int]]] = {}
    for spec in middle:
        if spec.spots >= 2:
            service = (spec.key.merchant_id, spec.key.service_id)
            by_service.setdefault(service, []).append((spec.key, spec.spots))
    # Round-robin over services so the flow touches several shards.
    chosen = [
        slot
        for group in itertools.zip_longest(*by_service.values())
        for slot in group
        if slot is not None
    ][:10]
    assert len(chosen) == 10, "the demo feed has too few multi-spot slots"
    return chosen


def available(stub: grpc2.BookingServiceStub, key: SlotKey) -> int:
    reply = stub.CheckAvailability(pb2.CheckAvailabilityRequest(slot=slot_v2(key)), timeout=T)
    return int(reply.count_available)


def test_booking_server_flow(tmp_path: Path) -> None:
    slots = demo_slots()
    with (
        running_server(tmp_path / "data") as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        health = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        assert health(health_pb2.HealthCheckRequest(), timeout=T).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
        stub = grpc2.BookingServiceStub(channel)
        expected = dict(slots)
        for key, spots in slots:
            assert available(stub, key) == spots

        bookings: dict[str, SlotKey] = {}
        for i, (key, _) in enumerate(slots):
            reply = stub.CreateBooking(booking_v2(key, f"flow-{i}", user_id=USER), timeout=T)
            assert reply.booking.status == pb2.CONFIRMED
            bookings[reply.booking.booking_id] = key
            expected[key] -= 1
            assert available(stub, key) == expected[key]

        listed = stub.ListBookings(pb2.ListBookingsRequest(user_id=USER), timeout=T).bookings
        assert {b.booking_id for b in listed} == set(bookings)
        for booking_id in bookings:
            status = stub.GetBookingStatus(
                pb2.GetBookingStatusRequest(booking_id=booking_id), timeout=T
            )
            assert status.booking_status == pb2.CONFIRMED

        moved_id, old_key = next(iter(bookings.items()))
        new_key = SlotKey(
            old_key.merchant_id,
            old_key.service_id,
            old_key.start_sec + 86400,
            old_key.duration_sec,
            old_key.staff_id,
            old_key.room_id,
            old_key.party_size,
        )
        before_new = available(stub, new_key)
        moved = stub.UpdateBooking(
            pb2.UpdateBookingRequest(
                update_mask=FieldMask(paths=["slot.start_time"]),
                booking=pb2.Booking(booking_id=moved_id, slot=slot_v2(new_key)),
            ),
            timeout=T,
        )
        assert moved.booking.slot.start_time.seconds == new_key.start_sec
        expected[old_key] += 1
        assert available(stub, old_key) == expected[old_key]
        assert available(stub, new_key) == before_new - 1
        bookings[moved_id] = new_key

        for booking_id in bookings:
            cancelled = stub.UpdateBooking(
                pb2.UpdateBookingRequest(
                    update_mask=FieldMask(paths=["status"]),
                    booking=pb2.Booking(booking_id=booking_id, status=pb2.CANCELED),
                ),
                timeout=T,
            )
            assert cancelled.booking.status == pb2.CANCELED
        for key, spots in slots:
            assert available(stub, key) == spots
        assert available(stub, new_key) == before_new
        empty = stub.ListBookings(pb2.ListBookingsRequest(user_id=USER), timeout=T)
        assert list(empty.bookings) == []
