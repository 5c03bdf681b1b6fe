"""The generated code is current, and the wire names and numbers are the spec's.

The golden tables below are transcribed from the partner API's published message
definitions in their own notation, not from the .proto files, so a typo in a
.proto source fails here rather than at a real client.
"""

from __future__ import annotations

import re
from typing import Any, cast

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor
from grpclib.const import Cardinality

from leasehold.proto import generate
from leasehold.proto.v0 import booking_grpc as grpc0
from leasehold.proto.v0 import booking_pb2 as pb0
from leasehold.proto.v0 import booking_pb2_grpc as grpcio0
from leasehold.proto.v2 import booking_grpc as grpc2
from leasehold.proto.v2 import booking_pb2 as pb2
from leasehold.proto.v2 import booking_pb2_grpc as grpcio2


def test_generated_code_is_not_stale() -> None:
    assert generate.stale_files() == [], "run: python -m leasehold.proto.generate"


V2_SERVICE = "ext.maps.booking.partner.v2.BookingService"
V0_SERVICE = "ext.maps.booking.partner.v0.BookingService"
V2_METHODS = (
    "CheckAvailability",
    "BatchAvailabilityLookup",
    "CreateLease",
    "CreateBooking",
    "UpdateBooking",
    "GetBookingStatus",
    "ListBookings",
)
V0_METHODS = ("CreateLease", "CreateBooking", "UpdateBooking")
SERVICES = [
    pytest.param(pb2, grpc2, grpcio2, V2_SERVICE, V2_METHODS, id="v2"),
    pytest.param(pb0, grpc0, grpcio0, V0_SERVICE, V0_METHODS, id="v0"),
]


@pytest.mark.parametrize(("pb", "grpclib_module", "grpcio_module", "service", "methods"), SERVICES)
def test_method_paths(
    pb: Any, grpclib_module: Any, grpcio_module: Any, service: str, methods: tuple[str, ...]
) -> None:
    paths = {f"/{service}/{m}" for m in methods}
    # grpclib: what the server routes (the base class's __mapping__), all unary, typed
    # <Rpc>Request -> <Rpc>Response.
    base = grpclib_module.BookingServiceBase
    mapping = base.__mapping__(base)
    assert set(mapping) == paths
    for path, handler in mapping.items():
        rpc = path.rsplit("/", 1)[1]
        assert handler.cardinality is Cardinality.UNARY_UNARY, path
        assert handler.request_type is getattr(pb, f"{rpc}Request"), path
        assert handler.reply_type is getattr(pb, f"{rpc}Response"), path
    # The descriptor: the one service of the file, with the same methods.
    assert list(pb.DESCRIPTOR.services_by_name) == ["BookingService"]
    methods_desc = pb.DESCRIPTOR.services_by_name["BookingService"].methods
    assert [m.full_name for m in methods_desc] == [f"{service}.{m}" for m in methods]
    for m in methods_desc:
        assert m.input_type.name == f"{m.name}Request"
        assert m.output_type.name == f"{m.name}Response"
        assert not m.client_streaming
        assert not m.server_streaming
    # grpcio: what the end-to-end tests call with.
    channel = _RecordingChannel()
    grpcio_module.BookingServiceStub(cast(grpc.Channel, channel))
    assert channel.unary_unary_paths == paths


class _RecordingChannel:
    """Stands in for a grpc.Channel: records the paths a generated stub asks for."""

    def __init__(self) -> None:
        self.unary_unary_paths: set[str] = set()

    def unary_unary(self, path: str, *args: object, **kwargs: object) -> object:
        self.unary_unary_paths.add(path)
        return object()


