"""The inventory-churn scenario's parts without a real server: the plan of changes, and
the admin client against a fake InventoryService on loopback (real gRPC, real bytes).

The end-to-end run against `leasehold serve` is in tests/test_bench_smoke.py.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest

from leasehold.bench._admin import AdminClient, window_request
from leasehold.bench._churn import ChurnPlan, hold_figures
from leasehold.bench._cli import _options, _parser
from leasehold.bench._cli import main as bench_main
from leasehold.bench._feed import SlotGroup, build_slots
from leasehold.bench._history import INVALID_ARGUMENT, OK, Kind, Op, Outcome
from leasehold.bench._scenarios import Options
from leasehold.health._metrics import MetricsSnapshot, render
from leasehold.proto.admin.v1 import inventory_pb2 as pba
from leasehold.proto.admin.v1 import inventory_pb2_grpc as pba_grpc
from leasehold.shards import SERVICE_TIME_BOUNDS_S, HistogramSnapshot, ShardStats

SLOTS = build_slots([SlotGroup("churn", 8, 2, merchants=2)], now_sec=1_000_000)
KEYS = [s.key for s in SLOTS]
INITIAL = {i: s.spots for i, s in enumerate(SLOTS)}


def plan(seed: int = 7, remove_share: float = 0.2) -> ChurnPlan:
    return ChurnPlan(
        KEYS, list(INITIAL), INITIAL, random.Random(seed), max_spots=4, remove_share=remove_share
    )


# ----- the plan -------------------------------------------------------------------------


def test_each_change_is_one_merchants_run_of_consecutive_starts() -> None:
    p = plan()
    for _ in range(200):
        window, capacity = p.next()
        merchants = {KEYS[s].merchant_id for s in window}
        starts = [KEYS[s].start_sec for s in window]
        assert len(merchants) == 1
        run = next(r for r in p.runs if window[0] in r)
        assert window == run[run.index(window[0]) : run.index(window[0]) + len(window)]
        assert starts == sorted(starts)
        assert set(capacity) <= set(window)
        assert all(1 <= c <= 4 for c in capacity.values())


def test_the_plan_raises_lowers_removes_and_re_adds() -> None:
    p = plan()
    seen: Counter[str] = Counter()
    for _ in range(300):
        before = dict(p.current)
        window, capacity = p.next()
        for slot in window:
            old, new = before[slot], capacity.get(slot)
            if old is None:
                seen["re-added" if new is not None else "still removed"] += 1
            elif new is None:
                seen["removed"] += 1
            else:
                seen["raised" if new > old else "lowered" if new < old else "kept"] += 1
    assert all(seen[what] for what in ("raised", "lowered", "removed", "re-added")), seen
    assert seen["still removed"] == 0  # a removed slot is always re-added by its next change


def test_restore_puts_every_slot_back_to_its_start_capacity() -> None:
    p = plan()
    for _ in range(50):
        p.next()
    windows = p.restore()
    assert sorted(s for window, _ in windows for s in window) == sorted(INITIAL)
    assert {s: c for _, capacity in windows for s, c in capacity.items()} == INITIAL
    assert all(p.current[s] == INITIAL[s] for s in INITIAL)


def test_the_plan_is_a_function_of_its_seed() -> None:
    assert [plan(3).next() for _ in range(5)] == [plan(3).next() for _ in range(5)]
    first, second = plan(3), plan(3)
    assert [first.next() for _ in range(20)] == [second.next() for _ in range(20)]


# ----- the request ----------------------------------------------------------------------


def test_a_window_request_pins_exactly_its_slots() -> None:
    window = [0, 2, 4]  # merchant 0's first three starts (merchants alternate)
    assert {KEYS[s].merchant_id for s in window} == {"bench-m0"}
    request = window_request(KEYS, window, {0: 3, 4: 1})
    (entry,) = request.service_availability
    assert entry.merchant_id_restrict == "bench-m0"
    assert entry.service_id_restrict == "churn"
    assert entry.duration_restrict_sec == KEYS[0].duration_sec
    assert entry.start_timestamp_restrict == KEYS[0].start_sec
    assert entry.end_timestamp_restrict == KEYS[4].start_sec + 1
    listed = {(a.start_sec, a.spots_total, a.spots_open) for a in entry.availability}
    assert listed == {(KEYS[0].start_sec, 3, 3), (KEYS[4].start_sec, 1, 1)}  # slot 2: removed
    assert not request.dry_run


def test_a_window_over_two_merchants_is_refused() -> None:
    with pytest.raises(ValueError, match="one merchant"):
        window_request(KEYS, [0, 1], {})


# ----- the client, against a fake admin service -------------------------------------------


Context = grpc.aio.ServicerContext[Any, Any]


class FakeInventory(pba_grpc.InventoryServiceServicer):
    def __init__(self, refuse: bool = False) -> None:
        self.requests: list[pba.ReplaceServiceAvailabilityRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.refuse = refuse

    async def ReplaceServiceAvailability(
        self, request: pba.ReplaceServiceAvailabilityRequest, context: Context
    ) -> pba.ChangeReport:
        self.requests.append(request)
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        if self.refuse:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "entry 0: bad")
        return pba.ChangeReport(changed=len(request.service_availability[0].availability))

    async def ApplyFeed(self, request: pba.ApplyFeedRequest, context: Context) -> pba.ChangeReport:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the bench never sends it")
        raise AssertionError("abort raises")

    async def GetInventory(
        self, request: pba.GetInventoryRequest, context: Context
    ) -> pba.GetInventoryResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the bench never sends it")
        raise AssertionError("abort raises")


async def replace_on_fake(fake: FakeInventory, token: str | None) -> list[Op]:
    server = grpc.aio.server()
    pba_grpc.add_InventoryServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            client = AdminClient(channel, KEYS, worker=0, timeout_s=5.0, token=token)
            client.phase = "churn"
            return await client.replace([1, 3, 5], {1: 4, 5: 2})
    finally:
        await server.stop(None)


def run(calls: Coroutine[Any, Any, list[Op]]) -> list[Op]:
    return asyncio.run(asyncio.wait_for(calls, 20))


@pytest.mark.timeout(30)
def test_one_call_is_recorded_as_one_op_per_slot_of_the_window() -> None:
    fake = FakeInventory()
    ops = run(replace_on_fake(fake, token="s3cret"))
    assert len(fake.requests) == 1
    assert fake.metadata[0]["authorization"] == "Bearer s3cret"
    assert [(op.slot, op.count, op.removed) for op in ops] == [
        (1, 4, False),
        (3, 0, True),
        (5, 2, False),
    ]
    assert {(op.kind, op.status, op.phase, op.outcome) for op in ops} == {
        (Kind.INVENTORY, OK, "churn", Outcome.APPLIED)
    }
    assert len({op.op_id for op in ops}) == 3
    assert len({(op.send_ns, op.recv_ns) for op in ops}) == 1  # one call, one bracket
    assert 0 < ops[0].send_ns <= ops[0].recv_ns


@pytest.mark.timeout(30)
def test_a_refused_call_is_of_unknown_outcome_and_without_a_token_sends_none() -> None:
    fake = FakeInventory(refuse=True)
    ops = run(replace_on_fake(fake, token=None))
    assert "authorization" not in fake.metadata[0]
    # Steps before a failing one may have been applied: an error proves nothing.
    assert {(op.status, op.outcome) for op in ops} == {(INVALID_ARGUMENT, Outcome.UNKNOWN)}


@pytest.mark.timeout(30)
def test_no_server_is_an_unknown_outcome_not_a_crash() -> None:
    async def nobody() -> list[Op]:
        async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
            client = AdminClient(channel, KEYS, worker=0, timeout_s=1.0)
            return await client.replace([0], {0: 1})

    ops = run(nobody())
    assert [op.outcome for op in ops] == [Outcome.UNKNOWN]


# ----- the server's own figure for an update ----------------------------------------------


def test_the_shard_hold_comes_from_the_change_inventory_service_times() -> None:
    counts = [0] * (len(SERVICE_TIME_BOUNDS_S) + 1)
    counts[8], counts[20] = 98, 2  # 98 quick windows, 2 slower ones
    times = HistogramSnapshot(tuple(counts), 0.25)
    stats = ShardStats(
        shard_id=0,
        mailbox_depth=0,
        mailbox_capacity=8,
        live_leases=0,
        confirmed_bookings=0,
        operations=100,
        expirations=0,
        refused=0,
        deadline_dropped=0,
        shed=0,
        last_expiry_lag_s=0.0,
        operations_by_kind={"ChangeInventory": 100},
        service_time_counts=tuple(counts),
        service_times_by_kind={"ChangeInventory": times, "CreateLease": times},
    )
    text = render(MetricsSnapshot((stats,), 0, 0, None)).decode()
    figures = hold_figures(text)
    assert figures["change_service_count"] == 100
    assert figures["change_service_mean_ms"] == 2.5
    # 99 of 100 fall at or under the bucket of the 20th bound (buckets export every 4th).
    bound = figures["change_service_p99_below_ms"]
    assert SERVICE_TIME_BOUNDS_S[20] * 1e3 <= bound <= SERVICE_TIME_BOUNDS_S[24] * 1e3


def test_no_change_inventory_no_hold_figures() -> None:
    assert hold_figures("") == {}


# ----- the command line -------------------------------------------------------------------


def options(*args: str) -> Options:
    return _options(_parser(), ["inventory-churn", "--spawn", *args], allow_extra=False)[0]


def test_the_churn_flags_reach_the_scenario() -> None:
    o = options("--churn-rate", "50", "--churn-rounds", "4", "--admin-token", "s3cret")
    assert (o.churn_rate, o.churn_rounds, o.admin_token) == (50.0, 4, "s3cret")
    assert options().churn_rate == 20.0


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--churn-rate", "0"], "--churn-rate"),
        (["--churn-rate", "-3"], "--churn-rate"),
        (["--churn-rate", "5000"], "--churn-rate"),
        (["--churn-rate", "nan"], "--churn-rate"),
        (["--churn-rounds", "0"], "--churn-rounds"),
    ],
)
def test_bad_churn_flags_are_refused_naming_the_flag(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        options(*flags)
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        ([], "needs --admin-target"),
        (["--admin-target", "10.1.2.3:50053"], "loopback only"),
    ],
)
def test_a_target_run_needs_a_loopback_admin_target(
    flags: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["inventory-churn", "--target", "127.0.0.1:1", "--feed", "f.json", *flags]
    assert bench_main([*argv, "--out", str(tmp_path)]) == 2
    assert says in capsys.readouterr().err
