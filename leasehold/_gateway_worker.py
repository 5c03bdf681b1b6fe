"""A gateway worker: grpclib on plain asyncio, routing every call over the link.

It owns no state: it decodes, validates, routes to the shard process that owns
the shard, and encodes the reply; health, reflection and refusals that need no
shard are answered here. Every worker binds the same gRPC port with SO_REUSEPORT,
so the kernel spreads connections (not calls) across them. Stop (SIGTERM/SIGINT)
is as in the single-process mode: new calls UNAVAILABLE, calls under way get the
drain time, then grpclib closes.

One worker (index 0, ADMIN_WORKER) also serves the inventory admin service on
its own port, routing ChangeInventory / ListInventory over the same links: the
admin service applies one change at a time (gateway.Changes), which holds only
if one process serves it. On the tree's first start that worker applies a
`--feed` given over stored state, before it binds either port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from leasehold._grpc_parts import admin_server, apply_feed_change, bound_port
from leasehold._serve_settings import DEFAULT_ADMISSION, DEFAULT_LIMITS, AdminConfig
from leasehold._shared_connections import SharedConnectionTracker
from leasehold.core import InventoryReport, SlotSpec
from leasehold.gateway import (
    Admission,
    AdmissionFigures,
    AdmissionSettings,
    CoalescingServer,
    GuardLimits,
    Refusals,
    Router,
    build_services,
    pin_client_name,
    quiet_floods,
)
from leasehold.link import LinkedShards, ShardLink, call_linked

# Requests in flight on one link (one gateway worker to one shard process); more are
# answered RESOURCE_EXHAUSTED at once, as a full mailbox is.
DEFAULT_LINK_IN_FLIGHT = 4096
# How long a starting worker waits for its links before serving, unless told (calls for
# a shard process it cannot reach are answered UNAVAILABLE meanwhile).
LINK_WAIT_S = 10.0
# The worker that serves the admin port and applies a --feed change.
ADMIN_WORKER = 0
# How often a worker reports its admission figures (the health stream's gateway row).
FIGURES_PERIOD_S = 1.0


@dataclass(frozen=True, slots=True)
class GatewayWorkerConfig:
    index: int
    slots: Sequence[SlotSpec]
    shard_count: int
    socket_paths: Sequence[Path]  # one per shard process, in process order
    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None
    tls_client_name: str | None = None
    limits: GuardLimits = DEFAULT_LIMITS
    admission: AdmissionSettings = DEFAULT_ADMISSION
    drain_seconds: float = 5.0
    max_in_flight: int = DEFAULT_LINK_IN_FLIGHT
    link_wait_s: float = LINK_WAIT_S
    # The admin service (ADMIN_WORKER only; its port resolved by the supervisor).
    admin: AdminConfig | None = None
    # The tree's shared connection counts (--max-connections over all workers); None:
    # this worker's own count against the cap.
    connections_path: Path | None = None
    # A whole feed to apply before serving (ADMIN_WORKER, on the tree's first start).
    feed_change: Sequence[SlotSpec] | None = None


@dataclass(frozen=True, slots=True)
class WorkerReady:
    port: int
    # What applying GatewayWorkerConfig.feed_change did, per shard; None: there was none.
    feed_change: dict[int, InventoryReport] | None = None


async def serve_gateway_worker(
    config: GatewayWorkerConfig,
    stop: asyncio.Event,
    on_ready: Callable[[WorkerReady], None],
    report: Callable[[AdmissionFigures], None] = lambda figures: None,
) -> None:
    """Serve until `stop` is set; `on_ready` once the ports are bound, then `report` the
    admission figures every FIGURES_PERIOD_S. OSError if a port cannot be bound; a
    GRPCError if the feed change is refused by a shard."""
    links = [ShardLink(str(p), max_in_flight=config.max_in_flight) for p in config.socket_paths]
    running = [asyncio.ensure_future(link.run()) for link in links]
    try:
        await _wait_connected(links, config.link_wait_s)
        refusals = Refusals()
        shard_set = LinkedShards(links, config.shard_count, config.slots)
        router = Router(shard_set, call=call_linked, refusals=refusals)
        admission = Admission(config.admission, refusals)
        services = build_services(router, config.slots, admission)
        server = CoalescingServer(services, limits=config.limits, admission=admission)
        if config.connections_path is not None:
            cap, path = config.limits.max_connections, config.connections_path
            server.connections = SharedConnectionTracker(cap, path, config.index)
        admin = admin_server(config.admin, router)
        for each in (server, admin):
            if each is not None and config.tls_client_name is not None:
                pin_client_name(each, config.tls_client_name)
        changed = None
        if config.feed_change is not None:
            changed = await apply_feed_change(router, config.feed_change)
        servers = await _start(config, server, admin)
        figures = partial(AdmissionFigures.of, admission, router.return_path)
        reporting: asyncio.Future[None] | None = None
        try:
            on_ready(WorkerReady(bound_port(server), changed))
            reporting = asyncio.ensure_future(_report_every(figures, report))
            with quiet_floods(refusals):
                await stop.wait()
        finally:
            if reporting is not None:
                reporting.cancel()
            refusals.close()
            await router.drain(config.drain_seconds)
            for each in servers:
                each.close()
            for each in servers:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(each.wait_closed(), config.drain_seconds)
    finally:
        for link in links:
            link.close()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


async def _start(
    config: GatewayWorkerConfig, server: CoalescingServer, admin: CoalescingServer | None
) -> list[CoalescingServer]:
    """Bind the gRPC port (beside the other workers) and the admin port (beside the
    supervisor's placeholder, so a restarted worker gets it back)."""
    await server.start(config.host, config.port, ssl=config.ssl_context, reuse_port=True)
    if admin is None:
        return [server]
    assert config.admin is not None
    try:
        admin_at = (config.admin.host, config.admin.port)
        await admin.start(*admin_at, ssl=config.ssl_context, reuse_port=True)
    except BaseException:
        server.close()
        raise
    return [server, admin]


async def _report_every(
    figures: Callable[[], AdmissionFigures], report: Callable[[AdmissionFigures], None]
) -> None:
    while True:
        await asyncio.sleep(FIGURES_PERIOD_S)
        report(figures())


async def _wait_connected(links: Sequence[ShardLink], timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(link.wait_connected() for link in links)), timeout_s
        )
