"""How many calls may be under way at once, adapted to how long they take (plain numbers).

Netflix's concurrency-limits (gradient) and Envoy's adaptive concurrency filter
bound the calls in flight rather than the queue: when latency rises over its
target, the bound shrinks in proportion, so the calls admitted are served soon
and the rest are refused at once, cheaply, with a pushback. The server's queue
is not only its own: on a saturated event loop requests also wait unseen in
socket buffers, so a queueing-delay gate (CoDel) measured inside the server
stays quiet while deadlines expire before HEADERS are even read. A bound on
calls in flight keeps each loop iteration's batch, and so that hidden wait, short.

Each call's latency (HEADERS to reply) is measured against its own target: a
quarter of the time its caller gave it (`grpc-timeout` at arrival), at least
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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Latency / target ratios kept per window for its percentile: bounded, whatever the rate.
_SAMPLES_PER_WINDOW = 256


@dataclass(frozen=True, slots=True)
class LimitSettings:
    target_s: float = 0.020  # the least latency target of a call
    deadline_share: float = 0.25  # a call's target: this share of its timeout, if more
    no_deadline_target_s: float = 1.0
    window_s: float = 0.100
    # None: start at the maximum. A fresh server, or one whose callers' deadlines are
    # long, admits every call its latency allows; the limit is learnt when it must shrink.
    initial: int | None = None
    # Not lower: on a shared machine latency is often the scheduler's, not the queue's,
    # and a loop serving fewer calls a batch does less per wake-up.
    minimum: int = 16


class AdaptiveLimit:
    """The bound on calls under way; `observe` each finished call, `refused` each refusal."""

    def __init__(
        self, settings: LimitSettings, maximum: int, pushback_range_s: tuple[float, float]
    ) -> None:
        self._settings = settings
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

    def allows(self, active: int) -> bool:
        """May one more call start with `active` under way?"""
        self._peak_active = max(self._peak_active, active + 1)
        return active < self.limit

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
            self._window_end = now + s.window_s
            return
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
        self._admitted = self._refused = self._peak_active = 0
        self._window_end = now + s.window_s

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
