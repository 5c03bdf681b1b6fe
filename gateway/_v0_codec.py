"""v0 wire messages <-> core values. Decoding validates every field it reads."""

from __future__ import annotations

from collections.abc import Mapping

from leasehold import core
from leasehold.core import ApiVersion, Booking, Lease, Person, SlotKey, SlotRef
from leasehold.gateway import _fields as f
from leasehold.gateway._status import invalid
from leasehold.proto.v0 import booking_pb2 as pb

LEASE_FIELDS: Mapping[str, str] = {
    "reference": "lease.client_reference",
    "slot": "lease.start_time",
    "merchant_id": "lease.merchant_id",
    "lease_expiration_time": "lease.lease_expiration_time",
}
BOOKING_FIELDS: Mapping[str, str] = {
    "lease_ref": "lease_ref.lease_id",
    "user": "client_information",
}


def slot_ref(lease: pb.Lease) -> SlotRef:
    if not lease.HasField("start_time"):
        raise f.required_message_error("lease.start_time")
    if not lease.HasField("duration"):
        raise f.required_message_error("lease.duration")
    resources = lease.resources
    key = SlotKey(
        merchant_id=f.ident(lease.merchant_id, "lease.merchant_id"),
        service_id=f.ident(lease.service_id, "lease.service_id"),
        start_sec=f.whole_seconds(lease.start_time, "lease.start_time"),
        duration_sec=f.positive_whole_seconds(lease.duration, "lease.duration"),
        staff_id=f.ident(resources.staff_id, "lease.resources.staff_id", required=False),
        room_id=f.ident(resources.room_id, "lease.resources.room_id", required=False),
        party_size=f.non_negative(resources.party_size, "lease.resources.party_size"),
    )
    return SlotRef(key, f.text(lease.availability_tag, "lease.availability_tag"))


def person(info: pb.ClientInformation, path: str) -> Person:
    address = None
    if info.HasField("address"):
        address = f.postal_address(info.address, f"{path}.address")
    result = Person(
        given_name=f.text(info.given_name, f"{path}.given_name"),
        family_name=f.text(info.family_name, f"{path}.family_name"),
        telephone=f.text(info.telephone, f"{path}.telephone"),
        email=f.text(info.email, f"{path}.email"),
        address=address,
    )
    if not (result.email or result.telephone):
        # POLICY: v0 identifies the user by email or telephone; one of them is required.
        raise invalid(path, "needs an email or a telephone")
    return result


def create_lease(request: pb.CreateLeaseRequest) -> core.CreateLease:
    if not request.HasField("lease"):
        raise f.required_message_error("lease")
    lease = request.lease
    requested = None
    if lease.HasField("lease_expiration_time"):
        requested = f.timestamp_ns(lease.lease_expiration_time, "lease.lease_expiration_time")
    return core.CreateLease(
        version=ApiVersion.V0,
        slot=slot_ref(lease),
        reference=f.ident(lease.client_reference, "lease.client_reference"),
        requested_expiry_ns=requested,
    )


def create_booking(request: pb.CreateBookingRequest) -> core.CreateBooking:
    if not request.HasField("lease_ref"):
        raise f.required_message_error("lease_ref")
    if not request.HasField("client_information"):
        raise f.required_message_error("client_information")
    return core.CreateBooking(
        version=ApiVersion.V0,
        slot=None,
        lease_id=f.ident(request.lease_ref.lease_id, "lease_ref.lease_id"),
        person=person(request.client_information, "client_information"),
    )


def _fill_slot_fields(out: pb.Lease | pb.Booking, ref: SlotRef) -> None:
    key = ref.key
    out.merchant_id = key.merchant_id
    out.service_id = key.service_id
    out.start_time.seconds = key.start_sec
    out.duration.seconds = key.duration_sec


def lease_message(lease: Lease) -> pb.Lease:
    out = pb.Lease(
        lease_id=lease.lease_id,
        client_reference=lease.reference,
        availability_tag=lease.slot.availability_tag,
    )
    _fill_slot_fields(out, lease.slot)
    key = lease.slot.key
    if key.staff_id or key.room_id or key.party_size:
        out.resources.staff_id = key.staff_id
        out.resources.room_id = key.room_id
        out.resources.party_size = key.party_size
    f.set_timestamp_ns(out.lease_expiration_time, lease.expires_ns)
    return out


def booking_message(booking: Booking) -> pb.Booking:
    out = pb.Booking(
        booking_id=booking.booking_id,
        status=booking.status.name,
    )
    _fill_slot_fields(out, booking.slot)
    info, p = out.client_information, booking.person
    info.given_name = p.given_name
    info.family_name = p.family_name
    info.telephone = p.telephone
    info.email = p.email
    if p.address is not None:
        f.fill_postal_address(info.address, p.address)
    return out


UPDATE_FIELDS: Mapping[str, str] = {
    "booking_id": "booking.booking_id",
    "slot": "booking.start_time",
    "merchant_id": "booking.merchant_id",
    "status": "booking.status",
}
_RESCHEDULE_PATHS = ("start_time", "duration")


def update_booking(request: pb.UpdateBookingRequest) -> core.CancelBooking | core.RescheduleBooking:
    """A cancel (mask `status`) or a reschedule (mask `start_time` and/or `duration`)."""
    if not request.HasField("booking"):
        raise f.required_message_error("booking")
    booking = request.booking
    booking_id = f.ident(booking.booking_id, "booking.booking_id")
    paths = set(request.update_mask.paths)
    if f.is_cancel_mask(paths, _RESCHEDULE_PATHS):
        if booking.status != pb.CANCELED:
            raise invalid("booking.status", "only CANCELED can be set")
        return core.CancelBooking(booking_id)
    start = duration = None
    if "start_time" in paths:
        start = f.whole_seconds(booking.start_time, "booking.start_time")
    if "duration" in paths:
        duration = f.positive_whole_seconds(booking.duration, "booking.duration")
    return core.RescheduleBooking(booking_id, start, duration)
