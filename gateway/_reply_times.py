"""How long handlers take to reply, as a distribution over the last second (plain numbers).

A call whose `grpc-timeout` is under the median reply time is dropped as its
HEADERS arrive: it is more likely to miss its deadline than to make it, and a
drop costs far less than the work. The median, not a high quantile: this early
drop only saves work; a call admitted close to the line is checked again by its
shard, whose margin (shards/_shard.py) keeps a command from being applied when
its reply could not reach the caller. (TCP's RTO estimate, a mean plus four
deviations, used before, grew to hundreds of ms from one stalled handler and
then dropped calls with their full 100 ms left.)

Samples older than the window are forgotten: when every call is being dropped,
nothing new is measured, and a stale high median would drop calls for good;
after a window without replies the estimate is back at its floor.
"""

from __future__ import annotations

import collections

_REFRESH_S = 0.050  # the median is recomputed at most this often


class ReplyTimes:
    def __init__(self, floor_s: float, window_s: float = 1.0, max_samples: int = 1024) -> None:
        self._floor_s = floor_s
        self._window_s = window_s
        # (when observed, seconds); Invariant: at most max_samples, oldest first.
        self._samples: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=max_samples
        )
        self._median_s = 0.0
        self._refresh_at = -float("inf")

    def observe(self, seconds: float, now: float) -> None:
        self._samples.append((now, seconds))

    def __len__(self) -> int:
        return len(self._samples)

    def margin_s(self, now: float) -> float:
        """The least time left a call is started with: the recent median, above the floor."""
        if now >= self._refresh_at:
            self._refresh(now)
        return max(self._floor_s, self._median_s)

    def _refresh(self, now: float) -> None:
        samples = self._samples
        while samples and samples[0][0] < now - self._window_s:
            samples.popleft()
        ordered = sorted(seconds for _, seconds in samples)
        self._median_s = ordered[len(ordered) // 2] if ordered else 0.0
        self._refresh_at = now + _REFRESH_S
