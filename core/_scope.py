"""How far a command's reads and writes reach: one (merchant, service), or the whole shard.

With SYNC durability a reply must not reveal state that is not yet on disk, so
the journal holds a reply while a write it may have read waits for its fsync
(shards._durable_sink). Holding every reply of the shard behind every write
is safe but slow: at half load in the contention bench each refusal waited for
whatever grant of any slot of its shard was being fsynced. These commands read
and change only state of one (merchant, service), so their replies need wait
only for writes of that scope (and whole-shard ones):

- CheckAvailability: that slot (and the expiry of its due leases).
- CreateLease: that slot, and the lease references, kept per (merchant,
  service) and version; a reference conflict names a lease of the same scope.
- CreateBooking (v2): that slot, its lease, and idempotency tokens, kept per
  (merchant, service). A lease id of another scope is refused from what its
  grant made durable before the caller could know the id: the lease's slot.
- CancelBooking, RescheduleBooking, GetBooking, answered with a booking: that
  booking's (merchant, service). A booking never leaves it (a reschedule changes
  only the start and duration), what they change and read is that booking and
  its slots, and its id is known only once its creation is durable. Refused,
  they reach the whole shard.

A sweep of due leases reaches the (merchant, service) of the leases it expired
when they share one (ShardState.expiry_scope). Everything else (v0 bookings
name only a lease, lists span users, availability batches span services)
reaches the whole shard, as does forgetting expired leases, which any command
may do first.
"""

from __future__ import annotations

from collections.abc import Sequence

from leasehold.core._commands import (
    CancelBooking,
    CheckAvailability,
    Command,
    CreateBooking,
    CreateLease,
    GetBooking,
    RescheduleBooking,
)
from leasehold.core._events import Event, ExpiredLeasesForgotten
from leasehold.core._model import ApiVersion, Booking, SlotKey

Scope = tuple[str, str]  # (merchant_id, service_id)


def commit_scope(command: Command, events: Sequence[Event], result: object = None) -> Scope | None:
    """The (merchant, service) all of `command`'s reads and `events` lie within, or None.

    `result`: what the command answered (its Outcome's result).
    """
    key: SlotKey
    if isinstance(command, CreateLease):
        key = command.slot.key
    elif isinstance(command, CheckAvailability):
        key = command.slot
    elif (
        isinstance(command, CreateBooking)
        and command.version is ApiVersion.V2
        and command.slot is not None
    ):
        key = command.slot.key
    elif isinstance(command, CancelBooking | RescheduleBooking | GetBooking) and isinstance(
        result, Booking
    ):
        key = result.slot.key
    else:
        return None
    for event in events:
        if isinstance(event, ExpiredLeasesForgotten):
            return None
    return key.merchant_id, key.service_id
