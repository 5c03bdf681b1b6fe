"""How long an inventory change holds a shard (issue 19's targets), measured in process.

    python -m leasehold.bench._inventory_cost [--slots 100000] [--shards 4] [--runs 3]

A shard is held for a step from its decision to the encoding of its event (what
the shard's thread does before it takes the next request: the journal's write and
fsync happen in a worker thread). Two figures, each the median of `--runs` runs:

- a 7-day window of one service (48 slots a day, capacities changed, a slot a day
  removed) replaced in one step: the time the shard is held;
- a whole feed of `--slots` slots over `--shards` shards, every capacity changed and
  one slot in 50 replaced by a new one, applied in steps of STEP_SLOTS: the longest
  time any one step held its shard, and the sum of all steps.

A few live leases and bookings sit on the slots so removals release and keep some.
With `--server`: a spawned `leasehold serve --durability none` on a feed of `--slots`
slots, and `--callers` closed-loop CreateLease/CheckAvailability callers running while
the changed whole feed goes to its admin port (ApplyFeed): how long the change took,
and how many lease calls were refused (any status but OK, or a BookingFailure other
than SLOT_UNAVAILABLE) and their slowest answer during it.

Prints one line per figure; the machine's load (os.getloadavg) goes beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from grpclib.client import Channel
from grpclib.exceptions import GRPCError

from leasehold.bench._server import SpawnedServer, serve_command
from leasehold.core import (
    STEP_SLOTS,
    ApiVersion,
    ChangeInventory,
    CreateLease,
    InventoryReport,
    ShardState,
    SlotKey,
    SlotRef,
    SlotSpec,
    Window,
    shard_windows,
    whole_inventory,
)
from leasehold.proto.admin.v1 import inventory_pb2 as admin_pb
from leasehold.proto.admin.v1.inventory_grpc import InventoryServiceStub
from leasehold.proto.v2 import booking_pb2 as pb2
from leasehold.proto.v2.booking_grpc import BookingServiceStub
from leasehold.shards import encode_events, partition_inventory
from leasehold.tuning import tune_for_long_lived_state

_DAY = 86_400
_START = 4_102_444_800  # 2100-01-01
_NOW_NS = (_START - _DAY) * 1_000_000_000
# The same callers without a change, first: what this machine's load alone does to them.
BASELINE_S = 10.0
_ADMIN = re.compile(r"inventory admin service on (\S+) ")
# The thread CPU time of each step timed (wall time less any time the OS ran others).
_CPU: list[float] = []


def _slots(count: int) -> list[SlotSpec]:
    """`count` slots: services of 7 days x 48 half-hours each, over merchants of 10."""
    specs = []
    for i in range(count):
        service, slot = divmod(i, 7 * 48)
        key = SlotKey(f"m{service // 10}", f"s{service}", _START + slot * 1800, 1800)
        specs.append(SlotSpec(key, spots=2, spots_total=2))
    return specs


def _entropy_counter() -> Callable[[], bytes]:
    counter = itertools.count()
    return lambda: next(counter).to_bytes(15, "big")


def _state(specs: Sequence[SlotSpec]) -> ShardState:
    state = ShardState(specs, entropy=_entropy_counter())
    for number, spec in enumerate(specs[::7]):
        lease = CreateLease(ApiVersion.V2, SlotRef(spec.key), f"r{number}", None)
        state.create_lease(lease, _NOW_NS)
    return state


def _held(state: ShardState, command: ChangeInventory) -> tuple[float, int]:
    """(seconds the step held the shard, the cut it reached); its CPU time goes to _CPU."""
    cpu_started = time.thread_time()
    started = time.perf_counter()
    outcome = state.change_inventory(command, _NOW_NS)
    encode_events(outcome.events)
    held = time.perf_counter() - started
    _CPU.append(time.thread_time() - cpu_started)
    report = outcome.result
    assert isinstance(report, InventoryReport), report
    return held, report.cut_sec


def one_service_week() -> float:
    specs = _slots(7 * 48)
    state = _state(specs)
    listed = [replace(s, spots=3, spots_total=3) for n, s in enumerate(specs) if n % 48 != 0]
    key = specs[0].key
    window = Window(_START, _START + 7 * _DAY, key.merchant_id, key.service_id, slots=tuple(listed))
    held, _ = _held(state, ChangeInventory(window, STEP_SLOTS))
    return held


def whole_feed(count: int, shard_count: int) -> tuple[float, float, int, float]:
    """(longest step, all steps, steps, the 99th percentile step) for a whole feed of
    `count` slots."""
    specs = _slots(count)
    states = [_state(part) for part in partition_inventory(specs, shard_count)]
    new = [
        replace(s, spots=3, spots_total=3)
        if n % 50
        else replace(s, key=replace(s.key, duration_sec=1500))
        for n, s in enumerate(specs)
    ]
    times: list[float] = []
    for shard, part in shard_windows(whole_inventory(new), shard_count).items():
        window = part
        while True:
            held, cut = _held(states[shard], ChangeInventory(window, STEP_SLOTS))
            times.append(held)
            if cut >= window.end_sec:
                break
            window = window.from_cut(cut)
    times.sort()
    return times[-1], sum(times), len(times), times[int(len(times) * 0.99)]


def _feed_json(specs: Sequence[SlotSpec]) -> bytes:
    entries = [
        {
            "merchant_id": s.key.merchant_id,
            "service_id": s.key.service_id,
            "start_sec": s.key.start_sec,
            "duration_sec": s.key.duration_sec,
            "spots_total": s.spots_total,
            "spots_open": s.spots,
        }
        for s in specs
    ]
    return json.dumps({"service_availability": [{"availability": entries}]}).encode()


async def _lease_caller(
    target: str, keys: Sequence[SlotKey], stop: asyncio.Event, seen: list[tuple[str, float]]
) -> None:
    """Lease and check slots in a closed loop; record (outcome, seconds) per call."""
    host, port = target.rsplit(":", 1)
    channel = Channel(host, int(port))
    stub = BookingServiceStub(channel)
    try:
        for n in itertools.count():
            if stop.is_set():
                return
            key = keys[n % len(keys)]
            slot = pb2.Slot(merchant_id=key.merchant_id, service_id=key.service_id)
            slot.start_time.seconds, slot.duration.seconds = key.start_sec, key.duration_sec
            started = time.perf_counter()
            try:
                if n % 2:
                    request = pb2.CheckAvailabilityRequest(slot=slot)
                    await stub.CheckAvailability(request, timeout=10)
                    outcome = "ok"
                else:
                    reference = f"probe-{id(keys)}-{n}"  # (unique per caller and call)
                    lease = pb2.Lease(slot=slot, user_reference=reference)
                    reply = await stub.CreateLease(pb2.CreateLeaseRequest(lease=lease), timeout=10)
                    cause = reply.booking_failure.cause
                    full = cause == pb2.BookingFailure.SLOT_UNAVAILABLE
                    outcome = "ok" if not reply.HasField("booking_failure") or full else "refused"
            except GRPCError as error:
                outcome = f"refused {error.status.name}"
            seen.append((outcome, time.perf_counter() - started))
    finally:
        channel.close()


async def _apply_during_load(
    target: str,
    admin: str,
    keys: Sequence[SlotKey],
    feed: bytes,
    callers: int,
    baseline: list[tuple[str, float]],
) -> tuple[float, list[tuple[str, float]]]:
    stop = asyncio.Event()
    seen: list[tuple[str, float]] = []
    tasks = [
        asyncio.create_task(_lease_caller(target, keys[i::callers], stop, seen))
        for i in range(callers)
    ]
    await asyncio.sleep(1.0)  # the callers warm up
    seen.clear()
    await asyncio.sleep(BASELINE_S)  # the same load without a change, to compare
    baseline[:] = seen
    seen.clear()
    host, port = admin.rsplit(":", 1)
    channel = Channel(host, int(port))
    started = time.perf_counter()
    try:
        await InventoryServiceStub(channel).ApplyFeed(
            admin_pb.ApplyFeedRequest(feed_json=feed), timeout=600
        )
    finally:
        took = time.perf_counter() - started
        channel.close()
        stop.set()
        await asyncio.gather(*tasks)
    return took, seen


def server_probe(count: int, shard_count: int, callers: int) -> str:
    specs = _slots(count)
    changed = [replace(s, spots=3, spots_total=3) for s in specs]
    with tempfile.TemporaryDirectory() as temp:
        feed = Path(temp) / "feed.json"
        feed.write_bytes(_feed_json(specs))
        extra = ["--durability", "none", "--mailbox", "4096"]
        server = SpawnedServer(serve_command(feed, Path(temp) / "data", shard_count, extra))
        try:
            admin = next(
                m.group(1) for line in server.output if (m := _ADMIN.search(line)) is not None
            )
            keys = [s.key for s in specs[:: max(1, count // 2000)]]
            baseline: list[tuple[str, float]] = []
            took, seen = asyncio.run(
                _apply_during_load(
                    server.target, admin, keys, _feed_json(changed), callers, baseline
                )
            )
        finally:
            server.stop()
    return (
        f"ApplyFeed of {count} slots over {shard_count} shards under {callers} lease callers: "
        f"{took:.2f} s; during it {_calls(seen)}; in {BASELINE_S:.0f} s before it "
        f"{_calls(baseline)}"
    )


def _calls(seen: Sequence[tuple[str, float]]) -> str:
    kinds = collections.Counter(outcome for outcome, _ in seen if outcome != "ok")
    slowest = max((seconds for _, seconds in seen), default=0.0)
    p99 = sorted(seconds for _, seconds in seen)[int(len(seen) * 0.99)] if seen else 0.0
    return (
        f"{len(seen)} lease calls, {sum(kinds.values())} refused {dict(kinds) or ''}, "
        f"p99 {p99 * 1000:.1f} ms, slowest {slowest * 1000:.1f} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leasehold.bench._inventory_cost")
    parser.add_argument("--slots", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--server", action="store_true", help="the spawned-server probe too")
    parser.add_argument("--callers", type=int, default=8)
    args = parser.parse_args(argv)
    tune_for_long_lived_state()  # (as `leasehold serve` runs: GC thresholds for shard state)
    load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    week = statistics.median(one_service_week() for _ in range(args.runs))
    print(
        f"7-day window of one service ({7 * 48} slots), one step: held {week * 1000:.2f} ms "
        f"(median of {args.runs}; {load})"
    )
    _CPU.clear()
    runs = [whole_feed(args.slots, args.shards) for _ in range(args.runs)]
    cpu_longest = max(_CPU)
    longest, total, p99 = (statistics.median(r[i] for r in runs) for i in (0, 1, 3))
    print(
        f"whole feed of {args.slots} slots over {args.shards} shards in {runs[0][2]} steps "
        f"of {STEP_SLOTS}: longest step held {longest * 1000:.2f} ms, 99th percentile "
        f"{p99 * 1000:.2f} ms, all steps {total * 1000:.0f} ms (medians of {args.runs}; "
        f"the longest step's CPU time in any run {cpu_longest * 1000:.2f} ms; {load})"
    )
    if args.server:
        for _ in range(args.runs):
            print(f"{server_probe(args.slots, args.shards, args.callers)} ({load})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
