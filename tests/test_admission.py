"""Admission of calls and HTTP/2 budgets: the decisions on plain numbers, then over a channel."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable

import pytest
from _api import lease_v2, slot_v2
from _gateway_harness import in_memory_gateway, run
from grpclib import Status
from grpclib.client import Channel
from grpclib.exceptions import GRPCError
from grpclib.health.service import Health
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest
from grpclib.server import Stream as ServerStream

from leasehold.core import SlotKey, SlotSpec
from leasehold.gateway import (
    PUSHBACK_TRAILER,
    Admission,
    AdmissionSettings,
    CoalescingServer,
    Refusal,
    Refusals,
)
from leasehold.gateway._admission import QueueDelayGate, guard_services
from leasehold.gateway._h2guard import StreamBudget
from leasehold.gateway._limits import GuardLimits
from leasehold.gateway._refusals import QuietFlood
from leasehold.proto.v2 import booking_grpc as grpc2
from leasehold.proto.v2 import booking_pb2 as pb2
from leasehold.shards import RecentQuantile

KEY = SlotKey("m1", "cut", 1_767_254_400, 1800)
SLOTS = [SlotSpec(KEY, 1, 1)]
CODEL = AdmissionSettings(target_s=0.005, interval_s=0.100)


def test_waits_under_target_are_always_admitted() -> None:
    gate = QueueDelayGate(CODEL)
    assert all(gate.admit(0.004, now=t / 10) for t in range(100))


def test_a_burst_up_to_the_interval_is_served_until_waits_stay_long() -> None:
    gate = QueueDelayGate(CODEL)
    assert gate.admit(0.001, now=10.0)
    assert gate.admit(0.090, now=10.05)  # waits over target from here: a burst, served
    assert not gate.admit(0.150, now=10.06)  # waited longer than the interval
    assert gate.admit(0.020, now=10.149)
    # Waits have stayed over target for longer than the interval: behind.
    assert not gate.admit(0.006, now=10.151)
    assert gate.admit(0.005, now=10.152)  # a short wait again: the queue drained
    assert gate.admit(0.050, now=10.153)


def test_behind_holds_only_while_calls_are_still_being_started() -> None:
    gate = QueueDelayGate(CODEL)
    gate.admit(0.050, now=1.0)
    assert not gate.behind(now=1.05)
    gate.admit(0.050, now=1.12)
    assert gate.behind(now=1.13)  # over target since 1.0, and calls still start
    # Every new call refused at arrival: the queue drains, no call starts for an interval.
    assert not gate.behind(now=1.23)


def test_a_burst_after_a_quiet_spell_is_served() -> None:
    gate = QueueDelayGate(CODEL)
    assert gate.admit(0.001, now=0.0)
    # Idle for a minute, then 100 calls at once: the later ones wait, but not for long.
    assert all(gate.admit(0.0005 * i, now=60.0 + 0.0005 * i) for i in range(100))


def test_pushback_grows_with_the_wait_and_is_bounded() -> None:
    gate = QueueDelayGate(CODEL)
    short = [gate.pushback_ms(0.001) for _ in range(50)]
    long = [gate.pushback_ms(10.0) for _ in range(50)]
    assert all(25 <= ms <= 75 for ms in short)
    top = CODEL.pushback_max_ms
    assert all(top / 2 <= ms <= top * 1.5 for ms in long)


def test_the_pushback_can_grow_long_enough_to_hold_back_a_thousand_callers() -> None:
    # Refused callers come back after their pushback: 1,000 of them against ~2,000
    # admissions a second stay near an eighth of admissions only at 4 s.
    admission = Admission(AdmissionSettings(), Refusals())
    limit, now = admission.limit, 0.0
    limit.refused(now)  # the first window starts
    for _ in range(20):  # each window: 10 admitted, 40 refused
        for _ in range(10):
            limit.observe(0.001, 0.020, now)
        for _ in range(40):
            limit.refused(now)
        now += 0.1
        limit.refused(now)
    assert limit.pushback_s >= 1000 / (2000 / 8)


def test_the_early_drop_line_is_the_recent_median_reply_time() -> None:
    times = RecentQuantile(0.5, window_s=1.0, max_samples=1024)
    assert times.value(now=0.0) == 0.0
    for i in range(99):  # one stalled handler among fast ones does not move the median
        times.observe(0.010, now=i / 1000)
    times.observe(0.700, now=0.1)
    assert times.value(now=0.2) == 0.010


def test_old_reply_times_are_forgotten_so_calls_are_measured_again() -> None:
    times = RecentQuantile(0.5, window_s=1.0, max_samples=1024)
    for i in range(100):
        times.observe(0.500, now=i / 1000)
    assert times.value(now=0.2) == 0.500
    # Every call since has been dropped (nothing observed): after the window, nothing.
    assert times.value(now=1.2) == 0.0
    assert len(times) == 0


def test_reply_times_keep_a_bounded_number_of_samples() -> None:
    times = RecentQuantile(0.5, window_s=1.0, max_samples=8)
    for i in range(100):
        times.observe(i, now=0.0)
    assert len(times) == 8
    assert times.value(now=0.0) == 96


def test_rapid_resets_exhaust_the_budget_honest_cancels_do_not() -> None:
    limits = GuardLimits(resets_per_window=100, window_s=1.0)
    attacker, honest = StreamBudget(limits), StreamBudget(limits)
    verdicts = [attacker.opened(0.5) and attacker.reset(0.5) for _ in range(101)]
    assert verdicts == [True] * 100 + [False]
    # 2,000 calls a second, a third of them cancelled: under half of what it opened.
    for i in range(2000):
        assert honest.opened(i / 2000)
        if i % 3 == 0:
            assert honest.reset(i / 2000)


def test_the_budget_window_starts_afresh() -> None:
    budget = StreamBudget(GuardLimits(refused_per_window=2, window_s=1.0))
    assert budget.refused(0.0)
    assert budget.refused(0.5)
    assert not budget.refused(0.9)
    assert budget.refused(1.0)


def test_refusals_are_summarised_as_what_changed() -> None:
    refusals = Refusals()
    assert refusals.summary() is None
    refusals.count(Refusal.OVERLOADED, 3)
    refusals.count(Refusal.REFUSED_STREAM)
    line = refusals.summary()
    assert line is not None
    assert "3 calls refused RESOURCE_EXHAUSTED" in line
    assert "1 streams refused" in line
    assert refusals.summary() is None
    assert refusals.snapshot()[Refusal.OVERLOADED] == 3


def test_grpclib_per_call_records_are_counted_and_others_rate_limited() -> None:
    refusals = Refusals()
    quiet = QuietFlood(refusals)

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("grpclib.server", logging.ERROR, "x", 1, msg, None, None)

    assert not quiet.filter(record("Timeout occurred"))
    assert not quiet.filter(record("Deadline exceeded"))
    assert [quiet.filter(record("Application error")) for _ in range(3)] == [True, False, False]
    counts = refusals.snapshot()
    assert counts[Refusal.CALL_ENDED_EARLY] == 2
    assert counts[Refusal.LOG_SUPPRESSED] == 2


def test_a_call_whose_deadline_is_too_close_is_not_applied() -> None:
    refusals = Refusals()
    # Every call with less than 10 s left is too close: the 5 s call below.
    admission = Admission(AdmissionSettings(min_margin_s=10.0), refusals)

    async def body() -> None:
        async with in_memory_gateway(SLOTS, admission=admission) as h:
            v2 = grpc2.BookingServiceStub(h.channel)
            with pytest.raises(GRPCError) as refused:
                await v2.CreateLease(lease_v2(KEY, "late"), timeout=5)
            assert refused.value.status is Status.DEADLINE_EXCEEDED
            check = await v2.CheckAvailability(pb2.CheckAvailabilityRequest(slot=slot_v2(KEY)))
            assert check.count_available == 1  # no spot held

    run(body)
    assert refusals.snapshot()[Refusal.DEADLINE] == 1


def test_a_call_when_the_server_is_behind_gets_pushback() -> None:
    refusals = Refusals()
    # Target and interval 0: any wait at all is too long.
    admission = Admission(AdmissionSettings(target_s=0.0, interval_s=0.0), refusals)

    async def body() -> None:
        async with in_memory_gateway(SLOTS, admission=admission) as h:
            v2 = grpc2.BookingServiceStub(h.channel)
            request = pb2.CheckAvailabilityRequest(slot=slot_v2(KEY))
            async with v2.CheckAvailability.open() as stream:
                await stream.send_message(request, end=True)
                with pytest.raises(GRPCError) as refused:
                    await stream.recv_message()
                # grpclib's client hides "grpc-" keys from metadata: read the raw headers.
                trailers = dict(stream._stream.headers or ())
            assert refused.value.status is Status.RESOURCE_EXHAUSTED
            assert 25 <= int(trailers[PUSHBACK_TRAILER]) <= 1500

    run(body)
    assert refusals.snapshot()[Refusal.OVERLOADED] == 1


async def _served(admission: Admission, call: Callable[[Channel], Awaitable[None]]) -> None:
    """`call` against a CoalescingServer on a free loopback port (health only)."""
    server = CoalescingServer(guard_services([Health()], admission), admission=admission)
    await server.start("127.0.0.1", 0)
    try:
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        channel = Channel("127.0.0.1", port)
        try:
            await call(channel)
        finally:
            channel.close()
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.timeout(30)
def test_a_call_arriving_while_behind_is_refused_before_a_handler_starts() -> None:
    refusals = Refusals()
    admission = Admission(AdmissionSettings(), refusals)

    async def call(channel: Channel) -> None:
        now = time.monotonic()
        admission.gate.admit(0.5, now=now - 0.2)  # waits over target for 200 ms...
        admission.gate.admit(0.5, now=now)  # ...and calls still starting: behind
        async with HealthStub(channel).Check.open() as stream:
            await stream.send_message(HealthCheckRequest(), end=True)
            with pytest.raises(GRPCError) as refused:
                await stream.recv_message()
            headers = dict(stream._stream.headers or ())
        assert refused.value.status is Status.RESOURCE_EXHAUSTED
        assert 250 <= int(headers[PUSHBACK_TRAILER]) <= 1.5 * admission.settings.pushback_max_ms

    run(lambda: _served(admission, call))
    assert refusals.snapshot()[Refusal.OVERLOADED] == 1
    assert len(admission.reply_times) == 0  # no handler ran


@pytest.mark.timeout(30)
def test_a_call_with_too_short_a_timeout_is_refused_before_a_handler_starts() -> None:
    refusals = Refusals()
    admission = Admission(AdmissionSettings(min_margin_s=10.0), refusals)

    async def call(channel: Channel) -> None:
        async with HealthStub(channel).Check.open(timeout=5) as stream:
            await stream.send_message(HealthCheckRequest(), end=True)
            with pytest.raises(GRPCError) as refused:
                await stream.recv_message()
            headers = dict(stream._stream.headers or ())
        assert refused.value.status is Status.DEADLINE_EXCEEDED
        # Its caller is told when to come back, as a refused one is.
        assert 25 <= int(headers[PUSHBACK_TRAILER]) <= 1500

    run(lambda: _served(admission, call))
    assert refusals.snapshot()[Refusal.DEADLINE] == 1
    assert len(admission.reply_times) == 0  # no handler ran


@pytest.mark.timeout(30)
def test_finished_calls_are_measured_for_the_adaptive_limit() -> None:
    admission = Admission(AdmissionSettings(), Refusals())

    async def call(channel: Channel) -> None:
        health = HealthStub(channel)
        for _ in range(3):
            await health.Check(HealthCheckRequest(), timeout=5)

    run(lambda: _served(admission, call))
    # Each finished call is a sample of the current window (3 calls, well within 100 ms).
    assert len(admission.limit._samples) == 3
    assert len(admission.reply_times) == 3
    assert admission.active == 0


@pytest.mark.timeout(30)
def test_calls_over_the_active_bound_are_refused_and_the_bound_is_released() -> None:
    refusals = Refusals()
    admission = Admission(AdmissionSettings(max_active=1), refusals)

    async def call(channel: Channel) -> None:
        health = HealthStub(channel)
        admission.active = 1  # one call under way
        async with health.Check.open() as stream:
            await stream.send_message(HealthCheckRequest(), end=True)
            with pytest.raises(GRPCError) as refused:
                await stream.recv_message()
            headers = dict(stream._stream.headers or ())
        assert refused.value.status is Status.RESOURCE_EXHAUSTED
        assert 25 <= int(headers[PUSHBACK_TRAILER]) <= 1500
        admission.active = 0
        await health.Check(HealthCheckRequest())  # counted while it runs, then released
        assert admission.active == 0
        # A watch lasts as long as its watcher: it does not count against the bound.
        admission.active = 1
        async with health.Watch.open() as watch:
            await watch.send_message(HealthCheckRequest(), end=True)
            assert (await watch.recv_message()) is not None
            await watch.cancel()

    run(lambda: _served(admission, call))
    assert refusals.snapshot()[Refusal.OVERLOADED] == 1


@pytest.mark.timeout(30)
def test_a_call_arriving_after_close_is_unavailable_and_starts_no_handler() -> None:
    admission = Admission(AdmissionSettings(), Refusals())

    async def body() -> None:
        server = CoalescingServer(guard_services([Health()], admission), admission=admission)
        await server.start("127.0.0.1", 0)
        port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        channel = Channel("127.0.0.1", port)
        try:
            health = HealthStub(channel)
            await health.Check(HealthCheckRequest())  # the connection is up
            server.close()  # as a stopping server does: its handlers are now closing
            with pytest.raises(GRPCError) as refused:
                await health.Check(HealthCheckRequest())
            assert refused.value.status is Status.UNAVAILABLE
            # No task was made for it (one would be left pending when the loop ends):
            # the one task the connection ever had is the first call's.
            assert [len(h._tasks) for h in server._handlers] == [1]
        finally:
            channel.close()
            await server.wait_closed()

    run(body)


@pytest.mark.timeout(30)
def test_a_finished_call_leaves_no_cycle_for_the_collector() -> None:
    # A cycle per call left the gateway's young collections ~10k objects each, 5-40 ms
    # pauses about once a second at 400 calls/s (docs/performance.md).
    admission = Admission(AdmissionSettings(), Refusals())
    cyclic: list[str] = []

    async def call(channel: Channel) -> None:
        health = HealthStub(channel)
        await health.Check(HealthCheckRequest(), timeout=5)  # the connection is up
        gc.collect()
        gc.disable()
        try:
            for _ in range(5):
                await health.Check(HealthCheckRequest(), timeout=5)
            while admission.active:  # noqa: ASYNC110 (a count, no event: until the handlers end)
                await asyncio.sleep(0)
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            cyclic.extend(type(o).__name__ for o in gc.garbage if isinstance(o, ServerStream))
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()

    run(lambda: _served(admission, call))
    assert cyclic == []
