"""The health stream: virtual time over in-memory streams, plus real loopback at the end.

Virtual-time tests use trio.testing's in-memory stream pairs (never real sockets
with the autojump clock): `memory_stream_pair` is a network that never pushes
back; `lockstep_stream_pair` is one where a writer waits until the reader reads,
which is how a watcher that never reads is made.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing
from _health_frames import next_frame, next_health
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    wrap_client_stream,
)

from leasehold import __version__, core
from leasehold.core import ApiVersion, CreateLease, Lease, SlotKey, SlotRef, SlotSpec
from leasehold.health._config import HealthConfig, HealthListenError
from leasehold.health._server import (
    LAG_TICK_S,
    MAX_CLIENT_MESSAGE_BYTES,
    SUBSCRIBE_TIMEOUT_S,
    CloseCode,
    HealthServer,
    HealthStream,
    serve_health,
)
from leasehold.health.frames import Health, Hello, Subscribe, decode
from leasehold.shards import Durability, Persistence, ShardSet, call, run_shards
from leasehold.shards._datadir import shard_dir

ANCHOR_NS = 1_767_225_600 * core.NANOS_PER_SECOND  # wall clock at trio time 0
KEYS = [SlotKey(f"m{i}", "svc", 1_767_254_400, 1800) for i in range(8)]
WALL = 1_767_225_600.0
RSS = 123_456_789


def counting_entropy() -> Callable[[], bytes]:
    counter = itertools.count()
    return lambda: next(counter).to_bytes(15, "big")


async def start_shards(
    nursery: trio.Nursery, mailbox: int = 64, persistence: Persistence | None = None
) -> ShardSet:
    shard_set: ShardSet = await nursery.start(
        lambda task_status: run_shards(
            [SlotSpec(key, spots=100, spots_total=100) for key in KEYS],
            shard_count=2,
            mailbox_capacity=mailbox,
            entropy=counting_entropy(),
            wall_anchor_ns=ANCHOR_NS,
            persistence=persistence,
            task_status=task_status,
        )
    )
    return shard_set


@pytest.fixture
async def shard_set(nursery: trio.Nursery) -> AsyncIterator[ShardSet]:
    shard_set = await start_shards(nursery)
    yield shard_set
    shard_set.close()


async def start_stream(
    nursery: trio.Nursery, shard_set: ShardSet, **config: object
) -> HealthStream:
    health = HealthStream(
        shard_set,
        HealthConfig(port=0, **config),  # type: ignore[arg-type]
        wall_clock=lambda: WALL + trio.current_time(),
        rss_bytes=lambda: RSS,
    )
    await nursery.start(health.run)
    return health


async def connect(
    nursery: trio.Nursery,
    health: HealthStream,
    pair: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]] = trio.testing.memory_stream_pair,
) -> WebSocketConnection:
    """A client websocket joined to the stream by an in-memory byte stream."""
    client_end, server_end = pair()
    nursery.start_soon(health.serve_stream, server_end)
    # trio-websocket annotates a socket stream but needs only trio.abc.Stream.
    return await wrap_client_stream(nursery, cast(trio.SocketStream, client_end), "health", "/")


async def subscribe(
    nursery: trio.Nursery, health: HealthStream, interval_s: float | None = None, **kw: object
) -> tuple[WebSocketConnection, Hello]:
    ws = await connect(nursery, health, **kw)  # type: ignore[arg-type]
    await ws.send_message(Subscribe(interval_s=interval_s).encode())
    hello = await next_frame(ws)
    assert isinstance(hello, Hello)
    return ws, hello


async def close_code(ws: WebSocketConnection) -> int:
    """The code the server closed with (after any frames still queued for us)."""
    with pytest.raises(ConnectionClosed) as closed:
        await read_until_closed(ws)
    assert closed.value.reason is not None
    return closed.value.reason.code


async def read_until_closed(ws: WebSocketConnection) -> None:
    while True:
        await ws.get_message()


async def lease(shard_set: ShardSet, key: SlotKey, reference: str, ttl_s: float) -> Lease:
    expiry = ANCHOR_NS + round((trio.current_time() + ttl_s) * core.NANOS_PER_SECOND)
    command = CreateLease(ApiVersion.V2, SlotRef(key, "tag"), reference, expiry)
    result = await call(shard_set.for_key(key.merchant_id, key.service_id), command)
    assert isinstance(result, Lease)
    return result


# ---- the stream in virtual time ----


async def test_hello_then_a_frame_every_interval_at_exact_instants(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set)
    ws, hello = await subscribe(nursery, health, 0.5)
    assert hello == Hello(interval_s=0.5, shard_count=2, server_version=__version__)
    for seq in (1, 2, 3, 4):
        frame = await next_health(ws)
        assert trio.current_time() == pytest.approx(0.5 * seq)
        assert frame.seq == seq
        assert frame.interval_s == pytest.approx(0.5)
        assert frame.at == pytest.approx(WALL + 0.5 * seq)
        assert [s.id for s in frame.shards] == [0, 1]
        assert frame.process.uptime_s == pytest.approx(0.5 * seq)
        assert frame.process.rss_bytes == RSS
        assert frame.process.watchers == 1
        assert frame.process.grpc_connections is None
        assert frame.process.loop_lag_s == pytest.approx(0.0)


async def test_without_an_interval_the_server_default_applies(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set, default_interval_s=2.0)
    ws, hello = await subscribe(nursery, health)
    assert hello.interval_s == 2.0
    await next_health(ws)
    assert trio.current_time() == pytest.approx(2.0)


async def test_frames_show_each_shards_load_leases_and_expiries(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set)
    health.grpc_connections = lambda: 7
    ws, _ = await subscribe(nursery, health, 1.0)
    owner = shard_set.for_key(KEYS[0].merchant_id, KEYS[0].service_id).shard_id
    for i in range(30):
        await lease(shard_set, KEYS[0], f"r{i}", ttl_s=2.5)

    first = await next_health(ws)  # t = 1: 30 leases granted in [0, 1]
    busy, idle = first.shards[owner], first.shards[1 - owner]
    assert busy.rps == {"CreateLease": pytest.approx(30.0)}
    assert (busy.live_leases, busy.requests_total) == (30, 30)
    assert 0 < busy.p50_s <= busy.p99_s <= busy.max_s
    assert (idle.rps, idle.live_leases, idle.max_s) == ({}, 0, 0.0)
    assert first.process.grpc_connections == 7
    # Memory-only shards keep no journal, and the frame says "none", not zero.
    assert (busy.fsync_s, busy.fsync_max_s, busy.journal_bytes) == (None, None, None)

    second = await next_health(ws)  # t = 2: nothing served, nothing expired yet
    assert second.shards[owner].rps == {"CreateLease": 0.0}
    assert second.shards[owner].max_s == 0.0
    assert second.shards[owner].expired == 0

    third = await next_health(ws)  # t = 3: all 30 expired at t = 2.5, on the shard's timer
    assert (third.shards[owner].live_leases, third.shards[owner].expired) == (0, 30)
    assert third.shards[owner].expired_total == 30


async def test_watchers_of_different_intervals_get_their_own_diffs(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set)
    fast, _ = await subscribe(nursery, health, 0.5)
    slow, _ = await subscribe(nursery, health, 1.0)
    owner = shard_set.for_key(KEYS[0].merchant_id, KEYS[0].service_id).shard_id
    for i in range(10):
        await lease(shard_set, KEYS[0], f"a{i}", ttl_s=100)
    await trio.sleep(0.75)
    for i in range(10):
        await lease(shard_set, KEYS[0], f"b{i}", ttl_s=100)

    fast_frames = [await next_health(fast), await next_health(fast)]
    slow_frame = await next_health(slow)
    assert [f.shards[owner].requests_total for f in fast_frames] == [10, 20]
    assert [f.shards[owner].rps["CreateLease"] for f in fast_frames] == [20.0, 20.0]
    assert slow_frame.seq == 1
    assert slow_frame.shards[owner].rps["CreateLease"] == pytest.approx(20.0)  # 20 in 1 s
    # Each interval's destructive max reading reaches every group.
    assert fast_frames[0].shards[owner].max_s > 0
    assert slow_frame.shards[owner].max_s >= fast_frames[0].shards[owner].max_s


async def test_loop_lag_is_how_late_a_fixed_tick_woke(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set)
    ws, _ = await subscribe(nursery, health, 1.0)
    await trio.sleep(0.51)  # just after the probe's tick at 0.5
    autojump_clock.jump(0.3)  # the loop is stuck for 0.3 s: nothing runs
    frame = await next_health(ws)
    assert frame.process.loop_lag_s == pytest.approx(0.81 - (0.5 + LAG_TICK_S))
    assert (await next_health(ws)).process.loop_lag_s == pytest.approx(0.0)


# ---- slow watchers and many watchers ----


async def test_a_watcher_that_never_reads_loses_frames_and_slows_nothing(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set, buffer_frames=2)
    # Lockstep: the server's send waits for the client to read, which it never does.
    stuck = await connect(nursery, health, pair=trio.testing.lockstep_stream_pair)
    await stuck.send_message(Subscribe(interval_s=0.1).encode())
    live, _ = await subscribe(nursery, health, 0.1)
    dropped_at: dict[int, int] = {}
    for seq in range(1, 31):
        await lease(shard_set, KEYS[seq % len(KEYS)], f"r{seq}", ttl_s=100)
        frame = await next_health(live)
        # The live watcher's frames keep their exact instants and never skip a seq.
        assert frame.seq == seq
        assert trio.current_time() == pytest.approx(0.1 * seq)
        assert sum(s.requests_total for s in frame.shards) == seq
        dropped_at[seq] = frame.process.frames_dropped
    # The stuck watcher's socket and client library hold a few frames and its buffer
    # two more; after that every frame is dropped for it, one per interval, and counted.
    assert dropped_at[30] - dropped_at[20] == 10
    assert dropped_at[30] >= 30 - 6
    # A frame reports the drops before it; it was then dropped for the stuck watcher too.
    assert health.frames_dropped == dropped_at[30] + 1
    assert frame.process.watchers == 2


async def test_fifty_watchers_each_get_every_frame(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set)
    watchers = [(await subscribe(nursery, health, 0.5))[0] for _ in range(50)]
    await lease(shard_set, KEYS[0], "r", ttl_s=100)
    for seq in (1, 2, 3):
        messages = [await ws.get_message() for ws in watchers]
        assert trio.current_time() == pytest.approx(0.5 * seq)
        assert len(set(messages)) == 1  # built and encoded once for all fifty
        frame = decode(cast(bytes, messages[0]))
        assert isinstance(frame, Health)
        assert (frame.seq, frame.process.watchers) == (seq, 50)
    assert health.frames_dropped == 0
    assert health.frames_sent == 50 * 4  # hello + 3 frames each


# ---- the protocol's edges: close codes ----


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{'v': 1}", CloseCode.UNSUPPORTED_DATA),
        (b"\xc1 not msgpack", CloseCode.POLICY_VIOLATION),
        (Hello(interval_s=1.0, shard_count=1).encode(), CloseCode.POLICY_VIOLATION),
        (Subscribe(interval_s=1.0).encode()[:-3], CloseCode.POLICY_VIOLATION),
        (b"\x00" * (MAX_CLIENT_MESSAGE_BYTES + 1), CloseCode.MESSAGE_TOO_BIG),
    ],
)
async def test_a_bad_or_oversized_subscribe_closes_that_connection_only(
    nursery: trio.Nursery,
    shard_set: ShardSet,
    autojump_clock: trio.testing.MockClock,
    message: str | bytes,
    code: CloseCode,
) -> None:
    health = await start_stream(nursery, shard_set)
    bystander, _ = await subscribe(nursery, health, 0.5)
    ws = await connect(nursery, health)
    await ws.send_message(message)
    assert await close_code(ws) == code
    assert (await next_health(bystander)).seq == 1  # the others go on
    assert health.watcher_count == 1


async def test_any_message_after_the_subscribe_closes_with_1008(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set)
    ws, _ = await subscribe(nursery, health, 0.5)
    await ws.send_message(Subscribe(interval_s=0.1).encode())
    assert await close_code(ws) == CloseCode.POLICY_VIOLATION
    await trio.sleep(1)
    assert health.watcher_count == 0


async def test_a_silent_client_is_closed_when_the_subscribe_is_overdue(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set)
    ws = await connect(nursery, health)
    assert await close_code(ws) == CloseCode.POLICY_VIOLATION
    assert trio.current_time() == pytest.approx(SUBSCRIBE_TIMEOUT_S)


@pytest.mark.parametrize(("offered", "admitted"), [(None, False), ("guess", False), ("s3", True)])
async def test_a_token_is_required_when_configured(
    nursery: trio.Nursery,
    shard_set: ShardSet,
    autojump_clock: trio.testing.MockClock,
    offered: str | None,
    admitted: bool,
) -> None:
    health = await start_stream(nursery, shard_set, token="s3")
    ws = await connect(nursery, health)
    await ws.send_message(Subscribe(interval_s=0.5, token=offered).encode())
    if admitted:
        assert isinstance(await next_frame(ws), Hello)
        assert isinstance(await next_frame(ws), Health)
    else:
        assert await close_code(ws) == CloseCode.POLICY_VIOLATION
        assert health.watcher_count == 0


async def test_connections_beyond_the_limit_are_told_to_try_again_later(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set, max_watchers=2)
    await subscribe(nursery, health, 0.5)
    await subscribe(nursery, health, 0.5)
    third = await connect(nursery, health)
    await third.send_message(Subscribe(interval_s=0.5).encode())
    assert await close_code(third) == CloseCode.TRY_AGAIN_LATER


async def test_stopping_closes_every_watcher_with_going_away(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set)
    watchers = [(await subscribe(nursery, health, 0.5))[0] for _ in range(3)]
    health.stop()
    for ws in watchers:
        assert await close_code(ws) == CloseCode.GOING_AWAY
    with trio.fail_after(1):
        await health.wait_stopped()


async def test_a_watcher_leaving_ends_its_interval_group(
    nursery: trio.Nursery, shard_set: ShardSet, autojump_clock: trio.testing.MockClock
) -> None:
    health = await start_stream(nursery, shard_set)
    ws, _ = await subscribe(nursery, health, 0.5)
    await next_health(ws)
    await ws.aclose()
    await trio.sleep(2)
    assert health.watcher_count == 0
    assert health.frames_dropped == 0
    again, _ = await subscribe(nursery, health, 0.5)
    assert (await next_health(again)).seq == 1  # a new group, counting afresh


# ---- real loopback, real websocket client (no virtual time) ----


@asynccontextmanager
async def real_client(nursery: trio.Nursery, port: int) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client over a TCP stream this test owns and closes.

    trio-websocket 0.12 leaves its TCP stream open when the server closes first
    (its aclose returns early once a close reason is set), so the stream is ours.
    """
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        ws = await wrap_client_stream(nursery, stream, "127.0.0.1", "/")
        async with ws:
            yield ws


