"""The load generator's gRPC client: one method per RPC, each returning the `Op` it recorded.

Calls go over either of two clients, both independent of the server's grpclib:
the low-CPU HTTP/2 client of bench/_h2call.py (the load processes' default) or
grpcio's asyncio API (grpc.aio; the coordinator's own reads, the admin calls,
and `--load-client grpcio`). grpcio spent 135-186 us of CPU per call at full
load and 400-600 at half load, so on a 2-core machine its load processes
queued for a core and sent late and read replies late, counted as the server's
latency (docs/performance.md, "Half-load latency"). asyncio gives open-loop
scheduling and thousands of concurrent callers per process. Every method
catches the call's failure and records its status; none raises for a gRPC error.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import DecodeError, Message
from grpclib.health.v1 import health_pb2

from leasehold.bench import _h2wire as w
from leasehold.bench._h2call import H2Channel
from leasehold.bench._history import NO_STATUS, OK, Kind, Op
from leasehold.core import NANOS_PER_SECOND, SlotKey
from leasehold.proto.v0 import booking_pb2 as pb0
from leasehold.proto.v2 import booking_pb2 as pb2

V2 = "/ext.maps.booking.partner.v2.BookingService/"
V0 = "/ext.maps.booking.partner.v0.BookingService/"
HEALTH = "/grpc.health.v1.Health/Check"

_ID_BITS = 40


# What one call gives back: its status (OK = 0) and the reply message if OK.
Answer = tuple[int, Any]
Channels = grpc.aio.Channel | Sequence[grpc.aio.Channel] | Sequence[H2Channel]


class _Method(Protocol):
    async def __call__(self, request: Message, timeout_s: float) -> Answer: ...


def _method(channel: Channels, path: str, response: type[Message]) -> _Method:
    channels = [channel] if isinstance(channel, grpc.aio.Channel) else list(channel)
    if channels and all(isinstance(c, H2Channel) for c in channels):
        return _H2Method([c for c in channels if isinstance(c, H2Channel)], path, response)
    return _GrpcioMethod([c for c in channels if isinstance(c, grpc.aio.Channel)], path, response)


class _GrpcioMethod:
    """Calls spread over several channels (connections): a multi-process server's kernel
    spreads connections, not calls, over its gateway workers."""

    def __init__(
        self, channels: list[grpc.aio.Channel], path: str, response: type[Message]
    ) -> None:
        methods: list[grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = [
            c.unary_unary(
                path,
                request_serializer=lambda message: message.SerializeToString(),
                response_deserializer=response.FromString,
            )
            for c in channels
        ]
        self._methods = itertools.cycle(methods)

    async def __call__(self, request: Message, timeout_s: float) -> Answer:
        try:
            reply = await next(self._methods)(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as error:
            return int(error.code().value[0]), None
        except grpc.RpcError:
            return NO_STATUS, None
        return OK, reply


class _H2Method:
    """The same over bench/_h2call.py's connections, one after another."""

    def __init__(self, channels: list[H2Channel], path: str, response: type[Message]) -> None:
        self._calls = itertools.cycle([(c, w.request_block(path, c.authority)) for c in channels])
        self._response = response

    async def __call__(self, request: Message, timeout_s: float) -> Answer:
        channel, block = next(self._calls)
        reply = await channel.call(block, request.SerializeToString(), timeout_s)
        if reply.code != w.OK:
            return reply.code, None
        try:
            return OK, self._response.FromString(reply.body)
        except DecodeError:
            # What grpcio answers for a reply it cannot parse.
            return w.INTERNAL, None


def _ns(timestamp: Any) -> int:
    return int(timestamp.seconds) * NANOS_PER_SECOND + int(timestamp.nanos)


