"""Nothing acknowledged is lost: SIGKILL `leasehold serve` mid-load, restart, check every ack.

Clients lease, book and cancel concurrently and remember every answer they got.
After a kill -9 and a restart on the same data dir: every acknowledged lease
and booking is there (replays return the original answers), every acknowledged
cancel holds, and no slot holds more than its spots. Operations that were in
flight at the kill may or may not have happened; either is allowed.
"""

from __future__ import annotations

import signal
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from _api import booking_v2, lease_v2, slot_v2
from _server_process import running_server, write_feed
from google.protobuf.field_mask_pb2 import FieldMask

from leasehold.core import SlotKey
from leasehold.proto.v2 import booking_pb2 as pb2
from leasehold.proto.v2 import booking_pb2_grpc as grpc2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

START = 4_102_444_800
SLOTS = [SlotKey(f"m{i % 3}", f"s{i % 2}", START + 3600 * i, 1800) for i in range(12)]
SPOTS = 6
T = 10.0


@dataclass
class Acked:
    """What the clients were told, by slot."""

    leases: dict[tuple[SlotKey, str], pb2.Lease] = field(default_factory=dict)
    bookings: dict[str, tuple[SlotKey, pb2.CreateBookingResponse]] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def feed(path: Path) -> Path:
    entries = [
        {
            "merchant_id": k.merchant_id,
            "service_id": k.service_id,
            "start_sec": k.start_sec,
            "duration_sec": k.duration_sec,
            "spots_total": SPOTS,
            "spots_open": SPOTS,
        }
        for k in SLOTS
    ]
    return write_feed(path, {"service_availability": [{"availability": entries}]})


def client(target: str, worker: int, acked: Acked, stop: threading.Event) -> None:
    """Lease, book every other lease, cancel every third booking, until the server dies."""
    with grpc.insecure_channel(target) as channel:
        stub = grpc2.BookingServiceStub(channel)
        i = 0
        while not stop.is_set():
            key, ref = SLOTS[(worker + i) % len(SLOTS)], f"w{worker}-{i}"
            i += 1
            try:
                reply = stub.CreateLease(lease_v2(key, ref), timeout=T)
                if not reply.HasField("lease"):
                    continue  # slot full
                with acked.lock:
                    acked.leases[(key, ref)] = reply.lease
                if i % 2:
                    continue
                token = f"tok-{ref}"
                booked = stub.CreateBooking(
                    booking_v2(key, token, user_id=ref, lease_id=reply.lease.lease_id), timeout=T
                )
                with acked.lock:
                    acked.bookings[token] = (key, booked)
                if i % 3 == 0:
                    stub.UpdateBooking(cancel(booked.booking.booking_id), timeout=T)
                    with acked.lock:
                        acked.cancelled.add(booked.booking.booking_id)
            except grpc.RpcError:
                return  # the server was killed: what is unanswered is unknown


def cancel(booking_id: str) -> pb2.UpdateBookingRequest:
    return pb2.UpdateBookingRequest(
        update_mask=FieldMask(paths=["status"]),
        booking=pb2.Booking(booking_id=booking_id, status=pb2.CANCELED),
    )


def load_then_kill(data: Path, feed_path: Path, acked: Acked) -> None:
    with running_server(data, "--feed", str(feed_path), "--durability", "sync") as server:
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures: list[Future[None]] = [
                pool.submit(client, server.target, w, acked, stop) for w in range(8)
            ]
            while len(acked.leases) < 60 and not any(f.done() for f in futures):
                threading.Event().wait(0.01)
            server.process.send_signal(signal.SIGKILL)  # mid-load, no warning
            server.process.wait(timeout=T)
            stop.set()
            for f in futures:
                f.result(timeout=T)
        assert server.process.returncode == -signal.SIGKILL
        # running_server insists on exit 0 at the end: the process is already gone.
        server.process.returncode = 0


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data, feed_path, acked = tmp_path / "data", feed(tmp_path / "feed.json"), Acked()
    load_then_kill(data, feed_path, acked)
    assert acked.leases, "the load never got an answer"
    with (
        running_server(data, "--feed", str(feed_path)) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = grpc2.BookingServiceStub(channel)
        for (key, ref), lease in acked.leases.items():
            again = stub.CreateLease(lease_v2(key, ref), timeout=T)
            assert again.lease == lease, f"lease {ref} changed across the crash"
        holders: dict[SlotKey, int] = dict.fromkeys(SLOTS, 0)
        for token, (key, response) in acked.bookings.items():
            booking_id = response.booking.booking_id
            replay = stub.CreateBooking(booking_v2(key, token, user_id="x"), timeout=T)
            assert replay == response, f"token {token} did not replay its answer"
            status = stub.GetBookingStatus(
                pb2.GetBookingStatusRequest(booking_id=booking_id), timeout=T
            )
            if booking_id in acked.cancelled:
                assert status.booking_status == pb2.CANCELED
            else:
                assert status.booking_status in (pb2.CONFIRMED, pb2.CANCELED)
                holders[key] += status.booking_status == pb2.CONFIRMED
        for (key, ref), _ in acked.leases.items():
            if f"tok-{ref}" not in acked.bookings:
                holders[key] += 1  # a lease never booked is still live (5 min TTL)
        for key in SLOTS:
            open_now = stub.CheckAvailability(
                pb2.CheckAvailabilityRequest(slot=slot_v2(key)), timeout=T
            ).count_available
            assert 0 <= open_now <= SPOTS - holders[key], (key, open_now, holders[key])
