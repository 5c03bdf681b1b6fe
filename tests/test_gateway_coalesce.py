"""CoalescingTransport: one write per loop iteration, in order, flushed before close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _gateway_harness import run
from grpclib.client import Channel
from grpclib.health.service import Health
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from leasehold.gateway._coalesce import CoalescingServer, CoalescingTransport

pytestmark = pytest.mark.timeout(30)


class RecordingTransport(asyncio.Transport):
    """What the socket saw: each write, and close/abort/eof in order."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[object] = []
        self.buffered = 0

    def write(self, data: Any) -> None:
        self.log.append(bytes(data))

    def close(self) -> None:
        self.log.append("close")

    def abort(self) -> None:
        self.log.append("abort")

    def write_eof(self) -> None:
        self.log.append("eof")

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


async def _next_iteration() -> None:
    # A flush queued with call_soon before this sleep runs before it returns.
    await asyncio.sleep(0)


def _wrapped() -> tuple[RecordingTransport, CoalescingTransport]:
    inner = RecordingTransport()
    return inner, CoalescingTransport(inner, asyncio.get_running_loop())


def test_writes_of_one_iteration_leave_as_one_in_order() -> None:
    async def body() -> None:
        inner, transport = _wrapped()
        transport.write(b"headers|")
        transport.write(b"")
        transport.write(bytearray(b"message|"))
        transport.write(memoryview(b"trailers"))
        assert inner.log == []  # nothing sent within the iteration
        await _next_iteration()
        assert inner.log == [b"headers|message|trailers"]
        transport.write(b"next")
        await _next_iteration()
        assert inner.log == [b"headers|message|trailers", b"next"]
        await _next_iteration()
        assert len(inner.log) == 2  # no empty writes while idle

    run(body)


def test_close_and_eof_send_what_is_queued_first() -> None:
    async def body() -> None:
        inner, transport = _wrapped()
        transport.write(b"last words")
        transport.write_eof()
        transport.close()
        await _next_iteration()  # the queued flush finds nothing left
        assert inner.log == [b"last words", "eof", "close"]

    run(body)


def test_abort_drops_what_is_queued_as_asyncio_does() -> None:
    async def body() -> None:
        inner, transport = _wrapped()
        transport.write(b"never sent")
        transport.abort()
        await _next_iteration()
        assert inner.log == ["abort"]

    run(body)


def test_buffer_size_counts_queued_bytes_and_extra_info_is_the_sockets() -> None:
    async def body() -> None:
        inner, transport = _wrapped()
        inner.buffered = 100
        transport.write(b"12345")
        assert transport.get_write_buffer_size() == 105
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
        await _next_iteration()
        assert transport.get_write_buffer_size() == 100

    run(body)


def test_a_real_connection_answers_concurrent_calls_in_fewer_sends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sends: list[int] = []
    real_flush = CoalescingTransport._flush

    def counting_flush(self: CoalescingTransport) -> None:
        sends.append(1)
        real_flush(self)

    monkeypatch.setattr(CoalescingTransport, "_flush", counting_flush)

    async def body() -> None:
        server = CoalescingServer([Health()])
        await server.start("127.0.0.1", 0)
        try:
            port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            channel = Channel("127.0.0.1", port)
            try:
                stub = HealthStub(channel)
                calls = 200
                replies = await asyncio.gather(
                    *(stub.Check(HealthCheckRequest()) for _ in range(calls))
                )
            finally:
                channel.close()
        finally:
            server.close()
            await server.wait_closed()
        assert all(r.status == HealthCheckResponse.SERVING for r in replies)
        # Three frames per response plus window updates, had each been its own send.
        assert 0 < len(sends) < calls

    run(body)
