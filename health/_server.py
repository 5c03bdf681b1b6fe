"""The health stream: a websocket that pushes each watcher a frame of live figures per shard.

A watcher connects, sends one `subscribe` frame (its interval, and the token if the
server wants one), gets a `hello`, then a `health` frame every interval (see
health.frames). Three parts:

- Pure: `shard_figures` turns two ShardStats snapshots into one interval's figures;
  `grant_interval` rounds and clamps what a watcher asks for.
- The publisher: one task per distinct interval (a "group") builds that interval's
  frame once, encodes it once, and offers the bytes to each of its watchers.
- Connections: each watcher has a bounded buffer and its own task that writes it
  to the socket.

Rules:
- Nothing a watcher does can slow the shards or the other watchers. The publisher
  never awaits a watcher: it offers with `send_nowait`, and when a watcher's buffer
  is full the frame is dropped for that watcher and counted (the watcher sees a gap
  in `seq`). Only the watcher's own task ever waits on its socket.
- A frame costs the same for 1 or 50 watchers of an interval: built and encoded once.
- A client that breaks the protocol is closed with a close code and nothing else
  happens: 1003 for a text message, 1008 for a bad or missing subscribe, a wrong
  token or any message after the subscribe, 1009 for a message over
  MAX_CLIENT_MESSAGE_BYTES, 1013 when `max_watchers` watchers are subscribed; 1001
  when the server stops.
- Until it has subscribed, a connection holds one of `max_pending` places of its
  own, never a watcher's (health._admission): unauthenticated clients cannot lock
  the watchers out. With an ssl_context the stream is wss://, and a client
  certificate is held to the same rule as on the gRPC port.

The service-time max and the loop lag come from destructive readers (take the max
since the last read), so every reader fans what it took out to every group.
"""

from __future__ import annotations

import contextlib
import enum
import hmac
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from leasehold.health._admission import PendingGate
from leasehold.health._config import HealthConfig, HealthListenError
from leasehold.health._http import HEAD_TIMEOUT_S, Replayed, answer, is_upgrade, read_head
from leasehold.health._metrics import build_version, scrape, take_snapshot
from leasehold.health._source import ShardSource
from leasehold.health.frames import (
    FrameError,
    GatewayFigures,
    Health,
    Hello,
    ProcessFigures,
    ProcessRow,
    ShardFigures,
    Subscribe,
    decode,
)
from leasehold.shards import ShardStats, percentile

MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 60.0
# Granted intervals are whole multiples of this, so watchers share few groups.
INTERVAL_STEP_S = 0.1
# The loop-lag probe's fixed tick (it runs only while someone watches).
LAG_TICK_S = 0.05
# A subscribe frame is ~60 bytes; anything far larger is refused with 1009.
MAX_CLIENT_MESSAGE_BYTES = 1024
# Short: until then the connection holds a pending place (a subscribe follows the
# handshake at once; the handshake includes TLS when the stream is wss://).
SUBSCRIBE_TIMEOUT_S = 1.0
HANDSHAKE_TIMEOUT_S = 2.0
# How long a closing handshake may take before the connection is just dropped.
CLOSE_TIMEOUT_S = 1.0
# The websocket close frame's reason is limited to 123 bytes.
_MAX_REASON_BYTES = 123


class CloseCode(enum.IntEnum):
    """RFC 6455 close codes this server sends."""

    GOING_AWAY = 1001  # the server is stopping
    UNSUPPORTED_DATA = 1003  # a text message: the protocol is binary msgpack
    POLICY_VIOLATION = 1008  # bad/missing subscribe, wrong token, unexpected message
    MESSAGE_TOO_BIG = 1009  # sent by trio-websocket itself (max_message_size)
    TRY_AGAIN_LATER = 1013  # too many connections


# ---- pure: figures from snapshots -------------------------------------------------


def grant_interval(requested: float | None, default_s: float) -> float:
    """The interval a watcher gets: its request (or the default), clamped and rounded."""
    value = default_s if requested is None else requested
    value = min(max(value, MIN_INTERVAL_S), MAX_INTERVAL_S)
    return round(round(value / INTERVAL_STEP_S) * INTERVAL_STEP_S, 6)


