"""Typed messages between the gateway and the shards (nothing here is protobuf)."""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from leasehold.core import BookingError, Command
from leasehold.shards._metrics import SERVICE_TIME_BOUNDS_S, HistogramSnapshot

_EMPTY = HistogramSnapshot((0,) * (len(SERVICE_TIME_BOUNDS_S) + 1), 0.0)


class ShardFault(enum.Enum):
    """Why a shard did not run a request (distinct from a domain refusal)."""

    OVERLOADED = "overloaded"  # the mailbox was full: shed at once
    DEADLINE_EXCEEDED = "deadline_exceeded"  # dequeued after the caller's deadline: not applied
    UNAVAILABLE = "unavailable"  # the shard has stopped


class ShardUnavailable(Exception):
    def __init__(self, fault: ShardFault) -> None:
        super().__init__(fault.value)
        self.fault = fault


# What a request's reply callback receives: the command's result, a domain refusal,
# or a fault. The result's type depends on the command (see shards._dispatch).
Reply = object | BookingError | ShardFault


class ShardRequest:
    """One command on its way to a shard, with where its reply goes.

    A plain slotted class, not a frozen dataclass: one is built per request, and a
    frozen dataclass sets each field through object.__setattr__, which costs several
    times as much. Nobody changes one after it is built.
    """

    __slots__ = ("command", "deadline", "reply", "submitted_at")

    def __init__(
        self, command: Command, reply: Callable[[Reply], None], deadline: float = math.inf
    ) -> None:
        self.command = command
        # Called exactly once, on the shard's thread, with the Reply.
        self.reply = reply
        # On trio's clock; a request dequeued at or after it is answered DEADLINE_EXCEEDED.
        self.deadline = deadline
        # perf_counter() when submitted: the shard's service time runs from here to the reply.
        self.submitted_at = time.perf_counter()


@dataclass(frozen=True, slots=True)
class JournalFigures:
    """A shard's journal, for operators: what the health stream shows of durability."""

    last_fsync_s: float  # the most recent fsync's duration (0 before the first)
    max_fsync_s: float  # the longest fsync since start
    bytes_written: int  # journal bytes written since start
    # Every fsync's duration since start (for the metrics endpoint).
    fsync_times: HistogramSnapshot = _EMPTY


@dataclass(frozen=True, slots=True)
class ShardStats:
    """A frozen snapshot of one shard, for the health stream."""

    shard_id: int
    mailbox_depth: int
    mailbox_capacity: int
    live_leases: int
    confirmed_bookings: int
    operations: int
    expirations: int
    refused: int
    deadline_dropped: int
    shed: int
    last_expiry_lag_s: float
    # Requests served, by command name (e.g. "CreateLease"), since start.
    operations_by_kind: dict[str, int]
    # Cumulative service-time counts per SERVICE_TIME_BOUNDS_S bucket (submit to reply).
    service_time_counts: tuple[int, ...]
    # None when the shard keeps no journal (--durability none, or tests).
    journal: JournalFigures | None = None
    # Service times by command name since start (for the metrics endpoint).
    service_times_by_kind: dict[str, HistogramSnapshot] = field(default_factory=dict)
    # Refusals by (command name, refusal name such as "SlotUnavailable") since start.
    refusals: dict[tuple[str, str], int] = field(default_factory=dict)
    # Inventory changes applied since start (ChangeInventory steps that changed something).
    inventory_changes: int = 0
    # Wall-clock time of the last one (Unix seconds); 0.0: none since start.
    inventory_last_change_unix: float = 0.0
    # CONFIRMED bookings on slots removed from sale (kept, counted).
    orphaned_bookings: int = 0
    # Bookable slots now.
    slots: int = 0
