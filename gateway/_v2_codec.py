"""v2 wire messages <-> core values. Decoding validates every field it reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from grpclib.exceptions import GRPCError

from leasehold import core
from leasehold.core import ApiVersion, Booking, Lease, Person, SlotKey, SlotRef, SlotSpec
from leasehold.gateway import _fields as f
from leasehold.gateway._status import Failure, invalid
from leasehold.proto.v2 import booking_pb2 as pb

# Core field names -> v2 wire paths, per RPC (for error messages).
LEASE_FIELDS: Mapping[str, str] = {
    "reference": "lease.user_reference",
    "slot": "lease.slot",
    "merchant_id": "lease.slot.merchant_id",
    "lease_expiration_time": "lease.lease_expiration_time",
}
BOOKING_FIELDS: Mapping[str, str] = {
    "slot": "slot",
    "merchant_id": "slot.merchant_id",
    "lease_ref": "lease_ref.lease_id",
    "user_id": "user_information.user_id",
    "user": "user_information.user_id",
    "idempotency_token": "idempotency_token",
}
CHECK_FIELDS: Mapping[str, str] = {"slot": "slot", "merchant_id": "slot.merchant_id"}
UPDATE_FIELDS: Mapping[str, str] = {
    "booking_id": "booking.booking_id",
    "slot": "booking.slot",
    "merchant_id": "booking.slot",
    "status": "booking.status",
}
_RESCHEDULE_PATHS = ("slot.start_time", "slot.duration")


def slot_ref(slot: pb.Slot, path: str) -> SlotRef:
    if not slot.HasField("start_time"):
        raise f.required_message_error(f"{path}.start_time")
    if not slot.HasField("duration"):
        raise f.required_message_error(f"{path}.duration")
    resources = slot.resources
    key = SlotKey(
        merchant_id=f.ident(slot.merchant_id, f"{path}.merchant_id"),
        service_id=f.ident(slot.service_id, f"{path}.service_id"),
        start_sec=f.whole_seconds(slot.start_time, f"{path}.start_time"),
        duration_sec=f.positive_whole_seconds(slot.duration, f"{path}.duration"),
        staff_id=f.ident(resources.staff_id, f"{path}.resources.staff_id", required=False),
        room_id=f.ident(resources.room_id, f"{path}.resources.room_id", required=False),
        party_size=f.non_negative(resources.party_size, f"{path}.resources.party_size"),
    )
    return SlotRef(key, f.text(slot.availability_tag, f"{path}.availability_tag"))


_WireSlot = tuple[str, str, int, int, str, str, int, str]


def _wire_fields(slot: pb.Slot) -> _WireSlot:
    """What slot_ref reads of a slot whose times are set and whole seconds."""
    resources = slot.resources
    return (
        slot.merchant_id,
        slot.service_id,
        slot.start_time.seconds,
        slot.duration.seconds,
        resources.staff_id,
        resources.room_id,
        resources.party_size,
        slot.availability_tag,
    )


class KnownSlots:
    """The inventory's slots by their wire fields: a request naming one decodes in one probe.

    slot_ref's answer depends only on the fields `_wire_fields` reads (given both times
    are set and whole seconds), so the table is built by running slot_ref itself on each
    inventory slot's wire form: an entry is exactly what slot_ref returns for those
    fields, and a slot that slot_ref would reject (a feed id past the gateway's limits)
    gets no entry and is still rejected. Entries are the inventory's own key objects,
    which the shard's dict lookups then match by identity. Bounded by the inventory.
    """

    def __init__(self, slots: Iterable[SlotSpec]) -> None:
        self._refs: dict[_WireSlot, SlotRef] = {}
        for spec in slots:
            ref = SlotRef(spec.key, spec.availability_tag)
            wire = pb.Slot()
            fill_slot(wire, ref)
            try:
                decoded = slot_ref(wire, "slot")
            except GRPCError:
                continue
            if decoded == ref:
                self._refs[_wire_fields(wire)] = ref

    def slot_ref(self, slot: pb.Slot, path: str) -> SlotRef:
        """slot_ref(slot, path), faster for inventory slots."""
        if (
            slot.HasField("start_time")
            and slot.HasField("duration")
            and not slot.start_time.nanos
            and not slot.duration.nanos
        ):
            known = self._refs.get(_wire_fields(slot))
            if known is not None:
                return known
        return slot_ref(slot, path)


def person(info: pb.UserInformation, path: str) -> Person:
    address = None
    if info.HasField("address"):
        address = f.postal_address(info.address, f"{path}.address")
    return Person(
        user_id=f.ident(info.user_id, f"{path}.user_id"),
        given_name=f.text(info.given_name, f"{path}.given_name"),
        family_name=f.text(info.family_name, f"{path}.family_name"),
        telephone=f.text(info.telephone, f"{path}.telephone"),
        email=f.text(info.email, f"{path}.email"),
        language_code=f.text(info.language_code, f"{path}.language_code"),
        address=address,
    )


def check_availability(
    request: pb.CheckAvailabilityRequest, known: KnownSlots
) -> core.CheckAvailability:
    if not request.HasField("slot"):
        raise f.required_message_error("slot")
    return core.CheckAvailability(known.slot_ref(request.slot, "slot").key)


def create_lease(request: pb.CreateLeaseRequest, known: KnownSlots) -> core.CreateLease:
    if not request.HasField("lease"):
        raise f.required_message_error("lease")
    lease = request.lease
    if not lease.HasField("slot"):
        raise f.required_message_error("lease.slot")
    requested = None
    if lease.HasField("lease_expiration_time"):
        requested = f.timestamp_ns(lease.lease_expiration_time, "lease.lease_expiration_time")
    return core.CreateLease(
        version=ApiVersion.V2,
        slot=known.slot_ref(lease.slot, "lease.slot"),
        reference=f.ident(lease.user_reference, "lease.user_reference"),
        requested_expiry_ns=requested,
    )


def create_booking(request: pb.CreateBookingRequest, known: KnownSlots) -> core.CreateBooking:
    if not request.HasField("slot"):
        raise f.required_message_error("slot")
    if not request.HasField("user_information"):
        raise f.required_message_error("user_information")
    f.text(request.additional_request, "additional_request")
    lease_id = ""
    if request.HasField("lease_ref"):
        lease_id = f.ident(request.lease_ref.lease_id, "lease_ref.lease_id")
    return core.CreateBooking(
        version=ApiVersion.V2,
        slot=known.slot_ref(request.slot, "slot"),
        lease_id=lease_id,
        person=person(request.user_information, "user_information"),
        idempotency_token=f.ident(request.idempotency_token, "idempotency_token"),
    )


def update_booking(request: pb.UpdateBookingRequest) -> core.CancelBooking | core.RescheduleBooking:
    """A cancel (mask `status`) or a reschedule (mask `slot.start_time` and/or `slot.duration`)."""
    if not request.HasField("booking"):
        raise f.required_message_error("booking")
    booking = request.booking
    booking_id = f.ident(booking.booking_id, "booking.booking_id")
    paths = set(request.update_mask.paths)
    if f.is_cancel_mask(paths, _RESCHEDULE_PATHS):
        if booking.status != pb.CANCELED:
            raise invalid("booking.status", "only CANCELED can be set")
        return core.CancelBooking(booking_id)
    slot = booking.slot
    start = duration = None
    if "slot.start_time" in paths:
        start = f.whole_seconds(slot.start_time, "booking.slot.start_time")
    if "slot.duration" in paths:
        duration = f.positive_whole_seconds(slot.duration, "booking.slot.duration")
    return core.RescheduleBooking(booking_id, start, duration)


def slot_time_keys(merchant_id: str, slot_times: Iterable[pb.SlotTime]) -> list[SlotKey]:
    keys = []
    for index, st in enumerate(slot_times):
        path = f"slot_time[{index}]"
        if st.duration_sec <= 0:
            raise invalid(f"{path}.duration_sec", "must be positive")
        keys.append(
            SlotKey(
                merchant_id=merchant_id,
                service_id=f.ident(st.service_id, f"{path}.service_id"),
                start_sec=st.start_sec,
                duration_sec=st.duration_sec,
                staff_id=f.ident(
                    st.resources.staff_id, f"{path}.resources.staff_id", required=False
                ),
                room_id=f.ident(st.resources.room_id, f"{path}.resources.room_id", required=False),
                party_size=f.non_negative(st.resources.party_size, f"{path}.resources.party_size"),
            )
        )
    return keys


def fill_slot(out: pb.Slot, ref: SlotRef) -> None:
    key = ref.key
    out.merchant_id = key.merchant_id
    out.service_id = key.service_id
    out.start_time.seconds = key.start_sec
    out.duration.seconds = key.duration_sec
    out.availability_tag = ref.availability_tag
    if key.staff_id or key.room_id or key.party_size:
        out.resources.staff_id = key.staff_id
        out.resources.room_id = key.room_id
        out.resources.party_size = key.party_size


def lease_message(lease: Lease) -> pb.Lease:
    out = pb.Lease(lease_id=lease.lease_id, user_reference=lease.reference)
    fill_slot(out.slot, lease.slot)
    f.set_timestamp_ns(out.lease_expiration_time, lease.expires_ns)
    return out


def booking_message(booking: Booking) -> pb.Booking:
    out = pb.Booking(
        booking_id=booking.booking_id,
        status=booking.status.name,
    )
    fill_slot(out.slot, booking.slot)
    fill_person(out.user_information, booking.person)
    return out


def fill_person(out: pb.UserInformation, p: Person) -> None:
    out.user_id = p.user_id
    out.given_name = p.given_name
    out.family_name = p.family_name
    out.telephone = p.telephone
    out.email = p.email
    out.language_code = p.language_code
    if p.address is not None:
        f.fill_postal_address(out.address, p.address)


def failure_message(failure: Failure) -> pb.BookingFailure:
    return pb.BookingFailure(cause=failure.cause, description=failure.description)
