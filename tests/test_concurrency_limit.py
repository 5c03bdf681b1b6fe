"""The adaptive bound on calls under way (gateway/_concurrency.py), on plain numbers."""

from __future__ import annotations

import math

import pytest

from leasehold.gateway._concurrency import AdaptiveLimit, LimitSettings

# A quarter of a call's timeout as its target keeps these tests' arithmetic plain.
SETTINGS = LimitSettings(target_s=0.020, deadline_share=0.25, window_s=0.100, initial=64, minimum=8)
PUSHBACK_RANGE = (0.050, 1.0)


def limit_after(latency_s: float, windows: int, *, timeout_s: float | None = 0.1) -> float:
    """The limit after `windows` windows in which calls at the limit took `latency_s`."""
    limit = AdaptiveLimit(SETTINGS, 1024, PUSHBACK_RANGE)
    target = limit.target_s(timeout_s)
    now = 0.0
    limit.observe(latency_s, target, now)  # the first window starts
    for _ in range(windows):
        for _ in range(int(limit.limit)):
            limit.allows(math.ceil(limit.limit) - 1)  # the limit was reached in this window
            now += SETTINGS.window_s / limit.limit
            limit.observe(latency_s, target, now)
        now += 0.001
        limit.observe(latency_s, target, now)
    return limit.limit


def test_a_call_is_measured_against_a_share_of_its_own_deadline() -> None:
    limit = AdaptiveLimit(SETTINGS, 1024, PUSHBACK_RANGE)
    assert limit.target_s(0.100) == 0.025
    assert limit.target_s(5.0) == 1.25
    assert limit.target_s(0.010) == 0.020  # never under the least target
    assert limit.target_s(None) == SETTINGS.no_deadline_target_s


def test_a_call_is_given_four_tenths_of_its_deadline_by_default() -> None:
    limit = AdaptiveLimit(LimitSettings(), 1024, PUSHBACK_RANGE)
    assert limit.target_s(0.100) == pytest.approx(0.040)
    assert limit.target_s(None) == 1.0


def test_latency_over_target_shrinks_the_limit_at_most_by_half_a_window() -> None:
    assert limit_after(0.050, windows=1) == pytest.approx(64 * 0.5)
    assert limit_after(0.030, windows=1) == pytest.approx(64 * 0.025 / 0.030)
    assert limit_after(1.0, windows=20) == SETTINGS.minimum


def test_latency_near_target_grows_the_limit_by_its_square_root() -> None:
    assert limit_after(0.020, windows=1) == pytest.approx(64 + 8)  # 0.8 of the target


def test_latency_far_under_target_doubles_the_limit_up_to_the_maximum() -> None:
    assert limit_after(0.005, windows=1) == pytest.approx(128)  # 0.2 of the target
    assert limit_after(0.005, windows=10) == 1024


def test_a_fresh_limit_starts_at_its_maximum() -> None:
    assert AdaptiveLimit(LimitSettings(), 1024, PUSHBACK_RANGE).limit == 1024
    assert AdaptiveLimit(LimitSettings(), 1, PUSHBACK_RANGE).limit == 1


def test_a_caller_with_a_long_deadline_is_not_limited_for_a_slow_reply() -> None:
    assert limit_after(0.300, windows=5, timeout_s=5.0) > 64


def test_the_limit_does_not_grow_when_it_was_not_reached() -> None:
    limit = AdaptiveLimit(SETTINGS, 1024, PUSHBACK_RANGE)
    target = limit.target_s(0.1)
    for i in range(1000):  # fast calls, but never more than 3 under way
        assert limit.allows(2)
        limit.observe(0.001, target, now=i / 1000)
    assert limit.limit == 64


def test_a_limit_refuses_once_reached() -> None:
    limit = AdaptiveLimit(SETTINGS, 1024, PUSHBACK_RANGE)
    assert limit.allows(63)
    assert not limit.allows(64)


def test_pushback_grows_while_refusals_outnumber_admissions_and_shrinks_after() -> None:
    limit = AdaptiveLimit(SETTINGS, 1024, PUSHBACK_RANGE)
    now = 0.0
    limit.refused(now)  # the first window starts
    for _ in range(10):  # each window: 10 admitted, 40 refused
        for _ in range(10):
            limit.observe(0.001, 0.020, now)
        for _ in range(40):
            limit.refused(now)
        now += SETTINGS.window_s
        limit.refused(now)
    assert limit.pushback_s == PUSHBACK_RANGE[1]
    for _ in range(40):  # admissions only
        for _ in range(10):
            limit.observe(0.001, 0.020, now)
        now += SETTINGS.window_s
        limit.observe(0.001, 0.020, now)
    assert limit.pushback_s == PUSHBACK_RANGE[0]