def shard_figures(
    before: ShardStats, after: ShardStats, elapsed_s: float, service_max_s: float
) -> ShardFigures:
    """One shard's figures over the `elapsed_s` seconds between two snapshots.

    `service_max_s` is the exact largest service time in the interval; percentiles
    are histogram bucket upper bounds, capped at it (a true percentile never exceeds
    the max).
    """
    per_s = 1.0 / elapsed_s if elapsed_s > 0 else 0.0
    rps = {
        kind: (count - before.operations_by_kind.get(kind, 0)) * per_s
        for kind, count in sorted(after.operations_by_kind.items())
    }
    served = tuple(
        a - b for a, b in zip(after.service_time_counts, before.service_time_counts, strict=True)
    )
    p50 = percentile(served, 0.50)
    p99 = percentile(served, 0.99)
    if service_max_s > 0:
        p50, p99 = min(p50, service_max_s), min(p99, service_max_s)
    journal = after.journal  # None: the shard keeps no journal, and the figures say so
    return ShardFigures(
        id=after.shard_id,
        mailbox_depth=after.mailbox_depth,
        mailbox_capacity=after.mailbox_capacity,
        rps=rps,
        p50_s=p50,
        p99_s=p99,
        max_s=service_max_s,
        live_leases=after.live_leases,
        confirmed_bookings=after.confirmed_bookings,
        expired=after.expirations - before.expirations,
        shed=after.shed - before.shed,
        requests_total=after.operations,
        expired_total=after.expirations,
        shed_total=after.shed,
        expiry_lag_s=after.last_expiry_lag_s,
        fsync_s=None if journal is None else journal.last_fsync_s,
        fsync_max_s=None if journal is None else journal.max_fsync_s,
        journal_bytes=None if journal is None else journal.bytes_written,
        inventory_changes_total=after.inventory_changes,
        # 0.0 in the stats means none since start; the frame says so with None.
        inventory_last_change_at=after.inventory_last_change_unix or None,
        orphaned_bookings=after.orphaned_bookings,
        slots=after.slots,
    )


def read_rss_bytes() -> int | None:
    """Resident set size from /proc (Linux); None elsewhere."""
    try:
        fd = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return None
    try:
        fields = os.read(fd, 128).split()
    finally:
        os.close(fd)
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def _close_reason(text: str) -> str:
    return text.encode()[:_MAX_REASON_BYTES].decode(errors="ignore")


# ---- the publisher and the connections ----------------------------------------------


@dataclass(eq=False, slots=True)
class _Watcher:
    send: trio.MemorySendChannel[bytes]
    # Frames dropped for this watcher because its buffer was full.
    dropped: int = 0


@dataclass(eq=False, slots=True)
class _Group:
    """The watchers of one interval, and what their next frame is diffed against."""

    interval_s: float
    previous: tuple[ShardStats, ...]
    previous_at: float
    # Invariant: the largest service time per shard since `previous_at` (fanned out).
    service_max_s: list[float]
    watchers: set[_Watcher] = field(default_factory=set)
    seq: int = 0
    # Invariant: the largest loop lag the probe saw since `previous_at`.
    loop_lag_s: float = 0.0


