"""The shard's service-time histogram and per-command counts."""

from __future__ import annotations

import pytest

from leasehold.shards import SERVICE_TIME_BOUNDS_S, LatencyHistogram, percentile


def test_percentiles_report_bucket_upper_bounds() -> None:
    histogram = LatencyHistogram()
    for _ in range(99):
        histogram.record(0.000_010)  # 10 us
    histogram.record(0.5)
    counts = histogram.counts()
    assert sum(counts) == 100
    p50 = percentile(counts, 0.50)
    assert 10e-6 <= p50 < 10e-6 * 1.25
    assert percentile(counts, 0.99) == p50
    assert 0.5 <= percentile(counts, 1.0) < 0.5 * 1.25


def test_interval_max_resets_when_taken() -> None:
    histogram = LatencyHistogram()
    histogram.record(0.25)
    histogram.record(0.125)
    assert histogram.take_interval_max() == 0.25
    assert histogram.take_interval_max() == 0.0


def test_empty_and_overflow() -> None:
    assert percentile((0,) * (len(SERVICE_TIME_BOUNDS_S) + 1), 0.99) == 0.0
    histogram = LatencyHistogram()
    histogram.record(10_000.0)  # beyond the last bound: counted in the overflow bucket
    assert histogram.counts()[-1] == 1
    assert percentile(histogram.counts(), 0.5) == pytest.approx(SERVICE_TIME_BOUNDS_S[-1])


def test_a_snapshot_carries_the_counts_and_their_sum() -> None:
    histogram = LatencyHistogram()
    histogram.record(0.25)
    histogram.record(0.5)
    snapshot = histogram.snapshot()
    assert snapshot.counts == histogram.counts()
    assert snapshot.sum_s == 0.75
