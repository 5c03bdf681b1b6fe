"""The generated code is current, and the wire names and numbers are the spec's."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FileDescriptor

from proto import generate
from proto.v0 import booking_grpc as grpc0
from proto.v0 import booking_pb2 as pb0
from proto.v2 import booking_grpc as grpc2
from proto.v2 import booking_pb2 as pb2


def test_generated_code_is_not_stale() -> None:
    assert generate.stale_files() == [], "run: python -m proto.generate"


V2_METHODS = [
    "CheckAvailability",
    "BatchAvailabilityLookup",
    "CreateLease",
    "CreateBooking",
    "UpdateBooking",
    "GetBookingStatus",
    "ListBookings",
]


def test_method_paths() -> None:
    v2 = set(grpc2.BookingServiceBase.__mapping__(grpc2.BookingServiceBase))  # type: ignore[arg-type]
    assert v2 == {f"/ext.maps.booking.partner.v2.BookingService/{m}" for m in V2_METHODS}
    v0 = set(grpc0.BookingServiceBase.__mapping__(grpc0.BookingServiceBase))  # type: ignore[arg-type]
    assert v0 == {
        f"/ext.maps.booking.partner.v0.BookingService/{m}"
        for m in ("CreateLease", "CreateBooking", "UpdateBooking")
    }


# Transcribed from the spec (sections 2 and 3), not from the .proto files.
V2_FIELDS = {
    "Slot": {
        "merchant_id": 1,
        "service_id": 2,
        "start_time": 3,
        "duration": 4,
        "availability_tag": 5,
        "resources": 6,
    },
    "Resources": {"staff_id": 1, "room_id": 2, "party_size": 3},
    "CheckAvailabilityResponse": {
        "slot": 1,
        "count_available": 2,
        "duration_requirement": 3,
        "availability_update": 4,
        "last_online_cancellable_sec": 5,
    },
    "BatchAvailabilityLookupRequest": {"merchant_id": 1, "slot_time": 3},
    "SlotTime": {
        "start_sec": 1,
        "duration_sec": 2,
        "availability_tag": 3,
        "resources": 4,
        "service_id": 5,
    },
    "SlotTimeAvailability": {"slot_time": 1, "available": 2},
    "Lease": {"lease_id": 1, "slot": 2, "user_reference": 3, "lease_expiration_time": 4},
    "CreateLeaseResponse": {"lease": 1, "booking_failure": 2},
    "CreateBookingRequest": {
        "slot": 1,
        "lease_ref": 2,
        "user_information": 3,
        "idempotency_token": 6,
        "additional_request": 7,
    },
    "CreateBookingResponse": {"booking": 1, "booking_failure": 3},
    "UpdateBookingRequest": {"update_mask": 1, "booking": 2},
    "UpdateBookingResponse": {"booking": 1, "booking_failure": 3},
    "GetBookingStatusResponse": {"booking_id": 1, "booking_status": 2, "prepayment_status": 3},
    "Booking": {"booking_id": 1, "slot": 2, "user_information": 3, "status": 4},
    "UserInformation": {
        "user_id": 1,
        "given_name": 2,
        "family_name": 3,
        "address": 4,
        "telephone": 5,
        "email": 6,
        "language_code": 7,
    },
    "PostalAddress": {
        "address_country": 1,
        "address_locality": 2,
        "address_region": 3,
        "post_office_box_number": 4,
        "postal_code": 5,
        "street_address": 6,
    },
    "BookingFailure": {"cause": 1, "description": 3},
}
V0_FIELDS = {
    "Lease": {
        "lease_id": 1,
        "merchant_id": 2,
        "service_id": 3,
        "start_time": 4,
        "duration": 5,
        "client_reference": 6,
        "lease_expiration_time": 7,
        "availability_tag": 8,
        "resources": 9,
    },
    "CreateBookingRequest": {"lease_ref": 1, "client_information": 2},
    "Booking": {
        "booking_id": 1,
        "merchant_id": 2,
        "service_id": 3,
        "start_time": 4,
        "duration": 5,
        "client_information": 6,
        "status": 7,
    },
    "ClientInformation": {
        "given_name": 1,
        "family_name": 2,
        "address": 3,
        "telephone": 4,
        "email": 5,
    },
}


def fields_of(descriptor: Descriptor) -> dict[str, int]:
    return {f.name: f.number for f in descriptor.fields}


@pytest.mark.parametrize(
    ("file", "name", "expected"),
    [pytest.param(pb2.DESCRIPTOR, n, f, id=f"v2-{n}") for n, f in V2_FIELDS.items()]
    + [pytest.param(pb0.DESCRIPTOR, n, f, id=f"v0-{n}") for n, f in V0_FIELDS.items()],
)
def test_field_numbers(file: FileDescriptor, name: str, expected: dict[str, int]) -> None:
    assert fields_of(file.message_types_by_name[name]) == expected


def test_reserved_numbers() -> None:
    assert 7 in _reserved(pb2.Slot.DESCRIPTOR)
    assert 2 in _reserved(pb2.BatchAvailabilityLookupRequest.DESCRIPTOR)


def _reserved(descriptor: Any) -> set[int]:  # upb and pure-Python descriptors alike
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    return {n for r in proto.reserved_range for n in range(r.start, r.end)}


def test_enum_values() -> None:
    assert dict(pb2.BookingStatus.items()) == {
        "BOOKING_STATUS_UNSPECIFIED": 0,
        "CONFIRMED": 1,
        "CANCELED": 3,
        "NO_SHOW": 4,
        "NO_SHOW_PENALIZED": 5,
    }
    assert dict(pb0.BookingStatus.items()) == {
        "BOOKING_STATUS_UNSPECIFIED": 0,
        "CONFIRMED": 1,
        "CANCELED": 4,
        "NO_SHOW": 5,
        "NO_SHOW_PENALIZED": 6,
    }
    assert dict(pb2.PrepaymentStatus.items()) == {
        "PREPAYMENT_STATUS_UNSPECIFIED": 0,
        "PREPAYMENT_PROVIDED": 1,
        "PREPAYMENT_NOT_PROVIDED": 2,
        "PREPAYMENT_REFUNDED": 3,
        "PREPAYMENT_CREDITED": 4,
    }
    causes = [
        "CAUSE_UNSPECIFIED",
        "SLOT_UNAVAILABLE",
        "SLOT_ALREADY_BOOKED_BY_USER",
        "LEASE_EXPIRED",
        "OUTSIDE_CANCELLATION_WINDOW",
        "PAYMENT_ERROR_CARD_TYPE_REJECTED",
        "PAYMENT_ERROR_CARD_DECLINED",
        "PAYMENT_OPTION_NOT_VALID",
        "PAYMENT_ERROR",
        "USER_CANNOT_USE_PAYMENT_OPTION",
        "BOOKING_ALREADY_CANCELLED",
        "BOOKING_NOT_CANCELLABLE",
        "OVERLAPPING_RESERVATION",
        "USER_OVER_BOOKING_LIMIT",
    ]
    assert dict(pb2.BookingFailure.Cause.items()) == {c: i for i, c in enumerate(causes)}
    requirement = pb2.CheckAvailabilityResponse.DurationRequirement
    assert dict(requirement.items()) == {
        "DURATION_REQUIREMENT_UNSPECIFIED": 0,
        "DO_NOT_SHOW_DURATION": 1,
        "MUST_SHOW_DURATION": 2,
    }


def test_packages() -> None:
    assert pb2.DESCRIPTOR.package == "ext.maps.booking.partner.v2"
    assert pb0.DESCRIPTOR.package == "ext.maps.booking.partner.v0"
