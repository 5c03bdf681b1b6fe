"""A quantile of the durations observed in the last few seconds (plain numbers, caller's clock).

The deadline margins (shards/_shard.py's ReplyMargin, the gateway's reply lag
and early drop) are read from the distribution of recent reply times rather
than from a decaying peak: a per-request decay forgot a slow fsync within ~100
requests, ~70 ms at 1,000 requests a second, so the calls right after it were
applied with too little time left and their replies came late. A window in
time forgets at the same pace whatever the rate, and when nothing is observed
(every request dropped) it empties, so a stale high value cannot drop
requests for good.
"""

from __future__ import annotations

import collections


class RecentQuantile:
    """`value(now)`: the `quantile` of what was observed in the last `window_s`, or 0."""

    def __init__(
        self, quantile: float, window_s: float, max_samples: int, refresh_s: float = 0.050
    ) -> None:
        self._quantile = quantile
        self._window_s = window_s
        self._refresh_s = refresh_s
        # When each duration was observed, and the durations, in two deques so that the
        # sort takes the durations as they are (a generator over pairs cost a third
        # more). Invariant: equal lengths, at most max_samples, oldest first.
        self._times: collections.deque[float] = collections.deque(maxlen=max_samples)
        self._durations: collections.deque[float] = collections.deque(maxlen=max_samples)
        self._value = 0.0
        self._refresh_at = -float("inf")

    def observe(self, seconds: float, now: float) -> None:
        self._times.append(now)
        self._durations.append(seconds)

    def __len__(self) -> int:
        return len(self._times)

    def value(self, now: float) -> float:
        """Recomputed at most every refresh_s (a sort of at most max_samples)."""
        if now >= self._refresh_at:
            times, durations, oldest = self._times, self._durations, now - self._window_s
            while times and times[0] < oldest:
                times.popleft()
                durations.popleft()
            ordered = sorted(durations)
            self._value = ordered[int(len(ordered) * self._quantile)] if ordered else 0.0
            self._refresh_at = now + self._refresh_s
        return self._value
