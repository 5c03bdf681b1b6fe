"""How many calls may be under way at once, adapted to how long they take (plain numbers).

Netflix's concurrency-limits (gradient) and Envoy's adaptive concurrency filter
bound the calls in flight rather than the queue: when latency rises over its
target, the bound shrinks in proportion, so the calls admitted are served soon
and the rest are refused at once, cheaply, with a pushback. The server's queue
is not only its own: on a saturated event loop requests also wait unseen in
socket buffers, so a queueing-delay gate (CoDel) measured inside the server
stays quiet while deadlines expire before HEADERS are even read. A bound on
calls in flight keeps each loop iteration's batch, and so that hidden wait, short.

Each call's latency (HEADERS to reply) is measured against its own target: 0.4
of the time its caller gave it (`grpc-timeout` at arrival), at least
20 ms; 1 s without a deadline. A caller with a 5 s deadline is not refused for
a 60 ms reply that a 100 ms caller could not wait for. Per window (100 ms), the
90th percentile of latency / target is p: over 1, the limit is divided by p (at
most halved per window); under it, and if the limit was reached in the window
(otherwise nothing was learnt about a larger one), it grows by its square root,
or doubles when p is under 0.5. It starts at its maximum: a fresh server admits
what its latency allows, and 256 closed-loop callers with 5 s deadlines are
never refused (from 128 up, the bench's own setups were).
The pushback refused callers are told grows while refusals are over an eighth of
the admissions and shrinks when under a sixteenth, so that callers honouring it come
back a little faster than the server admits: a refusal costs about what a success
does, so each one spared is CPU for a success.

The limit learns per window, from calls that finished: too late for a crowd that
arrives at once. 1,000 callers with 100 ms deadlines arriving after a calm spell
(limit at its maximum) were all admitted in one read, the loop ran a second
late, and hardly a call succeeded for 1-5 s. So each call with a deadline also
passes a work-ahead check as its HEADERS arrive: the calls under way, it
included, times the process's CPU per call answered (finished or refused,
measured per window) must fit in twice its latency target. It refuses only what the
process could not finish in time even with the CPU to itself, so a calm
server's callers with long deadlines are not refused; never below the limit's
floor.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

# Latency / target ratios kept per window for its percentile: bounded, whatever the rate.
_SAMPLES_PER_WINDOW = 256
# The work-ahead check refuses what would take over twice a call's target: it is there
# for crowds the limit has not learnt yet, not to second-guess it (at 1x it also capped
# steady overload, and cost goodput: docs/performance.md).
WORK_AHEAD_SLACK = 2.0


@dataclass(frozen=True, slots=True)
class LimitSettings:
    target_s: float = 0.020  # the least latency target of a call
    # A call's target: this share of its timeout, if more; the rest is the reply's way
    # back (socket buffers, the caller's own loop). At a quarter the limit sat at its
    # floor and served less, at a third less steadily (docs/performance.md, "Overload,
    # ninth pass").
    deadline_share: float = 0.4
    no_deadline_target_s: float = 1.0
    window_s: float = 0.100
    # None: start at the maximum. A fresh server, or one whose callers' deadlines are
    # long, admits every call its latency allows; the limit is learnt when it must shrink.
    initial: int | None = None
    # Not lower: on a shared machine latency is often the scheduler's, not the queue's,
    # and a loop serving fewer calls a batch does less per wake-up.
    minimum: int = 16
    # The work-ahead check's CPU per call is taken from a window in which at least this
    # many calls were answered (finished or refused), and that lasted at most twice
    # window_s (one spanning an idle spell would charge the spell's CPU to its few calls).
    cost_min_calls: int = 8


class AdaptiveLimit:
    """The bound on calls under way; `observe` each finished call, `refused` each refusal."""

    def __init__(
        self,
        settings: LimitSettings,
        maximum: int,
        pushback_range_s: tuple[float, float],
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        self._settings = settings
        self._cpu_clock = cpu_clock
        # CPU seconds per call answered, from the last window with enough calls; None
        # until one: the work-ahead check then admits what the limit does.
        self.cost_s: float | None = None
        self._window_cpu = 0.0  # set as each window starts (the first call starts one)
        self._window_start = -math.inf
        self._maximum = maximum
        self._pushback_range_s = pushback_range_s
        # Invariant: settings.minimum <= limit <= maximum (when maximum >= minimum).
        initial = maximum if settings.initial is None else settings.initial
        self.limit = float(min(max(initial, settings.minimum), maximum))
        self.pushback_s = pushback_range_s[0]
        self._window_end = -math.inf
        self._samples: list[float] = []
        self._admitted = 0
        self._refused = 0
        self._peak_active = 0

    def allows(self, active: int, timeout_s: float | None = None) -> bool:
        """May one more call, with `timeout_s` left, start with `active` under way?"""
        self._peak_active = max(self._peak_active, active + 1)
        if active >= self.limit:
            return False
        cost = self.cost_s
        if cost is None or timeout_s is None or active < self._settings.minimum:
            return True
        return (active + 1) * cost <= WORK_AHEAD_SLACK * self.target_s(timeout_s)

    def target_s(self, timeout_s: float | None) -> float:
        """The latency a call that arrived with `timeout_s` left should be answered in."""
        s = self._settings
        if timeout_s is None:
            return s.no_deadline_target_s
        return max(s.target_s, s.deadline_share * timeout_s)

    def observe(self, latency_s: float, target_s: float, now: float) -> None:
        """A call finished after `latency_s`, counted from its HEADERS; see target_s."""
        self._admitted += 1
        if len(self._samples) < _SAMPLES_PER_WINDOW:
            self._samples.append(latency_s / target_s)
        if now >= self._window_end:
            self._adapt(now)

    def refused(self, now: float) -> None:
        self._refused += 1
        if now >= self._window_end:
            self._adapt(now)

    def _adapt(self, now: float) -> None:
        s = self._settings
        if self._window_end == -math.inf:  # the first call: the first window starts
            self._start_window(now)
            return
        self._measure_cost(now)
        if self._samples:
            ordered = sorted(self._samples)
            p90 = ordered[int(len(ordered) * 0.9)]  # of latency / target
            if p90 > 1.0:
                self.limit *= max(0.5, 1.0 / p90)
            elif self._peak_active >= self.limit:
                # Far under target (callers with long deadlines): double; near it, probe.
                self.limit += self.limit if p90 < 0.5 else math.sqrt(self.limit)
            self.limit = min(max(self.limit, float(s.minimum)), float(self._maximum))
        self._adapt_pushback()
        self._samples.clear()
        self._start_window(now)

    def _start_window(self, now: float) -> None:
        self._admitted = self._refused = self._peak_active = 0
        self._window_start = now
        self._window_end = now + self._settings.window_s
        self._window_cpu = self._cpu_clock()

    def _measure_cost(self, now: float) -> None:
        s = self._settings
        answered = self._admitted + self._refused  # a refusal's CPU is a call's too
        if answered >= s.cost_min_calls and now - self._window_start <= 2 * s.window_s:
            self.cost_s = (self._cpu_clock() - self._window_cpu) / answered

    def _adapt_pushback(self) -> None:
        refused, admitted = self._refused, max(self._admitted, 1)
        # A refusal costs the server about what a success does (HTTP/2 and HPACK work):
        # aim for one refusal per 8-16 admissions (at one per 4-8, a third more refusals
        # and less goodput in the overload probe: docs/performance.md).
        if refused > admitted / 8:
            self.pushback_s *= min(2.0, 8 * refused / admitted)
        elif refused < admitted / 16:
            self.pushback_s *= 0.8
        low, high = self._pushback_range_s
        self.pushback_s = min(max(self.pushback_s, low), high)
