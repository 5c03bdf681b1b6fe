from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Resources(_message.Message):
    __slots__ = ("staff_id", "staff_name", "room_id", "room_name", "party_size")
    STAFF_ID_FIELD_NUMBER: _ClassVar[int]
    STAFF_NAME_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_NAME_FIELD_NUMBER: _ClassVar[int]
    PARTY_SIZE_FIELD_NUMBER: _ClassVar[int]
    staff_id: str
    staff_name: str
    room_id: str
    room_name: str
    party_size: int
    def __init__(self, staff_id: _Optional[str] = ..., staff_name: _Optional[str] = ..., room_id: _Optional[str] = ..., room_name: _Optional[str] = ..., party_size: _Optional[int] = ...) -> None: ...

class Recurrence(_message.Message):
    __slots__ = ("repeat_every_sec", "repeat_until_sec")
    REPEAT_EVERY_SEC_FIELD_NUMBER: _ClassVar[int]
    REPEAT_UNTIL_SEC_FIELD_NUMBER: _ClassVar[int]
    repeat_every_sec: int
    repeat_until_sec: int
    def __init__(self, repeat_every_sec: _Optional[int] = ..., repeat_until_sec: _Optional[int] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("begin_sec", "end_sec")
    BEGIN_SEC_FIELD_NUMBER: _ClassVar[int]
    END_SEC_FIELD_NUMBER: _ClassVar[int]
    begin_sec: int
    end_sec: int
    def __init__(self, begin_sec: _Optional[int] = ..., end_sec: _Optional[int] = ...) -> None: ...

class ScheduleException(_message.Message):
    __slots__ = ("time_range",)
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    time_range: TimeRange
    def __init__(self, time_range: _Optional[_Union[TimeRange, _Mapping]] = ...) -> None: ...

class Availability(_message.Message):
    __slots__ = ("merchant_id", "service_id", "start_sec", "duration_sec", "spots_total", "spots_open", "availability_tag", "resources", "recurrence", "schedule_exception")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    START_SEC_FIELD_NUMBER: _ClassVar[int]
    DURATION_SEC_FIELD_NUMBER: _ClassVar[int]
    SPOTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SPOTS_OPEN_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_TAG_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    RECURRENCE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_EXCEPTION_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    service_id: str
    start_sec: int
    duration_sec: int
    spots_total: int
    spots_open: int
    availability_tag: str
    resources: Resources
    recurrence: Recurrence
    schedule_exception: _containers.RepeatedCompositeFieldContainer[ScheduleException]
    def __init__(self, merchant_id: _Optional[str] = ..., service_id: _Optional[str] = ..., start_sec: _Optional[int] = ..., duration_sec: _Optional[int] = ..., spots_total: _Optional[int] = ..., spots_open: _Optional[int] = ..., availability_tag: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., recurrence: _Optional[_Union[Recurrence, _Mapping]] = ..., schedule_exception: _Optional[_Iterable[_Union[ScheduleException, _Mapping]]] = ...) -> None: ...

class ServiceAvailability(_message.Message):
    __slots__ = ("start_timestamp_restrict", "end_timestamp_restrict", "merchant_id_restrict", "service_id_restrict", "duration_restrict_sec", "resources_restrict", "availability")
    START_TIMESTAMP_RESTRICT_FIELD_NUMBER: _ClassVar[int]
    END_TIMESTAMP_RESTRICT_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_RESTRICT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_RESTRICT_FIELD_NUMBER: _ClassVar[int]
    DURATION_RESTRICT_SEC_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_RESTRICT_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    start_timestamp_restrict: int
    end_timestamp_restrict: int
    merchant_id_restrict: str
    service_id_restrict: str
    duration_restrict_sec: int
    resources_restrict: Resources
    availability: _containers.RepeatedCompositeFieldContainer[Availability]
    def __init__(self, start_timestamp_restrict: _Optional[int] = ..., end_timestamp_restrict: _Optional[int] = ..., merchant_id_restrict: _Optional[str] = ..., service_id_restrict: _Optional[str] = ..., duration_restrict_sec: _Optional[int] = ..., resources_restrict: _Optional[_Union[Resources, _Mapping]] = ..., availability: _Optional[_Iterable[_Union[Availability, _Mapping]]] = ...) -> None: ...

class ApplyFeedRequest(_message.Message):
    __slots__ = ("feed_json", "dry_run")
    FEED_JSON_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    feed_json: bytes
    dry_run: bool
    def __init__(self, feed_json: _Optional[bytes] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ReplaceServiceAvailabilityRequest(_message.Message):
    __slots__ = ("service_availability", "dry_run")
    SERVICE_AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    service_availability: _containers.RepeatedCompositeFieldContainer[ServiceAvailability]
    dry_run: bool
    def __init__(self, service_availability: _Optional[_Iterable[_Union[ServiceAvailability, _Mapping]]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ShardChange(_message.Message):
    __slots__ = ("shard", "added", "changed", "removed", "kept_booked", "unchanged", "leases_released", "applied")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    KEPT_BOOKED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    LEASES_RELEASED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    shard: int
    added: int
    changed: int
    removed: int
    kept_booked: int
    unchanged: int
    leases_released: int
    applied: bool
    def __init__(self, shard: _Optional[int] = ..., added: _Optional[int] = ..., changed: _Optional[int] = ..., removed: _Optional[int] = ..., kept_booked: _Optional[int] = ..., unchanged: _Optional[int] = ..., leases_released: _Optional[int] = ..., applied: _Optional[bool] = ...) -> None: ...

class ChangeReport(_message.Message):
    __slots__ = ("shards", "added", "changed", "removed", "kept_booked", "unchanged", "leases_released", "dry_run")
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    KEPT_BOOKED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    LEASES_RELEASED_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedCompositeFieldContainer[ShardChange]
    added: int
    changed: int
    removed: int
    kept_booked: int
    unchanged: int
    leases_released: int
    dry_run: bool
    def __init__(self, shards: _Optional[_Iterable[_Union[ShardChange, _Mapping]]] = ..., added: _Optional[int] = ..., changed: _Optional[int] = ..., removed: _Optional[int] = ..., kept_booked: _Optional[int] = ..., unchanged: _Optional[int] = ..., leases_released: _Optional[int] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class GetInventoryRequest(_message.Message):
    __slots__ = ("merchant_id", "service_id", "start_sec_from", "start_sec_to", "limit")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    START_SEC_FROM_FIELD_NUMBER: _ClassVar[int]
    START_SEC_TO_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    service_id: str
    start_sec_from: int
    start_sec_to: int
    limit: int
    def __init__(self, merchant_id: _Optional[str] = ..., service_id: _Optional[str] = ..., start_sec_from: _Optional[int] = ..., start_sec_to: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class SlotState(_message.Message):
    __slots__ = ("slot", "capacity", "leases", "bookings", "removed")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    BOOKINGS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    slot: Availability
    capacity: int
    leases: int
    bookings: int
    removed: bool
    def __init__(self, slot: _Optional[_Union[Availability, _Mapping]] = ..., capacity: _Optional[int] = ..., leases: _Optional[int] = ..., bookings: _Optional[int] = ..., removed: _Optional[bool] = ...) -> None: ...

class GetInventoryResponse(_message.Message):
    __slots__ = ("slots", "truncated")
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    slots: _containers.RepeatedCompositeFieldContainer[SlotState]
    truncated: bool
    def __init__(self, slots: _Optional[_Iterable[_Union[SlotState, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...
