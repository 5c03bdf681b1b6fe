"""Every change to a shard's state, as an explicit event.

`ShardState.apply` is the only function that changes state, and it changes it
only by applying these. Replaying the events of a shard's history into a fresh
state (built from the same inventory) rebuilds it exactly, so the journal is a
matter of recording them. Each event has a stable `kind` tag for encoding.
"""

from __future__ import annotations

from typing import ClassVar

from leasehold.core._frozen import value_type
from leasehold.core._inventory import InventoryChanged
from leasehold.core._model import Booking, Lease, SlotRef


@value_type
class LeaseGranted:
    kind: ClassVar[str] = "lease_granted"
    lease: Lease


@value_type
class LeaseExpired:
    kind: ClassVar[str] = "lease_expired"
    lease_id: str


@value_type
class ExpiredLeasesForgotten:
    """The oldest `count` remembered expired leases are dropped (retention or memory bound)."""

    kind: ClassVar[str] = "expired_leases_forgotten"
    count: int


@value_type
class BookingCreated:
    kind: ClassVar[str] = "booking_created"
    booking: Booking
    # The v2 idempotency token that created it, or "" (v0, or none given).
    idempotency_token: str = ""


@value_type
class BookingCancelled:
    kind: ClassVar[str] = "booking_cancelled"
    booking_id: str


@value_type
class BookingRescheduled:
    kind: ClassVar[str] = "booking_rescheduled"
    booking_id: str
    new_slot: SlotRef


Event = (
    LeaseGranted
    | LeaseExpired
    | ExpiredLeasesForgotten
    | BookingCreated
    | BookingCancelled
    | BookingRescheduled
    | InventoryChanged
)
