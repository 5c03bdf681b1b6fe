"""Leasehold's pure domain: inventory, leases, bookings, routing. No I/O, no clock.

Import rules (who may import whom): core <- shards <- gateway. `core` imports
none of our other packages, and nothing of trio, grpclib, protobuf, msgpack or
`time`; callers pass the current time in. Implementation lives in private
`_name.py` modules; this file is the contract others import.
"""

from leasehold.core._commands import (
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
from leasehold.core._demo import demo_feed
from leasehold.core._errors import (
    BookingAlreadyCancelled,
    BookingError,
    InvalidArgument,
    LeaseExpired,
    NotFound,
    ReferenceConflict,
    SlotAlreadyBookedByUser,
    SlotUnavailable,
)
from leasehold.core._events import (
    BookingCancelled,
    BookingCreated,
    BookingRescheduled,
    Event,
    ExpiredLeasesForgotten,
    LeaseGranted,
)
from leasehold.core._events import LeaseExpired as LeaseExpiredEvent
from leasehold.core._feed import Feed, FeedError, parse_feed, parse_feed_json
from leasehold.core._inventory import (
    END_OF_TIME,
    ChangeInventory,
    InventoryChanged,
    InventoryFigures,
    InventoryReport,
    ListInventory,
    SlotState,
    Window,
    start_order,
    whole_inventory,
)
from leasehold.core._model import (
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
from leasehold.core._routing import (
    BOOKING_ID_PREFIX,
    ID_ENTROPY_BYTES,
    LEASE_ID_PREFIX,
    bucket_of_id,
    make_id,
    routing_bucket,
    shard_for_bucket,
    shard_for_key,
)
from leasehold.core._scope import Scope, commit_scope
from leasehold.core._snapshot import FrozenState, StateSnapshot
from leasehold.core._state import Counters, LeaseSettings, Outcome, ShardState

__all__ = [
    "BOOKING_ID_PREFIX",
    "END_OF_TIME",
    "ID_ENTROPY_BYTES",
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
    "ChangeInventory",
    "CheckAvailability",
    "Command",
    "Counters",
    "CreateBooking",
    "CreateLease",
    "Event",
    "ExpiredLeasesForgotten",
    "Feed",
    "FeedError",
    "FrozenState",
    "GetBooking",
    "InvalidArgument",
    "InventoryChanged",
    "InventoryFigures",
    "InventoryReport",
    "Lease",
    "LeaseExpired",
    "LeaseExpiredEvent",
    "LeaseGranted",
    "LeaseSettings",
    "LeaseState",
    "ListBookings",
    "ListInventory",
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
    "SlotState",
    "SlotUnavailable",
    "StateSnapshot",
    "Window",
    "bucket_of_id",
    "commit_scope",
    "demo_feed",
    "make_id",
    "parse_feed",
    "parse_feed_json",
    "routing_bucket",
    "shard_for_bucket",
    "shard_for_key",
    "start_order",
    "whole_inventory",
]
