import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BookingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BOOKING_STATUS_UNSPECIFIED: _ClassVar[BookingStatus]
    CONFIRMED: _ClassVar[BookingStatus]
    CANCELED: _ClassVar[BookingStatus]
    NO_SHOW: _ClassVar[BookingStatus]
    NO_SHOW_PENALIZED: _ClassVar[BookingStatus]

class PrepaymentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PREPAYMENT_STATUS_UNSPECIFIED: _ClassVar[PrepaymentStatus]
    PREPAYMENT_PROVIDED: _ClassVar[PrepaymentStatus]
    PREPAYMENT_NOT_PROVIDED: _ClassVar[PrepaymentStatus]
    PREPAYMENT_REFUNDED: _ClassVar[PrepaymentStatus]
    PREPAYMENT_CREDITED: _ClassVar[PrepaymentStatus]
BOOKING_STATUS_UNSPECIFIED: BookingStatus
CONFIRMED: BookingStatus
CANCELED: BookingStatus
NO_SHOW: BookingStatus
NO_SHOW_PENALIZED: BookingStatus
PREPAYMENT_STATUS_UNSPECIFIED: PrepaymentStatus
PREPAYMENT_PROVIDED: PrepaymentStatus
PREPAYMENT_NOT_PROVIDED: PrepaymentStatus
PREPAYMENT_REFUNDED: PrepaymentStatus
PREPAYMENT_CREDITED: PrepaymentStatus

