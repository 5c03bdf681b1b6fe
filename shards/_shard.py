"""A shard: the trio task (and its timer) that alone owns a ShardState.

The loop is thin: receive a request, run it against the state (which first
expires what is due on the slot it reads), reply; a timer task sweeps the rest
of what is due, in chunks. Nothing else touches the state, so no locks are
needed and requests are serialised per shard. The mailbox is bounded and fed
with `send_nowait`: a full mailbox is answered OVERLOADED at once by the sender
(see ShardHandle.submit) instead of queueing without bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence

import trio

from leasehold.core import (
    BookingError,
    ChangeInventory,
    Command,
    Event,
    InventoryChanged,
    ShardState,
    commit_scope,
)
from leasehold.shards._clock import AnchoredClock
from leasehold.shards._dispatch import execute
from leasehold.shards._messages import (
    JournalFigures,
    Reply,
    ShardFault,
    ShardRequest,
    ShardStats,
    ShardUnavailable,
)
from leasehold.shards._metrics import LatencyHistogram
from leasehold.shards._recent import RecentQuantile

_NANOS = 1_000_000_000
# Requests served per wake-up before yielding to other tasks (fairness between shards).
_MAX_BATCH = 64
# Leases the timer expires before yielding: expiring a mass of leases due at one instant
# in one go stalls every shard on trio's one thread (docs/performance.md).
EXPIRY_CHUNK = 256
# The timer sweeps this long after the earliest lease is due, so that leases due close
# together expire in one sweep and one journal commit (one fsync), not a wake-up each.
# No caller can tell: every command settles the slot it reads before it decides.
EXPIRY_COALESCE_S = 0.050


class EventSink:
    """Where a shard's events go before its reply is sent. This one keeps nothing.

    A durable sink (the journal) appends the events and calls `deliver` only once
    they are on disk, and no reply before every earlier write within its scope is
    on disk too, so that no reply reveals state a crash could still lose.
    """

    def commit(
        self, events: Sequence[Event], deliver: Callable[[], None], scope: Hashable | None = None
    ) -> None:
        """Record `events`; call `deliver` once the reply may go out. `scope`: how far the
        command's reads reach (core.commit_scope; None, the whole shard)."""
        del events, scope
        deliver()

    def journal_figures(self) -> JournalFigures | None:
        """What the health stream shows of the journal; None: this sink keeps none."""
        return None


