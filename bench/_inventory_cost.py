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
Prints one line per figure; the machine's load (os.getloadavg) goes beside them.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

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
from leasehold.shards import encode_events, partition_inventory

_DAY = 86_400
_START = 4_102_444_800  # 2100-01-01
_NOW_NS = (_START - _DAY) * 1_000_000_000


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
    """(seconds the step held the shard, the cut it reached)."""
    started = time.perf_counter()
    outcome = state.change_inventory(command, _NOW_NS)
    encode_events(outcome.events)
    held = time.perf_counter() - started
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


def whole_feed(count: int, shard_count: int) -> tuple[float, float, int]:
    """(longest step, all steps, steps) for a whole feed of `count` slots."""
    specs = _slots(count)
    states = [_state(part) for part in partition_inventory(specs, shard_count)]
    new = [
        replace(s, spots=3, spots_total=3)
        if n % 50
        else replace(s, key=replace(s.key, duration_sec=1500))
        for n, s in enumerate(specs)
    ]
    longest = total = 0.0
    steps = 0
    for shard, part in shard_windows(whole_inventory(new), shard_count).items():
        window = part
        while True:
            held, cut = _held(states[shard], ChangeInventory(window, STEP_SLOTS))
            longest, total, steps = max(longest, held), total + held, steps + 1
            if cut >= window.end_sec:
                break
            window = window.from_cut(cut)
    return longest, total, steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leasehold.bench._inventory_cost")
    parser.add_argument("--slots", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    week = statistics.median(one_service_week() for _ in range(args.runs))
    print(
        f"7-day window of one service ({7 * 48} slots), one step: held {week * 1000:.2f} ms "
        f"(median of {args.runs}; {load})"
    )
    runs = [whole_feed(args.slots, args.shards) for _ in range(args.runs)]
    longest = statistics.median(r[0] for r in runs)
    total = statistics.median(r[1] for r in runs)
    print(
        f"whole feed of {args.slots} slots over {args.shards} shards in {runs[0][2]} steps "
        f"of {STEP_SLOTS}: longest step held {longest * 1000:.2f} ms, all steps "
        f"{total * 1000:.0f} ms (medians of {args.runs}; {load})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
