"""The overload probe's HTTP/2 gRPC client (bench/_h2call.py, bench/_h2wire.py): its bytes,
and its calls against a scripted server (refusal, reset, GOAWAY, deadline, stream cap)
and against a spawned Leasehold server (statuses and trailers)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import hpack
import pytest
from _h2_script_server import ECHO_PREFIX, scripted_server
from _server_process import running_server

from leasehold.bench import _h2wire as w
from leasehold.bench._client import _H2Method
from leasehold.bench._fastloop import run as run_loop
from leasehold.bench._feed import SlotGroup, build_slots, write_feed
from leasehold.bench._h2call import H2Channel
from leasehold.bench._loadgen import CONNECTIONS_PER_CLIENT, _h2_channels
from leasehold.bench._overload_load import CREATE_LEASE, LeaseBodies, lease_request
from leasehold.core import NANOS_PER_SECOND, SlotKey
from leasehold.proto.v2 import booking_pb2 as pb2

T = TypeVar("T")
LIMIT_S = 20.0  # every async test's absolute limit


def run(test: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(LIMIT_S):
            return await test()

    return asyncio.run(bounded())


# --- bytes --------------------------------------------------------------------------


def decoded(block: bytes) -> list[tuple[str, str]]:
    return [(k.decode(), v.decode()) for k, v in hpack.Decoder().decode(block, raw=True)]


def test_the_request_block_decodes_to_a_grpc_request_with_its_timeout() -> None:
    block = w.request_block("/pkg.Svc/Method", "127.0.0.1:9") + w.grpc_timeout(0.1)
    assert decoded(block) == [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/pkg.Svc/Method"),
        (":authority", "127.0.0.1:9"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("user-agent", "leasehold-bench-h2"),
        ("grpc-timeout", "100m"),
    ]


@pytest.mark.parametrize(("seconds", "value"), [(0.0, "1m"), (2.5, "2500m"), (1e9, "99999999m")])
def test_grpc_timeout_is_whole_milliseconds_within_eight_digits(seconds: float, value: str) -> None:
    assert decoded(w.grpc_timeout(seconds)) == [("grpc-timeout", value)]


def test_a_long_path_needs_a_multi_byte_length_and_still_decodes() -> None:
    path = "/" + "p" * 300
    assert decoded(w.request_block(path, "a"))[2] == (":path", path)


def test_frames_split_anywhere_come_out_whole_and_in_order() -> None:
    data = w.settings({w.Setting.MAX_CONCURRENT_STREAMS: 7}) + w.rst_stream(3, 8)
    reader = w.FrameReader()
    frames = [f for i in range(len(data)) for f in reader.feed(data[i : i + 1])]
    assert [(f.type, f.stream_id) for f in frames] == [(4, 0), (3, 3)]
    assert w.parse_settings(frames[0].payload) == {3: 7}
    assert w.parse_u32(frames[1].payload, "RST_STREAM") == 8


def test_a_frame_over_the_size_this_client_allows_is_refused_from_its_header() -> None:
    header = (w.MAX_FRAME + 1).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01"
    with pytest.raises(w.WireError, match="over 16384"):
        list(w.FrameReader().feed(header))


def test_replies_map_to_grpc_statuses() -> None:
    ok = w.reply_from({"grpc-status": "0"}, w.grpc_message(b"xyz"))
    assert (ok.code, ok.body) == (w.OK, b"xyz")
    refused = w.reply_from({"grpc-status": "8", "grpc-message": "behind%3B%20later"}, b"")
    assert (refused.code_name, refused.message) == ("RESOURCE_EXHAUSTED", "behind; later")
    assert w.reply_from({":status": "503"}, b"").code == w.UNAVAILABLE
    assert w.reply_from({}, b"").code == w.UNKNOWN  # no grpc-status
    assert w.reply_from({"grpc-status": "0"}, b"\x00\x00\x00\x00\x09ab").code == w.INTERNAL


def test_lease_bodies_parse_as_the_request_built_field_by_field() -> None:
    keys = [SlotKey("m", "s", 1_800_000_000, 1800, "", "", 0)]
    expiry_ns = 1_900_000_000 * NANOS_PER_SECOND + 5
    body = LeaseBodies(keys, expiry_ns).body(0, "ref-" + "x" * 200)
    expected = lease_request(keys[0], "ref-" + "x" * 200, expiry_ns)
    assert pb2.CreateLeaseRequest.FromString(body) == expected


# --- against a scripted server ------------------------------------------------------


def test_ok_refusal_with_pushback_and_reset_streams_become_grpc_replies() -> None:
    async def body() -> None:
        async with scripted_server() as (port, seen):
            channel = await H2Channel.connect("127.0.0.1", port)
            ok = await channel.call(w.request_block("/t/ok", "x"), b"hello", 5.0)
            assert (ok.code, ok.body) == (w.OK, ECHO_PREFIX + b"hello")
            refused = await channel.call(w.request_block("/t/refuse", "x"), b"", 5.0)
            assert (refused.code_name, refused.message) == ("RESOURCE_EXHAUSTED", "said so")
            assert (refused.trailers or {})["grpc-retry-pushback-ms"] == "250"
            reset = await channel.call(w.request_block("/t/rst", "x"), b"", 5.0)
            assert reset.code_name == "UNAVAILABLE"  # REFUSED_STREAM: safe to retry
            assert seen.ping_acks == 1  # the server's PING was answered
            timeout = float(seen.headers[1]["grpc-timeout"].rstrip("m")) / 1000
            assert 4.0 < timeout <= 5.0
            channel.close()

    run(body)


@pytest.mark.timeout(60)  # also bounds the loop's close, outside the asyncio timeout
@pytest.mark.parametrize("fast", [False, True], ids=["asyncio", "uvloop"])
def test_a_reply_says_when_it_was_received_on_either_loop(fast: bool) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        assert type(loop).__module__.startswith("uvloop") == fast
        async with scripted_server() as (port, _seen):
            channel = await H2Channel.connect("127.0.0.1", port)
            started = time.monotonic()
            ok = await channel.call(w.request_block("/t/ok", "x"), b"hello", 5.0)
            assert (ok.code, ok.body) == (w.OK, ECHO_PREFIX + b"hello")
            assert started < ok.received_at <= time.monotonic()
            expired = await channel.call(w.request_block("/t/hang", "x"), b"", 0.05)
            # The client's own refusal: no reply came.
            assert (expired.code_name, expired.received_at) == ("DEADLINE_EXCEEDED", 0.0)
            channel.close()

    async def bounded() -> None:
        async with asyncio.timeout(LIMIT_S):
            await body()

    run_loop(bounded(), fast=fast)


def test_grpc_timeout_is_the_time_left_when_the_request_is_written() -> None:
    async def body() -> None:
        async with scripted_server() as (port, seen):
            channel = await H2Channel.connect("127.0.0.1", port)
            pending = asyncio.ensure_future(channel.call(w.request_block("/t/ok", "x"), b"", 5.0))
            # The call is made, then the loop is held up 300 ms before it writes (a busy
            # or starved client): the server must be told the time left then, not 5 s.
            asyncio.get_running_loop().call_soon(time.sleep, 0.3)
            assert (await pending).code == w.OK
            timeout = float(seen.headers[1]["grpc-timeout"].rstrip("m")) / 1000
            assert 4.0 < timeout <= 4.7
            channel.close()

    run(body)


def test_a_deadline_ends_the_call_on_the_client_and_cancels_the_stream() -> None:
    async def body() -> None:
        async with scripted_server() as (port, seen):
            channel = await H2Channel.connect("127.0.0.1", port)
            started = time.monotonic()
            reply = await channel.call(w.request_block("/t/hang", "x"), b"", 0.2)
            assert reply.code_name == "DEADLINE_EXCEEDED"
            assert time.monotonic() - started >= 0.2
            ok = await channel.call(w.request_block("/t/ok", "x"), b"", 5.0)  # still usable
            assert ok.code == w.OK
            assert seen.resets == {1: 8}  # RST_STREAM(CANCEL)
            channel.close()

    run(body)


def test_no_more_streams_than_the_servers_limit_and_queued_calls_keep_their_deadline() -> None:
    async def body() -> None:
        async with scripted_server(max_streams=2) as (port, seen):
            channel = await H2Channel.connect("127.0.0.1", port)
            slow = w.request_block("/t/slow", "x")
            replies = await asyncio.gather(*(channel.call(slow, b"", 5.0) for _ in range(6)))
            assert [r.code for r in replies] == [w.OK] * 6
            assert seen.open_peak == 2
            hang = w.request_block("/t/hang", "x")
            stuck = [asyncio.ensure_future(channel.call(hang, b"", 5.0)) for _ in range(2)]
            await asyncio.sleep(0.05)  # both have their streams
            queued = await channel.call(slow, b"", 0.1)  # both streams held: it waits, then
            assert (queued.code_name, "waiting" in queued.message) == ("DEADLINE_EXCEEDED", True)
            channel.close()
            assert [(await s).code_name for s in stuck] == ["UNAVAILABLE"] * 2

    run(body)


def test_goaway_fails_the_streams_it_did_not_process_and_refuses_new_calls() -> None:
    async def body() -> None:
        async with scripted_server() as (port, _):
            channel = await H2Channel.connect("127.0.0.1", port)
            hang = w.request_block("/t/hang", "x")
            first = asyncio.ensure_future(channel.call(hang, b"", 5.0))  # stream 1
            await asyncio.sleep(0.05)
            goaway = await channel.call(w.request_block("/t/goaway", "x"), b"", 5.0)
            assert goaway.code == w.OK  # stream 3, the last the server will have processed
            later = await channel.call(hang, b"", 5.0)  # stream 5, before the GOAWAY lands
            assert (later.code_name, later.message) == (
                "UNAVAILABLE",
                "server: GOAWAY before this stream",
            )
            after = await channel.call(hang, b"", 5.0)
            assert (after.code_name, after.message) == (
                "UNAVAILABLE",
                "server: GOAWAY (error code 0)",
            )
            channel.close()
            assert (await first).code_name == "UNAVAILABLE"  # connection closed under it

    run(body)


# --- against Leasehold --------------------------------------------------------------


@pytest.fixture(scope="module")
def leasehold(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[SlotKey]]]:
    tmp = tmp_path_factory.mktemp("h2call")
    now = int(time.time())
    slots = build_slots([SlotGroup("h2", 4, 10)], now)
    feed = write_feed(Path(tmp) / "feed.json", slots, now)
    with running_server(tmp / "data", "--feed", str(feed), "--durability", "none") as server:
        yield server.target, [s.key for s in slots]


@pytest.mark.timeout(120)
def test_leasehold_grants_a_lease_and_names_a_bad_body_and_an_unknown_method(
    leasehold: tuple[str, list[SlotKey]],
) -> None:
    target, keys = leasehold
    bodies = LeaseBodies(keys, (int(time.time()) + 600) * NANOS_PER_SECOND)

    async def body() -> None:
        host, port = target.rsplit(":", 1)
        channel = await H2Channel.connect(host, int(port))
        block = w.request_block(CREATE_LEASE, target)
        ok = await channel.call(block, bodies.body(0, "h2-ref-1"), 5.0)
        assert (ok.code, (ok.trailers or {}).get("grpc-status")) == (w.OK, "0")
        assert pb2.CreateLeaseResponse.FromString(ok.body).lease.user_reference == "h2-ref-1"
        bad = await channel.call(block, b"\xff\xff", 5.0)
        assert bad.code_name == "INVALID_ARGUMENT"
        assert "CreateLeaseRequest" in bad.message
        unknown = await channel.call(w.request_block("/nope.Nope/Nope", target), b"", 5.0)
        assert unknown.code_name == "UNIMPLEMENTED"
        # 1 ms: the server drops it as too close, or the client's timer ends it first.
        late = await channel.call(block, bodies.body(1, "h2-ref-2"), 0.001)
        assert late.code_name == "DEADLINE_EXCEEDED"
        many = await asyncio.gather(
            *(channel.call(block, bodies.body(i % 4, f"h2-many-{i}"), 10.0) for i in range(300))
        )
        assert {r.code_name for r in many} <= {"OK"}
        channel.close()

    run(body)


# --- the load processes' methods over it (bench/_client.py) ----------------------------


class _Answering:
    """Stands in for an H2Channel: answers every call with `reply`, keeps the bodies."""

    authority = "127.0.0.1:1"

    def __init__(self, reply: w.Reply) -> None:
        self.reply = reply
        self.bodies: list[bytes] = []

    async def call(self, block: bytes, body: bytes, timeout_s: float) -> w.Reply:
        self.bodies.append(body)
        return self.reply


def test_a_load_method_gives_the_status_and_the_parsed_reply_as_grpcio_would() -> None:
    request = pb2.CreateLeaseRequest(lease=pb2.Lease(user_reference="r-1"))
    granted = pb2.CreateLeaseResponse(lease=pb2.Lease(lease_id="L1"))
    answers = [
        w.Reply(w.OK, body=granted.SerializeToString()),
        w.Reply(w.RESOURCE_EXHAUSTED, "shed"),
        w.Reply(w.OK, body=b"\xff\xff"),  # no CreateLeaseResponse: grpcio says INTERNAL
    ]
    channels = [_Answering(reply) for reply in answers]
    method = _H2Method(channels, CREATE_LEASE, pb2.CreateLeaseResponse)  # type: ignore[arg-type]

    async def body() -> list[tuple[int, object]]:
        return [await method(request, 1.0) for _ in answers]

    (ok, reply), shed, garbled = run(body)
    assert ok == w.OK
    assert reply == granted
    assert shed == (w.RESOURCE_EXHAUSTED, None)
    assert garbled == (w.INTERNAL, None)
    # One call per connection in turn, each sent as the request serialized.
    assert [c.bodies for c in channels] == [[request.SerializeToString()]] * 3


def test_the_load_processes_connect_to_an_ipv6_loopback_target_in_brackets() -> None:
    async def body() -> None:
        async with (
            scripted_server(host="::1") as (port, _),
            contextlib.AsyncExitStack() as stack,
        ):
            channels = await _h2_channels(stack, f"[::1]:{port}", 5.0)
            assert len(channels) == CONNECTIONS_PER_CLIENT["h2"]
            ok = await channels[0].call(w.request_block("/t/ok", "x"), b"v6", 5.0)
            assert (ok.code, ok.body) == (w.OK, ECHO_PREFIX + b"v6")
        # The stack closed them (their transports close, or are gone already).
        assert all(c._transport is None or c._transport.is_closing() for c in channels)

    run(body)
