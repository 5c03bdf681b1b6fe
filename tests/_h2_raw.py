"""A raw HTTP/2 client over a loopback socket (the `h2` library), for frames grpcio never sends."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, Event
from h2.exceptions import ProtocolError

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"  # a gRPC frame holding an empty protobuf message


def grpc_frame(body: bytes) -> bytes:
    return struct.pack(">?I", False, len(body)) + body


def request_headers(path: str) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]


class RawH2:
    """One client connection; `events_until` reads what the server sends, with a deadline."""

    def __init__(self, port: int, *, preface: bool = True, timeout_s: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.events: list[Event] = []
        self.closed = False
        if preface:
            self.conn.initiate_connection()
            self.flush()

    def flush(self) -> None:
        self.send_raw(self.conn.data_to_send())

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def call(self, path: str, body: bytes = EMPTY_MESSAGE, *, send: bool = True) -> int:
        """Open a stream with a unary request; flushed unless `send` is False."""
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, request_headers(path))
        self.conn.send_data(stream_id, body, end_stream=True)
        if send:
            self.flush()
        return stream_id

    def events_until(self, done: Callable[[list[Event]], bool], timeout_s: float) -> list[Event]:
        """Read until `done(all events so far)`, the server closes, or the time is up."""
        deadline = time.monotonic() + timeout_s
        while not done(self.events) and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                break
            try:
                self.events.extend(self.conn.receive_data(data))
            except ProtocolError:
                self.closed = True
            self.flush_quietly()
        return self.events

    def flush_quietly(self) -> None:
        try:
            self.send_raw(self.conn.data_to_send())
        except OSError:
            self.closed = True

    def goaway(self) -> ConnectionTerminated | None:
        return next((e for e in self.events if isinstance(e, ConnectionTerminated)), None)

    def wait_closed(self, timeout_s: float) -> bool:
        self.events_until(lambda _: False, timeout_s)
        return self.closed

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
