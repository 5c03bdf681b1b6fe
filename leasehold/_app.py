"""Assembling and running the server: trio shards as a guest of grpclib's asyncio loop.

Start order: shards first (each started with `nursery.start`, so serving), then
the health stream's websocket (when configured), then (with --feed over a data
dir that has state) that feed applied as a whole-feed change, then the gRPC
listener and the inventory admin service's own; `on_ready` is called once the
ports are bound. Stop order
(SIGINT/SIGTERM, or `stop` set): new calls are answered UNAVAILABLE, grpclib's
server is closed and its in-flight handlers finish or are cancelled, then the
shards' mailboxes are closed, health watchers are closed with 1001, and the trio
run ends. When the trio side fails instead (a journal write failed), calls awaiting
a shard are answered UNAVAILABLE at once, and `serve` raises ServerFailed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from leasehold._grpc_parts import admin_server, apply_feed_change, bound_port, open_connections
from leasehold._serve_settings import (
    DEFAULT_ADMISSION,
    DEFAULT_LEASE_SETTINGS,
    DEFAULT_LIMITS,
    AdminConfig,
    ServerFailed,
)
from leasehold.core import InventoryReport, LeaseSettings, SlotSpec
from leasehold.gateway import (
    Admission,
    AdmissionFigures,
    AdmissionSettings,
    CoalescingServer,
    GuardLimits,
    Refusals,
    Router,
    TrioGuest,
    build_services,
    pin_client_name,
    quiet_floods,
)
from leasehold.health import HealthConfig, HealthListenError, HealthServer, serve_health
from leasehold.health.frames import GatewayFigures
from leasehold.shards import (
    DataDirError,
    JournalFailed,
    Persistence,
    RecoveryError,
    ShardSet,
    buffered_entropy,
    run_shards,
)


@dataclass(frozen=True, slots=True)
class ServeConfig:
    slots: Sequence[SlotSpec]
    host: str = "127.0.0.1"
    port: int = 50051
    shard_count: int = 4
    mailbox_capacity: int = 1024
    lease_settings: LeaseSettings = DEFAULT_LEASE_SETTINGS
    # Seconds that in-flight calls get to finish on stop before they are cancelled.
    drain_seconds: float = 5.0
    # Tests pass a trio.testing.MockClock to control lease expiry; None: the real clock.
    trio_clock: trio.abc.Clock | None = None
    # None: plain TCP (local use). See gateway._tls.
    ssl_context: ssl.SSLContext | None = None
    # With mutual TLS: the subject name client certificates must carry.
    tls_client_name: str | None = None
    # None: memory only (tests); the CLI always gives one.
    persistence: Persistence | None = None
    # The websocket health stream (health._server); None: none (tests).
    health: HealthConfig | None = None
    # HTTP/2 and connection limits, and admission of calls (gateway._h2guard, _admission).
    limits: GuardLimits = DEFAULT_LIMITS
    admission: AdmissionSettings = DEFAULT_ADMISSION
    # The inventory admin service; None: not served.
    admin: AdminConfig | None = None
    # A whole feed applied to the recovered state before serving (--feed on a data dir
    # that has state): what it does not list is removed.
    feed_change: Sequence[SlotSpec] | None = None


@dataclass(frozen=True, slots=True)
class Ready:
    host: str
    port: int
    router: Router
    # The health stream's bound port; None when it is not served.
    health_port: int | None = None
    # What the gateway refused, counted (a frozen copy: `refusals.snapshot()`).
    refusals: Refusals | None = None
    # The admin port's bound port; None when it is not served.
    admin_port: int | None = None
    # What applying ServeConfig.feed_change did, per shard; None: there was none.
    feed_change: dict[int, InventoryReport] | None = None


@dataclass(frozen=True, slots=True)
class TrioSide:
    """What runs in the trio guest: the shards and, when configured, the health stream."""

    shard_set: ShardSet
    health: HealthServer | None

    def stop(self) -> None:
        """Close the shards' mailboxes and the health stream; the trio run then ends."""
        self.shard_set.close()
        if self.health is not None:
            self.health.stream.stop()


async def serve(
    config: ServeConfig,
    stop: asyncio.Event,
    on_ready: Callable[[Ready], None] = lambda ready: None,
) -> None:
    """Serve until `stop` is set.

    Raises OSError if the port cannot be bound, HealthListenError if the health port
    cannot, RecoveryError if the stored state cannot be loaded, DataDirError if the data
    dir cannot be written (or lacks a shard's manifest), ServerFailed
    if the shards fail while serving.
    """
    side, guest = await start_trio_side(config)
    # The one waiter on the trio run's outcome: an outcome can be unwrapped only once.
    ended = asyncio.ensure_future(guest.wait_done())
    refusals = Refusals()
    router = Router(side.shard_set, refusals=refusals)
    admission = Admission(config.admission, refusals)
    services = build_services(router, config.slots, admission)
    server = CoalescingServer(services, limits=config.limits, admission=admission)
    admin = admin_server(config.admin, router)
    for each in (server, admin):
        if each is not None and config.tls_client_name is not None:
            pin_client_name(each, config.tls_client_name)
    if side.health is not None:
        side.health.stream.grpc_connections = partial(open_connections, server)
        side.health.stream.gateway = partial(_gateway_figures, admission, router)
    started: list[CoalescingServer] = []
    try:
        feed_change = await _apply_feed_change(config, router)
        await server.start(config.host, config.port, ssl=config.ssl_context)
        started.append(server)
        if admin is not None:
            assert config.admin is not None
            await admin.start(config.admin.host, config.admin.port, ssl=config.ssl_context)
    except BaseException:
        for each in started:
            each.close()
        side.stop()
        await asyncio.wait({ended})
        raise
    try:
        health_port = None if side.health is None else side.health.port
        admin_port = None if admin is None else bound_port(admin)
        on_ready(
            Ready(
                config.host,
                bound_port(server),
                router,
                health_port,
                refusals,
                admin_port,
                feed_change,
            )
        )
        with quiet_floods(refusals):
            await _wait_for_stop_or_crash(stop, ended)
    finally:
        refusals.close()
        if ended.done():
            router.fail_in_flight()  # no shard will answer them: say so now, not after the drain
        # New calls are answered UNAVAILABLE; calls under way get drain_seconds to finish
        # before grpclib's close() cancels them; then the shards stop.
        await router.drain(config.drain_seconds)
        server.close()
        if admin is not None:
            admin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), config.drain_seconds)
        if admin is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(admin.wait_closed(), config.drain_seconds)
        side.stop()
        await asyncio.wait({ended})
    await _outcome(ended)  # a failure while stopping


