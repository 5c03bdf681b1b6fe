"""Running the supervisor's tree from `leasehold serve`: start, announce, watch, drain."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio

from leasehold import __version__
from leasehold._announce import (
    SHED_SUMMARY_PERIOD_S,
    admin_event,
    feed_change_event,
    feed_recorded_event,
    health_url,
    recovery_summary,
)
from leasehold._exits import EXIT_FAILURE, fail
from leasehold._logging import ShedSummary, event
from leasehold._runtime_dir import make_runtime_dir
from leasehold._serve_settings import AdminConfig
from leasehold._shared_connections import create_counts
from leasehold._slot_json import ordered_example
from leasehold._supervisor import (
    Tree,
    TreeFailed,
    hold_port,
    spec_for,
)
from leasehold._tree import connections_file, served_file, write_spec
from leasehold._tree_figures import TreeFigures, established_on
from leasehold.core import Feed, InventoryReport
from leasehold.health import HealthConfig, HealthListenError, HealthServer, serve_health


@dataclass(frozen=True, slots=True)
class TreeStart:
    """What `leasehold serve` decided before the tree starts."""

    health: HealthConfig | None
    feed: Feed
    feed_text: str
    recorded_in: Path | None  # the data dir whose recorded feed is served
    lock_fd: int | None = None
    admin: AdminConfig | None = None
    # A --feed applied over the stored state (its text, parsed, and path), or None.
    change_text: str | None = None
    change: Feed | None = None
    changed_by: Path | None = None


def run_tree(args: argparse.Namespace, start: TreeStart) -> int:
    """Serve with `args.workers` gateway workers and `args.shard_processes` shard processes."""
    shard_processes = min(args.shard_processes, args.shards)
    placeholders: list[socket.socket] = []
    try:
        try:
            placeholders.append(hold_port(args.host, args.port))
        except OSError as problem:
            return fail(
                f"cannot listen on {args.host}:{args.port}: {problem.strerror}", EXIT_FAILURE
            )
        port = int(placeholders[0].getsockname()[1])
        admin_port = None
        if start.admin is not None:
            # Held here too: the admin worker, restarted, binds the same port.
            try:
                placeholders.append(hold_port(start.admin.host, start.admin.port))
            except OSError as problem:
                where = f"{start.admin.host}:{start.admin.port}"
                return fail(f"cannot listen on {where}: {problem.strerror}", EXIT_FAILURE)
            admin_port = int(placeholders[1].getsockname()[1])
        return _run_in(args, start, port, admin_port, shard_processes)
    finally:
        for each in placeholders:
            each.close()


def _run_in(
    args: argparse.Namespace,
    start: TreeStart,
    port: int,
    admin_port: int | None,
    shard_processes: int,
) -> int:
    runtime_dir = make_runtime_dir()
    try:
        spec = spec_for(args, port, args.workers, shard_processes, admin_port)
        write_spec(runtime_dir, spec, start.feed_text, start.change_text)
        create_counts(connections_file(runtime_dir), args.workers)
        tree = Tree(runtime_dir, args.workers, shard_processes, start.lock_fd)
        try:
            failure = trio.run(_supervise, tree, args, start, port, admin_port)
        finally:
            tree.close()
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
    if failure is not None:
        if failure.startswith("stopped: "):
            event(logging.ERROR, "server_failed", failure, reason=failure)
        return fail(failure, EXIT_FAILURE)
    event(logging.INFO, "stopped", "stopped")
    return 0


async def _supervise(
    tree: Tree, args: argparse.Namespace, start: TreeStart, port: int, admin_port: int | None
) -> str | None:
    health = start.health
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            starting = trio.CancelScope()
            nursery.start_soon(_stop_on_signal, signals, tree, starting)
            with starting:
                try:
                    # All at once: the workers start while the shards recover, and bind
                    # the port only once every link is up. With a --feed change, the other
                    # workers are held until the admin worker has applied it: no call is
                    # served before the change is applied.
                    await _start_all(tree, start.change_text is not None)
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
                _announce_recovery(tree, start.recorded_in, start.changed_by)
                _announce_change(tree, start.changed_by)
                if start.admin is not None and admin_port is not None:
                    admin_event(start.admin.host, admin_port)
                if server is not None:
                    server.stream.processes = figures.processes
                    server.stream.refresh = figures.poll
                    server.stream.grpc_connections = partial(established_on, port)
                    _announce_health(health, server)
                _announce(tree, args, port, start.change)
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


def _announce_recovery(tree: Tree, recorded_in: Path | None, changed_by: Path | None) -> None:
    if recorded_in is not None and changed_by is None:
        feed_recorded_event(recorded_in)
    facts = [child.facts for child in tree.shards]

    def total(name: str) -> int:
        return sum(int(f.get(name, 0)) for f in facts)  # type: ignore[call-overload]

    if total("shards"):
        # The shard processes recover side by side: the slowest one is how long it took.
        seconds = max(float(f.get("seconds", 0.0)) for f in facts)  # type: ignore[arg-type]
        recovery_summary(total("shards"), total("snapshots"), total("records"), seconds)


def _announce_change(tree: Tree, changed_by: Path | None) -> None:
    said = tree.gateways[0].facts.get("feed_change") if tree.gateways else None
    if changed_by is None or not isinstance(said, dict):
        return
    added, changed, removed, kept = (
        int(said.get(name, 0)) for name in ("added", "changed", "removed", "kept_booked")
    )
    report = InventoryReport(added, changed, removed, kept_booked=kept)
    feed_change_event(changed_by, [report])


def _announce_health(health: HealthConfig | None, server: HealthServer) -> None:
    assert health is not None
    url = health_url(health.host, server.port, secure=health.ssl_context is not None)
    event(logging.INFO, "health_stream", f"health stream on {url}", url=url)


async def _start_all(tree: Tree, feed_change: bool) -> None:
    async with trio.open_nursery() as nursery:
        for child in tree.shards:
            nursery.start_soon(tree.start, child)
        if tree.gateways:
            nursery.start_soon(_admin_worker_then_release, tree)
        for child in tree.gateways[1:]:
            nursery.start_soon(partial(tree.start, child, held=feed_change))


async def _admin_worker_then_release(tree: Tree) -> None:
    await tree.start(tree.gateways[0])
    tree.release_held()


async def _stop_on_signal(
    signals: AsyncIterator[int], tree: Tree, starting: trio.CancelScope
) -> None:
    stopping = False
    # Every later signal is taken too (a group kill or `timeout` sends two): one left
    # pending when the receiver closes is re-raised with the default action, killing the
    # supervisor before its cleanup and "stopped" line.
    async for signum in signals:
        if stopping:
            continue
        stopping = True
        name = signal.Signals(signum).name
        event(logging.INFO, "stopping", f"stopping ({name}): draining calls in flight", signal=name)
        starting.cancel()
        tree.stop_requested.set()


def _announce(tree: Tree, args: argparse.Namespace, port: int, change: Feed | None) -> None:
    # After a whole-feed change the inventory is that feed; else what the shards recovered.
    served = _served(tree) if change is None else [_served_of(change)]
    slots = sum(int(s["slots"]) for s in served)
    merchants = len({m for s in served for m in s["merchants"]})
    examples = [tuple(s["example"]) for s in served if s.get("example")]
    if examples:
        example = min(examples)[1]
        text = f"a slot to try: {example} (leasehold slots lists more)"
        event(logging.INFO, "example_slot", text, slot=json.loads(example))
    workers, shard_processes = len(tree.gateways), len(tree.shards)
    event(
        logging.INFO,
        "serving",
        f"serving {slots} slots of {merchants} merchants on {args.host}:{port} "
        f"with {args.shards} shards: {workers} gateway workers, {shard_processes} shard "
        "processes",
        slots=slots,
        merchants=merchants,
        host=args.host,
        port=port,
        shards=args.shards,
        workers=workers,
        shard_processes=shard_processes,
        pids={c.name: c.pid for c in tree.children},
        version=__version__,
    )


def _served_of(feed: Feed) -> dict[str, Any]:
    merchants = sorted({s.key.merchant_id for s in feed.slots})
    return {
        "slots": len(feed.slots),
        "merchants": merchants,
        "example": ordered_example(feed.slots),
    }


def _served(tree: Tree) -> list[dict[str, Any]]:
    """What each shard process said it serves at its start (see _tree.served_file)."""
    found = []
    for child in tree.shards:
        document = json.loads(served_file(tree.runtime_dir, child.index).read_text("utf-8"))
        found.append(document)
    return found
