"""The join between grpclib's asyncio and the trio shards: the only module that knows both.

trio runs as a *guest* of the asyncio loop, on the same thread: of the joins
measured it came within noise of an all-asyncio actor and ahead of every other
trio join (docs/performance.md). A handler puts its request in the shard's mailbox
with `send_nowait` (legal from the host in guest mode) and awaits an asyncio
Future that the shard resolves directly when it replies; no locks, no thread
hops, no per-request trio task. To swap the join, replace this module.

Where trio's internals allow it, the host loop also waits for trio's I/O
(`_HostPolledTicks`), instead of trio's guest-mode worker thread; those internals
are why pyproject.toml pins trio to the minor it was tested on.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import sniffio
import trio

from leasehold.core import Command
from leasehold.shards import Reply, ShardFault, ShardHandle, ShardRequest, ShardUnavailable


class TrioGuest:
    """Runs one trio function as a guest of the running asyncio loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future[Any] = self._loop.create_future()

    def start(
        self, async_fn: Callable[[], Awaitable[object]], clock: trio.abc.Clock | None = None
    ) -> None:
        def done_callback(outcome: Any) -> None:
            if not self._done.done():
                self._done.set_result(outcome)

        self._ticks = _HostPolledTicks(self._loop)
        trio.lowlevel.start_guest_run(
            async_fn,
            run_sync_soon_threadsafe=self._loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=self._ticks.schedule,
            done_callback=done_callback,
            # asyncio's loop.add_signal_handler (how SIGINT/SIGTERM stop the server) owns
            # signal.set_wakeup_fd; without this trio takes it and signals go unseen.
            host_uses_signal_set_wakeup_fd=True,
            clock=clock,
        )

    @property
    def driver(self) -> str:
        """Which loop waits for trio's I/O: "host-polled" (asyncio's) or "thread" (stock)."""
        return "host-polled" if self._ticks.attached else "thread"

    async def wait_done(self) -> None:
        """Wait for the trio run to finish; re-raise whatever it raised."""
        # Shielded: several waiters may be cancelled without cancelling the shared future.
        result = await asyncio.shield(self._done)
        if isinstance(result, outcome.Error):
            # Not unwrap(): an outcome unwraps once, and stop and crash paths both wait here.
            raise result.error