# Section 2 of the spec, field by field; `Timestamp` etc. are the google.protobuf types,
# and fields marked "not modelled" are left out (they must not exist).
V2_MESSAGES = {
    "Slot": "string merchant_id = 1; string service_id = 2; Timestamp start_time = 3;"
    " Duration duration = 4; string availability_tag = 5; Resources resources = 6;",
    "Resources": "string staff_id = 1; string room_id = 2; int32 party_size = 3;",
    "SlotAvailability": "Slot slot = 1; int32 count_available = 2;",
    "AvailabilityUpdate": "repeated SlotAvailability slot_availability = 1;",
    "CheckAvailabilityRequest": "Slot slot = 1;",
    "CheckAvailabilityResponse": "Slot slot = 1; int32 count_available = 2;"
    " DurationRequirement duration_requirement = 3;"
    " AvailabilityUpdate availability_update = 4; int64 last_online_cancellable_sec = 5;",
    "BatchAvailabilityLookupRequest": "string merchant_id = 1; repeated SlotTime slot_time = 3;",
    "BatchAvailabilityLookupResponse": "repeated SlotTimeAvailability slot_time_availability = 1;",
    "SlotTime": "int64 start_sec = 1; int64 duration_sec = 2; string availability_tag = 3;"
    " Resources resources = 4; string service_id = 5;",
    "SlotTimeAvailability": "SlotTime slot_time = 1; bool available = 2;",
    "Lease": "string lease_id = 1; Slot slot = 2; string user_reference = 3;"
    " Timestamp lease_expiration_time = 4;",
    "LeaseReference": "string lease_id = 1;",
    "CreateLeaseRequest": "Lease lease = 1;",
    "CreateLeaseResponse": "Lease lease = 1; BookingFailure booking_failure = 2;",
    "CreateBookingRequest": "Slot slot = 1; LeaseReference lease_ref = 2;"
    " UserInformation user_information = 3; string idempotency_token = 6;"
    " string additional_request = 7;",
    "CreateBookingResponse": "Booking booking = 1; BookingFailure booking_failure = 3;",
    "UpdateBookingRequest": "FieldMask update_mask = 1; Booking booking = 2;",
    "UpdateBookingResponse": "Booking booking = 1; BookingFailure booking_failure = 3;",
    "GetBookingStatusRequest": "string booking_id = 1;",
    "GetBookingStatusResponse": "string booking_id = 1; BookingStatus booking_status = 2;"
    " PrepaymentStatus prepayment_status = 3;",
    "ListBookingsRequest": "string user_id = 1;",
    "ListBookingsResponse": "repeated Booking bookings = 1;",
    "Booking": "string booking_id = 1; Slot slot = 2; UserInformation user_information = 3;"
    " BookingStatus status = 4;",
    "UserInformation": "string user_id = 1; string given_name = 2; string family_name = 3;"
    " PostalAddress address = 4; string telephone = 5; string email = 6;"
    " string language_code = 7;",
    "PostalAddress": "string address_country = 1; string address_locality = 2;"
    " string address_region = 3; string post_office_box_number = 4; string postal_code = 5;"
    " string street_address = 6;",
    "BookingFailure": "Cause cause = 1; string description = 3;",
}
V2_ENUMS = {
    "BookingStatus": "BOOKING_STATUS_UNSPECIFIED = 0; CONFIRMED = 1; CANCELED = 3; NO_SHOW = 4;"
    " NO_SHOW_PENALIZED = 5;",
    "PrepaymentStatus": "PREPAYMENT_STATUS_UNSPECIFIED = 0; PREPAYMENT_PROVIDED = 1;"
    " PREPAYMENT_NOT_PROVIDED = 2; PREPAYMENT_REFUNDED = 3; PREPAYMENT_CREDITED = 4;",
    "CheckAvailabilityResponse.DurationRequirement": "DURATION_REQUIREMENT_UNSPECIFIED = 0;"
    " DO_NOT_SHOW_DURATION = 1; MUST_SHOW_DURATION = 2;",
    "BookingFailure.Cause": "CAUSE_UNSPECIFIED = 0; SLOT_UNAVAILABLE = 1;"
    " SLOT_ALREADY_BOOKED_BY_USER = 2; LEASE_EXPIRED = 3; OUTSIDE_CANCELLATION_WINDOW = 4;"
    " PAYMENT_ERROR_CARD_TYPE_REJECTED = 5; PAYMENT_ERROR_CARD_DECLINED = 6;"
    " PAYMENT_OPTION_NOT_VALID = 7; PAYMENT_ERROR = 8; USER_CANNOT_USE_PAYMENT_OPTION = 9;"
    " BOOKING_ALREADY_CANCELLED = 10; BOOKING_NOT_CANCELLABLE = 11;"
    " OVERLAPPING_RESERVATION = 12; USER_OVER_BOOKING_LIMIT = 13;",
}
V2_RESERVED = {"Slot": {7}, "BatchAvailabilityLookupRequest": {2}}

