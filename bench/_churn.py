"""The inventory-churn scenario's churner: windows of the contended slots, replaced live.

One churner (in client process 0) sends `ReplaceServiceAvailability` calls at
`churn_rate` per second, one at a time (a slow answer delays the next: the
latency of an update is the point, not a queue of them). Each picks one
merchant's run of consecutive slots and a random new state for each: capacity
up or down by one (at least 1, at most `max_spots`), removed, or re-added if it
was removed. When the phase ends it puts every slot back to its start capacity,
so the next phase (and the final read) starts from the feed's inventory.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import grpc
from prometheus_client.parser import text_string_to_metric_families

from leasehold.bench._admin import AdminClient
from leasehold.bench._loadgen import NANOS, Ctx
from leasehold.core import SlotKey

Window = tuple[list[int], dict[int, int]]  # (slots of the window, new capacities; absent: removed)


class ChurnPlan:
    """The random changes, from the slot table and start capacities (pure: no I/O)."""

    def __init__(
        self,
        keys: Sequence[SlotKey],
        slots: Sequence[int],
        initial: dict[int, int],
        rng: random.Random,
        *,
        max_spots: int,
        remove_share: float = 0.2,
    ) -> None:
        runs: dict[tuple[str, str], list[int]] = defaultdict(list)
        for slot in sorted(slots, key=lambda s: keys[s].start_sec):
            runs[(keys[slot].merchant_id, keys[slot].service_id)].append(slot)
        self.runs = list(runs.values())
        self.initial = dict(initial)
        self.current: dict[int, int | None] = {s: initial[s] for s in slots}
        self.rng = rng
        self.max_spots = max(1, max_spots)
        self.remove_share = remove_share

    def next(self) -> Window:
        run = self.rng.choice(self.runs)
        first = self.rng.randrange(len(run))
        last = self.rng.randrange(first, len(run))
        window = run[first : last + 1]
        capacity: dict[int, int] = {}
        for slot in window:
            new = self._next_state(self.current[slot])
            self.current[slot] = new
            if new is not None:
                capacity[slot] = new
        return window, capacity

    def _next_state(self, now: int | None) -> int | None:
        if now is None:
            return self.rng.randint(1, self.max_spots)  # re-added
        if self.rng.random() < self.remove_share:
            return None
        step = self.rng.choice((-1, 1))
        return min(self.max_spots, max(1, now + step))

    def restore(self) -> list[Window]:
        """One change per run: every slot back to its start capacity."""
        for run in self.runs:
            for slot in run:
                self.current[slot] = self.initial[slot]
        return [(list(run), {s: self.initial[s] for s in run}) for run in self.runs]


async def churn(ctx: Ctx, params: dict[str, Any], keys: Sequence[SlotKey]) -> None:
    """Run the churner for the phase (client process 0 only), then restore the slots."""
    rate = float(params.get("churn_rate", 0.0))
    if ctx.spec.worker != 0 or rate <= 0:
        return
    slots = list(params["slots"])
    initial = {int(k): int(v) for k, v in params["spots"].items()}
    # Each round's churn differs (seeded by the phase's place in the run), yet repeats.
    rng = random.Random(ctx.spec.seed * 1000 + ctx.spec.number)
    plan = ChurnPlan(keys, slots, initial, rng, max_spots=params["max_spots"])
    async with grpc.aio.insecure_channel(params["admin_target"]) as channel:
        admin = AdminClient(
            channel,
            keys,
            worker=ctx.spec.worker,
            timeout_s=ctx.client.timeout_s,
            token=params.get("admin_token"),
        )
        admin.phase = ctx.spec.name
        interval = round(NANOS / rate)
        due = ctx.spec.start_ns
        while ctx.running():
            delay = (min(due, ctx.spec.end_ns) - time.time_ns()) / NANOS
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            window, capacity = plan.next()
            ctx.ops.extend(await admin.replace(window, capacity))
            # Behind schedule, the next goes at once, but missed ones are not made up.
            due = max(due + interval, time.time_ns())
        for window, capacity in plan.restore():
            ctx.ops.extend(await admin.replace(window, capacity))


def hold_figures(metrics_text: str) -> dict[str, Any]:
    """What the shards' ChangeInventory commands cost, from the server's /metrics text.

    The service time (queued, run, journalled: an upper bound on how long a window
    held its shard, which the server does not export) of each window a shard
    applied: the count, the mean, and the bucket bound under which 99% fall
    (histogram buckets, so coarse). Empty when the server exported none.
    """
    buckets: list[tuple[float, float]] = []
    count = total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "leasehold_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.labels.get("command") != "ChangeInventory":
                continue
            if sample.name.endswith("_bucket"):
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
    if not count:
        return {}
    p99 = min((bound for bound, seen in buckets if seen >= 0.99 * count), default=math.inf)
    return {
        "change_service_count": int(count),
        "change_service_mean_ms": round(total / count * 1e3, 3),
        "change_service_p99_below_ms": round(p99 * 1e3, 3) if math.isfinite(p99) else None,
    }


def scrape_metrics(health_url: str, timeout_s: float = 5.0) -> str:
    """GET /metrics from the health port (loopback: the bench never leaves it)."""
    parts = urllib.parse.urlsplit(health_url)
    url = f"http://{parts.netloc}/metrics"
    with urllib.request.urlopen(url, timeout=timeout_s) as answer:
        return bytes(answer.read()).decode()
