"""The health stream's doors: unsubscribed connections have their own few places, and wss://.

Virtual-time tests use in-memory streams (a "silent" client is a stream that never
sends a byte); the TLS tests use real loopback sockets with certificates made at
run time (trustme) and an absolute timeout.
"""

from __future__ import annotations

import itertools
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing
import trustme
from _health_frames import next_frame, next_health
from trio_websocket import WebSocketConnection, wrap_client_stream

from leasehold.core import SlotKey, SlotSpec
from leasehold.gateway import TlsSettings, certificate_names, server_context
from leasehold.health._config import HealthConfig
from leasehold.health._server import (
    HANDSHAKE_TIMEOUT_S,
    HealthServer,
    HealthStream,
    serve_health,
)
from leasehold.health.frames import Hello, Subscribe
from leasehold.health.watch import client_context, open_watch
from leasehold.shards import ShardSet, run_shards

KEYS = [SlotKey(f"m{i}", "svc", 1_767_254_400, 1800) for i in range(4)]


def counting_entropy() -> Callable[[], bytes]:
    counter = itertools.count()
    return lambda: next(counter).to_bytes(15, "big")


@pytest.fixture
async def shard_set(nursery: trio.Nursery) -> AsyncIterator[ShardSet]:
    shard_set: ShardSet = await nursery.start(
        lambda task_status: run_shards(
            [SlotSpec(key, spots=10, spots_total=10) for key in KEYS],
            shard_count=2,
            mailbox_capacity=16,
            entropy=counting_entropy(),
            task_status=task_status,
        )
    )
    yield shard_set
    shard_set.close()


async def start_stream(
    nursery: trio.Nursery, shard_set: ShardSet, **config: object
) -> HealthStream:
    health = HealthStream(shard_set, HealthConfig(port=0, **config))  # type: ignore[arg-type]
    await nursery.start(health.run)
    return health


def silent(nursery: trio.Nursery, health: HealthStream) -> trio.abc.Stream:
    """A client that connects and never says a word (the lock-out attack)."""
    client_end, server_end = trio.testing.memory_stream_pair()
    nursery.start_soon(health.serve_stream, server_end)
    return client_end


async def watcher(nursery: trio.Nursery, health: HealthStream, token: str) -> WebSocketConnection:
    client_end, server_end = trio.testing.memory_stream_pair()
    nursery.start_soon(health.serve_stream, server_end)
    ws = await wrap_client_stream(nursery, cast(trio.SocketStream, client_end), "health", "/")
    await ws.send_message(Subscribe(interval_s=0.5, token=token).encode())
    assert isinstance(await next_frame(ws), Hello)
    return ws


async def test_silent_connections_never_take_or_keep_out_a_watcher(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set, token="t", max_watchers=2, max_pending=8)
    first = await watcher(nursery, health, "t")
    quiet = [silent(nursery, health) for _ in range(300)]
    await trio.testing.wait_all_tasks_blocked()
    assert health._pending.count == 8  # never more than its own places
    assert health.pending_evicted == 300 - 8
    second = await watcher(nursery, health, "t")  # gets in: takes a silent one's place
    assert health.watcher_count == 2
    assert (await next_health(first)).seq >= 1
    assert (await next_health(second)).seq >= 1
    await trio.sleep(HANDSHAKE_TIMEOUT_S + 0.1)
    assert health._pending.count == 0  # the silent ones that were left timed out
    assert health.watcher_count == 2
    for stream in quiet:
        await stream.aclose()


async def test_a_subscribed_watcher_is_never_evicted(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set, max_pending=2)
    ws = await watcher(nursery, health, "")
    for _ in range(50):
        silent(nursery, health)
    await trio.testing.wait_all_tasks_blocked()
    assert health.pending_evicted == 48
    frames = [await next_health(ws) for _ in range(3)]
    assert [f.seq for f in frames] == [1, 2, 3]


# ---- wss:// on real loopback ----


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pems(tmp_path: Path, ca: trustme.CA) -> dict[str, Path]:
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key", "watcher", "wkey")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    client = ca.issue_cert("watcher.example")
    client.cert_chain_pems[0].write_to_path(str(paths["watcher"]))
    client.private_key_pem.write_to_path(str(paths["wkey"]))
    return paths


async def serve_wss(
    nursery: trio.Nursery, shard_set: ShardSet, pems: dict[str, Path], client_name: str
) -> HealthServer:
    context = server_context(TlsSettings(pems["cert"], pems["key"], pems["ca"], client_name))
    config = HealthConfig(
        port=0,
        ssl_context=context,
        client_cert_ok=lambda cert: client_name in certificate_names(cert),
    )
    server: HealthServer = await nursery.start(serve_health, shard_set, config)
    return server


@pytest.mark.timeout(20)
async def test_wss_serves_a_watcher_with_the_right_client_certificate(
    nursery: trio.Nursery, shard_set: ShardSet, pems: dict[str, Path]
) -> None:
    server = await serve_wss(nursery, shard_set, pems, "watcher.example")
    url = f"wss://127.0.0.1:{server.port}/"
    context = client_context(pems["ca"], pems["watcher"], pems["wkey"])
    async with open_watch(url, interval_s=0.1, ssl_context=context) as (ws, hello):
        assert hello.shard_count == 2
        assert (await next_health(ws)).seq == 1
    server.stream.stop()


UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def upgrade_answer(port: int, context: ssl.SSLContext | None) -> bytes | None:
    """What the server answers a websocket upgrade with; None if it breaks the connection.

    Raw, not open_watch: under TLS 1.3 a refused client certificate surfaces only on
    the client's next read, which trio-websocket's client leaves to its timeout.
    """
    with trio.fail_after(5):
        if context is None:
            stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
        else:
            stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=context)
        async with stream:
            try:
                await stream.send_all(UPGRADE)
                return bytes(await stream.receive_some())
            except trio.BrokenResourceError:
                return None


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "case", ["the right certificate", "no client certificate", "another name", "plain ws://"]
)
async def test_wss_refuses_what_the_grpc_port_refuses(
    nursery: trio.Nursery, shard_set: ShardSet, pems: dict[str, Path], case: str
) -> None:
    name = "someone.else" if case == "another name" else "watcher.example"
    server = await serve_wss(nursery, shard_set, pems, name)
    with_cert = case != "no client certificate"
    context = client_context(
        pems["ca"], pems["watcher"] if with_cert else None, pems["wkey"] if with_cert else None
    )
    answer = await upgrade_answer(server.port, None if case == "plain ws://" else context)
    if case == "the right certificate":
        assert answer is not None
        assert answer.startswith(b"HTTP/1.1 101")
    else:
        assert not answer  # broken, or closed without a word
    server.stream.stop()