class Client:
    """Calls on one channel; `phase` names the phase the next records belong to."""

    def __init__(
        self,
        channel: Channels,
        slots: Sequence[SlotKey],
        *,
        worker: int,
        timeout_s: float,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.worker = worker
        self.phase = ""
        self.timeout_s = timeout_s
        self._clock = clock
        self._ids = itertools.count()
        self._keys = list(slots)
        # Keyed by plain values, looked up with fields read from replies.
        self._by_key: dict[tuple[object, ...], int] = {k.as_tuple(): i for i, k in enumerate(slots)}
        self._by_v0_key: dict[tuple[object, ...], int] = {
            k.as_tuple()[:4]: i for i, k in enumerate(slots)
        }
        self._slots_v2 = [_slot_v2(k) for k in slots]
        m = _method
        self._health = m(channel, HEALTH, health_pb2.HealthCheckResponse)
        self._check = m(channel, V2 + "CheckAvailability", pb2.CheckAvailabilityResponse)
        self._batch = m(
            channel, V2 + "BatchAvailabilityLookup", pb2.BatchAvailabilityLookupResponse
        )
        self._lease = m(channel, V2 + "CreateLease", pb2.CreateLeaseResponse)
        self._book = m(channel, V2 + "CreateBooking", pb2.CreateBookingResponse)
        self._update = m(channel, V2 + "UpdateBooking", pb2.UpdateBookingResponse)
        self._get = m(channel, V2 + "GetBookingStatus", pb2.GetBookingStatusResponse)
        self._list = m(channel, V2 + "ListBookings", pb2.ListBookingsResponse)
        self._lease0 = m(channel, V0 + "CreateLease", pb0.CreateLeaseResponse)
        self._book0 = m(channel, V0 + "CreateBooking", pb0.CreateBookingResponse)
        self._update0 = m(channel, V0 + "UpdateBooking", pb0.UpdateBookingResponse)

    def next_id(self) -> int:
        return (self.worker << _ID_BITS) | next(self._ids)

    def key(self, slot: int) -> SlotKey:
        return self._keys[slot]

    async def _call(
        self, method: _Method, request: Message, intended: int
    ) -> tuple[int, Any, int, int, int]:
        """(status, reply or None, intended_ns, send_ns, recv_ns)."""
        send = self._clock()
        status, reply = await method(request, self.timeout_s)
        return status, reply, intended, send, self._clock()

    def _op(self, kind: Kind, call: tuple[int, Any, int, int, int], **fields: Any) -> Op:
        status, _, intended, send, recv = call
        return Op(
            op_id=self.next_id(),
            kind=kind,
            phase=self.phase,
            worker=self.worker,
            status=status,
            intended_ns=intended,
            send_ns=send,
            recv_ns=recv,
            **fields,
        )

    # ----- RPCs -------------------------------------------------------------------------

    async def health(self, intended: int = 0) -> Op:
        call = await self._call(self._health, health_pb2.HealthCheckRequest(), intended)
        return self._op(Kind.HEALTH, call)

    async def check(self, slot: int, intended: int = 0) -> Op:
        request = pb2.CheckAvailabilityRequest(slot=self._slots_v2[slot])
        call = await self._call(self._check, request, intended)
        reply = call[1]
        return self._op(
            Kind.CHECK, call, slot=slot, count=-1 if reply is None else reply.count_available
        )

    async def batch(self, slots: Sequence[int], intended: int = 0) -> list[Op]:
        """One BatchAvailabilityLookup for slots of one merchant; one record per slot."""
        keys = [self._keys[s] for s in slots]
        request = pb2.BatchAvailabilityLookupRequest(merchant_id=keys[0].merchant_id)
        for key in keys:
            request.slot_time.add(
                start_sec=key.start_sec, duration_sec=key.duration_sec, service_id=key.service_id
            )
        call = await self._call(self._batch, request, intended)
        reply = call[1]
        answers = [-1] * len(slots)
        if reply is not None and len(reply.slot_time_availability) == len(slots):
            answers = [int(a.available) for a in reply.slot_time_availability]
        return [
            self._op(Kind.BATCH, call, slot=s, count=answer)
            for s, answer in zip(slots, answers, strict=True)
        ]

    async def lease(
        self, slot: int, reference: str, expiry_ns: int, *, version: str = "v2", intended: int = 0
    ) -> Op:
        if version == "v0":
            request0 = pb0.CreateLeaseRequest(lease=_lease_v0(self._keys[slot], reference))
            _set_ns(request0.lease.lease_expiration_time, expiry_ns)
            call = await self._call(self._lease0, request0, intended)
        else:
            lease = pb2.Lease(slot=self._slots_v2[slot], user_reference=reference)
            _set_ns(lease.lease_expiration_time, expiry_ns)
            call = await self._call(self._lease, pb2.CreateLeaseRequest(lease=lease), intended)
        reply = call[1]
        fields: dict[str, Any] = {}
        if reply is not None:
            if version == "v2" and reply.HasField("booking_failure"):
                fields["cause"] = pb2.BookingFailure.Cause.Name(reply.booking_failure.cause)
            else:
                fields["lease_id"] = reply.lease.lease_id
                fields["expiry_ns"] = _ns(reply.lease.lease_expiration_time)
        return self._op(
            Kind.LEASE,
            call,
            version=version,
            slot=slot,
            reference=reference,
            requested_expiry_ns=expiry_ns,
            **fields,
        )

    async def book(
        self,
        slot: int,
        *,
        lease_id: str = "",
        token: str = "",
        user: str = "",
        version: str = "v2",
        intended: int = 0,
    ) -> Op:
        """A v2 booking (of a lease, or direct when lease_id is ""), or a v0 booking of a lease."""
        if version == "v0":
            request0 = pb0.CreateBookingRequest(
                lease_ref=pb0.LeaseReference(lease_id=lease_id),
                client_information=pb0.ClientInformation(
                    given_name="Bench", email=f"{user}@bench.example"
                ),
            )
            call = await self._call(self._book0, request0, intended)
        else:
            request = pb2.CreateBookingRequest(
                slot=self._slots_v2[slot],
                user_information=pb2.UserInformation(user_id=user, email=f"{user}@bench.example"),
                idempotency_token=token,
            )
            if lease_id:
                request.lease_ref.lease_id = lease_id
            call = await self._call(self._book, request, intended)
        fields = self._booking_fields(call[1], version)
        return self._op(
            Kind.BOOK,
            call,
            version=version,
            slot=slot,
            lease_id=lease_id,
            token=token,
            user=user,
            **fields,
        )

    async def cancel(
        self, booking_id: str, slot: int, *, version: str = "v2", intended: int = 0
    ) -> Op:
        mask = FieldMask(paths=["status"])
        if version == "v0":
            request0 = pb0.UpdateBookingRequest(
                update_mask=mask, booking=pb0.Booking(booking_id=booking_id, status=pb0.CANCELED)
            )
            call = await self._call(self._update0, request0, intended)
        else:
            request = pb2.UpdateBookingRequest(
                update_mask=mask, booking=pb2.Booking(booking_id=booking_id, status=pb2.CANCELED)
            )
            call = await self._call(self._update, request, intended)
        fields = self._booking_fields(call[1], version)
        fields.pop("booking_id", None)
        return self._op(
            Kind.CANCEL, call, version=version, slot=slot, booking_id=booking_id, **fields
        )

    async def reschedule(
        self, booking_id: str, slot: int, target_slot: int, intended: int = 0
    ) -> Op:
        """Move a v2 booking to another start time of the same merchant and service."""
        request = pb2.UpdateBookingRequest(
            update_mask=FieldMask(paths=["slot.start_time"]),
            booking=pb2.Booking(booking_id=booking_id, slot=self._slots_v2[target_slot]),
        )
        call = await self._call(self._update, request, intended)
        fields = self._booking_fields(call[1], "v2")
        fields.pop("booking_id", None)
        return self._op(
            Kind.RESCHEDULE,
            call,
            slot=slot,
            target_slot=target_slot,
            booking_id=booking_id,
            **fields,
        )

    async def get(self, booking_id: str, intended: int = 0) -> Op:
        call = await self._call(
            self._get, pb2.GetBookingStatusRequest(booking_id=booking_id), intended
        )
        reply = call[1]
        status = "" if reply is None else pb2.BookingStatus.Name(reply.booking_status)
        return self._op(Kind.GET, call, booking_id=booking_id, booking_status=status)

    async def list(self, user: str, intended: int = 0) -> Op:
        call = await self._call(self._list, pb2.ListBookingsRequest(user_id=user), intended)
        reply = call[1]
        return self._op(
            Kind.LIST, call, user=user, count=-1 if reply is None else len(reply.bookings)
        )

    def _booking_fields(self, reply: Any, version: str) -> dict[str, Any]:
        if reply is None:
            return {}
        if version == "v2" and reply.HasField("booking_failure"):
            return {"cause": pb2.BookingFailure.Cause.Name(reply.booking_failure.cause)}
        booking = reply.booking
        if version == "v0":
            key: tuple[object, ...] = (
                booking.merchant_id,
                booking.service_id,
                booking.start_time.seconds,
                booking.duration.seconds,
            )
            slot = self._by_v0_key.get(key, -1)
            status = pb0.BookingStatus.Name(booking.status)
        else:
            s = booking.slot
            key = (
                s.merchant_id,
                s.service_id,
                s.start_time.seconds,
                s.duration.seconds,
                s.resources.staff_id,
                s.resources.room_id,
                s.resources.party_size,
            )
            slot = self._by_key.get(key, -1)
            status = pb2.BookingStatus.Name(booking.status)
        return {"booking_id": booking.booking_id, "reply_slot": slot, "booking_status": status}


def _set_ns(timestamp: Any, ns: int) -> None:
    if ns:
        timestamp.seconds, timestamp.nanos = divmod(ns, NANOS_PER_SECOND)


def _slot_v2(key: SlotKey) -> pb2.Slot:
    slot = pb2.Slot(merchant_id=key.merchant_id, service_id=key.service_id)
    slot.start_time.seconds = key.start_sec
    slot.duration.seconds = key.duration_sec
    if key.staff_id or key.room_id or key.party_size:
        slot.resources.staff_id = key.staff_id
        slot.resources.room_id = key.room_id
        slot.resources.party_size = key.party_size
    return slot


def _lease_v0(key: SlotKey, reference: str) -> pb0.Lease:
    lease = pb0.Lease(
        merchant_id=key.merchant_id, service_id=key.service_id, client_reference=reference
    )
    lease.start_time.seconds = key.start_sec
    lease.duration.seconds = key.duration_sec
    if key.staff_id or key.room_id or key.party_size:
        lease.resources.staff_id = key.staff_id
        lease.resources.room_id = key.room_id
        lease.resources.party_size = key.party_size
    return lease
