"""The domain's error hierarchy: each error carries what the API needs to answer.

The gateway maps these to gRPC status codes or to a BookingFailure cause in one
table (per API version); handlers never build errors ad hoc.
"""

from __future__ import annotations


class BookingError(Exception):
    """Base of every refusal the domain can give. `field` names the offending request field."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(BookingError):
    """The request is malformed or names something that does not exist in the inventory."""


class NotFound(BookingError):
    """A lease or booking id that this server does not know (or no longer can use)."""


class SlotUnavailable(BookingError):
    """The slot exists but has no open spot."""


class ReferenceConflict(BookingError):
    """A lease reference was reused for a different slot."""


class LeaseExpired(BookingError):
    """The lease named by the request has passed its expiration time."""


class SlotAlreadyBookedByUser(BookingError):
    """The same user already holds a CONFIRMED booking on this slot."""


class BookingAlreadyCancelled(BookingError):
    """A reschedule of a booking that was cancelled."""
