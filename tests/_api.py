"""Small builders for v2/v0 requests used by the gateway and end-to-end tests, and the
pushback a refused call asks for."""

from __future__ import annotations

import grpc

from leasehold.core import SlotKey
from leasehold.gateway import PUSHBACK_TRAILER
from leasehold.proto.v0 import booking_pb2 as pb0
from leasehold.proto.v2 import booking_pb2 as pb2


def slot_v2(key: SlotKey, tag: str = "") -> pb2.Slot:
    slot = pb2.Slot(merchant_id=key.merchant_id, service_id=key.service_id, availability_tag=tag)
    slot.start_time.seconds = key.start_sec
    slot.duration.seconds = key.duration_sec
    if key.staff_id or key.room_id or key.party_size:
        slot.resources.staff_id = key.staff_id
        slot.resources.room_id = key.room_id
        slot.resources.party_size = key.party_size
    return slot


def lease_v2(key: SlotKey, reference: str, expiry_ns: int | None = None) -> pb2.CreateLeaseRequest:
    lease = pb2.Lease(slot=slot_v2(key), user_reference=reference)
    if expiry_ns is not None:
        lease.lease_expiration_time.seconds, lease.lease_expiration_time.nanos = divmod(
            expiry_ns, 1_000_000_000
        )
    return pb2.CreateLeaseRequest(lease=lease)


def booking_v2(
    key: SlotKey, token: str, user_id: str = "u1", lease_id: str = ""
) -> pb2.CreateBookingRequest:
    request = pb2.CreateBookingRequest(
        slot=slot_v2(key),
        user_information=pb2.UserInformation(user_id=user_id, email=f"{user_id}@example.com"),
        idempotency_token=token,
    )
    if lease_id:
        request.lease_ref.lease_id = lease_id
    return request


def lease_v0(key: SlotKey, reference: str) -> pb0.CreateLeaseRequest:
    lease = pb0.Lease(
        merchant_id=key.merchant_id, service_id=key.service_id, client_reference=reference
    )
    lease.start_time.seconds = key.start_sec
    lease.duration.seconds = key.duration_sec
    if key.staff_id or key.room_id or key.party_size:
        lease.resources.staff_id = key.staff_id
        lease.resources.room_id = key.room_id
        lease.resources.party_size = key.party_size
    return pb0.CreateLeaseRequest(lease=lease)


def booking_v0(lease_id: str, email: str = "ann@example.com") -> pb0.CreateBookingRequest:
    return pb0.CreateBookingRequest(
        lease_ref=pb0.LeaseReference(lease_id=lease_id),
        client_information=pb0.ClientInformation(given_name="Ann", email=email),
    )


def pushback_s(error: grpc.RpcError) -> float | None:
    """The wait a RESOURCE_EXHAUSTED refusal asks for (its pushback trailer, 50 ms if it
    has none); None for any other error. A busy machine's server may shed a call: a
    caller that honours the pushback is served later."""
    if error.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    trailers = {str(m.key): str(m.value) for m in error.trailing_metadata() or ()}
    return int(trailers.get(PUSHBACK_TRAILER, "50")) / 1000
