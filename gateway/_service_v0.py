"""ext.maps.booking.partner.v0.BookingService: the older API on the same inventory."""

from __future__ import annotations

from typing import Any

from grpclib import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from leasehold.core import ApiVersion, Booking, Lease
from leasehold.gateway import _v0_codec as codec
from leasehold.gateway._router import Router
from leasehold.gateway._settle import settle
from leasehold.gateway._status import Failure, unknown_booking
from leasehold.gateway._wire import read_request
from leasehold.proto.v0 import booking_grpc
from leasehold.proto.v0 import booking_pb2 as pb

V0 = ApiVersion.V0


def _status_only(answer: object) -> Any:
    """v0 has no booking_failure field: every v0 refusal maps to a status (see _status)."""
    if isinstance(answer, Failure):
        raise GRPCError(Status.INTERNAL, f"v0 answer {answer.cause} has no status mapping")
    return answer


class BookingServiceV0(booking_grpc.BookingServiceBase):
    def __init__(self, router: Router) -> None:
        self._router = router

    async def CreateLease(self, stream: Stream[Any, Any]) -> None:
        request = await read_request(stream, pb.CreateLeaseRequest)
        command = codec.create_lease(request)
        reply = await self._router.call(
            self._router.for_slot(command.slot.key), command, stream.deadline
        )
        lease: Lease = _status_only(settle(reply, Lease, V0, codec.LEASE_FIELDS))
        await stream.send_message(pb.CreateLeaseResponse(lease=codec.lease_message(lease)))

    async def CreateBooking(self, stream: Stream[Any, Any]) -> None:
        request = await read_request(stream, pb.CreateBookingRequest)
        command = codec.create_booking(request)
        handle = self._router.for_lease_id(command.lease_id)
        if handle is None:
            raise GRPCError(
                Status.NOT_FOUND, f"lease_ref.lease_id: lease {command.lease_id!r} is unknown"
            )
        reply = await self._router.call(handle, command, stream.deadline)
        booking: Booking = _status_only(settle(reply, Booking, V0, codec.BOOKING_FIELDS))
        await stream.send_message(pb.CreateBookingResponse(booking=codec.booking_message(booking)))

    async def UpdateBooking(self, stream: Stream[Any, Any]) -> None:
        request = await read_request(stream, pb.UpdateBookingRequest)
        command = codec.update_booking(request)
        handle = self._router.for_booking_id(command.booking_id)
        if handle is None:
            raise unknown_booking(command.booking_id, "booking.booking_id")
        reply = await self._router.call(handle, command, stream.deadline)
        booking: Booking = _status_only(settle(reply, Booking, V0, codec.UPDATE_FIELDS))
        await stream.send_message(pb.UpdateBookingResponse(booking=codec.booking_message(booking)))