class Shard:
    def __init__(
        self,
        shard_id: int,
        state: ShardState,
        clock: AnchoredClock,
        *,
        mailbox_capacity: int,
        sink: EventSink | None = None,
    ) -> None:
        self.shard_id = shard_id
        self.state = state
        self._clock = clock
        self._sink = sink or EventSink()
        self._capacity = mailbox_capacity
        self._send, self._receive = trio.open_memory_channel[ShardRequest](mailbox_capacity)
        self.handle = ShardHandle(shard_id, self._send)
        self._operations = 0
        self._deadline_dropped = 0
        self._expiry_lag_s = 0.0
        self._timer: trio.CancelScope | None = None
        # Requests served, by command type (named in statistics()).
        self._by_kind: dict[type[Command], int] = {}
        self.service_times = LatencyHistogram()
        # Invariant: bounded by the command types, and by those times the refusal types.
        self._times_by_kind: dict[type[Command], LatencyHistogram] = {}
        self._refusals: dict[tuple[type[Command], type[BookingError]], int] = {}
        self.reply_margin = ReplyMargin()
        self._inventory_changes = 0
        self._inventory_changed_ns = 0

    def statistics(self) -> ShardStats:
        counters = self.state.counters()
        inventory = self.state.inventory_figures()
        return ShardStats(
            shard_id=self.shard_id,
            mailbox_depth=self._send.statistics().current_buffer_used,
            mailbox_capacity=self._capacity,
            live_leases=counters.live_leases,
            confirmed_bookings=counters.confirmed_bookings,
            operations=self._operations,
            expirations=counters.leases_expired,
            refused=sum(self._refusals.values()),
            deadline_dropped=self._deadline_dropped,
            shed=self.handle.shed,
            last_expiry_lag_s=self._expiry_lag_s,
            operations_by_kind={kind.__name__: n for kind, n in self._by_kind.items()},
            service_time_counts=self.service_times.counts(),
            journal=self._sink.journal_figures(),
            service_times_by_kind={
                kind.__name__: times.snapshot() for kind, times in self._times_by_kind.items()
            },
            refusals={(k.__name__, e.__name__): n for (k, e), n in self._refusals.items()},
            inventory_changes=self._inventory_changes,
            inventory_last_change_unix=self._inventory_changed_ns / _NANOS,
            orphaned_bookings=inventory.orphaned_bookings,
            slots=inventory.slots,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until the mailbox's send side is closed; then answer nothing more."""
        task_status.started()
        async with self._receive, trio.open_nursery() as timers:
            timers.start_soon(self._expire_on_timers)
            try:
                await self._serve_until_closed()
            finally:
                timers.cancel_scope.cancel()

    async def _serve_until_closed(self) -> None:
        # No CancelScope per receive: one per wake of an idle shard cost half of a round
        # trip (docs/performance.md). The timer task below keeps the deadline instead,
        # and moves it only when it must.
        receive = self._receive
        while True:
            try:
                request = await receive.receive()
            except trio.EndOfChannel:
                return
            self._serve(request)
            more = self._serve_queued()
            self._bring_timer_forward()
            if not more:
                return

    async def _expire_on_timers(self) -> None:
        """The shard's one timer: sleeps until EXPIRY_COALESCE_S after the earliest lease
        deadline, expires what is due, repeats.

        It runs between requests, never during one (the shard's code has no await
        inside an operation), so the state still has a single writer at a time.
        Commands settle only the slot they read; this sweep expires everything else
        that is due, EXPIRY_CHUNK leases at a time.
        """
        while True:
            with trio.CancelScope(deadline=self._next_timer()) as timer:
                self._timer = timer
                await trio.sleep_forever()
            while self._expire_on_timer():
                # More is due: let requests (this shard's and others') go between chunks.
                # Each command settles its own slot first, so none sees a lease past due.
                await trio.lowlevel.checkpoint()

    def _bring_timer_forward(self) -> None:
        # A new lease with a shorter lifetime may be due before the timer's deadline. A
        # later one needs nothing: a timer that fires early finds nothing due, re-arms.
        timer = self._timer
        if timer is not None:
            due = self._next_timer()
            if due < timer.deadline:
                timer.deadline = due

    def _serve_queued(self) -> bool:
        """Serve what is already queued without yielding; False once the mailbox is closed.

        Each `await receive()` is a trio checkpoint, and as a guest of asyncio every
        trio scheduling round is a trip through the host loop (an extra epoll call):
        draining a bounded batch per wake-up amortises that under load.
        """
        for _ in range(_MAX_BATCH):
            try:
                request = self._receive.receive_nowait()
            except trio.WouldBlock:
                return True
            except trio.EndOfChannel:
                return False
            self._serve(request)
        return True

    def close(self) -> None:
        """Stop taking requests; the loop ends after serving what is queued."""
        self._send.close()

    def _next_timer(self) -> float:
        deadline_ns = self.state.next_deadline_ns()
        if deadline_ns is None:
            return math.inf
        return self._clock.trio_time_at(deadline_ns) + EXPIRY_COALESCE_S

    def _expire_on_timer(self) -> bool:
        """Expire a chunk of what is due; True if more is due still."""
        deadline_ns = self.state.next_deadline_ns()
        now_ns = self._clock.wall_ns()
        if deadline_ns is not None and deadline_ns <= now_ns:
            # Late beyond the planned coalescing: what a busy shard adds.
            self._expiry_lag_s = max(0.0, (now_ns - deadline_ns) / _NANOS - EXPIRY_COALESCE_S)
        expired = self.state.expire_due(now_ns, EXPIRY_CHUNK)
        self._sink.commit(expired, _nothing_to_deliver, self.state.expiry_scope(expired))
        left_ns = self.state.next_deadline_ns()
        return left_ns is not None and left_ns <= now_ns

    def _serve(self, request: ShardRequest) -> None:
        now = trio.current_time()
        if now + self.reply_margin.seconds(now) >= request.deadline:
            # The reply could not reach the caller in time: applying it now would leave a
            # change (a held spot) the caller never hears of.
            self._deadline_dropped += 1
            request.reply(ShardFault.DEADLINE_EXCEEDED)
            return
        command = request.command
        applied_at = time.perf_counter()
        now_ns = self._clock.wall_ns_at(now)
        outcome = execute(self.state, command, now_ns)
        self._operations += 1
        by_kind = self._by_kind
        kind = type(command)
        by_kind[kind] = by_kind.get(kind, 0) + 1
        times = self._times_by_kind.get(kind)
        if times is None:
            times = self._times_by_kind[kind] = LatencyHistogram()
        result = outcome.result
        if type(command) is ChangeInventory and outcome.events:
            self._note_inventory_change(outcome.events, now_ns)
        if isinstance(result, BookingError):
            refusal = (kind, type(result))
            self._refusals[refusal] = self._refusals.get(refusal, 0) + 1

        def deliver() -> None:
            delivered_at = time.perf_counter()
            elapsed = delivered_at - request.submitted_at
            self.service_times.record(elapsed)
            times.record(elapsed)
            self.reply_margin.observe(delivered_at - applied_at, trio.current_time())
            request.reply(result)

        events = outcome.events
        self._sink.commit(events, deliver, commit_scope(command, events, result))

    def _note_inventory_change(self, events: Sequence[Event], now_ns: int) -> None:
        if any(type(e) is InventoryChanged for e in events):  # (not just settling)
            self._inventory_changes += 1
            self._inventory_changed_ns = now_ns


class ShardHandle:
    """The sending side of a shard's mailbox: what the gateway holds."""

    def __init__(self, shard_id: int, send: trio.MemorySendChannel[ShardRequest]) -> None:
        self.shard_id = shard_id
        self._send = send
        self.shed = 0

    def submit(self, request: ShardRequest) -> None:
        """Queue a request, or raise ShardUnavailable at once (never blocks)."""
        try:
            self._send.send_nowait(request)
        except trio.WouldBlock:
            self.shed += 1
            raise ShardUnavailable(ShardFault.OVERLOADED) from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ShardUnavailable(ShardFault.UNAVAILABLE) from None


class ReplyMargin:
    """How close to its deadline a request may still be started (docs/operations.md).

    The floor covers the gateway's encode and send of the reply; on top comes the
    99th percentile of this shard's apply-to-deliver times (the journal's commit,
    under sync durability) over the last WINDOW_S: a command is applied only if
    its reply would be ready in time after 99 of 100 recent commits.
    """

    FLOOR_S = 0.001
    QUANTILE = 0.99
    WINDOW_S = 2.0
    MAX_SAMPLES = 2048  # at higher rates the window is this many replies

    def __init__(self) -> None:
        self._recent = RecentQuantile(self.QUANTILE, self.WINDOW_S, self.MAX_SAMPLES)

    def observe(self, seconds: float, now: float) -> None:
        self._recent.observe(seconds, now)

    def seconds(self, now: float) -> float:
        return self.FLOOR_S + self._recent.value(now)


def _nothing_to_deliver() -> None:
    pass


async def call(handle: ShardHandle, command: Command, deadline: float = math.inf) -> Reply:
    """Submit a command from trio code and wait for its reply (tests and trio clients)."""
    done = trio.Event()
    replies: list[Reply] = []

    def deliver(reply: Reply) -> None:
        replies.append(reply)
        done.set()

    handle.submit(ShardRequest(command, deliver, deadline))
    await done.wait()
    return replies[0]
