"""Running the supervisor's tree from `leasehold serve`: start, announce, watch, drain."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import trio

from leasehold import __version__
from leasehold._exits import EXIT_FAILURE, fail
from leasehold._logging import ShedSummary, event
from leasehold._run import SHED_SUMMARY_PERIOD_S, health_url, recovery_summary
from leasehold._slots import example_slot
from leasehold._supervisor import (
    Child,
    Tree,
    TreeFailed,
    hold_port,
    make_runtime_dir,
    spec_for,
)
from leasehold._tree import write_spec
from leasehold._tree_figures import TreeFigures, established_on
from leasehold.core import Feed
from leasehold.health import HealthConfig, HealthListenError, HealthServer, serve_health


def run_tree(
    args: argparse.Namespace,
    health: HealthConfig | None,
    feed: Feed,
    feed_text: str,
    recorded_in: Path | None,
    lock_fd: int | None = None,
) -> int:
    """Serve with `args.workers` gateway workers and `args.shard_processes` shard processes."""
    shard_processes = min(args.shard_processes, args.shards)
    try:
        placeholder = hold_port(args.host, args.port)
    except OSError as problem:
        return fail(f"cannot listen on {args.host}:{args.port}: {problem.strerror}", EXIT_FAILURE)
    runtime_dir = make_runtime_dir()
    try:
        port = int(placeholder.getsockname()[1])
        write_spec(runtime_dir, spec_for(args, port, args.workers, shard_processes), feed_text)
        tree = Tree(runtime_dir, args.workers, shard_processes, lock_fd)
        try:
            failure = trio.run(_supervise, tree, args, health, feed, port, recorded_in)
        finally:
            tree.close()
    finally:
        placeholder.close()
        shutil.rmtree(runtime_dir, ignore_errors=True)
    if failure is not None:
        if failure.startswith("stopped: "):
            event(logging.ERROR, "server_failed", failure, reason=failure)
        return fail(failure, EXIT_FAILURE)
    event(logging.INFO, "stopped", "stopped")
    return 0


async def _supervise(
    tree: Tree,
    args: argparse.Namespace,
    health: HealthConfig | None,
    feed: Feed,
    port: int,
    recorded_in: Path | None,
) -> str | None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            starting = trio.CancelScope()
            nursery.start_soon(_stop_on_signal, signals, tree, starting)
            with starting:
                try:
                    # All at once: the workers start while the shards recover, and bind
                    # the port only once every link is up.
                    await _start_all(tree, tree.children)
                except* TreeFailed as failed:
                    tree.give_up(str(failed.exceptions[0]))
            figures = TreeFigures(tree, args.shards)
            server: HealthServer | None = None
            if not tree.stop_requested.is_set():
                await figures.poll()
                if health is not None:
                    try:
                        server = await nursery.start(serve_health, figures, health)
                    except HealthListenError as problem:
                        tree.give_up(str(problem))  # as the one-process mode says it
            if not tree.stop_requested.is_set():
                _announce_recovery(tree, recorded_in)
                if server is not None:
                    server.stream.processes = figures.processes
                    server.stream.refresh = figures.poll
                    server.stream.grpc_connections = partial(established_on, port)
                    _announce_health(health, server)
                _announce(tree, args, feed, port)
                nursery.start_soon(figures.poll_forever)
                nursery.start_soon(_summarise_shedding, figures, SHED_SUMMARY_PERIOD_S)
                for child in tree.children:
                    nursery.start_soon(tree.watch, child)
            await tree.stop_requested.wait()
            await tree.stop()
            if server is not None:
                server.stream.stop()
            await figures.aclose()
            nursery.cancel_scope.cancel()
    return tree.failure


async def _summarise_shedding(figures: TreeFigures, period_s: float) -> None:
    """The one-process mode's `shedding` warning, from the shard processes' figures."""
    shed, dropped = _Monotone(), _Monotone()
    stats = figures.statistics()
    summary = ShedSummary(
        shed.totals([s.shed for s in stats]), dropped.totals([s.deadline_dropped for s in stats])
    )
    while True:
        await trio.sleep(period_s)
        stats = figures.statistics()
        summary.update(
            shed.totals([s.shed for s in stats]),
            dropped.totals([s.deadline_dropped for s in stats]),
            period_s,
        )


class _Monotone:
    """Per-shard totals that survive a shard process's restart (its counters start at 0)."""

    def __init__(self) -> None:
        self._last: list[int] = []
        self._total: list[int] = []

    def totals(self, counts: list[int]) -> list[int]:
        if not self._last:
            self._last, self._total = list(counts), list(counts)
        for i, count in enumerate(counts):
            self._total[i] += count - self._last[i] if count >= self._last[i] else count
            self._last[i] = count
        return list(self._total)


def _announce_recovery(tree: Tree, recorded_in: Path | None) -> None:
    if recorded_in is not None:
        event(
            logging.INFO,
            "feed_recorded",
            f"the feed is the one recorded in {recorded_in} (--feed changes it)",
            data_dir=str(recorded_in),
        )
    facts = [child.facts for child in tree.shards]

    def total(name: str) -> int:
        return sum(int(f.get(name, 0)) for f in facts)  # type: ignore[call-overload]

    if total("shards"):
        # The shard processes recover side by side: the slowest one is how long it took.
        seconds = max(float(f.get("seconds", 0.0)) for f in facts)  # type: ignore[arg-type]
        recovery_summary(total("shards"), total("snapshots"), total("records"), seconds)


def _announce_health(health: HealthConfig | None, server: HealthServer) -> None:
    assert health is not None
    url = health_url(health.host, server.port, secure=health.ssl_context is not None)
    event(logging.INFO, "health_stream", f"health stream on {url}", url=url)


async def _start_all(tree: Tree, children: list[Child]) -> None:
    async with trio.open_nursery() as nursery:
        for child in children:
            nursery.start_soon(tree.start, child)


async def _stop_on_signal(
    signals: AsyncIterator[int], tree: Tree, starting: trio.CancelScope
) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        event(logging.INFO, "stopping", f"stopping ({name}): draining calls in flight", signal=name)
        starting.cancel()
        tree.stop_requested.set()
        return


def _announce(tree: Tree, args: argparse.Namespace, feed: Feed, port: int) -> None:
    example = example_slot(feed.slots)
    if example is not None:
        text = f"a slot to try: {example} (leasehold slots lists more)"
        event(logging.INFO, "example_slot", text, slot=json.loads(example))
    merchants = len({s.key.merchant_id for s in feed.slots})
    workers, shard_processes = len(tree.gateways), len(tree.shards)
    event(
        logging.INFO,
        "serving",
        f"serving {len(feed.slots)} slots of {merchants} merchants on {args.host}:{port} "
        f"with {args.shards} shards: {workers} gateway workers, {shard_processes} shard "
        "processes",
        slots=len(feed.slots),
        merchants=merchants,
        host=args.host,
        port=port,
        shards=args.shards,
        workers=workers,
        shard_processes=shard_processes,
        pids={c.name: c.pid for c in tree.children},
        version=__version__,
    )
