"""What callers ask a shard to do, as plain typed values (decoded from the wire by the gateway)."""

from __future__ import annotations

from dataclasses import dataclass

from leasehold.core._frozen import statically_frozen
from leasehold.core._model import ApiVersion, Person, SlotKey, SlotRef


@statically_frozen
@dataclass(frozen=True, slots=True)
class CheckAvailability:
    slot: SlotKey


@statically_frozen
@dataclass(frozen=True, slots=True)
class BatchAvailability:
    """Open spots for each key, in order; a key that is no inventory slot answers None."""

    slots: tuple[SlotKey, ...]


@statically_frozen
@dataclass(frozen=True, slots=True)
class CreateLease:
    version: ApiVersion
    slot: SlotRef
    reference: str
    # None: the caller gave no expiry, the default TTL applies.
    requested_expiry_ns: int | None


@statically_frozen
@dataclass(frozen=True, slots=True)
class CreateBooking:
    version: ApiVersion
    # v2: the slot named by the request (required). v0: None; the lease names the slot.
    slot: SlotRef | None
    # "" for a v2 direct booking.
    lease_id: str
    person: Person
    # v2 only (required there); "" for v0.
    idempotency_token: str = ""


@statically_frozen
@dataclass(frozen=True, slots=True)
class CancelBooking:
    booking_id: str


@statically_frozen
@dataclass(frozen=True, slots=True)
class RescheduleBooking:
    booking_id: str
    # None keeps the booking's current value.
    new_start_sec: int | None
    new_duration_sec: int | None


@statically_frozen
@dataclass(frozen=True, slots=True)
class GetBooking:
    booking_id: str


@statically_frozen
@dataclass(frozen=True, slots=True)
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
)
