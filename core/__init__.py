"""Leasehold's pure domain: inventory, leases, bookings, routing. No I/O, no clock.

Import rules (who may import whom): core <- shards <- gateway. `core` imports
none of our other packages, and nothing of trio, grpclib, protobuf, msgpack or
`time`; callers pass the current time in. Implementation lives in private
`_name.py` modules; this file is the contract others import.
"""

from core._commands import (
    BatchAvailability,
    CancelBooking,
    CheckAvailability,
    Command,
    CreateBooking,
    CreateLease,
    GetBooking,
    ListBookings,
    RescheduleBooking,
)
from core._errors import (
    BookingAlreadyCancelled,
    BookingError,
    InvalidArgument,
    LeaseExpired,
    NotFound,
    ReferenceConflict,
    SlotAlreadyBookedByUser,
    SlotUnavailable,
)
from core._events import (
    BookingCancelled,
    BookingCreated,
    BookingRescheduled,
    Event,
    ExpiredLeasesForgotten,
    LeaseGranted,
)
from core._events import LeaseExpired as LeaseExpiredEvent
from core._model import (
    NANOS_PER_SECOND,
    ApiVersion,
    Booking,
    BookingStatus,
    Lease,
    LeaseState,
    Person,
    PostalAddress,
    SlotKey,
    SlotRef,
    SlotSpec,
)
from core._routing import (
    BOOKING_ID_PREFIX,
    LEASE_ID_PREFIX,
    bucket_of_id,
    routing_bucket,
    shard_for_bucket,
    shard_for_key,
)
from core._scope import Scope, commit_scope
from core._snapshot import FrozenState, StateSnapshot
from core._state import Counters, LeaseSettings, Outcome, ShardState

__all__ = [
    "BOOKING_ID_PREFIX",
    "LEASE_ID_PREFIX",
    "NANOS_PER_SECOND",
    "ApiVersion",
    "BatchAvailability",
    "Booking",
    "BookingAlreadyCancelled",
    "BookingCancelled",
    "BookingCreated",
    "BookingError",
    "BookingRescheduled",
    "BookingStatus",
    "CancelBooking",
    "CheckAvailability",
    "Command",
    "Counters",
    "CreateBooking",
    "CreateLease",
    "Event",
    "ExpiredLeasesForgotten",
    "FrozenState",
    "GetBooking",
    "InvalidArgument",
    "Lease",
    "LeaseExpired",
    "LeaseExpiredEvent",
    "LeaseGranted",
    "LeaseSettings",
    "LeaseState",
    "ListBookings",
    "NotFound",
    "Outcome",
    "Person",
    "PostalAddress",
    "ReferenceConflict",
    "RescheduleBooking",
    "Scope",
    "ShardState",
    "SlotAlreadyBookedByUser",
    "SlotKey",
    "SlotRef",
    "SlotSpec",
    "SlotUnavailable",
    "StateSnapshot",
    "bucket_of_id",
    "commit_scope",
    "routing_bucket",
    "shard_for_bucket",
    "shard_for_key",
]
