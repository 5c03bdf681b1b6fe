"""The gateway worker's end of the link (asyncio): one connection per shard process.

A call registers a future under a fresh request id and appends its request to
the outbox; the outbox is written once per loop iteration (`call_soon`), so the
requests of one iteration leave in one write, each with the time its caller
has left at the write, not at the call. Replies resolve the futures as they
arrive. While the connection is down (the shard process died and is being
restarted) calls for its shards are answered UNAVAILABLE at once, only those;
calls in flight when it drops are answered UNAVAILABLE too (they may have been
applied: that is why CreateLease and CreateBooking are idempotent on replay).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import cast

from leasehold.core import Command
from leasehold.link._framing import (
    FrameDecoder,
    Kind,
    LinkProtocolError,
    check_hello,
    encode_frames,
    encode_sendable,
    hello,
)
from leasehold.link._messages import MAX_REQUEST_ID, parse_reply, request
from leasehold.shards import (
    CorruptRecord,
    Reply,
    ShardFault,
    ShardUnavailable,
    decode_reply,
    encode_command,
)

HELLO_TIMEOUT_S = 5.0
# Reconnection back-off: from the first to the second, doubling.
RECONNECT_DELAYS_S = (0.02, 0.2)

# A reply, when it arrived (perf_counter), and the seconds its request and it spent on the
# link (sent to arrived, less the time held in the shard process): the router's return path.
Delivered = tuple[Reply, float, float]
# (the reply's future, the command's type, when the request was written; 0.0 until then)
_Pending = tuple[asyncio.Future[Delivered], type[Command], float]
# (request id, shard id, seconds left when queued, encoded command, when queued)
_Queued = tuple[int, int, float | None, object, float]
_Message = tuple[object, ...]


class ShardLink:
    """One gateway worker's connection to one shard process, reconnected when it drops."""

    def __init__(self, path: str, *, max_in_flight: int) -> None:
        self.path = path
        self.max_in_flight = max_in_flight
        self.connects = 0
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._ready = False
        self._decoder = FrameDecoder()
        # Invariant: at most max_in_flight entries; each is answered exactly once.
        self._pending: dict[int, _Pending] = {}
        self._outbox: list[_Queued] = []
        self._flushing = False
        self._next_id = 0
        self._connected = asyncio.Event()
        self._hello: asyncio.Future[None] | None = None
        self._lost: asyncio.Future[None] | None = None
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._ready

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def wait_lost(self) -> None:
        """Until the current connection (if any) has dropped."""
        if self._ready and self._lost is not None:
            await asyncio.shield(self._lost)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def call(
        self, shard_id: int, command: Command, remaining_s: float | None
    ) -> asyncio.Future[Delivered]:
        """Send a command; its reply's future. ShardUnavailable at once when down or full."""
        if not self._ready:
            raise ShardUnavailable(ShardFault.UNAVAILABLE)
        if len(self._pending) >= self.max_in_flight:
            raise ShardUnavailable(ShardFault.OVERLOADED)
        request_id = self._fresh_id()
        future: asyncio.Future[Delivered] = self._loop.create_future()
        self._pending[request_id] = (future, type(command), 0.0)
        queued = (request_id, shard_id, remaining_s, encode_command(command), time.perf_counter())
        self._outbox.append(queued)
        if not self._flushing:
            self._flushing = True
            self._loop.call_soon(self._flush)
        return future

    async def run(self) -> None:
        """Connect, serve, reconnect after a drop; until `close()`."""
        delay = RECONNECT_DELAYS_S[0]
        while not self._closing:
            if await self._connect_once():
                delay = RECONNECT_DELAYS_S[0]
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_DELAYS_S[1])

    def close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    async def _connect_once(self) -> bool:
        """One connection's life; True if it got as far as serving."""
        self._hello = self._loop.create_future()
        self._lost = self._loop.create_future()
        self._decoder = FrameDecoder()
        try:
            transport, _ = await self._loop.create_unix_connection(
                lambda: _Protocol(self), self.path
            )
        except OSError:
            return False
        try:
            transport.write(encode_frames([hello("gateway")]))
            await asyncio.wait_for(asyncio.shield(self._hello), HELLO_TIMEOUT_S)
        except (TimeoutError, LinkProtocolError, ConnectionError):
            transport.close()
            await self._lost
            return False
        self._ready = True
        self._connected.set()
        self.connects += 1
        await self._lost
        return True

    def _fresh_id(self) -> int:
        while True:
            self._next_id = self._next_id + 1 if self._next_id < MAX_REQUEST_ID else 0
            if self._next_id not in self._pending:
                return self._next_id

    def _flush(self) -> None:
        self._flushing = False
        queued, self._outbox = self._outbox, []
        if self._transport is None or not queued:
            return
        batch = self._still_wanted(queued, time.perf_counter())
        data, too_large = encode_sendable([message for _, message in batch])
        for position in too_large:  # a command larger than a frame: refused, never sent
            self._fail(batch[position][0], ShardFault.UNAVAILABLE)
        self._transport.write(data)

    def _still_wanted(self, queued: list[_Queued], now: float) -> list[tuple[int, _Message]]:
        """The requests worth sending, each with the time its caller has left now.

        A caller gone while its request waited (its deadline, or its reset) is not
        sent for; one whose time ran out while queued is answered DEADLINE_EXCEEDED
        unsent: either, applied, would be a change nobody hears of (issue 15).
        """
        batch = []
        for request_id, shard_id, remaining_s, command, queued_at in queued:
            entry = self._pending.get(request_id)
            if entry is None or entry[0].done():
                self._pending.pop(request_id, None)
                continue
            future = entry[0]
            if remaining_s is not None:
                remaining_s -= now - queued_at
                if remaining_s <= 0:
                    del self._pending[request_id]
                    future.set_result((ShardFault.DEADLINE_EXCEEDED, now, 0.0))
                    continue
            self._pending[request_id] = (future, entry[1], now)
            batch.append((request_id, request(request_id, shard_id, remaining_s, command)))
        return batch

    def _fail(self, request_id: int, fault: ShardFault) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(ShardUnavailable(fault))

    def _on_data(self, data: bytes) -> None:
        for message in self._decoder.feed(data):
            if message[0] == Kind.REPLY and self._ready:
                request_id, encoded, held_s = parse_reply(message)
                entry = self._pending.get(request_id)
                if entry is None or not entry[2]:
                    raise LinkProtocolError(f"a reply to request {request_id}, never sent")
                del self._pending[request_id]
                future, command_type, sent_at = entry
                try:
                    reply = decode_reply(command_type, encoded)
                except CorruptRecord as problem:
                    raise LinkProtocolError(f"reply {request_id}: {problem}") from None
                if not future.done():  # a caller cancelled by its deadline left it cancelled
                    now = time.perf_counter()
                    future.set_result((reply, now, max(0.0, now - sent_at - held_s)))
            elif self._hello is not None and not self._hello.done():
                check_hello(message)
                self._hello.set_result(None)
            else:
                raise LinkProtocolError(f"unexpected message kind {message[0]}")

    def _on_lost(self) -> None:
        self._ready = False
        self._connected.clear()
        self._transport = None
        self._outbox.clear()
        for request_id in list(self._pending):
            self._fail(request_id, ShardFault.UNAVAILABLE)
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(ConnectionError("the link closed before its hello"))
            self._hello.exception()  # retrieved: a lost hello is expected, not a leak
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)


class _Protocol(asyncio.Protocol):
    def __init__(self, link: ShardLink) -> None:
        self._link = link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._link._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._link._on_data(data)
        except LinkProtocolError:
            self._transport.close()  # connection_lost fails what is in flight

    def connection_lost(self, exc: Exception | None) -> None:
        self._link._on_lost()


async def call_over_link(
    link: ShardLink,
    shard_id: int,
    command: Command,
    remaining_s: float | None,
    waiting: set[asyncio.Future[Delivered]] | None = None,
    resumed_after: Callable[[float], None] | None = None,
) -> Reply:
    """As the gateway's in-process call_shard, over the link (see LinkedShards)."""
    future = link.call(shard_id, command, remaining_s)
    if waiting is not None:
        waiting.add(future)
    try:
        reply, delivered_at, on_link_s = await future
    finally:
        if waiting is not None:
            waiting.discard(future)
    if resumed_after is not None:
        # The time the call has spent outside the shard since its request was written.
        resumed_after(time.perf_counter() - delivered_at + on_link_s)
    return reply
