"""What callers ask a shard to do, as plain typed values (decoded from the wire by the gateway)."""

from __future__ import annotations

from leasehold.core._frozen import value_type
from leasehold.core._inventory import ChangeInventory, ListInventory
from leasehold.core._model import ApiVersion, Person, SlotKey, SlotRef


@value_type
class CheckAvailability:
    slot: SlotKey


@value_type
class BatchAvailability:
    """Open spots for each key, in order; a key that is no inventory slot answers None."""

    slots: tuple[SlotKey, ...]


@value_type
class CreateLease:
    version: ApiVersion
    slot: SlotRef
    reference: str
    # None: the caller gave no expiry, the default TTL applies.
    requested_expiry_ns: int | None


@value_type
class CreateBooking:
    version: ApiVersion
    # v2: the slot named by the request (required). v0: None; the lease names the slot.
    slot: SlotRef | None
    # "" for a v2 direct booking.
    lease_id: str
    person: Person
    # v2 only (required there); "" for v0.
    idempotency_token: str = ""


@value_type
class CancelBooking:
    booking_id: str


@value_type
class RescheduleBooking:
    booking_id: str
    # None keeps the booking's current value.
    new_start_sec: int | None
    new_duration_sec: int | None


@value_type
class GetBooking:
    booking_id: str


@value_type
class ListBookings:
    user_id: str


Command = (
    CheckAvailability
    | BatchAvailability
    | CreateLease
    | CreateBooking
    | CancelBooking
    | RescheduleBooking
    | GetBooking
    | ListBookings
    # Inventory changes and reads (core/_inventory.py; the admin API, spec section 8):
    # ChangeInventory applies a window (or its part before a cut the shard picks, with
    # max_slots), answered with an InventoryReport; ListInventory answers SlotStates.
    | ChangeInventory
    | ListInventory
)
