"""ext.maps.booking.partner.v2.BookingService: decode, route, await the shard, encode."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from grpclib.server import Stream

from leasehold import core
from leasehold.core import ApiVersion, Booking, Lease
from leasehold.gateway import _fields as f
from leasehold.gateway import _v2_codec as codec
from leasehold.gateway._router import Router
from leasehold.gateway._settle import settle, settle_strict
from leasehold.gateway._status import Failure, invalid, unknown_booking
from leasehold.gateway._wire import read_request
from leasehold.proto.v2 import booking_grpc
from leasehold.proto.v2 import booking_pb2 as pb

V2 = ApiVersion.V2


class BookingServiceV2(booking_grpc.BookingServiceBase):
    def __init__(self, router: Router, slots: Sequence[core.SlotSpec]) -> None:
        self._router = router
        self._merchants = frozenset(s.key.merchant_id for s in slots)
        self._known = codec.KnownSlots(slots)

    async def CheckAvailability(self, stream: Stream[Any, Any]) -> None:
        request = await read_request(stream, pb.CheckAvailabilityRequest)
        command = codec.check_availability(request, self._known)
        reply = await self._router.call(
            self._router.for_slot(command.slot), command, stream.deadline
        )
        count = settle_strict(reply, int, codec.CHECK_FIELDS)
        response = pb.CheckAvailabilityResponse(count_available=count)
        response.slot.CopyFrom(request.slot)  # the request slot, echoed
        await stream.send_message(response)

    async def BatchAvailabilityLookup(self, stream: Stream[Any, Any]) -> None:
        request = await read_request(stream, pb.BatchAvailabilityLookupRequest)
        merchant_id = f.ident(request.merchant_id, "merchant_id")
        if merchant_id not in self._merchants:
            raise invalid("merchant_id", f"unknown merchant {merchant_id!r}")
        keys = codec.slot_time_keys(merchant_id, request.slot_time)
        counts = await self._lookup(keys, stream)
        response = pb.BatchAvailabilityLookupResponse()
        for slot_time, count in zip(request.slot_time, counts, strict=True):
            answer = response.slot_time_availability.add(available=bool(count))
            answer.slot_time.CopyFrom(slot_time)
        await stream.send_message(response)

    async def _lookup(self, keys: list[core.SlotKey], stream: Stream[Any, Any]) -> list[int | None]:
        """Open spots per key, in order: one BatchAvailability per shard, concurrently."""
        by_shard: dict[int, list[int]] = {}
        for index, key in enumerate(keys):
            by_shard.setdefault(self._router.for_slot(key).shard_id, []).append(index)
        handles = self._router.handles

        async def ask(shard_id: int, indexes: list[int]) -> None:
            command = core.BatchAvailability(tuple(keys[i] for i in indexes))
            reply = await self._router.call(handles[shard_id], command, stream.deadline)
            for i, count in zip(indexes, settle_strict(reply, tuple, {}), strict=True):
                counts[i] = count

        counts: list[int | None] = [None] * len(keys)
        await asyncio.gather(*(ask(s, idx) for s, idx in by_shard.items()))
        return counts

    async def CreateLease(self, stream: Stream[Any, Any]) -> None:
        request = await read_request(stream, pb.CreateLeaseRequest)
        command = codec.create_lease(request, self._known)
        reply = await self._router.call(
            self._router.for_slot(command.slot.key), command, stream.deadline
        )
        lease = settle(reply, Lease, V2, codec.LEASE_FIELDS)
        response = pb.CreateLeaseResponse()
        if isinstance(lease, Failure):
            response.booking_failure.CopyFrom(codec.failure_message(lease))
        else:
            response.lease.CopyFrom(codec.lease_message(lease))
        await stream.send_message(response)

    async def CreateBooking(self, stream: Stream[Any, Any]) -> None:
        request = await read_request(stream, pb.CreateBookingRequest)
        command = codec.create_booking(request, self._known)
        assert command.slot is not None  # v2 decoding requires it
        reply = await self._router.call(
            self._router.for_slot(command.slot.key), command, stream.deadline
        )
        booking = settle(reply, Booking, V2, codec.BOOKING_FIELDS)
        response = pb.CreateBookingResponse()
        _fill_booking_or_failure(response, booking)
        await stream.send_message(response)

    async def UpdateBooking(self, stream: Stream[Any, Any]) -> None:
        request = await read_request(stream, pb.UpdateBookingRequest)
        command = codec.update_booking(request)
        handle = self._router.for_booking_id(command.booking_id)
        if handle is None:
            raise unknown_booking(command.booking_id, "booking.booking_id")
        reply = await self._router.call(handle, command, stream.deadline)
        booking = settle(reply, Booking, V2, codec.UPDATE_FIELDS)
        response = pb.UpdateBookingResponse()
        _fill_booking_or_failure(response, booking)
        await stream.send_message(response)

    async def GetBookingStatus(self, stream: Stream[Any, Any]) -> None:
        request = await read_request(stream, pb.GetBookingStatusRequest)
        booking_id = f.ident(request.booking_id, "booking_id")
        handle = self._router.for_booking_id(booking_id)
        if handle is None:
            raise unknown_booking(booking_id, "booking_id")
        reply = await self._router.call(handle, core.GetBooking(booking_id), stream.deadline)
        booking = settle_strict(reply, Booking, {"booking_id": "booking_id"})
        await stream.send_message(
            pb.GetBookingStatusResponse(
                booking_id=booking.booking_id,
                booking_status=booking.status.name,
                prepayment_status=pb.PREPAYMENT_NOT_PROVIDED,
            )
        )

    async def ListBookings(self, stream: Stream[Any, Any]) -> None:
        request = await read_request(stream, pb.ListBookingsRequest)
        command = core.ListBookings(f.ident(request.user_id, "user_id"))
        # Every shard may hold some of the user's bookings: ask all at once, then merge.
        replies = await asyncio.gather(
            *(self._router.call(h, command, stream.deadline) for h in self._router.handles)
        )
        found = [b for r in replies for b in settle_strict(r, tuple, {"user_id": "user_id"})]
        found.sort(key=lambda b: (b.slot.key.start_sec, b.booking_id))
        response = pb.ListBookingsResponse()
        response.bookings.extend(codec.booking_message(b) for b in found)
        await stream.send_message(response)


def _fill_booking_or_failure(
    response: pb.CreateBookingResponse | pb.UpdateBookingResponse, booking: Booking | Failure
) -> None:
    if isinstance(booking, Failure):
        response.booking_failure.CopyFrom(codec.failure_message(booking))
    else:
        response.booking.CopyFrom(codec.booking_message(booking))
