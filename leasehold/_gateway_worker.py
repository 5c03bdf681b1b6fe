"""A gateway worker: grpclib on plain asyncio, routing every call over the link.

It owns no state: it decodes, validates, routes to the shard process that owns
the shard, and encodes the reply; health, reflection and refusals that need no
shard are answered here. Every worker binds the same gRPC port with SO_REUSEPORT,
so the kernel spreads connections (not calls) across them. Stop (SIGTERM/SIGINT)
is as in the single-process mode: new calls UNAVAILABLE, calls under way get the
drain time, then grpclib closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from leasehold._app import DEFAULT_ADMISSION, DEFAULT_LIMITS, _bound_port
from leasehold.core import SlotSpec
from leasehold.gateway import (
    Admission,
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


async def serve_gateway_worker(
    config: GatewayWorkerConfig, stop: asyncio.Event, on_ready: Callable[[int], None]
) -> None:
    """Serve until `stop` is set; `on_ready` gets the bound port. OSError if it cannot bind."""
    links = [ShardLink(str(p), max_in_flight=config.max_in_flight) for p in config.socket_paths]
    running = [asyncio.ensure_future(link.run()) for link in links]
    try:
        await _wait_connected(links, config.link_wait_s)
        router = Router(LinkedShards(links, config.shard_count, config.slots), call=call_linked)
        refusals = Refusals()
        admission = Admission(config.admission, refusals)
        services = build_services(router, config.slots, admission)
        server = CoalescingServer(services, limits=config.limits, admission=admission)
        if config.tls_client_name is not None:
            pin_client_name(server, config.tls_client_name)
        await server.start(config.host, config.port, ssl=config.ssl_context, reuse_port=True)
        try:
            on_ready(_bound_port(server))
            with quiet_floods(refusals):
                await stop.wait()
        finally:
            refusals.close()
            await router.drain(config.drain_seconds)
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), config.drain_seconds)
    finally:
        for link in links:
            link.close()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


async def _wait_connected(links: Sequence[ShardLink], timeout_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(link.wait_connected() for link in links)), timeout_s
        )