class _HostPolledTicks:
    """Drives trio's guest run so that the host loop, not a thread, waits for trio's I/O.

    Stock guest mode waits for trio's I/O in a worker thread, so every wake of an idle
    shard (one per request at low load) costs a write to trio's wakeup socket, that
    thread's return from epoll, a `call_soon_threadsafe` back through asyncio's
    self-pipe and two GIL hand-offs. trio's epoll fd is itself pollable, so here the
    host's own epoll waits on it (plus a timer for trio's next deadline) and trio's
    tick then polls it with a zero timeout. The tick below is trio's
    `GuestState.guest_tick` with its thread branch replaced; it reads GuestState's
    fields and the I/O manager's epoll, which are trio internals: when they are not
    there (another trio, another OS), `schedule` hands trio's own tick to the loop
    and the stock path runs.

    A wake from the host thread (a handler's send_nowait to an idle shard) skips
    trio's wakeup socket: `_WakeOnHost` schedules the tick with call_soon. What each
    step saves is in docs/performance.md.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._state: Any = None  # trio's GuestState, once attached
        self._thread = threading.get_ident()
        self._fd = -1
        self._timer: asyncio.TimerHandle | None = None
        self._waiting = False  # trio waits for I/O or its deadline (reader + timer armed)
        self._wait_number = 0  # which wait: a host wake queued for one must not end a later

    @property
    def attached(self) -> bool:
        return self._state is not None

    def schedule(self, fn: Callable[[], object]) -> None:
        """trio's `run_sync_soon_not_threadsafe`: first called with its own guest tick."""
        if self._state is None and self._attach(getattr(fn, "__self__", None)):
            self._loop.call_soon(self._tick)
        else:
            self._loop.call_soon(fn)

    def _attach(self, state: Any) -> bool:
        fields = ("runner", "unrolled_run_gen", "unrolled_run_next_send", "done_callback")
        if state is None or not all(hasattr(state, name) for name in fields):
            return False
        manager = state.runner.io_manager
        poller = getattr(manager, "_epoll", None)
        wakeup = getattr(manager, "_force_wakeup", None)
        if poller is None or wakeup is None or not hasattr(manager, "get_events"):
            return False
        self._state, self._fd = state, poller.fileno()
        manager._force_wakeup = _WakeOnHost(wakeup, self)
        return True

    def wake_soon(self) -> bool:
        """Wake a waiting trio by a loop callback; False: not waiting, or not our thread."""
        if not self._waiting or threading.get_ident() != self._thread:
            return False
        self._loop.call_soon(self._wake_from_host, self._wait_number)
        return True

    def _wake_from_host(self, wait_number: int) -> None:
        # If the reader ended that wait first and trio is waiting again, this wake is
        # stale: ending the new wait with no event could look to trio like its timeout
        # (and, under an autojump clock, jump the clock).
        if wait_number == self._wait_number:
            self._wake()

    def _tick(self) -> None:
        state = self._state
        previous, sniffio.thread_local.name = sniffio.thread_local.name, "trio"
        try:
            timeout = state.unrolled_run_next_send.send(state.unrolled_run_gen)
        except StopIteration:
            state.done_callback(state.runner.main_task_outcome)
            return
        except trio.TrioInternalError as exc:
            state.done_callback(outcome.Error(exc))
            return
        finally:
            sniffio.thread_local.name = previous
        events = outcome.capture(state.runner.io_manager.get_events, 0)
        if timeout <= 0 or isinstance(events, outcome.Error) or events.value:
            self._resume(events)
            self._loop.call_soon(self._tick)
            return
        # Idle until trio's epoll has an event (its wakeup socket included: that is
        # how a host-side send_nowait or a finished trio thread wakes it) or its
        # next deadline comes.
        state.runner.guest_tick_scheduled = False
        self._waiting = True
        self._wait_number += 1
        self._loop.add_reader(self._fd, self._wake)
        self._timer = self._loop.call_later(timeout, self._wake)

    def _wake(self) -> None:
        if not self._waiting:
            return  # already woken this wait (a loop callback and the reader both fired)
        self._waiting = False
        self._loop.remove_reader(self._fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._resume(outcome.capture(self._state.runner.io_manager.get_events, 0))
        self._tick()

    def _resume(self, events: outcome.Outcome[Any]) -> None:
        self._state.unrolled_run_next_send = events
        self._state.runner.guest_tick_scheduled = True


class _WakeOnHost:
    """trio's wakeup socketpair, but woken from the host thread by a loop callback.

    A handler's `send_nowait` to an idle shard makes trio force a wake-up: a byte
    written to its wakeup socket, which the host's epoll then reports and trio
    drains. On the host thread the driver can simply schedule trio's next tick.
    Everything else (other threads, draining, closing) is the socketpair's own.
    """

    def __init__(self, inner: Any, ticks: _HostPolledTicks) -> None:
        self._inner = inner
        self._ticks = ticks

    def wakeup_thread_and_signal_safe(self) -> None:
        if not self._ticks.wake_soon():
            self._inner.wakeup_thread_and_signal_safe()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def call_shard(
    handle: ShardHandle,
    command: Command,
    remaining_s: float | None,
    waiting: set[asyncio.Future[Reply]] | None = None,
    resumed_after: Callable[[float], None] | None = None,
) -> Reply:
    """Run a command on a shard from asyncio code and await its reply.

    Raises ShardUnavailable at once when the mailbox is full or closed, or the trio
    run has ended (the shards stopped, or failed and the server is stopping). `remaining_s`
    (seconds, from the caller's gRPC deadline) becomes an absolute deadline on
    trio's clock: grpclib measures deadlines with time.monotonic(), a different
    clock, so only the remaining time crosses over. `waiting`: where the reply's future
    is kept while awaited, so that a failed trio side can answer it (Router.fail_in_flight).
    `resumed_after` is told how long the caller waited, after the reply came, to be resumed
    (the host loop's backlog).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Reply] = loop.create_future()
    delivered_at = 0.0

    def deliver(reply: Reply) -> None:
        nonlocal delivered_at
        # A handler cancelled by its deadline or a disconnect leaves the future cancelled.
        if not future.done():
            delivered_at = time.perf_counter()
            future.set_result(reply)

    deadline = math.inf if remaining_s is None else _trio_now() + remaining_s
    handle.submit(ShardRequest(command, deliver, deadline))
    if waiting is not None:
        waiting.add(future)
    try:
        reply = await future
    finally:
        if waiting is not None:
            waiting.discard(future)
    if resumed_after is not None:
        resumed_after(time.perf_counter() - delivered_at)
    return reply


def _trio_now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # no trio run any more: a handler racing the server's stop
        raise ShardUnavailable(ShardFault.UNAVAILABLE) from None
