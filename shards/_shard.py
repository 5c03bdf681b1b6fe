"""A shard: the single trio task that owns a ShardState.

The loop is thin: receive until the next lease deadline, run the request
against the state, expire what is due, reply. Nothing else touches the state,
so no locks are needed and requests are serialised per shard. The mailbox is
bounded and fed with `send_nowait`: a full mailbox is answered OVERLOADED at
once by the sender (see ShardHandle.submit) instead of queueing without bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import trio

from core import BookingError, Command, Event, ShardState
from shards._clock import AnchoredClock
from shards._dispatch import execute
from shards._messages import (
    JournalFigures,
    Reply,
    ShardFault,
    ShardRequest,
    ShardStats,
    ShardUnavailable,
)
from shards._metrics import LatencyHistogram

_NANOS = 1_000_000_000
# Requests served per wake-up before yielding to other tasks (fairness between shards).
_MAX_BATCH = 64


class EventSink:
    """Where a shard's events go before its reply is sent. This one keeps nothing.

    A durable sink (the journal) appends the events and calls `deliver` only once
    they are on disk; it must deliver in submission order, so that no reply
    reveals state a crash could still lose.
    """

    def commit(self, events: Sequence[Event], deliver: Callable[[], None]) -> None:
        del events
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
        self._refused = 0
        self._deadline_dropped = 0
        self._expiry_lag_s = 0.0
        # Requests served, by command type (named in statistics()).
        self._by_kind: dict[type[Command], int] = {}
        self.service_times = LatencyHistogram()

    def statistics(self) -> ShardStats:
        counters = self.state.counters()
        return ShardStats(
            shard_id=self.shard_id,
            mailbox_depth=self._send.statistics().current_buffer_used,
            mailbox_capacity=self._capacity,
            live_leases=counters.live_leases,
            confirmed_bookings=counters.confirmed_bookings,
            operations=self._operations,
            expirations=counters.leases_expired,
            refused=self._refused,
            deadline_dropped=self._deadline_dropped,
            shed=self.handle.shed,
            last_expiry_lag_s=self._expiry_lag_s,
            operations_by_kind={kind.__name__: n for kind, n in self._by_kind.items()},
            service_time_counts=self.service_times.counts(),
            journal=self._sink.journal_figures(),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until the mailbox's send side is closed; then answer nothing more."""
        task_status.started()
        async with self._receive:
            while True:
                request = None
                with trio.move_on_at(self._next_timer()):
                    try:
                        request = await self._receive.receive()
                    except trio.EndOfChannel:
                        return
                if request is None:
                    self._expire_on_timer()
                    continue
                self._serve(request)
                if not self._serve_queued():
                    return

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
        return math.inf if deadline_ns is None else self._clock.trio_time_at(deadline_ns)

    def _expire_on_timer(self) -> None:
        deadline_ns = self.state.next_deadline_ns()
        now_ns = self._clock.wall_ns()
        if deadline_ns is not None and deadline_ns <= now_ns:
            self._expiry_lag_s = (now_ns - deadline_ns) / _NANOS
        self._sink.commit(self.state.expire_due(now_ns), _nothing_to_deliver)

    def _serve(self, request: ShardRequest) -> None:
        now = trio.current_time()
        if now >= request.deadline:
            # The caller has given up: applying now could half-apply from its view.
            self._deadline_dropped += 1
            request.reply(ShardFault.DEADLINE_EXCEEDED)
            return
        command = request.command
        outcome = execute(self.state, command, self._clock.wall_ns_at(now))
        self._operations += 1
        by_kind = self._by_kind
        kind = type(command)
        by_kind[kind] = by_kind.get(kind, 0) + 1
        result = outcome.result
        if isinstance(result, BookingError):
            self._refused += 1

        def deliver() -> None:
            self.service_times.record(time.perf_counter() - request.submitted_at)
            request.reply(result)

        self._sink.commit(outcome.events, deliver)


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
