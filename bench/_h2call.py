"""A minimal HTTP/2 gRPC client for unary calls on an asyncio Protocol: the overload probe's load.

grpcio's aio client spends more CPU per call than the server's share of it, so at a
thousand callers on a shared 2-core machine the load processes starved and their
deadlines expired on the client for replies the server had sent in time
(docs/performance.md, "Overload"). This one does per call: a reused header block
plus a grpc-timeout literal, two frames, one write per loop iteration for all the
calls started in it, a timer for the deadline, and the reply's header blocks
decoded by `hpack`. It does what a gRPC client must: at most the server's
MAX_CONCURRENT_STREAMS streams (callers over it wait in a bounded queue, on their
deadline), flow control both ways (a 16 MiB receive window, WINDOW_UPDATEs as it
is used), PING and SETTINGS acknowledged, RST_STREAM and GOAWAY honoured (streams
the server did not process are UNAVAILABLE), and the caller's deadline enforced on
the client's clock (RST_STREAM(CANCEL), DEADLINE_EXCEEDED). Not done: TLS,
compression, streaming calls, request bodies over one frame or the stream window.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import cast

import hpack

from leasehold.bench import _h2wire as w
from leasehold.bench._h2wire import Frame, FrameType, Reply, Setting, WireError

RECEIVE_WINDOW = 1 << 24  # the connection's and each stream's, in bytes
MAX_REPLY_BYTES = 1 << 20  # a reply's DATA over this ends its call (RESOURCE_EXHAUSTED)
MAX_HEADER_BLOCK = 64 * 1024  # a header block over this drops the connection
MAX_WAITING = 10_000  # callers queued for a stream per connection; more are refused
MAX_EXPIRED = 10_000  # streams ended by the deadline whose late replies are still watched
_UNSET_STREAMS = 100  # the stream limit assumed until the server's SETTINGS say


@dataclass(slots=True)
class _Stream:
    future: asyncio.Future[Reply]
    timer: asyncio.TimerHandle | None = None
    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)


@dataclass(frozen=True, slots=True)
class _Request:
    stream_id: int
    block: bytes
    message: bytes
    deadline: float  # loop time

    def frames(self, now: float) -> bytes:
        """HEADERS with the time left at `now` as grpc-timeout, then the DATA."""
        headers = self.block + w.grpc_timeout(self.deadline - now)
        return w.frame(FrameType.HEADERS, w.END_HEADERS, self.stream_id, headers) + w.frame(
            FrameType.DATA, w.END_STREAM, self.stream_id, self.message
        )


class H2Channel(asyncio.Protocol):
    """One HTTP/2 connection to a gRPC server; `await call(...)` sends a unary call."""

    def __init__(self, authority: str) -> None:
        self.authority = authority
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._reader = w.FrameReader()
        self._decoder = hpack.Decoder()
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        self._max_streams = _UNSET_STREAMS
        self._send_window = 65_535  # the connection's, for our DATA
        self._stream_window = 65_535  # each new stream's, from the server's SETTINGS
        self._unacked = 0  # DATA bytes received and not yet given back by WINDOW_UPDATE
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        # Frames to write, in order; a request is kept as _Request until the write, so
        # that its grpc-timeout is the time left then (as grpc-core does), not at call().
        self._out: list[bytes | _Request] = []
        self._paused = False  # the transport's buffer is over its high-water mark
        self._continuing: tuple[int, bytearray, bool] | None = None  # (stream, block, end)
        self._closed: str | None = None  # why new calls are refused
        self._ready: asyncio.Future[None] = self._loop.create_future()
        # Streams the client's deadline ended, by id: their deadline (loop time), oldest
        # first. A reply that still arrives OK is a change the caller never heard of.
        self._expired: dict[int, float] = {}
        self.late_ok: list[float] = []  # how late each such OK reply was, in seconds

    @classmethod
    async def connect(cls, host: str, port: int, timeout_s: float = 5.0) -> H2Channel:
        """Connected, and the server's first SETTINGS received, within `timeout_s`."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            _, channel = await loop.create_connection(lambda: cls(f"{host}:{port}"), host, port)
            await channel._ready
        return channel

    # --- the caller's side ---------------------------------------------------------------

    async def call(self, block: bytes, body: bytes, timeout_s: float) -> Reply:
        """Send `body` (a serialized message) with header `block` (w.request_block)."""
        deadline = self._loop.time() + timeout_s
        message = w.grpc_message(body)
        if len(message) > min(w.MAX_FRAME, self._stream_window):
            return Reply(w.INTERNAL, f"request of {len(message)} bytes is over one frame")
        refusal = await self._wait_for_room(len(message), deadline)
        if refusal is not None:
            return refusal
        stream_id = self._open(block, message, deadline)
        stream = self._streams[stream_id]
        try:
            return await stream.future
        except asyncio.CancelledError:
            self._cancel(stream_id)
            raise

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def _wait_for_room(self, size: int, deadline: float) -> Reply | None:
        """None once a stream may open with `size` bytes of DATA, else the call's refusal."""
        while True:
            if self._closed is not None:
                return Reply(w.UNAVAILABLE, self._closed)
            if self._has_room(size):
                return None
            if len(self._waiting) >= MAX_WAITING:
                return Reply(w.RESOURCE_EXHAUSTED, "client: too many calls queued for a stream")
            waiter = self._loop.create_future()
            self._waiting.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                return Reply(w.DEADLINE_EXCEEDED, "client: deadline passed waiting for a stream")

    def _has_room(self, size: int) -> bool:
        return (
            not self._paused
            and len(self._streams) < self._max_streams
            and size <= self._send_window
        )

    def _open(self, block: bytes, message: bytes, deadline: float) -> int:
        stream_id = self._next_id
        self._next_id += 2
        if self._next_id > w.MAX_STREAM_ID:
            self._closed = "client: stream ids used up on this connection"
        self._send(_Request(stream_id, block, message, deadline))
        self._send_window -= len(message)
        stream = _Stream(self._loop.create_future())
        stream.timer = self._loop.call_at(deadline, self._expire, stream_id)
        self._streams[stream_id] = stream
        return stream_id

    def _expire(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.timer = None
            self._expired[stream_id] = self._loop.time()
            if len(self._expired) > MAX_EXPIRED:
                del self._expired[next(iter(self._expired))]
            self._cancel(stream_id)
            self._finish(stream, Reply(w.DEADLINE_EXCEEDED, "client: deadline exceeded"))

    def _cancel(self, stream_id: int) -> None:
        """RST_STREAM(CANCEL) for a stream still open on our side, and forget it."""
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            if stream.timer is not None:
                stream.timer.cancel()
            self._send(w.rst_stream(stream_id, w.CANCEL_CODE))
            self._wake()

    def _finish(self, stream: _Stream, reply: Reply) -> None:
        if stream.timer is not None:
            stream.timer.cancel()
        if not stream.future.done():
            stream.future.set_result(reply)

    def _end(self, stream_id: int, reply: Reply) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._finish(stream, reply)
            self._wake()

    def _wake(self) -> None:
        """Let queued callers look again (each re-checks; one wake-up each is enough)."""
        free = self._max_streams - len(self._streams)
        while self._waiting and (free > 0 or self._closed is not None):
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    # --- writing ------------------------------------------------------------------------

    def _send(self, data: bytes | _Request) -> None:
        """Queued; written once per loop iteration, for every call started in it."""
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            now = self._loop.time()
            self._transport.write(
                b"".join(x if isinstance(x, bytes) else x.frames(now) for x in self._out)
            )
        self._out.clear()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    # --- reading ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's transports are asyncio.Transport; uvloop's (the load processes' loop
        # when installed) have the same methods without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        preface = w.settings({Setting.ENABLE_PUSH: 0, Setting.INITIAL_WINDOW_SIZE: RECEIVE_WINDOW})
        self._send(w.PREFACE + preface + w.window_update(0, RECEIVE_WINDOW - 65_535))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all(f"client: connection lost ({exc or 'closed by the server'})")
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            for f in self._reader.feed(data):
                self._on_frame(f)
        except (WireError, hpack.HPACKError) as error:
            self._fail_all(f"client: protocol error from the server: {error}")
            if self._transport is not None:
                self._transport.abort()

    def _fail_all(self, why: str) -> None:
        self._closed = self._closed or why
        if not self._ready.done():
            self._ready.set_exception(ConnectionError(why))
        for stream_id in list(self._streams):
            self._end(stream_id, Reply(w.UNAVAILABLE, why))
        self._wake()

    def _on_frame(self, f: Frame) -> None:
        if self._continuing is not None and f.type != FrameType.CONTINUATION:
            raise WireError(f"frame type {f.type} inside a header block")
        if f.type == FrameType.DATA:
            self._on_data(f)
        elif f.type in (FrameType.HEADERS, FrameType.CONTINUATION):
            self._on_header_fragment(f)
        elif f.type == FrameType.RST_STREAM:
            code = w.parse_u32(f.payload, "RST_STREAM")
            self._expired.pop(f.stream_id, None)
            self._end(f.stream_id, Reply(w.rst_status(code), f"server: RST_STREAM {code}"))
        elif f.type == FrameType.SETTINGS:
            self._on_settings(f)
        elif f.type == FrameType.PING and not f.flags & w.ACK:
            self._send(w.frame(FrameType.PING, w.ACK, 0, f.payload))
        elif f.type == FrameType.GOAWAY:
            self._on_goaway(*w.parse_goaway(f.payload))
        elif f.type == FrameType.WINDOW_UPDATE and f.stream_id == 0:
            self._send_window += w.parse_u32(f.payload, "WINDOW_UPDATE") & w.MAX_STREAM_ID
            self._wake()
        elif f.type == FrameType.PUSH_PROMISE:
            raise WireError("PUSH_PROMISE after ENABLE_PUSH 0")
        # PRIORITY, a stream's WINDOW_UPDATE (one small DATA per stream), unknown: ignored

    def _on_data(self, f: Frame) -> None:
        self._unacked += len(f.payload)  # padding included: it counts against the window
        if self._unacked >= RECEIVE_WINDOW // 2:
            self._send(w.window_update(0, self._unacked))
            self._unacked = 0
        stream = self._streams.get(f.stream_id)
        if stream is None:
            return  # ended on our side (deadline, cancel): late bytes
        stream.data += w.strip_padding(f)
        if len(stream.data) > MAX_REPLY_BYTES:
            self._cancel(f.stream_id)
            self._finish(stream, Reply(w.RESOURCE_EXHAUSTED, "client: reply over 1 MiB"))
        elif f.flags & w.END_STREAM:
            self._end(f.stream_id, _reply(stream))

    def _on_header_fragment(self, f: Frame) -> None:
        if f.type == FrameType.HEADERS:
            self._continuing = (f.stream_id, bytearray(), bool(f.flags & w.END_STREAM))
            fragment = w.strip_padding(f)
        else:
            if self._continuing is None or self._continuing[0] != f.stream_id:
                raise WireError("CONTINUATION without its HEADERS")
            fragment = f.payload
        stream_id, block, end_stream = self._continuing
        block += fragment
        if len(block) > MAX_HEADER_BLOCK:
            raise WireError(f"header block over {MAX_HEADER_BLOCK} bytes")
        if f.flags & w.END_HEADERS:
            self._continuing = None
            # Every block is decoded, even a dropped stream's: HPACK state is per connection.
            # raw=False gives str pairs (hpack's annotation says bytes for both modes).
            headers = cast("list[tuple[str, str]]", self._decoder.decode(bytes(block)))
            self._on_headers(stream_id, headers, end_stream)

    def _on_headers(self, stream_id: int, headers: list[tuple[str, str]], end: bool) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            expired_at = self._expired.pop(stream_id, None) if end else None
            if expired_at is not None and ("grpc-status", "0") in headers:
                self.late_ok.append(self._loop.time() - expired_at)
            return
        stream.headers.update(headers)
        if end:
            self._end(stream_id, _reply(stream))

    def _on_settings(self, f: Frame) -> None:
        if f.flags & w.ACK:
            return
        values = w.parse_settings(f.payload)
        self._max_streams = values.get(Setting.MAX_CONCURRENT_STREAMS, self._max_streams)
        self._stream_window = values.get(Setting.INITIAL_WINDOW_SIZE, self._stream_window)
        self._send(w.frame(FrameType.SETTINGS, w.ACK, 0))
        if not self._ready.done():
            self._ready.set_result(None)
        self._wake()

    def _on_goaway(self, last_stream_id: int, code: int) -> None:
        self._closed = self._closed or f"server: GOAWAY (error code {code})"
        for stream_id in [s for s in self._streams if s > last_stream_id]:
            self._end(stream_id, Reply(w.UNAVAILABLE, "server: GOAWAY before this stream"))
        self._wake()


def _reply(stream: _Stream) -> Reply:
    """The stream's reply, complete now."""
    return w.reply_from(stream.headers, bytes(stream.data), time.monotonic())
