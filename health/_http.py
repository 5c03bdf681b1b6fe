"""Plain HTTP on the health port: `GET /metrics`, beside the websocket.

trio-websocket answers any request that is not a websocket upgrade with an empty
400, so the health stream (HealthStream._handshake) reads each request head first:
an upgrade goes on to the websocket server with the bytes read so far replayed;
anything else gets one HTTP answer (metrics, 404, 405 or 431) and is closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from leasehold.health._metrics import CONTENT_TYPE

# A request head larger than this is refused (a websocket handshake is ~250 bytes).
MAX_HEAD_BYTES = 8192
HEAD_TIMEOUT_S = 5.0
_END = b"\r\n\r\n"
_HELP = b"leasehold health port: GET /metrics, or a websocket (leasehold watch)\n"


class Replayed(trio.abc.Stream):
    """A stream whose first received bytes are ones already read from it."""

    def __init__(self, first: bytes, stream: trio.abc.Stream) -> None:
        self._first = first
        self._stream = stream

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._first:
            size = len(self._first) if max_bytes is None else max_bytes
            data, self._first = self._first[:size], self._first[size:]
            return data
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def read_head(stream: trio.abc.Stream) -> bytes:
    """Bytes up to the end of the request head (or MAX_HEAD_BYTES, or end of stream)."""
    head = b""
    while _END not in head and len(head) < MAX_HEAD_BYTES:
        try:
            data = await stream.receive_some(MAX_HEAD_BYTES - len(head))
        except trio.BrokenResourceError:
            return head
        if not data:
            break
        head += data
    return head


def is_upgrade(head: bytes) -> bool:
    lines = head.split(b"\r\n")
    return any(
        name.strip().lower() == b"upgrade" and b"websocket" in value.lower()
        for name, _, value in (line.partition(b":") for line in lines[1:])
    )


async def answer(head: bytes, metrics: Callable[[], Awaitable[bytes]]) -> bytes:
    """The whole HTTP response to a request head that is not a websocket upgrade."""
    if _END not in head:
        return _response(b"431 Request Header Fields Too Large", b"text/plain", b"")
    method, _, rest = head.partition(b" ")
    target = rest.partition(b" ")[0].partition(b"?")[0]
    if method not in (b"GET", b"HEAD"):
        return _response(b"405 Method Not Allowed", b"text/plain", _HELP, extra=b"Allow: GET\r\n")
    if target != b"/metrics":
        return _response(b"404 Not Found", b"text/plain", _HELP)
    try:
        body = await metrics()
    except Exception as problem:  # a metrics bug must not take the server down with it
        text = f"metrics failed: {type(problem).__name__}: {problem}\n".encode()
        return _response(b"500 Internal Server Error", b"text/plain", text)
    return _response(b"200 OK", CONTENT_TYPE.encode(), body, head_only=method == b"HEAD")


def _response(
    status: bytes, content_type: bytes, body: bytes, *, extra: bytes = b"", head_only: bool = False
) -> bytes:
    head = (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type + b"\r\n"
        b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n"
        + extra
        + b"\r\n"
    )
    return head if head_only else head + body