# Section 3 of the spec.
V0_MESSAGES = {
    "Lease": "string lease_id = 1; string merchant_id = 2; string service_id = 3;"
    " Timestamp start_time = 4; Duration duration = 5; string client_reference = 6;"
    " Timestamp lease_expiration_time = 7; string availability_tag = 8;"
    " Resources resources = 9;",
    "LeaseReference": "string lease_id = 1;",
    "Resources": "string staff_id = 1; string room_id = 2; int32 party_size = 3;",
    "CreateLeaseRequest": "Lease lease = 1;",
    "CreateLeaseResponse": "Lease lease = 1;",
    "CreateBookingRequest": "LeaseReference lease_ref = 1;"
    " ClientInformation client_information = 2;",
    "CreateBookingResponse": "Booking booking = 1;",
    "UpdateBookingRequest": "FieldMask update_mask = 1; Booking booking = 2;",
    "UpdateBookingResponse": "Booking booking = 1;",
    "Booking": "string booking_id = 1; string merchant_id = 2; string service_id = 3;"
    " Timestamp start_time = 4; Duration duration = 5;"
    " ClientInformation client_information = 6; BookingStatus status = 7;",
    "ClientInformation": "string given_name = 1; string family_name = 2;"
    " PostalAddress address = 3; string telephone = 4; string email = 5;",
    "PostalAddress": V2_MESSAGES["PostalAddress"],  # "same six fields and numbers as v2"
}
V0_ENUMS = {
    "BookingStatus": "BOOKING_STATUS_UNSPECIFIED = 0; CONFIRMED = 1; CANCELED = 4; NO_SHOW = 5;"
    " NO_SHOW_PENALIZED = 6;",
}
V0_RESERVED: dict[str, set[int]] = {}

FILES = [
    pytest.param(pb2, "ext.maps.booking.partner.v2", V2_MESSAGES, V2_ENUMS, V2_RESERVED, id="v2"),
    pytest.param(pb0, "ext.maps.booking.partner.v0", V0_MESSAGES, V0_ENUMS, V0_RESERVED, id="v0"),
]

_FIELD = re.compile(r"^(repeated )?(\w+) (\w+) = (\d+)$")
_VALUE = re.compile(r"^(\w+) = (\d+)$")
_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_BOOL: "bool",
}


def _spec_fields(text: str) -> dict[str, tuple[int, str]]:
    """`string a = 1; repeated B b = 2;` -> {"a": (1, "string"), "b": (2, "repeated B")}."""
    fields = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        match = _FIELD.match(item)
        assert match is not None, item
        repeated, kind, name, number = match.groups()
        fields[name] = (int(number), (repeated or "") + kind)
    return fields


def _spec_values(text: str) -> dict[str, int]:
    values = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        match = _VALUE.match(item)
        assert match is not None, item
        values[match.group(1)] = int(match.group(2))
    return values


