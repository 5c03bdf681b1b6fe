"""Cheap per-shard measurements for the health stream: a fixed log-bucket histogram.

Durations are measured with time.perf_counter(): they are observations, not
control flow, so they need not follow trio's (possibly virtual) clock.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

# Bucket upper bounds: 1 us growing by 25% a step, to ~140 s (84 buckets, ~12% error).
SERVICE_TIME_BOUNDS_S: tuple[float, ...] = tuple(1e-6 * 1.25**i for i in range(84))


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """Cumulative figures of a LatencyHistogram at one moment (for Prometheus)."""

    counts: tuple[int, ...]  # per SERVICE_TIME_BOUNDS_S bucket, then one above the last
    sum_s: float


class LatencyHistogram:
    """Cumulative counts per bucket; readers diff two snapshots for an interval."""

    __slots__ = ("_counts", "_interval_max", "_sum")

    def __init__(self) -> None:
        # The last bucket counts everything above the largest bound.
        self._counts = [0] * (len(SERVICE_TIME_BOUNDS_S) + 1)
        self._interval_max = 0.0
        self._sum = 0.0

    def record(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(SERVICE_TIME_BOUNDS_S, seconds)] += 1
        self._sum += seconds
        if seconds > self._interval_max:
            self._interval_max = seconds

    def counts(self) -> tuple[int, ...]:
        return tuple(self._counts)

    def snapshot(self) -> HistogramSnapshot:
        return HistogramSnapshot(tuple(self._counts), self._sum)

    def take_interval_max(self) -> float:
        """The largest duration since the previous call (one reader: the health publisher)."""
        largest, self._interval_max = self._interval_max, 0.0
        return largest


def percentile(counts: tuple[int, ...], fraction: float) -> float:
    """The upper bound of the bucket holding the given fraction of `counts` (0 if empty)."""
    total = sum(counts)
    if total == 0:
        return 0.0
    rank = fraction * total
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank and count:
            return SERVICE_TIME_BOUNDS_S[min(index, len(SERVICE_TIME_BOUNDS_S) - 1)]
    return SERVICE_TIME_BOUNDS_S[-1]
