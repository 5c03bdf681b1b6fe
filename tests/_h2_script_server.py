"""A scripted HTTP/2 gRPC server on loopback (the `h2` library), for what a real server will
not do on demand: refuse with pushback, reset a stream, GOAWAY, stay silent, cap streams.

The request's path picks the behaviour (`/t/ok`, `/t/refuse`, `/t/rst`, `/t/hang`,
`/t/slow`, `/t/goaway`); everything the client sent is recorded for the test to check.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    DataReceived,
    Event,
    PingAckReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
)
from h2.settings import SettingCodes

ECHO_PREFIX = b"echo:"


@dataclass
class Seen:
    """What the server saw: request headers by stream, resets by stream, peak open streams."""

    headers: dict[int, dict[str, str]] = field(default_factory=dict)
    resets: dict[int, int] = field(default_factory=dict)
    ping_acks: int = 0
    open_now: int = 0
    open_peak: int = 0


class ScriptedServer(asyncio.Protocol):
    def __init__(self, seen: Seen, max_streams: int) -> None:
        self.seen = seen
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.max_streams = max_streams
        self.transport: asyncio.Transport | None = None
        self.bodies: dict[int, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports (the load processes' loop) do not subclass asyncio's.
        self.transport = cast(asyncio.Transport, transport)
        self.conn.initiate_connection()
        self.conn.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        self.conn.ping(b"12345678")
        self.flush()

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            self.on_event(event)
        self.flush()

    def on_event(self, event: Event) -> None:
        seen = self.seen
        if isinstance(event, RequestReceived) and event.stream_id is not None:
            headers = {str(k): str(v) for k, v in event.headers or []}
            seen.headers[event.stream_id] = headers
            seen.open_now += 1
            seen.open_peak = max(seen.open_peak, seen.open_now)
        elif isinstance(event, DataReceived) and event.stream_id is not None:
            self.bodies[event.stream_id] = self.bodies.get(event.stream_id, b"") + event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, StreamEnded) and event.stream_id is not None:
            self.answer(event.stream_id, seen.headers[event.stream_id][":path"])
        elif isinstance(event, StreamReset) and event.stream_id is not None:
            seen.resets[event.stream_id] = int(event.error_code or 0)
            seen.open_now -= 1
        elif isinstance(event, PingAckReceived):
            seen.ping_acks += 1

    def answer(self, stream_id: int, path: str) -> None:
        if path == "/t/ok":
            self.reply_ok(stream_id)
        elif path == "/t/slow":
            asyncio.get_running_loop().call_later(0.05, self.reply_ok, stream_id)
        elif path == "/t/refuse":
            self.trailers_only(stream_id, "8", ("grpc-retry-pushback-ms", "250"))
        elif path == "/t/rst":
            self.conn.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            self.seen.open_now -= 1
        elif path == "/t/goaway":
            # Answered, then 100 ms later GOAWAY naming it the last stream processed: a
            # stream opened meanwhile was not, and its call must end UNAVAILABLE.
            self.reply_ok(stream_id)
            asyncio.get_running_loop().call_later(0.1, self.goaway, stream_id)
        # /t/hang: no answer; the client's deadline ends the call.

    def goaway(self, last_stream_id: int) -> None:
        # Raw bytes: h2 sends nothing more after its own GOAWAY, and the test wants the
        # connection kept open for the streams up to last_stream_id.
        payload = last_stream_id.to_bytes(4, "big") + (0).to_bytes(4, "big")
        header = len(payload).to_bytes(3, "big") + bytes([7, 0]) + (0).to_bytes(4, "big")
        if self.transport is not None:
            self.transport.write(header + payload)

    def reply_ok(self, stream_id: int) -> None:
        body = ECHO_PREFIX + self.bodies.get(stream_id, b"")[5:]
        message = b"\x00" + len(body).to_bytes(4, "big") + body
        self.conn.send_headers(
            stream_id, [(":status", "200"), ("content-type", "application/grpc")]
        )
        self.conn.send_data(stream_id, message)
        self.conn.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)
        self.seen.open_now -= 1
        self.flush()

    def trailers_only(self, stream_id: int, status: str, *extra: tuple[str, str]) -> None:
        headers = [(":status", "200"), ("content-type", "application/grpc")]
        headers += [("grpc-status", status), ("grpc-message", "said%20so"), *extra]
        self.conn.send_headers(stream_id, headers, end_stream=True)
        self.seen.open_now -= 1
        self.flush()


@asynccontextmanager
async def scripted_server(
    max_streams: int = 100, host: str = "127.0.0.1"
) -> AsyncIterator[tuple[int, Seen]]:
    """(port, what the server saw) of a server on a free loopback port."""
    seen = Seen()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ScriptedServer(seen, max_streams), host, 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