@pytest.mark.timeout(20)
async def test_real_loopback_with_a_real_websocket_client(nursery: trio.Nursery) -> None:
    shard_set = await start_shards(nursery)
    server: HealthServer = await nursery.start(
        serve_health, shard_set, HealthConfig(port=0, token="t")
    )
    assert server.port > 0
    async with real_client(nursery, server.port) as ws:
        await ws.send_message(Subscribe(interval_s=0.1, token="t").encode())
        hello = Hello(interval_s=0.1, shard_count=2, server_version=__version__)
        assert await next_frame(ws) == hello
        await lease(shard_set, KEYS[0], "r", ttl_s=100)
        frames = [await next_health(ws) for _ in range(3)]
    assert [f.seq for f in frames] == [1, 2, 3]
    assert all(f.interval_s == pytest.approx(0.1, abs=0.05) for f in frames)
    assert (frames[-1].process.rss_bytes or 0) > 0
    assert sum(s.live_leases for s in frames[-1].shards) == 1
    async with real_client(nursery, server.port) as ws:
        await ws.send_message(Subscribe(interval_s=0.1, token="wrong").encode())
        assert await close_code(ws) == CloseCode.POLICY_VIOLATION
    server.stream.stop()
    with trio.fail_after(5):
        await server.stream.wait_stopped()
    shard_set.close()


