"""How late the gateway's event loop runs: the wait a request had, unseen, before it was read.

A call's deadline is counted by the server from the moment grpclib parses its
HEADERS; its caller's clock started when it sent them. In between, the bytes
waited in the socket's receive buffer until the loop came round to read them,
for up to one loop iteration: time the caller has lost and the server did not
see. A reply that beats the server's view of the deadline by less than that
reaches the caller late, and the change it made is held by nobody who knows
(a phantom hold, issue 15; docs/performance.md, "Overload").

A timer every PERIOD_S measures how late the loop runs it (an iteration's
length, near enough); calls arriving are charged a high quantile of the last
WINDOW_S. It ticks only while calls arrive: an idle gateway is not woken.
"""

from __future__ import annotations

import asyncio
import time

from leasehold.shards import RecentQuantile


class LoopLag:
    """`seconds()`: how late the loop has run lately (0 before any call or when idle)."""

    PERIOD_S = 0.005
    QUANTILE = 0.9
    WINDOW_S = 1.0
    MAX_SAMPLES = 512  # a window holds at most 200 ticks
    IDLE_S = 1.0  # with no call for this long, stop ticking

    def __init__(self) -> None:
        self._recent = RecentQuantile(self.QUANTILE, self.WINDOW_S, self.MAX_SAMPLES)
        self._timer: asyncio.TimerHandle | None = None
        self._last_call = 0.0

    def seconds(self) -> float:
        """Charged to a call arriving now; starts the ticking if it had stopped."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._last_call = now
        if self._timer is None:
            self._timer = loop.call_at(now + self.PERIOD_S, self._tick, loop, now + self.PERIOD_S)
        return self._recent.value(now)

    def recent_seconds(self) -> float:
        """The same figure, read without starting the ticking (for the health stream);
        asyncio's loop.time() is time.monotonic()."""
        return self._recent.value(time.monotonic())

    def _tick(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        now = loop.time()
        self._recent.observe(max(0.0, now - due), now)
        if now - self._last_call > self.IDLE_S:
            self._timer = None
            return
        self._timer = loop.call_at(now + self.PERIOD_S, self._tick, loop, now + self.PERIOD_S)