def _fields(descriptor: Descriptor) -> dict[str, tuple[int, str]]:
    fields = {}
    for field in descriptor.fields:
        if field.message_type is not None:
            kind = field.message_type.name  # Timestamp, Duration, FieldMask, Slot, ...
        elif field.enum_type is not None:
            kind = field.enum_type.name
        else:
            kind = _SCALARS[field.type]
        repeated = "repeated " if field.is_repeated else ""  # `label` is gone in protobuf 7
        fields[field.name] = (field.number, repeated + kind)
    return fields


def _enum(file: FileDescriptor, dotted: str) -> EnumDescriptor:
    if "." not in dotted:
        return file.enum_types_by_name[dotted]
    message, name = dotted.split(".")
    return file.message_types_by_name[message].enum_types_by_name[name]


def _reserved(descriptor: Descriptor) -> set[int]:  # upb and pure-Python descriptors alike
    proto = descriptor_pb2.DescriptorProto()
    descriptor.CopyToProto(proto)
    assert not proto.reserved_name
    return {n for r in proto.reserved_range for n in range(r.start, r.end)}


@pytest.mark.parametrize(("pb", "package", "messages", "enums", "reserved"), FILES)
def test_messages_are_the_spec(
    pb: Any,
    package: str,
    messages: dict[str, str],
    enums: dict[str, str],
    reserved: dict[str, set[int]],
) -> None:
    file: FileDescriptor = pb.DESCRIPTOR
    assert file.package == package
    file_proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(file_proto)
    assert file_proto.syntax == "proto3"
    assert list(file_proto.dependency) == [
        "google/protobuf/timestamp.proto",
        "google/protobuf/duration.proto",
        "google/protobuf/field_mask.proto",
    ]
    # Exactly the spec's messages: none missing, none invented.
    assert set(file.message_types_by_name) == set(messages)
    for name, text in messages.items():
        descriptor = file.message_types_by_name[name]
        assert _fields(descriptor) == _spec_fields(text), name
        assert not descriptor.nested_types, name
        assert not descriptor.oneofs, name
        assert _reserved(descriptor) == reserved.get(name, set()), name
    # Exactly the spec's enums, top-level or nested where the spec nests them.
    nested = {
        f"{m.name}.{e.name}" for m in file.message_types_by_name.values() for e in m.enum_types
    }
    assert set(file.enum_types_by_name) | nested == set(enums)
    for name, text in enums.items():
        values = {v.name: v.number for v in _enum(file, name).values}
        assert values == _spec_values(text), name


def test_named_numbers() -> None:
    """The few numbers the brief singles out, spelled out against the generated classes."""
    assert pb2.CreateBookingRequest.LEASE_REF_FIELD_NUMBER == 2
    assert pb2.CreateBookingRequest.IDEMPOTENCY_TOKEN_FIELD_NUMBER == 6
    assert pb2.CreateBookingResponse.BOOKING_FAILURE_FIELD_NUMBER == 3
    assert pb2.BookingFailure.CAUSE_FIELD_NUMBER == 1
    assert pb2.BookingFailure.DESCRIPTION_FIELD_NUMBER == 3
    assert pb2.BatchAvailabilityLookupRequest.SLOT_TIME_FIELD_NUMBER == 3
    assert pb2.CANCELED == 3
    assert pb0.CANCELED == 4
    assert pb2.BookingFailure.LEASE_EXPIRED == 3
    assert pb2.CheckAvailabilityResponse.MUST_SHOW_DURATION == 2


def test_grpclib_serves_reflection_v1_v1alpha_and_health() -> None:
    """What the gateway relies on from grpclib 0.4.x for spec section 1."""
    from grpclib.health.service import Health
    from grpclib.reflection.service import ServerReflection

    base = grpc2.BookingServiceBase
    v2 = type("V2", (base,), dict.fromkeys(base.__abstractmethods__))()  # mapping only
    services = ServerReflection.extend([v2, Health()])
    paths = {path for service in services for path in service.__mapping__()}
    assert {
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        f"/{V2_SERVICE}/CreateLease",
    } <= paths