class HealthStream:
    """Serves the health stream over any byte stream; `serve_health` adds TCP.

    Run `run` with `nursery.start` first; then `serve_stream` serves one connection.
    """

    def __init__(
        self,
        shard_set: ShardSource,
        config: HealthConfig,
        *,
        wall_clock: Callable[[], float] = time.time,
        rss_bytes: Callable[[], int | None] = read_rss_bytes,
    ) -> None:
        self._shard_set = shard_set
        self._config = config
        self._wall_clock = wall_clock
        self._rss_bytes = rss_bytes
        # Set by the server once grpclib's server exists; None: not known.
        self.grpc_connections: Callable[[], int | None] = lambda: None
        # Set by a multi-process server's supervisor: a row per process of its tree, and
        # a refresh of its copies of the shard figures, awaited before a metrics scrape.
        self.processes: Callable[[], tuple[ProcessRow, ...]] = tuple
        # Set by a one-process server: its gateway's figures (a tree's are in its rows).
        self.gateway: Callable[[], GatewayFigures | None] = lambda: None
        self.refresh: Callable[[], Awaitable[None]] = _nothing_to_refresh
        # Invariant: keyed by interval in ms; a group is here exactly while its task runs.
        self._groups: dict[int, _Group] = {}
        self._watchers: set[_Watcher] = set()
        self._connections = 0
        self._pending = PendingGate(config.max_pending)
        self._probing = False
        self.frames_dropped = 0
        self.frames_sent = 0
        self._started_at = 0.0
        self._nursery: trio.Nursery | None = None
        self._stopping = trio.Event()
        self._stopped = trio.Event()
        # Invariant: set exactly when no connection is open.
        self._idle = trio.Event()
        self._idle.set()

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    def stop(self) -> None:
        """Close every connection with 1001 (going away); `run` then returns."""
        self._stopping.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the publisher until `stop()`; then close the connections and return."""
        self._started_at = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await self._stopping.wait()
                # Each connection's handler sees the stop and closes with 1001.
                with trio.move_on_after(CLOSE_TIMEOUT_S * 2):
                    await self._idle.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._stopped.set()

    @property
    def pending_evicted(self) -> int:
        """Connections dropped before subscribing, to make room for newer ones."""
        return self._pending.evicted

    async def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve one websocket connection over `stream`, then close the stream."""
        try:
            with trio.CancelScope() as pending:
                self._pending.admit(pending)
                try:
                    async with trio.open_nursery() as nursery:
                        ws = await self._handshake(nursery, stream)
                        if ws is not None:
                            await self._serve_connection(ws, pending)
                        nursery.cancel_scope.cancel()  # the connection's reader task
                finally:
                    self._pending.release(pending)
        finally:
            # Ours to close: trio-websocket leaves it open after it closes with 1009.
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _handshake(
        self, nursery: trio.Nursery, stream: trio.abc.Stream
    ) -> WebSocketConnection | None:
        with trio.move_on_after(HANDSHAKE_TIMEOUT_S):
            if isinstance(stream, trio.SSLStream) and not await self._tls_ok(stream):
                return None
            # Plain HTTP (GET /metrics) shares the port: read the request head first,
            # since trio-websocket answers anything but an upgrade with an empty 400.
            head = await read_head(stream)
            if not is_upgrade(head):
                await self._answer_http(head, stream)
                return None
            request = await wrap_server_stream(
                nursery,
                Replayed(head, stream),
                message_queue_size=1,
                max_message_size=MAX_CLIENT_MESSAGE_BYTES,
            )
            try:
                return await request.accept()
            except ConnectionClosed:
                return None
        return None

    async def _answer_http(self, head: bytes, stream: trio.abc.Stream) -> None:
        """One HTTP answer (metrics, 404, 405 or 431); the caller closes the stream."""
        await self.refresh()
        response = await answer(
            head, partial(scrape, partial(take_snapshot, self._shard_set, self))
        )
        with contextlib.suppress(trio.BrokenResourceError), trio.move_on_after(HEAD_TIMEOUT_S):
            await stream.send_all(response)

    async def _tls_ok(self, stream: trio.SSLStream[trio.abc.Stream]) -> bool:
        """The TLS handshake succeeded and the client certificate (if any is asked) may watch."""
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError:
            return False  # no or a bad client certificate, or not TLS at all
        check = self._config.client_cert_ok
        return check is None or check(stream.getpeercert())

    async def _serve_connection(self, ws: WebSocketConnection, pending: trio.CancelScope) -> None:
        self._connections += 1
        if self._connections == 1:
            self._idle = trio.Event()
        try:
            close = await self._watch(ws, pending)
            if close is not None:
                with trio.move_on_after(CLOSE_TIMEOUT_S):
                    await ws.aclose(close[0], _close_reason(close[1]))
        finally:
            self._connections -= 1
            if not self._connections:
                self._idle.set()

    async def _watch(
        self, ws: WebSocketConnection, pending: trio.CancelScope
    ) -> tuple[int, str] | None:
        """Run one watcher; returns how to close the connection (None: it is closed)."""
        if self._stopping.is_set():
            return CloseCode.GOING_AWAY, "server stopping"
        outcome = await self._read_subscribe(ws)
        if not isinstance(outcome, Subscribe):
            return outcome
        self._pending.release(pending)  # a watcher now: no newcomer can evict it
        if len(self._watchers) >= self._config.max_watchers:
            return CloseCode.TRY_AGAIN_LATER, "too many watchers"
        interval_s = grant_interval(outcome.interval_s, self._config.default_interval_s)
        send, receive = trio.open_memory_channel[bytes](self._config.buffer_frames)
        watcher = _Watcher(send)
        hello = Hello(interval_s, len(self._shard_set.shards), build_version())
        send.send_nowait(hello.encode())
        group = self._join(watcher, interval_s)
        close: tuple[int, str] | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_frames, ws, receive, nursery.cancel_scope)

                async def on_stop() -> None:
                    nonlocal close
                    await self._stopping.wait()
                    close = CloseCode.GOING_AWAY, "server stopping"
                    nursery.cancel_scope.cancel()

                nursery.start_soon(on_stop)
                try:
                    await ws.get_message()
                    close = CloseCode.POLICY_VIOLATION, "no message is expected after subscribe"
                except ConnectionClosed:
                    pass
                nursery.cancel_scope.cancel()
        finally:
            group.watchers.discard(watcher)
            self._watchers.discard(watcher)
            send.close()
        return close

    async def _read_subscribe(self, ws: WebSocketConnection) -> Subscribe | tuple[int, str] | None:
        with trio.move_on_after(SUBSCRIBE_TIMEOUT_S):
            try:
                message = await ws.get_message()
            except ConnectionClosed:
                return None  # gone, or closed 1009 by trio-websocket (max_message_size)
            if isinstance(message, str):
                return CloseCode.UNSUPPORTED_DATA, "messages are binary msgpack, not text"
            try:
                frame = decode(message)
            except FrameError as problem:
                return CloseCode.POLICY_VIOLATION, f"bad subscribe: {problem}"
            if not isinstance(frame, Subscribe):
                return CloseCode.POLICY_VIOLATION, f"expected subscribe, got {frame.type}"
            if not self._token_ok(frame.token):
                return CloseCode.POLICY_VIOLATION, "missing or wrong token"
            return frame
        return CloseCode.POLICY_VIOLATION, f"no subscribe within {SUBSCRIBE_TIMEOUT_S:g} s"

    def _token_ok(self, offered: str | None) -> bool:
        wanted = self._config.token
        if wanted is None:
            return True
        return offered is not None and hmac.compare_digest(offered.encode(), wanted.encode())

    async def _write_frames(
        self,
        ws: WebSocketConnection,
        receive: trio.MemoryReceiveChannel[bytes],
        done: trio.CancelScope,
    ) -> None:
        """The only place that waits on a watcher's socket."""
        try:
            async for data in receive:
                await ws.send_message(data)
                self.frames_sent += 1
        except ConnectionClosed:
            done.cancel()

    def _join(self, watcher: _Watcher, interval_s: float) -> _Group:
        assert self._nursery is not None, "run() must be started first"
        key = round(interval_s * 1000)
        group = self._groups.get(key)
        if group is None:
            now = trio.current_time()
            group = _Group(
                interval_s=interval_s,
                previous=self._shard_set.statistics(),
                previous_at=now,
                service_max_s=[0.0] * len(self._shard_set.shards),
            )
            self._collect_service_max()  # earlier maxima belong to the other groups
            self._groups[key] = group
            self._nursery.start_soon(self._publish, key, group, now)
        group.watchers.add(watcher)
        self._watchers.add(watcher)
        if not self._probing:
            self._probing = True
            self._nursery.start_soon(self._probe_loop_lag)
        return group

    async def _publish(self, key: int, group: _Group, due: float) -> None:
        """Every interval: one frame for the group, offered to each of its watchers."""
        while True:
            due += group.interval_s
            await trio.sleep_until(due)
            if not group.watchers:
                del self._groups[key]
                return
            await self.refresh()  # figures kept by another process: as of this frame
            now = trio.current_time()
            if now - due >= group.interval_s:
                due = now  # fallen a whole interval behind: no burst to catch up
            data = self._next_frame(group, now).encode()
            for watcher in group.watchers:
                self._offer(watcher, data)

    def _offer(self, watcher: _Watcher, data: bytes) -> None:
        try:
            watcher.send.send_nowait(data)
        except trio.WouldBlock:
            watcher.dropped += 1
            self.frames_dropped += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the connection is ending; its handler removes the watcher

    def _next_frame(self, group: _Group, now: float) -> Health:
        self._collect_service_max()
        current = self._shard_set.statistics()
        elapsed = now - group.previous_at
        shards = tuple(
            shard_figures(before, after, elapsed, top)
            for before, after, top in zip(group.previous, current, group.service_max_s, strict=True)
        )
        group.seq += 1
        frame = Health(
            seq=group.seq,
            at=self._wall_clock(),
            interval_s=elapsed,
            shards=shards,
            process=ProcessFigures(
                uptime_s=now - self._started_at,
                rss_bytes=self._rss_bytes(),
                loop_lag_s=group.loop_lag_s,
                grpc_connections=self.grpc_connections(),
                watchers=len(self._watchers),
                frames_dropped=self.frames_dropped,
            ),
            processes=self.processes(),
            gateway=self.gateway(),
        )
        group.previous, group.previous_at = current, now
        group.service_max_s = [0.0] * len(group.service_max_s)
        group.loop_lag_s = 0.0
        return frame

    def _collect_service_max(self) -> None:
        for index, shard in enumerate(self._shard_set.shards):
            largest = shard.service_times.take_interval_max()
            for group in self._groups.values():
                if largest > group.service_max_s[index]:
                    group.service_max_s[index] = largest

    async def _probe_loop_lag(self) -> None:
        """Sleep a fixed tick and record how late it woke, while anyone watches."""
        deadline = trio.current_time()
        while self._groups:
            deadline += LAG_TICK_S
            await trio.sleep_until(deadline)
            now = trio.current_time()
            lag = now - deadline
            for group in self._groups.values():
                group.loop_lag_s = max(group.loop_lag_s, lag)
            if lag >= LAG_TICK_S:
                deadline = now
        self._probing = False


