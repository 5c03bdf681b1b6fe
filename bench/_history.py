"""The recorded history of a bench run: one typed record per request and its reply.

Every request the load generator sends becomes one `Op`, whatever its outcome,
warm-up included (warm-up changes the server's state, so the checker needs it).
Times are wall-clock nanoseconds since the epoch (`time.time_ns()`), taken by the
client immediately before the call is issued (`send_ns`) and immediately after
its reply was decoded (`recv_ns`); the server acted at some instant in between.

Records cross process boundaries as plain tuples (`Op.row` / `Op.from_row`):
pickling a tuple of str/int is several times cheaper than a dataclass.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import astuple, dataclass, fields

from leasehold.core import SlotKey

# gRPC status codes (the numbers are fixed by the gRPC spec).
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
ALREADY_EXISTS = 6
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
UNAVAILABLE = 14
# The client raised before or instead of getting any gRPC status.
NO_STATUS = -1

# Statuses that prove the request changed nothing on the server (spec section 5):
# refusals are decided before anything is applied, and an overloaded shard sheds
# the request at once. Every other non-OK status (DEADLINE_EXCEEDED, UNAVAILABLE,
# CANCELLED, INTERNAL, a broken connection...) leaves the outcome unknown: the
# server may have applied the request before the reply was lost.
NOT_APPLIED_STATUSES = frozenset(
    {INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, RESOURCE_EXHAUSTED, FAILED_PRECONDITION}
)


class Kind(enum.Enum):
    HEALTH = "health"  # grpc.health.v1.Health/Check (the ceiling)
    CHECK = "check"  # CheckAvailability: `count` is count_available
    BATCH = "batch"  # BatchAvailabilityLookup, one record per slot: `count` is 1 or 0
    LEASE = "lease"  # CreateLease (v2 or v0)
    BOOK = "book"  # CreateBooking (v2 or v0)
    CANCEL = "cancel"  # UpdateBooking to CANCELED (v2 or v0)
    RESCHEDULE = "reschedule"  # UpdateBooking of the start time (v2)
    GET = "get"  # GetBookingStatus
    LIST = "list"  # ListBookings
    # One slot's part of an admin ReplaceServiceAvailability: `count` is the capacity it
    # set, `removed` whether it removed the slot (see _capacity).
    INVENTORY = "inventory"


class Outcome(enum.Enum):
    APPLIED = "applied"  # OK with no booking_failure: the server did it
    REFUSED = "refused"  # OK with a booking_failure, or a not-applied status: nothing changed
    UNKNOWN = "unknown"  # no trustworthy answer: it may or may not have been applied


@dataclass(frozen=True, slots=True)
class Op:
    """One request and its reply. Fields that do not apply to a kind keep their defaults."""

    op_id: int
    kind: Kind
    phase: str
    worker: int
    version: str = "v2"
    # Index into the run's slot table, or -1.
    slot: int = -1
    # RESCHEDULE: the slot asked for.
    target_slot: int = -1
    # LEASE: the user/client reference sent.
    reference: str = ""
    # LEASE: the lease_expiration_time asked for, or 0 for none.
    requested_expiry_ns: int = 0
    # LEASE: the lease id granted (reply). BOOK: the lease id sent (request), "" for direct.
    lease_id: str = ""
    # BOOK (v2): the idempotency token sent.
    token: str = ""
    user: str = ""
    # BOOK: the booking id of the reply. CANCEL/RESCHEDULE/GET: the booking id sent.
    booking_id: str = ""
    # gRPC status code of the reply (OK = 0), or NO_STATUS.
    status: int = OK
    # The BookingFailure cause name of an OK reply that carries one, else "".
    cause: str = ""
    # LEASE: the reply's lease_expiration_time in ns.
    expiry_ns: int = 0
    # CHECK: count_available. BATCH: 1 if available else 0. -1 when no answer.
    count: int = -1
    # BOOK/CANCEL/RESCHEDULE: the slot (index) of the booking in the reply, or -1.
    reply_slot: int = -1
    # BOOK/CANCEL/RESCHEDULE/GET: the booking status name in the reply ("CONFIRMED"...).
    booking_status: str = ""
    # Open loop: when the request was meant to be sent (see latency_ns).
    intended_ns: int = 0
    send_ns: int = 0
    recv_ns: int = 0
    # INVENTORY: the change removed the slot (its `count` is then 0).
    removed: bool = False

    @property
    def outcome(self) -> Outcome:
        if self.status == OK:
            return Outcome.REFUSED if self.cause else Outcome.APPLIED
        if self.status in NOT_APPLIED_STATUSES and self.kind is not Kind.INVENTORY:
            return Outcome.REFUSED
        # An admin change is applied in steps, shard by shard, and a later step may be
        # shed or refused after earlier ones applied: no error proves nothing changed.
        return Outcome.UNKNOWN

    @property
    def latency_ns(self) -> int:
        """From the intended send time (open loop) or the send time (closed loop).

        Open loop: a request sent late (the client was busy) counts from when it was
        meant to go, so a stall cannot hide; one sent early (the loadgen wakes ahead
        of its timer's rounding) counts from its send, so it cannot look faster.
        """
        start = min(self.intended_ns, self.send_ns) if self.intended_ns else self.send_ns
        return self.recv_ns - start

    def row(self) -> tuple[object, ...]:
        values = list(astuple(self))
        values[1] = self.kind.value
        return tuple(values)

    @classmethod
    def from_row(cls, row: Iterable[object]) -> Op:
        values = list(row)
        values[1] = Kind(values[1])
        return cls(*values)  # type: ignore[arg-type]


FIELD_NAMES = tuple(f.name for f in fields(Op))


@dataclass(frozen=True, slots=True)
class BenchSlot:
    """A slot of the run's slot table: its identity and its capacity at the start of the run."""

    key: SlotKey
    spots: int

    @property
    def service(self) -> tuple[str, str]:
        return (self.key.merchant_id, self.key.service_id)

    def label(self) -> str:
        k = self.key
        return f"{k.merchant_id}/{k.service_id}@{k.start_sec}+{k.duration_sec}"


def by_send_time(ops: Iterable[Op]) -> Iterator[Op]:
    return iter(sorted(ops, key=lambda op: (op.send_ns, op.op_id)))
