"""Prometheus metrics: the figures the health stream already keeps, in the text format.

A scrape takes one `MetricsSnapshot` on the trio thread (the shards' frozen
`statistics()`, as a health frame does), then renders it in a worker thread, so a
scrape costs the shards one snapshot and nothing else. Every metric is a
cumulative counter or a gauge read from the snapshot; nothing is kept between
scrapes. Names and meanings are listed in docs/health-stream.md (Metrics).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

import trio
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from leasehold.health._source import ShardSource
from leasehold.health.frames import GatewayFigures, ProcessRow
from leasehold.shards import SERVICE_TIME_BOUNDS_S, HistogramSnapshot, ShardStats

if TYPE_CHECKING:
    from leasehold.health._server import HealthStream

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Every 4th bound of the shards' histograms (x2.44 a step, 1 us to ~87 s): exact
# cumulative counts, at a quarter of the series.
_BUCKET_STEP = 4
_BUCKETS = tuple(range(0, len(SERVICE_TIME_BOUNDS_S), _BUCKET_STEP))
_LE = tuple(repr(SERVICE_TIME_BOUNDS_S[i]) for i in _BUCKETS)
_WORD_START = re.compile(r"(?<!^)(?=[A-Z])")


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Everything one scrape shows, taken at once on the trio thread."""

    shards: tuple[ShardStats, ...]
    watchers: int
    frames_dropped: int
    grpc_connections: int | None
    # (worker label, figures) per gateway (worker) that sent figures: "0" in one process.
    gateways: tuple[tuple[str, GatewayFigures], ...] = ()


def take_snapshot(shard_set: ShardSource, stream: HealthStream) -> MetricsSnapshot:
    """On the trio thread: the same frozen figures a health frame is built from."""
    return MetricsSnapshot(
        shards=shard_set.statistics(),
        watchers=stream.watcher_count,
        frames_dropped=stream.frames_dropped,
        grpc_connections=stream.grpc_connections(),
        gateways=gateways_of(stream.gateway(), stream.processes()),
    )


def gateways_of(
    own: GatewayFigures | None, rows: Sequence[ProcessRow]
) -> tuple[tuple[str, GatewayFigures], ...]:
    """The one-process gateway's figures as worker "0", or each live worker's by index."""
    if own is not None:
        return (("0", own),)
    return tuple((str(r.index), r.gateway) for r in rows if r.gateway is not None)


async def scrape(take: Callable[[], MetricsSnapshot]) -> bytes:
    """Snapshot here, render in a worker thread: the shards wait for the snapshot only."""
    snapshot = take()
    return await trio.to_thread.run_sync(render, snapshot)


def render(snapshot: MetricsSnapshot) -> bytes:
    """The Prometheus text exposition of a snapshot, plus process and Python figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return generate_latest(registry)


def answer_name(refusal: str) -> str:
    """`SlotUnavailable` -> `SLOT_UNAVAILABLE`: the label value of a refusal."""
    return _WORD_START.sub("_", refusal).upper()


def buckets(histogram: HistogramSnapshot) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs at the coarser bounds, ending with +Inf."""
    pairs: list[tuple[str, float]] = []
    seen, counted = 0, 0
    for index, le in zip(_BUCKETS, _LE, strict=True):
        seen += sum(histogram.counts[counted : index + 1])
        counted = index + 1
        pairs.append((le, seen))
    pairs.append(("+Inf", sum(histogram.counts)))
    return pairs


def build_version() -> str:
    try:
        return version("leasehold")
    except PackageNotFoundError:
        return "0+unknown"


