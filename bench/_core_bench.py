"""`leasehold bench core`: core/ alone, no I/O, no trio: what one shard's state can do.

Every figure calls `ShardState` directly with the wall-clock time passed in, and
ids drawn from the server's own source (shards/_entropy.py).

- grant, consume, expire: operations per second of CreateLease, of CreateBooking
  of a live lease, and of expiring leases (expire_due over many due at once);
  and a steady mix where time moves on, half the leases are booked and the rest
  expire lazily inside later commands (operations = grants + bookings + expiries);
- time to expire 1,000,000 leases due at one instant (one expire_due call);
- memory per live lease at 1,000,000 live leases, by tracemalloc: everything
  the state holds for a lease (its record, id, reference, indexes, timer entry).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from leasehold.core import (
    NANOS_PER_SECOND,
    ApiVersion,
    CreateBooking,
    CreateLease,
    LeaseSettings,
    Person,
    ShardState,
    SlotKey,
    SlotRef,
    SlotSpec,
)
from leasehold.shards import buffered_entropy
from leasehold.tuning import tune_for_long_lived_state

T0 = 1_900_000_000 * NANOS_PER_SECOND


def _state(slots: int, spots: int) -> tuple[ShardState, list[SlotRef]]:
    specs = [
        SlotSpec(SlotKey(f"m{i % 64}", "svc", 2_000_000_000 + (i // 64) * 1800, 1800), spots, spots)
        for i in range(slots)
    ]
    # Remember expired leases and tokens for the whole benchmark, as a server would for a day.
    settings = LeaseSettings(max_remembered_expired=4_000_000, max_tokens=4_000_000)
    state = ShardState(specs, entropy=buffered_entropy(), settings=settings)
    return state, [SlotRef(s.key) for s in specs]


def _grant(
    state: ShardState, refs: list[SlotRef], n: int, now: int, expiry: int | None, tag: str = "r"
) -> list[str]:
    ids = []
    create = state.create_lease
    count = len(refs)
    for i in range(n):
        outcome = create(CreateLease(ApiVersion.V2, refs[i % count], f"{tag}{i}", expiry), now)
        ids.append(outcome.result.lease_id)  # type: ignore[union-attr]
    return ids


def grant_consume_expire(n: int) -> dict[str, float]:
    state, refs = _state(slots=10_000, spots=100)
    count = len(refs)
    started = time.perf_counter()
    ids = _grant(state, refs, n, T0, T0 + 60 * NANOS_PER_SECOND)
    grant_s = time.perf_counter() - started
    half = n // 2
    started = time.perf_counter()
    book = state.create_booking
    for i in range(half):
        person = Person(user_id=f"u{i}")
        book(CreateBooking(ApiVersion.V2, refs[i % count], ids[i], person, f"t{i}"), T0 + 1)
    consume_s = time.perf_counter() - started
    started = time.perf_counter()
    expired = len(state.expire_due(T0 + 60 * NANOS_PER_SECOND))
    expire_s = time.perf_counter() - started
    return {
        "grant_per_s": round(n / grant_s),
        "consume_per_s": round(half / consume_s),
        "expire_per_s": round(expired / expire_s),
    }


def steady_mix(n: int) -> dict[str, float]:
    """Time moves 20 us per lease; leases live 50 ms; every other one is booked."""
    state, refs = _state(slots=10_000, spots=100)
    count = len(refs)
    create, book = state.create_lease, state.create_booking
    step, ttl = 20_000, 50_000_000
    operations = 0
    started = time.perf_counter()
    for i in range(n):
        now = T0 + i * step
        outcome = create(CreateLease(ApiVersion.V2, refs[i % count], f"r{i}", now + ttl), now)
        operations += 1 + sum(1 for e in outcome.events if e.kind == "lease_expired")
        if i % 2 == 0:
            lease_id = outcome.result.lease_id  # type: ignore[union-attr]
            person = Person(user_id=f"u{i}")
            booked = book(
                CreateBooking(ApiVersion.V2, refs[i % count], lease_id, person, f"t{i}"), now
            )
            operations += 1 + sum(1 for e in booked.events if e.kind == "lease_expired")
    elapsed = time.perf_counter() - started
    return {"mixed_lease_ops_per_s": round(operations / elapsed), "mixed_ops": operations}


def expire_million(n: int) -> dict[str, float]:
    state, refs = _state(slots=n // 1000, spots=1000)
    at = T0 + 60 * NANOS_PER_SECOND
    _grant(state, refs, n, T0, at)
    gc.collect()
    started = time.perf_counter()
    expired = state.expire_due(at)
    elapsed = time.perf_counter() - started
    assert len(expired) == n
    return {"expire_n": n, "expire_all_s": round(elapsed, 3)}


def memory_per_lease(n: int) -> dict[str, float]:
    state, refs = _state(slots=n // 1000, spots=1000)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    _grant(state, refs, n, T0, T0 + 600 * NANOS_PER_SECOND)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert state.counters().live_leases == n
    return {"live_leases": n, "bytes_per_live_lease": round((after - before) / n, 1)}


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="leasehold bench core", description=__doc__)
    parser.add_argument("--ops", type=int, default=200_000, help="leases per rate figure")
    parser.add_argument("--leases", type=int, default=1_000_000, help="expire/memory figures")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(list(argv))
    if args.ops < 2 or args.leases < 1000:
        parser.error("--ops must be at least 2 and --leases at least 1000")
    # Measure core/ as `leasehold serve` runs it: with the server's collector settings.
    tune_for_long_lived_state()
    figures: dict[str, Any] = {
        "python": sys.version.split()[0],
        "gc_thresholds": str(gc.get_threshold()),
    }
    steps = (
        ("grant/consume/expire", partial(grant_consume_expire, args.ops)),
        ("steady mix", partial(steady_mix, args.ops)),
        (f"expire {args.leases:,}", partial(expire_million, args.leases)),
        (f"memory at {args.leases:,} live", partial(memory_per_lease, args.leases)),
    )
    for label, step in steps:
        print(f"  {label} ...", file=sys.stderr, flush=True)
        figures.update(step())
        gc.collect()
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:,}" if isinstance(value, int | float) else f"{key}: {value}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    return 0
