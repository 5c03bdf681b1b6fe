"""The return path: how long a call spends outside its shard once its request has left.

A command must not be applied when its reply cannot reach the caller in time
(issue 15). The shard keeps its own margin (the journal commit) and counts the
time it is given from its own receipt; the rest of a call's trip after its
request is written to the shard is measured here, per call: the request's and
the reply's time on the link (in the tree: sent to arrived, less the time the
shard process says it held the request; none in-process), then from the
reply's arrival to the end of the handler's task, which comes after grpclib
has written the reply's frames, and is seen one loop iteration later, after
the coalesced send of those frames (gateway/_coalesce.py). The link both ways,
the handler's resume, the encode, the h2 write and the socket send in one
figure: its QUANTILE over the last WINDOW_S is taken off the time a shard is
given, once (docs/operations.md, the deadline rule). One quantile of the whole
path, not a high percentile of each step added up: the steps' tails seldom
coincide.

A call cancelled before its reply came (its deadline, or the caller's reset)
counts as a return path as long as it had waited since its request left: at
least that long, and the slowest are the ones that matter. Measured only once
answered, the slow calls would go unseen, and a window of nothing but
abandoned calls would read 0 (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable

from leasehold.shards import RecentQuantile

# The task of the call being handled, set as its handler starts: the replies of the
# shards a call asks concurrently (asyncio.gather) arrive in tasks of their own, and
# the call's reply is written when the handler's task ends, not theirs.
HANDLER_TASK: contextvars.ContextVar[asyncio.Task[object] | None] = contextvars.ContextVar(
    "leasehold_handler_task", default=None
)


class ReturnPath:
    """`seconds()`: the recent QUANTILE of calls' times outside their shard (0 when none)."""

    QUANTILE = 0.9
    WINDOW_S = 2.0
    MAX_SAMPLES = 2048

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._recent = RecentQuantile(self.QUANTILE, self.WINDOW_S, self.MAX_SAMPLES)
        # Invariant: one entry per handler task whose reply came and that is not done
        # (its done callback removes it): bounded by the calls under way.
        self._received_at: dict[asyncio.Task[object], float] = {}

    def seconds(self) -> float:
        return self._recent.value(self._clock())

    def now(self) -> float:
        return self._clock()

    def abandoned(self, sent_at: float) -> None:
        """The current call was cancelled while waiting for its shard's reply, sent at
        `sent_at` (now()): its return path was at least as long as it waited."""
        self.observe(self._clock() - sent_at)

    def observe(self, seconds: float) -> None:
        self._recent.observe(seconds, self._clock())

    def received(self, waited_s: float) -> None:
        """The current call has spent `waited_s` outside its shard so far (on the link,
        and since its reply arrived); the rest, to its write, is measured when the call's
        handler task ends."""
        task = HANDLER_TASK.get() or asyncio.current_task()
        if task is None:
            return
        if task not in self._received_at:
            task.add_done_callback(self._written)
        # The last reply a call awaits is the one its answer waits for.
        self._received_at[task] = self._clock() - waited_s

    def _written(self, task: asyncio.Task[object]) -> None:
        received_at = self._received_at.pop(task, None)
        if received_at is not None:
            self.observe(self._clock() - received_at)