def test_pushback_grows_while_refusals_are_over_an_eighth_of_admissions() -> None:
    # Two refusals per eleven admissions: refusals cost about what successes do, so the
    # pushback still grows (spreading callers out) until they are fewer.
    limit = AdaptiveLimit(SETTINGS, 1024, PUSHBACK_RANGE)
    now = 0.0
    limit.refused(now)  # the first window starts
    for _ in range(3):
        for _ in range(10):
            limit.observe(0.001, 0.020, now)
        limit.refused(now)
        limit.refused(now)
        now += SETTINGS.window_s
        limit.observe(0.001, 0.020, now)
    assert limit.pushback_s > PUSHBACK_RANGE[0]
    grown = limit.pushback_s
    for _ in range(3):  # one refusal per eleven admissions: between the lines, unchanged
        for _ in range(10):
            limit.observe(0.001, 0.020, now)
        limit.refused(now)
        now += SETTINGS.window_s
        limit.observe(0.001, 0.020, now)
    assert limit.pushback_s == grown


def test_a_window_keeps_a_bounded_number_of_samples() -> None:
    limit = AdaptiveLimit(SETTINGS, 1024, PUSHBACK_RANGE)
    limit.observe(0.001, 0.020, 0.0)
    for _ in range(100_000):
        limit.observe(0.001, 0.020, 0.05)
    assert len(limit._samples) <= 256


class FakeCpu:
    """A process CPU clock the test moves."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def limit_after_a_window(calls: int, cpu_s: float, window_s: float) -> AdaptiveLimit:
    """A limit at its maximum after one window of `window_s` in which `calls` were
    answered and the process used `cpu_s`."""
    cpu = FakeCpu()
    limit = AdaptiveLimit(LimitSettings(minimum=8), 1024, PUSHBACK_RANGE, cpu_clock=cpu)
    target = limit.target_s(5.0)  # fast calls for their deadline: the limit stays put
    limit.refused(now=0.0)  # the first window starts
    for i in range(1, calls + 1):  # the last call ends the window
        cpu.seconds += cpu_s / calls
        limit.observe(0.001, target, now=window_s * i / calls)
    return limit


def test_a_crowd_is_admitted_only_as_far_as_the_cpu_per_call_lets_it_finish_in_time() -> None:
    limit = limit_after_a_window(calls=10, cpu_s=0.012, window_s=0.100)
    assert limit.limit == 1024
    assert limit.cost_s == pytest.approx(0.0012)
    # 100 ms left: twice the 40 ms target is 66 calls at 1.2 ms, this one included.
    assert limit.allows(65, timeout_s=0.100)
    assert not limit.allows(66, timeout_s=0.100)
    assert limit.allows(665, timeout_s=1.0)  # twice 400 ms: 666 calls
    assert not limit.allows(666, timeout_s=1.0)
    assert limit.allows(1000, timeout_s=5.0)
    assert limit.allows(500, timeout_s=None)  # no deadline: only the limit
    assert limit.allows(7, timeout_s=0.001)  # under the floor: always


def test_no_cpu_per_call_is_learnt_from_too_few_calls_or_across_an_idle_spell() -> None:
    assert limit_after_a_window(calls=7, cpu_s=0.012, window_s=0.100).cost_s is None
    idle = limit_after_a_window(calls=10, cpu_s=0.500, window_s=10.0)
    assert idle.cost_s is None
    assert idle.allows(500, timeout_s=0.100)  # nothing known: the limit alone decides


def test_refused_calls_count_among_the_calls_the_cpu_was_spent_on() -> None:
    cpu = FakeCpu()
    limit = AdaptiveLimit(LimitSettings(minimum=8), 1024, PUSHBACK_RANGE, cpu_clock=cpu)
    target = limit.target_s(5.0)
    limit.refused(now=0.0)  # the first window starts
    for i in range(1, 5):
        cpu.seconds += 0.0012
        limit.observe(0.001, target, now=i / 100)
    for i in range(5, 11):  # the last refusal ends the window
        cpu.seconds += 0.0012
        limit.refused(now=i / 100)
    assert limit.cost_s == pytest.approx(0.0012)
