"""Field-level checks shared by both API versions: bounded strings, exact times.

Every check names the request field it rejects (its path in the request
message), so the caller learns what to fix.
"""

from __future__ import annotations

from typing import Protocol

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.exceptions import GRPCError

from leasehold.core import PostalAddress
from leasehold.gateway._status import invalid

MAX_ID_CHARS = 256  # ids, references, tokens
MAX_TEXT_CHARS = 1024  # names, addresses, tags
_NANOS = 1_000_000_000
# Timestamp's documented range: 0001-01-01 to 9999-12-31 (seconds since the epoch).
_MIN_TIMESTAMP_S = -62_135_596_800
_MAX_TIMESTAMP_S = 253_402_300_799


def ident(value: str, path: str, *, required: bool = True) -> str:
    """An identifier: non-empty when required, at most MAX_ID_CHARS, no control characters."""
    if not value:
        if required:
            raise invalid(path, "is required")
        return value
    return _bounded(value, path, MAX_ID_CHARS)


def text(value: str, path: str) -> str:
    """Free text: optional, at most MAX_TEXT_CHARS."""
    return _bounded(value, path, MAX_TEXT_CHARS) if value else value


def _bounded(value: str, path: str, limit: int) -> str:
    if len(value) > limit:
        raise invalid(path, f"is {len(value)} characters long; the limit is {limit}")
    if not value.isprintable():
        raise invalid(path, "contains control characters")
    return value


def whole_seconds(ts: Timestamp, path: str) -> int:
    """A slot start: slots match to the second, so a fraction cannot match any slot."""
    _check_timestamp(ts, path)
    if ts.nanos:
        raise invalid(path, "must be a whole number of seconds")
    return ts.seconds


def timestamp_ns(ts: Timestamp, path: str) -> int:
    _check_timestamp(ts, path)
    return ts.seconds * _NANOS + ts.nanos


def _check_timestamp(ts: Timestamp, path: str) -> None:
    if not _MIN_TIMESTAMP_S <= ts.seconds <= _MAX_TIMESTAMP_S or not 0 <= ts.nanos < _NANOS:
        raise invalid(path, "is not a valid timestamp")


def positive_whole_seconds(duration: Duration, path: str) -> int:
    if duration.nanos:
        raise invalid(path, "must be a whole number of seconds")
    if duration.seconds <= 0:
        raise invalid(path, "must be positive")
    return duration.seconds


def non_negative(value: int, path: str) -> int:
    if value < 0:
        raise invalid(path, "must not be negative")
    return value


def set_timestamp_ns(ts: Timestamp, value_ns: int) -> None:
    ts.seconds, ts.nanos = divmod(value_ns, _NANOS)


def is_cancel_mask(paths: set[str], reschedule_paths: tuple[str, ...]) -> bool:
    """Check an UpdateBooking mask: True for a cancel (`status`), False for a reschedule.

    Both versions allow `status` alone, or any of their `reschedule_paths`.
    """
    if not paths:
        raise invalid("update_mask", "names no field to update")
    unknown = paths - set(reschedule_paths) - {"status"}
    if unknown:
        allowed = ", ".join(("status", *reschedule_paths))
        raise invalid("update_mask", f"cannot update {sorted(unknown)}; only {allowed}")
    if "status" in paths and paths != {"status"}:
        raise invalid("update_mask", "a cancel (status) cannot be combined with a reschedule")
    return "status" in paths


def required_message_error(path: str) -> GRPCError:
    return invalid(path, "is required")


class PostalAddressMessage(Protocol):
    """v2 and v0 PostalAddress: the same six fields and numbers."""

    address_country: str
    address_locality: str
    address_region: str
    post_office_box_number: str
    postal_code: str
    street_address: str


def postal_address(a: PostalAddressMessage, path: str) -> PostalAddress:
    return PostalAddress(
        country=text(a.address_country, f"{path}.address_country"),
        locality=text(a.address_locality, f"{path}.address_locality"),
        region=text(a.address_region, f"{path}.address_region"),
        post_office_box_number=text(a.post_office_box_number, f"{path}.post_office_box_number"),
        postal_code=text(a.postal_code, f"{path}.postal_code"),
        street_address=text(a.street_address, f"{path}.street_address"),
    )


def fill_postal_address(out: PostalAddressMessage, a: PostalAddress) -> None:
    out.address_country = a.country
    out.address_locality = a.locality
    out.address_region = a.region
    out.post_office_box_number = a.post_office_box_number
    out.postal_code = a.postal_code
    out.street_address = a.street_address
