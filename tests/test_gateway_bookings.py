"""Cancel, reschedule, status, listing and batch lookup through the gateway (spec section 5)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from _api import booking_v0, booking_v2, lease_v0, slot_v2
from _gateway_harness import Harness, in_memory_gateway, run
from google.protobuf.field_mask_pb2 import FieldMask
from grpclib import Status
from grpclib.exceptions import GRPCError

from leasehold.core import SlotKey, SlotSpec
from leasehold.proto.v0 import booking_grpc as grpc0
from leasehold.proto.v0 import booking_pb2 as pb0
from leasehold.proto.v2 import booking_grpc as grpc2
from leasehold.proto.v2 import booking_pb2 as pb2

FUTURE = 4_102_444_800  # 2100-01-01
PAST = 1_000_000_000  # 2001: a slot that has ended
A = SlotKey("m1", "cut", FUTURE + 3600, 1800)
B = SlotKey("m1", "cut", FUTURE, 1800)  # earlier than A
FULL = SlotKey("m1", "cut", FUTURE + 7200, 1800)  # 1 spot
OLD = SlotKey("m1", "cut", PAST, 1800)
YOGA = SlotKey("m2", "yoga", FUTURE, 3600)
SLOTS = [
    SlotSpec(A, 3, 3),
    SlotSpec(B, 3, 3),
    SlotSpec(FULL, 1, 1),
    SlotSpec(OLD, 3, 3),
    SlotSpec(YOGA, 2, 2),
]

Stubs = tuple[grpc2.BookingServiceStub, grpc0.BookingServiceStub]


def scenario(body: Callable[[Harness, Stubs], Awaitable[None]], shard_count: int = 3) -> None:
    async def main() -> None:
        async with in_memory_gateway(SLOTS, shard_count=shard_count) as harness:
            stubs = (
                grpc2.BookingServiceStub(harness.channel),
                grpc0.BookingServiceStub(harness.channel),
            )
            await body(harness, stubs)

    run(main)


async def refused(call: Awaitable[object]) -> GRPCError:
    with pytest.raises(GRPCError) as caught:
        await call
    return caught.value


async def open_spots(v2: grpc2.BookingServiceStub, key: SlotKey) -> int:
    reply = await v2.CheckAvailability(pb2.CheckAvailabilityRequest(slot=slot_v2(key)))
    return int(reply.count_available)


def cancel_v2(booking_id: str) -> pb2.UpdateBookingRequest:
    return pb2.UpdateBookingRequest(
        update_mask=FieldMask(paths=["status"]),
        booking=pb2.Booking(booking_id=booking_id, status=pb2.CANCELED),
    )


def reschedule_v2(booking_id: str, to: SlotKey) -> pb2.UpdateBookingRequest:
    booking = pb2.Booking(booking_id=booking_id, slot=slot_v2(to))
    return pb2.UpdateBookingRequest(
        update_mask=FieldMask(paths=["slot.start_time", "slot.duration"]), booking=booking
    )


async def book(v2: grpc2.BookingServiceStub, key: SlotKey, token: str, user: str = "u1") -> str:
    reply = await v2.CreateBooking(booking_v2(key, token, user_id=user))
    assert reply.booking.status == pb2.CONFIRMED, reply
    return str(reply.booking.booking_id)


# ----- UpdateBooking v2 -------------------------------------------------------------------


def test_v2_cancel_returns_the_spot_and_is_idempotent() -> None:
    async def body(h: Harness, stubs: Stubs) -> None:
        v2, v0 = stubs
        booking_id = await book(v2, FULL, "t")
        assert await open_spots(v2, FULL) == 0
        cancelled = await v2.UpdateBooking(cancel_v2(booking_id))
        assert cancelled.booking.status == pb2.CANCELED
        assert cancelled.booking.slot == slot_v2(FULL)
        assert await open_spots(v2, FULL) == 1
        again = await v2.UpdateBooking(cancel_v2(booking_id))
        assert again == cancelled
        assert not again.HasField("booking_failure")
        lease = (await v0.CreateLease(lease_v0(FULL, "v0-after-cancel"))).lease
        assert lease.lease_id  # the freed spot is usable through v0 too

    scenario(body)


def test_v2_reschedule_moves_the_booking_atomically() -> None:
    async def body(h: Harness, stubs: Stubs) -> None:
        v2, _ = stubs
        booking_id = await book(v2, A, "t")
        moved = await v2.UpdateBooking(reschedule_v2(booking_id, B))
        assert moved.booking.slot.start_time.seconds == B.start_sec
        assert (await open_spots(v2, A), await open_spots(v2, B)) == (3, 2)
        await book(v2, FULL, "filler", user="other")
        full = await v2.UpdateBooking(reschedule_v2(booking_id, FULL))
        assert full.booking_failure.cause == pb2.BookingFailure.SLOT_UNAVAILABLE
        assert await open_spots(v2, B) == 2  # the old spot is kept when the new one is not taken
        await v2.UpdateBooking(cancel_v2(booking_id))
        gone = await v2.UpdateBooking(reschedule_v2(booking_id, A))
        assert gone.booking_failure.cause == pb2.BookingFailure.BOOKING_ALREADY_CANCELLED

    scenario(body)


@pytest.mark.parametrize(
    ("request_", "status", "field"),
    [
        pytest.param(cancel_v2(""), Status.INVALID_ARGUMENT, "booking.booking_id", id="empty-id"),
        pytest.param(cancel_v2("B1unknown"), Status.NOT_FOUND, "booking.booking_id", id="unknown"),
        pytest.param(
            pb2.UpdateBookingRequest(
                update_mask=FieldMask(paths=["user_information"]),
                booking=pb2.Booking(booking_id="B1x"),
            ),
            Status.INVALID_ARGUMENT,
            "update_mask",
            id="other-path",
        ),
        pytest.param(
            pb2.UpdateBookingRequest(booking=pb2.Booking(booking_id="B1x")),
            Status.INVALID_ARGUMENT,
            "update_mask",
            id="empty-mask",
        ),
        pytest.param(
            pb2.UpdateBookingRequest(
                update_mask=FieldMask(paths=["status", "slot.start_time"]),
                booking=pb2.Booking(booking_id="B1x", status=pb2.CANCELED),
            ),
            Status.INVALID_ARGUMENT,
            "update_mask",
            id="cancel-with-reschedule",
        ),
        pytest.param(
            pb2.UpdateBookingRequest(
                update_mask=FieldMask(paths=["status"]),
                booking=pb2.Booking(booking_id="B1x", status=pb2.CONFIRMED),
            ),
            Status.INVALID_ARGUMENT,
            "booking.status",
            id="status-not-canceled",
        ),
    ],
)
def test_v2_bad_updates(request_: pb2.UpdateBookingRequest, status: Status, field: str) -> None:
    async def body(h: Harness, stubs: Stubs) -> None:
        error = await refused(stubs[0].UpdateBooking(request_))
        assert error.status is status
        assert (error.message or "").startswith(f"{field}:"), error.message

    scenario(body)


def test_v2_reschedule_to_an_unknown_slot_is_invalid() -> None:
    async def body(h: Harness, stubs: Stubs) -> None:
        v2, _ = stubs
        booking_id = await book(v2, A, "t")
        nowhere = SlotKey("m1", "cut", FUTURE + 99, 1800)
        error = await refused(v2.UpdateBooking(reschedule_v2(booking_id, nowhere)))
        assert error.status is Status.INVALID_ARGUMENT

    scenario(body)


# ----- UpdateBooking v0 -------------------------------------------------------------------


async def book_v0(v0: grpc0.BookingServiceStub, key: SlotKey, ref: str, email: str) -> str:
    lease = (await v0.CreateLease(lease_v0(key, ref))).lease
    return str((await v0.CreateBooking(booking_v0(lease.lease_id, email))).booking.booking_id)


def update_v0(booking: pb0.Booking, *paths: str) -> pb0.UpdateBookingRequest:
    return pb0.UpdateBookingRequest(update_mask=FieldMask(paths=list(paths)), booking=booking)


def test_v0_cancel_reschedule_and_their_status_codes() -> None:
    async def body(h: Harness, stubs: Stubs) -> None:
        v2, v0 = stubs
        booking_id = await book_v0(v0, A, "r1", "ann@example.com")
        target = pb0.Booking(booking_id=booking_id)
        target.start_time.seconds = B.start_sec
        moved = await v0.UpdateBooking(update_v0(target, "start_time"))
        assert moved.booking.start_time.seconds == B.start_sec
        assert moved.booking.client_information.email == "ann@example.com"
        await book(v2, FULL, "filler")
        to_full = pb0.Booking(booking_id=booking_id)
        to_full.start_time.seconds = FULL.start_sec
        error = await refused(v0.UpdateBooking(update_v0(to_full, "start_time")))
        assert error.status is Status.RESOURCE_EXHAUSTED
        cancel = pb0.Booking(booking_id=booking_id, status=pb0.CANCELED)
        cancelled = await v0.UpdateBooking(update_v0(cancel, "status"))
        assert cancelled.booking.status == pb0.CANCELED
        assert await v0.UpdateBooking(update_v0(cancel, "status")) == cancelled
        error = await refused(v0.UpdateBooking(update_v0(target, "start_time")))
        assert error.status is Status.INVALID_ARGUMENT  # rescheduling a cancelled booking
        error = await refused(v0.UpdateBooking(update_v0(pb0.Booking(booking_id="x"), "status")))
        assert error.status is Status.INVALID_ARGUMENT  # status must be CANCELED
        unknown = pb0.Booking(booking_id="B1nope", status=pb0.CANCELED)
        error = await refused(v0.UpdateBooking(update_v0(unknown, "status")))
        assert error.status is Status.NOT_FOUND
        error = await refused(v0.UpdateBooking(update_v0(target, "slot.start_time")))
        assert error.status is Status.INVALID_ARGUMENT  # v2 paths are not v0 paths

    scenario(body)


# ----- GetBookingStatus and ListBookings --------------------------------------------------


def test_get_booking_status() -> None:
    async def body(h: Harness, stubs: Stubs) -> None:
        v2, _ = stubs
        booking_id = await book(v2, A, "t")
        reply = await v2.GetBookingStatus(pb2.GetBookingStatusRequest(booking_id=booking_id))
        assert reply.booking_id == booking_id
        assert reply.booking_status == pb2.CONFIRMED
        assert reply.prepayment_status == pb2.PREPAYMENT_NOT_PROVIDED
        await v2.UpdateBooking(cancel_v2(booking_id))
        reply = await v2.GetBookingStatus(pb2.GetBookingStatusRequest(booking_id=booking_id))
        assert reply.booking_status == pb2.CANCELED
        missing = await refused(v2.GetBookingStatus(pb2.GetBookingStatusRequest(booking_id="B1no")))
        assert missing.status is Status.NOT_FOUND
        empty = await refused(v2.GetBookingStatus(pb2.GetBookingStatusRequest()))
        assert empty.status is Status.INVALID_ARGUMENT

    scenario(body)


def test_list_bookings_merges_shards_by_start_time_and_skips_cancelled_and_ended() -> None:
    async def body(h: Harness, stubs: Stubs) -> None:
        v2, _ = stubs
        late = await book(v2, A, "t1", user="ann")
        yoga = await book(v2, YOGA, "t2", user="ann")  # another service: maybe another shard
        early = await book(v2, B, "t3", user="ann")
        await book(v2, OLD, "t4", user="ann")  # its slot has ended
        cancelled = await book(v2, FULL, "t5", user="ann")
        await v2.UpdateBooking(cancel_v2(cancelled))
        await book(v2, A, "t6", user="bob")
        listed = await v2.ListBookings(pb2.ListBookingsRequest(user_id="ann"))
        ids = [b.booking_id for b in listed.bookings]
        assert set(ids) == {late, yoga, early}
        starts = [b.slot.start_time.seconds for b in listed.bookings]
        assert starts == sorted(starts)
        nobody = await v2.ListBookings(pb2.ListBookingsRequest(user_id="nobody"))
        assert list(nobody.bookings) == []
        error = await refused(v2.ListBookings(pb2.ListBookingsRequest()))
        assert error.status is Status.INVALID_ARGUMENT

    scenario(body)


# ----- BatchAvailabilityLookup ------------------------------------------------------------


def slot_time(key: SlotKey) -> pb2.SlotTime:
    return pb2.SlotTime(
        start_sec=key.start_sec, duration_sec=key.duration_sec, service_id=key.service_id
    )


def test_batch_lookup_answers_in_request_order() -> None:
    async def body(h: Harness, stubs: Stubs) -> None:
        v2, _ = stubs
        await book(v2, FULL, "t")
        times = [
            slot_time(A),
            slot_time(FULL),
            slot_time(SlotKey("m1", "cut", 5, 60)),
            slot_time(B),
        ]
        reply = await v2.BatchAvailabilityLookup(
            pb2.BatchAvailabilityLookupRequest(merchant_id="m1", slot_time=times)
        )
        assert [a.slot_time for a in reply.slot_time_availability] == times
        assert [a.available for a in reply.slot_time_availability] == [True, False, False, True]
        error = await refused(
            v2.BatchAvailabilityLookup(pb2.BatchAvailabilityLookupRequest(merchant_id="nobody"))
        )
        assert error.status is Status.INVALID_ARGUMENT
        assert (error.message or "").startswith("merchant_id:")

    scenario(body)