def _gateway_figures(admission: Admission, router: Router) -> GatewayFigures:
    """The health stream's gateway figures, as a gateway worker sends them (validated)."""
    figures = AdmissionFigures.of(admission, router.return_path)
    return GatewayFigures.from_map(figures.to_map(), "gateway")


async def _apply_feed_change(
    config: ServeConfig, router: Router
) -> dict[int, InventoryReport] | None:
    """Apply --feed to the recovered state as a whole-feed change, before serving."""
    if config.feed_change is None:
        return None
    return await apply_feed_change(router, config.feed_change)


async def start_shards(config: ServeConfig) -> tuple[ShardSet, TrioGuest]:
    """Start the trio side as a guest of the running asyncio loop; return once all serve.

    The run ends after `ShardSet.close()`; await `TrioGuest.wait_done()` for it.
    """
    side, guest = await start_trio_side(config)
    return side.shard_set, guest


async def start_trio_side(config: ServeConfig) -> tuple[TrioSide, TrioGuest]:
    """Start the shards, then the health stream if configured; return once both serve.

    The run ends after `TrioSide.stop()`; await `TrioGuest.wait_done()` for it. Raises
    HealthListenError (after stopping the shards) if the health port cannot be bound.
    """
    started: asyncio.Future[TrioSide] = asyncio.get_running_loop().create_future()
    guest = TrioGuest()
    guest.start(partial(_run_trio_side, config, started), clock=config.trio_clock)
    ended: asyncio.Future[None] = asyncio.ensure_future(guest.wait_done())
    waiting: set[asyncio.Future[Any]] = {started, ended}
    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    if not started.done():
        await _outcome(ended)  # the trio side ended before serving: raise what ended it
        raise RuntimeError("the shards stopped before they started serving")
    if started.exception() is not None:
        await _outcome(ended)  # the trio side stops its shards; then raise why it did not start
    ended.cancel()
    return started.result(), guest


async def _run_trio_side(config: ServeConfig, started: asyncio.Future[TrioSide]) -> None:
    async with trio.open_nursery() as nursery:
        shard_set: ShardSet = await nursery.start(
            partial(
                run_shards,
                config.slots,
                shard_count=config.shard_count,
                mailbox_capacity=config.mailbox_capacity,
                entropy=buffered_entropy(),
                settings=config.lease_settings,
                persistence=config.persistence,
            )
        )
        health: HealthServer | None = None
        if config.health is not None:
            try:
                health = await nursery.start(serve_health, shard_set, config.health)
            except HealthListenError as problem:
                shard_set.close()
                started.set_exception(problem)
                return
        # Same thread: guest mode runs on the host's loop.
        started.set_result(TrioSide(shard_set, health))


async def _wait_for_stop_or_crash(stop: asyncio.Event, ended: asyncio.Future[None]) -> None:
    stopping = asyncio.ensure_future(stop.wait())
    either: set[asyncio.Future[Any]] = {stopping, ended}
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if ended.done():
        try:
            await _outcome(ended)  # re-raise what ended the shards
        except (RecoveryError, DataDirError, HealthListenError, OSError) as problem:
            # While serving, any of these (a snapshot that cannot be written, say) ends it.
            raise ServerFailed(str(problem)) from problem
        raise ServerFailed("the shards stopped unexpectedly")


async def _outcome(ended: asyncio.Future[None]) -> None:
    """Wait for the trio run's end; raise what ended it as one plain error (see _plain)."""
    try:
        await asyncio.shield(ended)
    except BaseExceptionGroup as group:
        raise _plain(group) from group


def _plain(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a user is told about, out of the trio run's nested exception groups.

    A journal failure becomes ServerFailed; a failed start keeps its type (the CLI
    maps RecoveryError, DataDirError, HealthListenError, OSError to one line each). Anything else
    is a bug and keeps its group, traceback and all.
    """
    journal, _ = group.split(JournalFailed)
    if journal is not None:
        return ServerFailed(str(_first_leaf(journal)))
    known, _ = group.split((RecoveryError, DataDirError, HealthListenError, OSError))
    return group if known is None else _first_leaf(known)


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
