"""The one table from core refusals and shard faults to the API's answers, per version.

An answer is either a gRPC status (the call fails) or, for v2 RPCs that have a
`booking_failure` field, OK with a BookingFailure cause. Handlers never build
errors ad hoc: they call `refusal_answer` / `fault_error` and act on the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from grpclib import Status
from grpclib.exceptions import GRPCError

from leasehold import core
from leasehold.core import ApiVersion, BookingError
from leasehold.shards import ShardFault


@dataclass(frozen=True, slots=True)
class Failure:
    """Answer OK with `booking_failure { cause, description }` (a v2 Cause name)."""

    cause: str
    description: str


_V2: Mapping[type[BookingError], Status | str] = {
    core.InvalidArgument: Status.INVALID_ARGUMENT,
    core.NotFound: Status.NOT_FOUND,
    core.SlotUnavailable: "SLOT_UNAVAILABLE",
    core.ReferenceConflict: Status.INVALID_ARGUMENT,
    core.LeaseExpired: "LEASE_EXPIRED",
    core.SlotAlreadyBookedByUser: "SLOT_ALREADY_BOOKED_BY_USER",
    core.BookingAlreadyCancelled: "BOOKING_ALREADY_CANCELLED",
}

_V0: Mapping[type[BookingError], Status] = {
    core.InvalidArgument: Status.INVALID_ARGUMENT,
    core.NotFound: Status.NOT_FOUND,
    core.SlotUnavailable: Status.RESOURCE_EXHAUSTED,
    core.ReferenceConflict: Status.ALREADY_EXISTS,
    core.LeaseExpired: Status.NOT_FOUND,
    core.SlotAlreadyBookedByUser: Status.ALREADY_EXISTS,
    core.BookingAlreadyCancelled: Status.INVALID_ARGUMENT,
}

_FAULTS: Mapping[ShardFault, tuple[Status, str]] = {
    ShardFault.OVERLOADED: (Status.RESOURCE_EXHAUSTED, "the shard is overloaded; retry later"),
    ShardFault.DEADLINE_EXCEEDED: (
        Status.DEADLINE_EXCEEDED,
        "deadline exceeded before the request was applied; nothing was changed",
    ),
    # The server is stopping, or (multi-process) the shard's process is being restarted.
    ShardFault.UNAVAILABLE: (Status.UNAVAILABLE, "the shard is unavailable; retry"),
}


def refusal_answer(
    refusal: BookingError, version: ApiVersion, fields: Mapping[str, str]
) -> Failure:
    """The v2 Failure for a refusal, or raise the GRPCError it maps to.

    `fields` maps the core's logical field names to this RPC's wire field paths,
    so the message names the request field the caller actually sent.
    """
    field = fields.get(refusal.field, refusal.field)
    message = f"{field}: {refusal.message}" if field else refusal.message
    table: Mapping[type[BookingError], Status | str] = _V2 if version is ApiVersion.V2 else _V0
    answer = table[type(refusal)]
    if isinstance(answer, Status):
        raise GRPCError(answer, message)
    return Failure(answer, message)


def fault_error(fault: ShardFault) -> GRPCError:
    status, message = _FAULTS[fault]
    return GRPCError(status, message)


def invalid(field: str, message: str) -> GRPCError:
    """A request the gateway itself rejects before it reaches a shard."""
    return GRPCError(Status.INVALID_ARGUMENT, f"{field}: {message}")


def unknown_booking(booking_id: str, field: str) -> GRPCError:
    """An id that is not one of ours cannot name a booking of this server."""
    return GRPCError(Status.NOT_FOUND, f"{field}: booking {booking_id!r} is unknown")
