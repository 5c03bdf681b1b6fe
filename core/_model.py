"""Plain value types of the booking domain.

Everything here is immutable and free of I/O, protobuf and clocks. Times are
integers: slot starts and durations in whole seconds (the API matches slots to
the second), lease expirations in nanoseconds since the Unix epoch (the API
keeps a requested expiry exactly, seconds and nanos).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from leasehold.core._frozen import value_type

NANOS_PER_SECOND = 1_000_000_000


class _Enum(enum.Enum):
    """An Enum hashed by identity, in C.

    Enum's own __hash__ is a Python function (hash of the name): every dict key or
    tuple key holding a member paid a Python call (~100 ns). Members are singletons
    compared by identity, so the identity hash agrees with equality.
    """

    __hash__ = object.__hash__


class ApiVersion(_Enum):
    """The API version a caller spoke; references are separate namespaces per version."""

    V0 = "v0"
    V2 = "v2"


@dataclass(frozen=True, slots=True)
class SlotKey:
    """The identity of an inventory slot (spec section 4)."""

    merchant_id: str
    service_id: str
    start_sec: int
    duration_sec: int
    staff_id: str = ""
    room_id: str = ""
    party_size: int = 0
    # Keys are hashed on every lookup: compute the hash once (the generated one rebuilds
    # a tuple of all seven fields each time).
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = (self.merchant_id, self.service_id, self.start_sec, self.duration_sec)
        extra = (self.staff_id, self.room_id, self.party_size)
        object.__setattr__(self, "_hash", hash((fields, extra)))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        # As the generated one, but identical keys answer at once and the cached hashes
        # reject most unequal ones: every lookup of a key decoded from a request (equal
        # to the inventory's, never identical) compared all seven fields as tuples.
        if self is other:
            return True
        if type(other) is not SlotKey:
            return NotImplemented
        return (
            self._hash == other._hash
            and self.start_sec == other.start_sec
            and self.merchant_id == other.merchant_id
            and self.service_id == other.service_id
            and self.duration_sec == other.duration_sec
            and self.staff_id == other.staff_id
            and self.room_id == other.room_id
            and self.party_size == other.party_size
        )

    @property
    def end_sec(self) -> int:
        return self.start_sec + self.duration_sec

    def as_tuple(self) -> tuple[str, str, int, int, str, str, int]:
        """The fields in declaration order, as plain values (to sort by, encode or pickle:
        a SlotKey's cached hash is per process)."""
        return (
            self.merchant_id,
            self.service_id,
            self.start_sec,
            self.duration_sec,
            self.staff_id,
            self.room_id,
            self.party_size,
        )


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """One slot of the availability feed, after recurrence expansion."""

    key: SlotKey
    # Invariant: spots >= 0; it is the slot's capacity (`spots_open` at load).
    spots: int
    spots_total: int
    availability_tag: str = ""
    staff_name: str = ""
    room_name: str = ""


@value_type
class SlotRef:
    """A slot as a caller named it: its identity plus the tag it sent (echoed back, not matched)."""

    key: SlotKey
    availability_tag: str = ""


@value_type
class PostalAddress:
    country: str = ""
    locality: str = ""
    region: str = ""
    post_office_box_number: str = ""
    postal_code: str = ""
    street_address: str = ""


@value_type
class Person:
    """The booking user: v2 UserInformation and v0 ClientInformation share this shape."""

    user_id: str = ""
    given_name: str = ""
    family_name: str = ""
    telephone: str = ""
    email: str = ""
    language_code: str = ""
    address: PostalAddress | None = None


class LeaseState(_Enum):
    LIVE = "live"
    CONSUMED = "consumed"
    EXPIRED = "expired"


@value_type
class Lease:
    lease_id: str
    version: ApiVersion
    slot: SlotRef
    # v2 user_reference or v0 client_reference, scoped by version and (merchant, service).
    reference: str
    # Invariant: the lease holds a spot only while state is LIVE and now < expires_ns.
    expires_ns: int
    state: LeaseState = LeaseState.LIVE
    # Set once state is CONSUMED: the booking that took over the lease's spot.
    booking_id: str = ""


class BookingStatus(_Enum):
    CONFIRMED = "confirmed"
    CANCELED = "canceled"
    NO_SHOW = "no_show"
    NO_SHOW_PENALIZED = "no_show_penalized"


@value_type
class Booking:
    booking_id: str
    slot: SlotRef
    person: Person
    # Invariant: only a CONFIRMED booking holds a spot of its slot.
    status: BookingStatus
    # The lease this booking consumed, or "" for a direct booking.
    lease_id: str = ""
