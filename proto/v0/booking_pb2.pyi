import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BookingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BOOKING_STATUS_UNSPECIFIED: _ClassVar[BookingStatus]
    CONFIRMED: _ClassVar[BookingStatus]
    CANCELED: _ClassVar[BookingStatus]
    NO_SHOW: _ClassVar[BookingStatus]
    NO_SHOW_PENALIZED: _ClassVar[BookingStatus]
BOOKING_STATUS_UNSPECIFIED: BookingStatus
CONFIRMED: BookingStatus
CANCELED: BookingStatus
NO_SHOW: BookingStatus
NO_SHOW_PENALIZED: BookingStatus

class Lease(_message.Message):
    __slots__ = ("lease_id", "merchant_id", "service_id", "start_time", "duration", "client_reference", "lease_expiration_time", "availability_tag", "resources")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRATION_TIME_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_TAG_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    merchant_id: str
    service_id: str
    start_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    client_reference: str
    lease_expiration_time: _timestamp_pb2.Timestamp
    availability_tag: str
    resources: Resources
    def __init__(self, lease_id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., service_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., client_reference: _Optional[str] = ..., lease_expiration_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., availability_tag: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ...) -> None: ...

class LeaseReference(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("staff_id", "room_id", "party_size")
    STAFF_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    PARTY_SIZE_FIELD_NUMBER: _ClassVar[int]
    staff_id: str
    room_id: str
    party_size: int
    def __init__(self, staff_id: _Optional[str] = ..., room_id: _Optional[str] = ..., party_size: _Optional[int] = ...) -> None: ...

class CreateLeaseRequest(_message.Message):
    __slots__ = ("lease",)
    LEASE_FIELD_NUMBER: _ClassVar[int]
    lease: Lease
    def __init__(self, lease: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class CreateLeaseResponse(_message.Message):
    __slots__ = ("lease",)
    LEASE_FIELD_NUMBER: _ClassVar[int]
    lease: Lease
    def __init__(self, lease: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class CreateBookingRequest(_message.Message):
    __slots__ = ("lease_ref", "client_information")
    LEASE_REF_FIELD_NUMBER: _ClassVar[int]
    CLIENT_INFORMATION_FIELD_NUMBER: _ClassVar[int]
    lease_ref: LeaseReference
    client_information: ClientInformation
    def __init__(self, lease_ref: _Optional[_Union[LeaseReference, _Mapping]] = ..., client_information: _Optional[_Union[ClientInformation, _Mapping]] = ...) -> None: ...

class CreateBookingResponse(_message.Message):
    __slots__ = ("booking",)
    BOOKING_FIELD_NUMBER: _ClassVar[int]
    booking: Booking
    def __init__(self, booking: _Optional[_Union[Booking, _Mapping]] = ...) -> None: ...

class UpdateBookingRequest(_message.Message):
    __slots__ = ("update_mask", "booking")
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    BOOKING_FIELD_NUMBER: _ClassVar[int]
    update_mask: _field_mask_pb2.FieldMask
    booking: Booking
    def __init__(self, update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., booking: _Optional[_Union[Booking, _Mapping]] = ...) -> None: ...

class UpdateBookingResponse(_message.Message):
    __slots__ = ("booking",)
    BOOKING_FIELD_NUMBER: _ClassVar[int]
    booking: Booking
    def __init__(self, booking: _Optional[_Union[Booking, _Mapping]] = ...) -> None: ...

class Booking(_message.Message):
    __slots__ = ("booking_id", "merchant_id", "service_id", "start_time", "duration", "client_information", "status")
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_INFORMATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    merchant_id: str
    service_id: str
    start_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    client_information: ClientInformation
    status: BookingStatus
    def __init__(self, booking_id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., service_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., client_information: _Optional[_Union[ClientInformation, _Mapping]] = ..., status: _Optional[_Union[BookingStatus, str]] = ...) -> None: ...

class ClientInformation(_message.Message):
    __slots__ = ("given_name", "family_name", "address", "telephone", "email")
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TELEPHONE_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    given_name: str
    family_name: str
    address: PostalAddress
    telephone: str
    email: str
    def __init__(self, given_name: _Optional[str] = ..., family_name: _Optional[str] = ..., address: _Optional[_Union[PostalAddress, _Mapping]] = ..., telephone: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

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