class _Collector:
    """prometheus_client's collector protocol over one snapshot (hashed by identity)."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from _process_families(self.snapshot)
        yield from _request_families(self.snapshot.shards)
        yield from _shard_families(self.snapshot.shards)
        yield from _journal_families(self.snapshot.shards)
        yield from _gateway_families(self.snapshot.gateways)


def _process_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    info = GaugeMetricFamily("leasehold_build_info", "Leasehold's version", labels=["version"])
    info.add_metric([build_version()], 1)
    yield info
    yield GaugeMetricFamily(
        "leasehold_health_watchers", "Health stream connections open", value=snapshot.watchers
    )
    yield CounterMetricFamily(
        "leasehold_health_frames_dropped",
        "Health frames not sent to slow watchers",
        value=snapshot.frames_dropped,
    )
    if snapshot.grpc_connections is not None:
        yield GaugeMetricFamily(
            "leasehold_grpc_connections",
            "gRPC connections open",
            value=snapshot.grpc_connections,
        )


def _request_families(shards: Sequence[ShardStats]) -> Iterator[Metric]:
    answers: dict[tuple[str, str], int] = {}
    for stats in shards:
        for kind, served in stats.operations_by_kind.items():
            answers[kind, "OK"] = answers.get((kind, "OK"), 0) + served
        for (kind, refusal), count in stats.refusals.items():
            answers[kind, "OK"] -= count
            name = answer_name(refusal)
            answers[kind, name] = answers.get((kind, name), 0) + count
    requests = CounterMetricFamily(
        "leasehold_requests",
        "Requests a shard answered, by command and answer (OK or the refusal)",
        labels=["command", "answer"],
    )
    for (kind, answer), count in sorted(answers.items()):
        requests.add_metric([kind, answer], count)
    yield requests
    latency = HistogramMetricFamily(
        "leasehold_request_duration_seconds",
        "Service time from submit to reply (queued, run, journalled), by command",
        labels=["command"],
    )
    for kind, histogram in sorted(_merged_times(shards).items()):
        latency.add_metric([kind], buckets(histogram), histogram.sum_s)
    yield latency


def _merged_times(shards: Sequence[ShardStats]) -> dict[str, HistogramSnapshot]:
    merged: dict[str, HistogramSnapshot] = {}
    for stats in shards:
        for kind, times in stats.service_times_by_kind.items():
            before = merged.get(kind)
            if before is None:
                merged[kind] = times
                continue
            counts = tuple(a + b for a, b in zip(before.counts, times.counts, strict=True))
            merged[kind] = HistogramSnapshot(counts, before.sum_s + times.sum_s)
    return merged


# (name, help, counter or gauge, the figure): one metric labelled by shard each.
_PER_SHARD: tuple[tuple[str, str, bool, Callable[[ShardStats], float]], ...] = (
    ("leasehold_shard_mailbox_depth", "Requests queued now", False, lambda s: s.mailbox_depth),
    ("leasehold_shard_mailbox_capacity", "Mailbox bound", False, lambda s: s.mailbox_capacity),
    ("leasehold_live_leases", "Leases held now", False, lambda s: s.live_leases),
    (
        "leasehold_confirmed_bookings",
        "Bookings confirmed now",
        False,
        lambda s: s.confirmed_bookings,
    ),
    ("leasehold_lease_expirations", "Leases expired", True, lambda s: s.expirations),
    ("leasehold_shed_requests", "Requests shed: mailbox full", True, lambda s: s.shed),
    (
        "leasehold_deadline_dropped_requests",
        "Requests dequeued after their deadline, not applied",
        True,
        lambda s: s.deadline_dropped,
    ),
    (
        "leasehold_expiry_lag_seconds",
        "How late the latest timer expirations ran",
        False,
        lambda s: s.last_expiry_lag_s,
    ),
    ("leasehold_slots", "Bookable slots now", False, lambda s: s.slots),
    (
        "leasehold_inventory_changes",
        "Inventory changes applied (windows that changed something)",
        True,
        lambda s: s.inventory_changes,
    ),
    (
        "leasehold_inventory_last_change_timestamp_seconds",
        "Unix time of the last inventory change applied; 0: none since start",
        False,
        lambda s: s.inventory_last_change_unix,
    ),
    (
        "leasehold_orphaned_bookings",
        "CONFIRMED bookings on slots removed from sale",
        False,
        lambda s: s.orphaned_bookings,
    ),
)


def _shard_families(shards: Sequence[ShardStats]) -> Iterator[Metric]:
    for name, text, counter, figure in _PER_SHARD:
        family = CounterMetricFamily if counter else GaugeMetricFamily
        metric = family(name, text, labels=["shard"])
        for stats in shards:
            metric.add_metric([str(stats.shard_id)], figure(stats))
        yield metric


def _journal_families(shards: Sequence[ShardStats]) -> Iterator[Metric]:
    kept = [(str(s.shard_id), s.journal) for s in shards if s.journal is not None]
    if not kept:
        return  # --durability none: no journal, no journal metrics
    written = CounterMetricFamily(
        "leasehold_journal_written_bytes", "Journal bytes written", labels=["shard"]
    )
    fsync = HistogramMetricFamily(
        "leasehold_journal_fsync_duration_seconds", "Journal fsync durations", labels=["shard"]
    )
    for shard, journal in kept:
        written.add_metric([shard], journal.bytes_written)
        fsync.add_metric([shard], buckets(journal.fsync_times), journal.fsync_times.sum_s)
    yield written
    yield fsync


# (name, help, the figure in the metric's unit): one gauge labelled by worker each.
_PER_GATEWAY: tuple[tuple[str, str, Callable[[GatewayFigures], float]], ...] = (
    ("leasehold_gateway_calls_in_flight", "Calls under way", lambda g: g.in_flight),
    (
        "leasehold_gateway_concurrency_limit",
        "Adaptive limit on calls under way",
        lambda g: g.limit,
    ),
    (
        "leasehold_gateway_pushback_seconds",
        "Pushback base: a refused call is told to wait at least this (jittered)",
        lambda g: g.pushback_ms / 1000,
    ),
    (
        "leasehold_gateway_loop_lag_seconds",
        "Loop-lag charge taken off each call's deadline (p90)",
        lambda g: g.loop_lag_ms / 1000,
    ),
    (
        "leasehold_gateway_return_path_seconds",
        "Return path taken off the time a shard is given (p90)",
        lambda g: g.return_path_ms / 1000,
    ),
)


def _gateway_families(gateways: Sequence[tuple[str, GatewayFigures]]) -> Iterator[Metric]:
    if not gateways:
        return  # no gateway figures (a stream without a gRPC server): no gateway metrics
    refusals = CounterMetricFamily(
        "leasehold_gateway_refusals",
        "Calls, streams and connections the gateway refused or dropped, by reason",
        labels=["worker", "reason"],
    )
    for worker, figures in gateways:
        for reason, count in sorted(figures.refusals.items()):
            refusals.add_metric([worker, reason], count)
    yield refusals
    for name, text, figure in _PER_GATEWAY:
        metric = GaugeMetricFamily(name, text, labels=["worker"])
        for worker, figures in gateways:
            metric.add_metric([worker], figure(figures))
        yield metric
