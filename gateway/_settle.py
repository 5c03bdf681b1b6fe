"""Turning a shard reply into either the expected value or the API's failure answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from grpclib import Status
from grpclib.exceptions import GRPCError

from leasehold.core import ApiVersion, BookingError
from leasehold.gateway._status import Failure, refusal_answer
from leasehold.shards import Reply

T = TypeVar("T")


def settle(
    reply: Reply, expected: type[T], version: ApiVersion, fields: Mapping[str, str]
) -> T | Failure:
    """The reply as `expected`, or the v2 Failure it maps to; status answers are raised."""
    if isinstance(reply, BookingError):
        return refusal_answer(reply, version, fields)
    if not isinstance(reply, expected):
        raise GRPCError(Status.INTERNAL, f"shard replied {type(reply).__name__}")
    return reply


def settle_strict(reply: Reply, expected: type[T], fields: Mapping[str, str]) -> T:
    """For RPCs with no booking_failure field: every refusal must be a status."""
    settled = settle(reply, expected, ApiVersion.V2, fields)
    if isinstance(settled, Failure):
        raise GRPCError(Status.FAILED_PRECONDITION, settled.description)
    return settled