async def _nothing_to_refresh() -> None:
    pass


@dataclass(frozen=True, slots=True)
class HealthServer:
    host: str
    port: int
    stream: HealthStream


async def serve_health(
    shard_set: ShardSource,
    config: HealthConfig,
    *,
    task_status: trio.TaskStatus[HealthServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Bind, serve the health stream until `HealthServer.stream.stop()`, then return.

    Raises HealthListenError if the port cannot be bound.
    """
    try:
        tcp = await trio.open_tcp_listeners(config.port, host=config.host)
    except OSError as problem:
        raise HealthListenError(config.host, config.port, problem) from problem
    stream = HealthStream(shard_set, config)
    port = int(tcp[0].socket.getsockname()[1])
    listeners: list[trio.abc.Listener[Any]] = list(tcp)
    if config.ssl_context is not None:
        # The TLS handshake runs inside serve_stream, under the handshake timeout.
        listeners = [trio.SSLListener(t, config.ssl_context, https_compatible=True) for t in tcp]
    async with trio.open_nursery() as nursery:
        await nursery.start(stream.run)
        await nursery.start(partial(trio.serve_listeners, stream.serve_stream, listeners))
        task_status.started(HealthServer(config.host, port, stream))
        await stream.wait_stopped()
        nursery.cancel_scope.cancel()  # stop accepting