class Slot(_message.Message):
    __slots__ = ("merchant_id", "service_id", "start_time", "duration", "availability_tag", "resources")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_TAG_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    service_id: str
    start_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    availability_tag: str
    resources: Resources
    def __init__(self, merchant_id: _Optional[str] = ..., service_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., availability_tag: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("staff_id", "room_id", "party_size")
    STAFF_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTY_SIZE_FIELD_NUMBER: _ClassVar[int]
    staff_id: str
    room_id: str
    party_size: int
    def __init__(self, staff_id: _Optional[str] = ..., room_id: _Optional[str] = ..., party_size: _Optional[int] = ...) -> None: ...

class SlotAvailability(_message.Message):
    __slots__ = ("slot", "count_available")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    COUNT_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    slot: Slot
    count_available: int
    def __init__(self, slot: _Optional[_Union[Slot, _Mapping]] = ..., count_available: _Optional[int] = ...) -> None: ...

class AvailabilityUpdate(_message.Message):
    __slots__ = ("slot_availability",)
    SLOT_AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    slot_availability: _containers.RepeatedCompositeFieldContainer[SlotAvailability]
    def __init__(self, slot_availability: _Optional[_Iterable[_Union[SlotAvailability, _Mapping]]] = ...) -> None: ...

class CheckAvailabilityRequest(_message.Message):
    __slots__ = ("slot",)
    SLOT_FIELD_NUMBER: _ClassVar[int]
    slot: Slot
    def __init__(self, slot: _Optional[_Union[Slot, _Mapping]] = ...) -> None: ...

class CheckAvailabilityResponse(_message.Message):
    __slots__ = ("slot", "count_available", "duration_requirement", "availability_update", "last_online_cancellable_sec")
    class DurationRequirement(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DURATION_REQUIREMENT_UNSPECIFIED: _ClassVar[CheckAvailabilityResponse.DurationRequirement]
        DO_NOT_SHOW_DURATION: _ClassVar[CheckAvailabilityResponse.DurationRequirement]
        MUST_SHOW_DURATION: _ClassVar[CheckAvailabilityResponse.DurationRequirement]
    DURATION_REQUIREMENT_UNSPECIFIED: CheckAvailabilityResponse.DurationRequirement
    DO_NOT_SHOW_DURATION: CheckAvailabilityResponse.DurationRequirement
    MUST_SHOW_DURATION: CheckAvailabilityResponse.DurationRequirement
    SLOT_FIELD_NUMBER: _ClassVar[int]
    COUNT_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    DURATION_REQUIREMENT_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_UPDATE_FIELD_NUMBER: _ClassVar[int]
    LAST_ONLINE_CANCELLABLE_SEC_FIELD_NUMBER: _ClassVar[int]
    slot: Slot
    count_available: int
    duration_requirement: CheckAvailabilityResponse.DurationRequirement
    availability_update: AvailabilityUpdate
    last_online_cancellable_sec: int
    def __init__(self, slot: _Optional[_Union[Slot, _Mapping]] = ..., count_available: _Optional[int] = ..., duration_requirement: _Optional[_Union[CheckAvailabilityResponse.DurationRequirement, str]] = ..., availability_update: _Optional[_Union[AvailabilityUpdate, _Mapping]] = ..., last_online_cancellable_sec: _Optional[int] = ...) -> None: ...

class BatchAvailabilityLookupRequest(_message.Message):
    __slots__ = ("merchant_id", "slot_time")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_TIME_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    slot_time: _containers.RepeatedCompositeFieldContainer[SlotTime]
    def __init__(self, merchant_id: _Optional[str] = ..., slot_time: _Optional[_Iterable[_Union[SlotTime, _Mapping]]] = ...) -> None: ...

class BatchAvailabilityLookupResponse(_message.Message):
    __slots__ = ("slot_time_availability",)
    SLOT_TIME_AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    slot_time_availability: _containers.RepeatedCompositeFieldContainer[SlotTimeAvailability]
    def __init__(self, slot_time_availability: _Optional[_Iterable[_Union[SlotTimeAvailability, _Mapping]]] = ...) -> None: ...

class SlotTime(_message.Message):
    __slots__ = ("start_sec", "duration_sec", "availability_tag", "resources", "service_id")
    START_SEC_FIELD_NUMBER: _ClassVar[int]
    DURATION_SEC_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_TAG_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    start_sec: int
    duration_sec: int
    availability_tag: str
    resources: Resources
    service_id: str
    def __init__(self, start_sec: _Optional[int] = ..., duration_sec: _Optional[int] = ..., availability_tag: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., service_id: _Optional[str] = ...) -> None: ...

class SlotTimeAvailability(_message.Message):
    __slots__ = ("slot_time", "available")
    SLOT_TIME_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    slot_time: SlotTime
    available: bool
    def __init__(self, slot_time: _Optional[_Union[SlotTime, _Mapping]] = ..., available: _Optional[bool] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("lease_id", "slot", "user_reference", "lease_expiration_time")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    USER_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRATION_TIME_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    slot: Slot
    user_reference: str
    lease_expiration_time: _timestamp_pb2.Timestamp
    def __init__(self, lease_id: _Optional[str] = ..., slot: _Optional[_Union[Slot, _Mapping]] = ..., user_reference: _Optional[str] = ..., lease_expiration_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LeaseReference(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class CreateLeaseRequest(_message.Message):
    __slots__ = ("lease",)
    LEASE_FIELD_NUMBER: _ClassVar[int]
    lease: Lease
    def __init__(self, lease: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class CreateLeaseResponse(_message.Message):
    __slots__ = ("lease", "booking_failure")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    BOOKING_FAILURE_FIELD_NUMBER: _ClassVar[int]
    lease: Lease
    booking_failure: BookingFailure
    def __init__(self, lease: _Optional[_Union[Lease, _Mapping]] = ..., booking_failure: _Optional[_Union[BookingFailure, _Mapping]] = ...) -> None: ...

class CreateBookingRequest(_message.Message):
    __slots__ = ("slot", "lease_ref", "user_information", "idempotency_token", "additional_request")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    LEASE_REF_FIELD_NUMBER: _ClassVar[int]
    USER_INFORMATION_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ADDITIONAL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    slot: Slot
    lease_ref: LeaseReference
    user_information: UserInformation
    idempotency_token: str
    additional_request: str
    def __init__(self, slot: _Optional[_Union[Slot, _Mapping]] = ..., lease_ref: _Optional[_Union[LeaseReference, _Mapping]] = ..., user_information: _Optional[_Union[UserInformation, _Mapping]] = ..., idempotency_token: _Optional[str] = ..., additional_request: _Optional[str] = ...) -> None: ...

class CreateBookingResponse(_message.Message):
    __slots__ = ("booking", "booking_failure")
    BOOKING_FIELD_NUMBER: _ClassVar[int]
    BOOKING_FAILURE_FIELD_NUMBER: _ClassVar[int]
    booking: Booking
    booking_failure: BookingFailure
    def __init__(self, booking: _Optional[_Union[Booking, _Mapping]] = ..., booking_failure: _Optional[_Union[BookingFailure, _Mapping]] = ...) -> None: ...

class UpdateBookingRequest(_message.Message):
    __slots__ = ("update_mask", "booking")
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    BOOKING_FIELD_NUMBER: _ClassVar[int]
    update_mask: _field_mask_pb2.FieldMask
    booking: Booking
    def __init__(self, update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., booking: _Optional[_Union[Booking, _Mapping]] = ...) -> None: ...

class UpdateBookingResponse(_message.Message):
    __slots__ = ("booking", "booking_failure")
    BOOKING_FIELD_NUMBER: _ClassVar[int]
    BOOKING_FAILURE_FIELD_NUMBER: _ClassVar[int]
    booking: Booking
    booking_failure: BookingFailure
    def __init__(self, booking: _Optional[_Union[Booking, _Mapping]] = ..., booking_failure: _Optional[_Union[BookingFailure, _Mapping]] = ...) -> None: ...

class GetBookingStatusRequest(_message.Message):
    __slots__ = ("booking_id",)
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    def __init__(self, booking_id: _Optional[str] = ...) -> None: ...

class GetBookingStatusResponse(_message.Message):
    __slots__ = ("booking_id", "booking_status", "prepayment_status")
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    BOOKING_STATUS_FIELD_NUMBER: _ClassVar[int]
    PREPAYMENT_STATUS_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    booking_status: BookingStatus
    prepayment_status: PrepaymentStatus
    def __init__(self, booking_id: _Optional[str] = ..., booking_status: _Optional[_Union[BookingStatus, str]] = ..., prepayment_status: _Optional[_Union[PrepaymentStatus, str]] = ...) -> None: ...

class ListBookingsRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class ListBookingsResponse(_message.Message):
    __slots__ = ("bookings",)
    BOOKINGS_FIELD_NUMBER: _ClassVar[int]
    bookings: _containers.RepeatedCompositeFieldContainer[Booking]
    def __init__(self, bookings: _Optional[_Iterable[_Union[Booking, _Mapping]]] = ...) -> None: ...

class Booking(_message.Message):
    __slots__ = ("booking_id", "slot", "user_information", "status")
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    USER_INFORMATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    slot: Slot
    user_information: UserInformation
    status: BookingStatus
    def __init__(self, booking_id: _Optional[str] = ..., slot: _Optional[_Union[Slot, _Mapping]] = ..., user_information: _Optional[_Union[UserInformation, _Mapping]] = ..., status: _Optional[_Union[BookingStatus, str]] = ...) -> None: ...

class UserInformation(_message.Message):
    __slots__ = ("user_id", "given_name", "family_name", "address", "telephone", "email", "language_code")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TELEPHONE_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_CODE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    given_name: str
    family_name: str
    address: PostalAddress
    telephone: str
    email: str
    language_code: str
    def __init__(self, user_id: _Optional[str] = ..., given_name: _Optional[str] = ..., family_name: _Optional[str] = ..., address: _Optional[_Union[PostalAddress, _Mapping]] = ..., telephone: _Optional[str] = ..., email: _Optional[str] = ..., language_code: _Optional[str] = ...) -> None: ...

class PostalAddress(_message.Message):
    __slots__ = ("address_country", "address_locality", "address_region", "post_office_box_number", "postal_code", "street_address")
    ADDRESS_COUNTRY_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_LOCALITY_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_REGION_FIELD_NUMBER: _ClassVar[int]
    POST_OFFICE_BOX_NUMBER_FIELD_NUMBER: _ClassVar[int]
    POSTAL_CODE_FIELD_NUMBER: _ClassVar[int]
    STREET_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address_country: str
    address_locality: str
    address_region: str
    post_office_box_number: str
    postal_code: str
    street_address: str
    def __init__(self, address_country: _Optional[str] = ..., address_locality: _Optional[str] = ..., address_region: _Optional[str] = ..., post_office_box_number: _Optional[str] = ..., postal_code: _Optional[str] = ..., street_address: _Optional[str] = ...) -> None: ...

class BookingFailure(_message.Message):
    __slots__ = ("cause", "description")
    class Cause(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CAUSE_UNSPECIFIED: _ClassVar[BookingFailure.Cause]
        SLOT_UNAVAILABLE: _ClassVar[BookingFailure.Cause]
        SLOT_ALREADY_BOOKED_BY_USER: _ClassVar[BookingFailure.Cause]
        LEASE_EXPIRED: _ClassVar[BookingFailure.Cause]
        OUTSIDE_CANCELLATION_WINDOW: _ClassVar[BookingFailure.Cause]
        PAYMENT_ERROR_CARD_TYPE_REJECTED: _ClassVar[BookingFailure.Cause]
        PAYMENT_ERROR_CARD_DECLINED: _ClassVar[BookingFailure.Cause]
        PAYMENT_OPTION_NOT_VALID: _ClassVar[BookingFailure.Cause]
        PAYMENT_ERROR: _ClassVar[BookingFailure.Cause]
        USER_CANNOT_USE_PAYMENT_OPTION: _ClassVar[BookingFailure.Cause]
        BOOKING_ALREADY_CANCELLED: _ClassVar[BookingFailure.Cause]
        BOOKING_NOT_CANCELLABLE: _ClassVar[BookingFailure.Cause]
        OVERLAPPING_RESERVATION: _ClassVar[BookingFailure.Cause]
        USER_OVER_BOOKING_LIMIT: _ClassVar[BookingFailure.Cause]
    CAUSE_UNSPECIFIED: BookingFailure.Cause
    SLOT_UNAVAILABLE: BookingFailure.Cause
    SLOT_ALREADY_BOOKED_BY_USER: BookingFailure.Cause
    LEASE_EXPIRED: BookingFailure.Cause
    OUTSIDE_CANCELLATION_WINDOW: BookingFailure.Cause
    PAYMENT_ERROR_CARD_TYPE_REJECTED: BookingFailure.Cause
    PAYMENT_ERROR_CARD_DECLINED: BookingFailure.Cause
    PAYMENT_OPTION_NOT_VALID: BookingFailure.Cause
    PAYMENT_ERROR: BookingFailure.Cause
    USER_CANNOT_USE_PAYMENT_OPTION: BookingFailure.Cause
    BOOKING_ALREADY_CANCELLED: BookingFailure.Cause
    BOOKING_NOT_CANCELLABLE: BookingFailure.Cause
    OVERLAPPING_RESERVATION: BookingFailure.Cause
    USER_OVER_BOOKING_LIMIT: BookingFailure.Cause
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    cause: BookingFailure.Cause
    description: str
    def __init__(self, cause: _Optional[_Union[BookingFailure.Cause, str]] = ..., description: _Optional[str] = ...) -> None: ...
