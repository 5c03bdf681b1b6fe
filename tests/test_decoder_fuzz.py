"""Every request decoder, fed any bytes: a valid command, or INVALID_ARGUMENT; never a crash.

The path is the gateway's own: `_wire.read_request` over the bytes as a gRPC
message (prefix and body), then the RPC's decoding into a core command. Inputs
are random bytes and byte-level mutations of valid requests (which reach the
field checks more often than random bytes do).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Coroutine
from typing import Any, cast

from _api import booking_v0, booking_v2, lease_v0, lease_v2, slot_v2
from google.protobuf.message import Message
from grpclib import Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1 import health_pb2
from grpclib.reflection.v1 import reflection_pb2
from grpclib.server import Stream
from hypothesis import given, settings
from hypothesis import strategies as st

from leasehold.core import SlotKey, SlotSpec
from leasehold.gateway import _fields as f
from leasehold.gateway import _v0_codec as codec0
from leasehold.gateway import _v2_codec as codec2
from leasehold.gateway._wire import read_request
from leasehold.proto.v0 import booking_pb2 as pb0
from leasehold.proto.v2 import booking_pb2 as pb2

KEY = SlotKey("m1", "cut", 1_767_254_400, 1800)
KNOWN = codec2.KnownSlots([SlotSpec(KEY, 1, 1)])


def _batch(request: pb2.BatchAvailabilityLookupRequest) -> object:
    return codec2.slot_time_keys(f.ident(request.merchant_id, "merchant_id"), request.slot_time)


def _cancel_v0() -> pb0.UpdateBookingRequest:
    request = pb0.UpdateBookingRequest(booking=pb0.Booking(booking_id="b-1", status=pb0.CANCELED))
    request.update_mask.paths.append("status")
    return request


def _cancel_v2() -> pb2.UpdateBookingRequest:
    request = pb2.UpdateBookingRequest(booking=pb2.Booking(booking_id="b-1", status=pb2.CANCELED))
    request.update_mask.paths.append("status")
    return request


# Per RPC: the request type, a valid example, and the gateway's decoding of it.
DECODERS: dict[str, tuple[type[Message], Message, Callable[[Any], object]]] = {
    "v2.CheckAvailability": (
        pb2.CheckAvailabilityRequest,
        pb2.CheckAvailabilityRequest(slot=slot_v2(KEY)),
        lambda r: codec2.check_availability(r, KNOWN),
    ),
    "v2.BatchAvailabilityLookup": (
        pb2.BatchAvailabilityLookupRequest,
        pb2.BatchAvailabilityLookupRequest(merchant_id="m1"),
        _batch,
    ),
    "v2.CreateLease": (
        pb2.CreateLeaseRequest,
        lease_v2(KEY, "ref"),
        lambda r: codec2.create_lease(r, KNOWN),
    ),
    "v2.CreateBooking": (
        pb2.CreateBookingRequest,
        booking_v2(KEY, "token"),
        lambda r: codec2.create_booking(r, KNOWN),
    ),
    "v2.UpdateBooking": (pb2.UpdateBookingRequest, _cancel_v2(), codec2.update_booking),
    "v2.GetBookingStatus": (
        pb2.GetBookingStatusRequest,
        pb2.GetBookingStatusRequest(booking_id="b-1"),
        lambda r: f.ident(r.booking_id, "booking_id"),
    ),
    "v2.ListBookings": (
        pb2.ListBookingsRequest,
        pb2.ListBookingsRequest(user_id="u1"),
        lambda r: f.ident(r.user_id, "user_id"),
    ),
    "v0.CreateLease": (pb0.CreateLeaseRequest, lease_v0(KEY, "ref"), codec0.create_lease),
    "v0.CreateBooking": (pb0.CreateBookingRequest, booking_v0("l-1"), codec0.create_booking),
    "v0.UpdateBooking": (pb0.UpdateBookingRequest, _cancel_v0(), codec0.update_booking),
    "health.Check": (
        health_pb2.HealthCheckRequest,
        health_pb2.HealthCheckRequest(service="x"),
        lambda r: r,
    ),
    "reflection.Info": (
        reflection_pb2.ServerReflectionRequest,
        reflection_pb2.ServerReflectionRequest(list_services=""),
        lambda r: r,
    ),
}


class _Bytes:
    """grpclib's HTTP/2 stream, as `read_request` sees it, over fixed bytes."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def recv_data(self, size: int) -> bytes:
        if size > len(self._data) and self._data:
            raise AssertionError("Received less data than expected")  # as grpclib's Buffer
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk


class _Stream:
    def __init__(self, data: bytes) -> None:
        self._stream = _Bytes(data)


def _run(coroutine: Coroutine[Any, Any, Message]) -> Message:
    """Run a coroutine that never suspends (its reads are from memory)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(Message, done.value)
    raise AssertionError("the reader suspended")


def decode(rpc: str, body: bytes) -> object:
    message_type, _, decoder = DECODERS[rpc]
    framed = struct.pack(">?I", False, len(body)) + body
    stream = cast(Stream[Any, Any], _Stream(framed))
    return decoder(_run(read_request(stream, message_type)))


def mutated(rpc: str) -> st.SearchStrategy[bytes]:
    valid = DECODERS[rpc][1].SerializeToString()
    return st.lists(
        st.tuples(st.integers(0, max(len(valid) - 1, 0)), st.integers(0, 255)), max_size=4
    ).map(lambda edits: _apply(valid, edits))


def _apply(valid: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(valid)
    for index, value in edits:
        if data:
            data[index] = value
    return bytes(data)


def _refusal(rpc: str, body: bytes) -> Status | None:
    """The status the gateway would answer, or None if the request decodes."""
    try:
        decode(rpc, body)
    except GRPCError as error:
        return error.status
    return None


def _decodes_or_is_invalid(rpc: str, body: bytes) -> None:
    assert _refusal(rpc, body) in (None, Status.INVALID_ARGUMENT), (rpc, body)


@given(rpc=st.sampled_from(sorted(DECODERS)), body=st.binary(max_size=256))
@settings(max_examples=400, deadline=None)
def test_any_bytes_decode_or_are_invalid_argument(rpc: str, body: bytes) -> None:
    _decodes_or_is_invalid(rpc, body)


@given(data=st.data(), rpc=st.sampled_from(sorted(DECODERS)))
@settings(max_examples=400, deadline=None)
def test_mutated_valid_requests_decode_or_are_invalid_argument(
    rpc: str, data: st.DataObject
) -> None:
    _decodes_or_is_invalid(rpc, data.draw(mutated(rpc)))


def test_the_valid_examples_decode() -> None:
    for rpc, (_, valid, _) in DECODERS.items():
        assert decode(rpc, valid.SerializeToString()) is not None, rpc