@pytest.mark.timeout(20)
async def test_shards_with_a_journal_report_fsync_and_bytes(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # Real files and worker threads: the real clock, under an absolute timeout.
    for shard_id in (0, 1):
        shard_dir(tmp_path, shard_id).mkdir()  # as `leasehold serve` prepares the data dir
    shard_set = await start_shards(nursery, persistence=Persistence(tmp_path, Durability.SYNC))
    health = await start_stream(nursery, shard_set)
    ws, _ = await subscribe(nursery, health, 0.1)
    owner = shard_set.for_key(KEYS[0].merchant_id, KEYS[0].service_id).shard_id
    await lease(shard_set, KEYS[0], "r", ttl_s=100)  # SYNC: answered after its fsync
    frame = await next_health(ws)
    written, idle = frame.shards[owner], frame.shards[1 - owner]
    assert written.fsync_s is not None
    assert written.fsync_max_s is not None
    assert 0 < written.fsync_s <= written.fsync_max_s
    assert (written.journal_bytes or 0) > 0
    # A journal that wrote nothing yet is a journal at zero, not "no journal".
    assert (idle.fsync_s, idle.fsync_max_s, idle.journal_bytes) == (0.0, 0.0, 0)
    health.stop()
    await ws.aclose()
    shard_set.close()


@pytest.mark.timeout(20)
async def test_a_busy_port_is_a_health_listen_error(nursery: trio.Nursery) -> None:
    shard_set = await start_shards(nursery)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HealthListenError, match=f"127.0.0.1:{port}"):
            await nursery.start(serve_health, shard_set, HealthConfig(port=port))
    shard_set.close()
