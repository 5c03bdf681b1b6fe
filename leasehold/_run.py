"""Running the server from the command line: signals, start-up and stop events, shedding.

Every line goes through the log (`leasehold._logging`), so `--log-format json`
covers the whole run. Start-up events are logged only once the gRPC port is
bound: a script waiting for "serving" is never misled by a start that fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

from leasehold import __version__
from leasehold._announce import (
    SHED_SUMMARY_PERIOD_S,
    admin_event,
    feed_change_event,
    feed_recorded_event,
    health_url,
    recovery_summary,
)
from leasehold._app import Ready, ServeConfig, serve
from leasehold._logging import ShedSummary, event
from leasehold._recovery_log import recovery_warnings
from leasehold._slot_json import example_slot
from leasehold.core import Feed
from leasehold.shards import RecoveryReport, ShardSet


async def serve_until_signal(
    config: ServeConfig,
    feed: Feed,
    recorded_in: Path | None,
    changed_by: Path | None = None,
    shed_period_s: float = SHED_SUMMARY_PERIOD_S,
) -> None:
    """Serve `config` until SIGINT or SIGTERM. `recorded_in`: the data dir whose recorded
    feed is served; `changed_by`: the --feed applied over its state as a change."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_signal, stop, signum)
    watchers: list[asyncio.Task[None]] = []

    def announce(ready: Ready) -> None:
        _announce(ready, config, feed, recorded_in, changed_by)
        shard_set = _local_shards(ready)
        watchers.append(loop.create_task(_summarise_shedding(shard_set, shed_period_s)))

    try:
        await serve(config, stop, announce)
    finally:
        for task in watchers:
            task.cancel()
    event(logging.INFO, "stopped", "stopped")


def _on_signal(stop: asyncio.Event, signum: int) -> None:
    name = signal.Signals(signum).name
    event(logging.INFO, "stopping", f"stopping ({name}): draining calls in flight", signal=name)
    stop.set()


def _announce(
    ready: Ready,
    config: ServeConfig,
    feed: Feed,
    recorded_in: Path | None,
    changed_by: Path | None,
) -> None:
    if recorded_in is not None and changed_by is None:
        feed_recorded_event(recorded_in)
    _recovery_events(_local_shards(ready).recovery)
    if changed_by is not None and ready.feed_change is not None:
        feed_change_event(changed_by, ready.feed_change.values())
    if ready.admin_port is not None and config.admin is not None:
        admin_event(config.admin.host, ready.admin_port)
    if config.health is not None and ready.health_port is not None:
        # Before the serving line: once that is seen, this one has been too.
        secure = config.health.ssl_context is not None
        url = health_url(config.health.host, ready.health_port, secure=secure)
        event(logging.INFO, "health_stream", f"health stream on {url}", url=url)
    served = [spec for shard in _local_shards(ready).shards for spec in shard.state.slot_specs()]
    example = example_slot(served)
    if example is not None:
        text = f"a slot to try: {example} (leasehold slots lists more)"
        event(logging.INFO, "example_slot", text, slot=json.loads(example))
    merchants = len({s.key.merchant_id for s in served})
    event(
        logging.INFO,
        "serving",
        f"serving {len(served)} slots of {merchants} merchants "
        f"on {ready.host}:{ready.port} with {config.shard_count} shards",
        slots=len(served),
        merchants=merchants,
        host=ready.host,
        port=ready.port,
        shards=config.shard_count,
        version=__version__,
    )


def _local_shards(ready: Ready) -> ShardSet:
    """The shards of this process (this module runs the single-process mode)."""
    shard_set = ready.router.shard_set
    assert isinstance(shard_set, ShardSet)
    return shard_set


def _recovery_events(reports: Sequence[RecoveryReport]) -> None:
    if not reports:
        return
    records = sum(r.records_replayed for r in reports)
    snapshots = sum(r.snapshot_seq is not None for r in reports)
    seconds = sum(r.seconds for r in reports)  # shards recover one after another
    recovery_summary(len(reports), snapshots, records, seconds)
    recovery_warnings(reports)


async def _summarise_shedding(shard_set: ShardSet, period_s: float) -> None:
    stats = shard_set.statistics()
    summary = ShedSummary([s.shed for s in stats], [s.deadline_dropped for s in stats])
    while True:
        await asyncio.sleep(period_s)
        stats = shard_set.statistics()
        summary.update([s.shed for s in stats], [s.deadline_dropped for s in stats], period_s)
