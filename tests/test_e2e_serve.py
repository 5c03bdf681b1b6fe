"""`leasehold serve` started as a user would, called over loopback with grpcio.

grpcio is an independent gRPC implementation (C core), so these tests check the
wire contract, not just grpclib talking to itself.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from _api import booking_v0, booking_v2, lease_v0, lease_v2, slot_v2
from _server_process import (
    ServerProcess,
    leasehold_executable,
    messages,
    running_server,
    write_feed,
)
from grpclib.health.v1 import health_pb2
from grpclib.reflection.v1 import reflection_pb2 as reflection_v1
from grpclib.reflection.v1alpha import reflection_pb2 as reflection_v1alpha

from leasehold._process_flags import default_shard_processes, default_workers, usable_cpus
from leasehold.core import LeaseExpiredEvent, SlotKey, parse_feed_json
from leasehold.proto.v0 import booking_pb2 as pb0
from leasehold.proto.v0 import booking_pb2_grpc as grpc0
from leasehold.proto.v2 import booking_pb2 as pb2
from leasehold.proto.v2 import booking_pb2_grpc as grpc2
from leasehold.shards._codec import encode_events
from leasehold.shards._journal import HEADER, frame, segment_name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

START = 4_102_444_800  # 2100-01-01: slots that have not ended, whenever the test runs
FIVE = SlotKey("m-five", "svc", START, 1800)
ONE = SlotKey("m-one", "svc", START, 3600, staff_id="st1")
CALL_TIMEOUT_S = 10.0
V2_SERVICE = "ext.maps.booking.partner.v2.BookingService"
V0_SERVICE = "ext.maps.booking.partner.v0.BookingService"


def feed_document() -> dict[str, object]:
    entries = [
        {
            "merchant_id": "m-five",
            "service_id": "svc",
            "start_sec": START,
            "duration_sec": 1800,
            "spots_total": 5,
            "spots_open": 5,
        },
        {
            "merchant_id": "m-one",
            "service_id": "svc",
            "start_sec": START,
            "duration_sec": 3600,
            "spots_total": 1,
            "spots_open": 1,
            "resources": {"staff_id": "st1"},
        },
    ]
    return {"service_availability": [{"availability": entries}]}


@pytest.fixture
def feed(tmp_path: Path) -> Path:
    return write_feed(tmp_path / "feed.json", feed_document())


def test_two_hundred_concurrent_leases_on_five_spots_yield_exactly_five(
    tmp_path: Path, feed: Path
) -> None:
    with (
        running_server(tmp_path / "data", "--feed", str(feed), "--shards", "2") as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = grpc2.BookingServiceStub(channel)
        futures = [
            stub.CreateLease.future(lease_v2(FIVE, f"caller-{i}"), timeout=CALL_TIMEOUT_S)
            for i in range(200)
        ]
        replies = [f.result() for f in futures]
        granted = [r for r in replies if r.HasField("lease")]
        unavailable = [
            r for r in replies if r.booking_failure.cause == pb2.BookingFailure.SLOT_UNAVAILABLE
        ]
        assert len(granted) == 5
        assert len(unavailable) == 195
        assert len({r.lease.lease_id for r in granted}) == 5
        check = stub.CheckAvailability(
            pb2.CheckAvailabilityRequest(slot=slot_v2(FIVE)), timeout=CALL_TIMEOUT_S
        )
        assert check.count_available == 0


def test_lease_then_book_through_both_versions(tmp_path: Path, feed: Path) -> None:
    with (
        running_server(tmp_path / "data", "--feed", str(feed)) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        v2 = grpc2.BookingServiceStub(channel)
        v0 = grpc0.BookingServiceStub(channel)
        lease = v2.CreateLease(lease_v2(ONE, "r"), timeout=CALL_TIMEOUT_S).lease
        assert lease.slot.resources.staff_id == "st1"
        booked = v2.CreateBooking(
            booking_v2(ONE, "tok", lease_id=lease.lease_id), timeout=CALL_TIMEOUT_S
        )
        assert booked.booking.status == pb2.CONFIRMED
        with pytest.raises(grpc.RpcError) as full:
            v0.CreateLease(lease_v0(ONE, "c"), timeout=CALL_TIMEOUT_S)
        assert full.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        lease0 = v0.CreateLease(lease_v0(FIVE, "c"), timeout=CALL_TIMEOUT_S).lease
        booking0 = v0.CreateBooking(booking_v0(lease0.lease_id), timeout=CALL_TIMEOUT_S)
        assert booking0.booking.status == pb0.CONFIRMED
        with pytest.raises(grpc.RpcError) as bad:
            v2.CheckAvailability(pb2.CheckAvailabilityRequest(), timeout=CALL_TIMEOUT_S)
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (bad.value.details() or "").startswith("slot:")


def test_health_and_reflection(tmp_path: Path, feed: Path) -> None:
    with (
        running_server(tmp_path / "data", "--feed", str(feed)) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        for name in ("", V2_SERVICE, V0_SERVICE):
            reply = check(health_pb2.HealthCheckRequest(service=name), timeout=CALL_TIMEOUT_S)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            check(health_pb2.HealthCheckRequest(service="no.Such"), timeout=CALL_TIMEOUT_S)
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
        for module, version in ((reflection_v1, "v1"), (reflection_v1alpha, "v1alpha")):
            services = list_services(channel, module, version)
            assert {V2_SERVICE, V0_SERVICE, "grpc.health.v1.Health"} <= services


def list_services(channel: grpc.Channel, module: object, version: str) -> set[str]:
    request_type = module.ServerReflectionRequest  # type: ignore[attr-defined]
    response_type = module.ServerReflectionResponse  # type: ignore[attr-defined]
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    replies = call(iter([request_type(list_services="")]), timeout=CALL_TIMEOUT_S)
    return {s.name for reply in replies for s in reply.list_services_response.service}


def assert_started_fresh(server: ServerProcess, slots: int, merchants: int, shards: int) -> None:
    """Every fact of the start-up lines of a server on a new data dir, each line whole."""
    url = server.health_url()
    assert url is not None, server.output
    lines = messages(server.output)
    recovery = (
        f"leasehold: recovered {shards} shards: 0 snapshots, 0 journal records replayed, "
        r"in \d+\.\d\d s"
    )
    assert re.fullmatch(recovery, lines[0]), lines
    admin = r"leasehold: inventory admin service on (127\.0\.0\.1:[1-9]\d*) \(leasehold feed "
    found = re.fullmatch(admin + r"apply FILE --target (127\.0\.0\.1:[1-9]\d*)\)", lines[1])
    assert found is not None, lines
    assert found.group(1) == found.group(2)
    assert re.fullmatch(r"leasehold: health stream on ws://127\.0\.0\.1:[1-9]\d*/", lines[2])
    assert re.fullmatch(
        r"leasehold: a slot to try: \{.*\} \(leasehold slots lists more\)", lines[3]
    )
    assert [lines[2], *lines[4:]] == [
        f"leasehold: health stream on {url}",
        f"leasehold: serving {slots} slots of {merchants} merchants on {server.target} "
        f"with {shards} shards{processes_said(server, shards)}",
    ], lines


def processes_said(server: ServerProcess, shards: int) -> str:
    """What the serving line adds in the multi-process mode: how many of each role run."""
    if (
        "--workers" in server.command
        and server.command[server.command.index("--workers") + 1] == "0"
    ):
        return ""
    workers = default_workers()
    shard_processes = min(default_shard_processes(usable_cpus()), shards)
    return f": {workers} gateway workers, {shard_processes} shard processes"


def test_sigint_stops_the_server_with_exit_code_zero(tmp_path: Path, feed: Path) -> None:
    with running_server(tmp_path / "data", "--feed", str(feed)) as server:
        assert_started_fresh(server, slots=2, merchants=2, shards=4)
        assert server.stop(signal.SIGINT) == 0
    assert messages(server.output)[5:] == [
        "leasehold: stopping (SIGINT): draining calls in flight",
        "leasehold: stopped",
    ]


def leasehold(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [leasehold_executable(), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_feed_demo_prints_a_feed_that_serve_accepts(tmp_path: Path) -> None:
    printed = leasehold("feed", "demo")
    assert printed.returncode == 0
    document = json.loads(printed.stdout)
    demo = write_feed(tmp_path / "demo.json", document)
    slots = parse_feed_json(printed.stdout).slots
    merchants = len({slot.key.merchant_id for slot in slots})
    with running_server(tmp_path / "data", "--feed", str(demo), "--shards", "3") as server:
        assert_started_fresh(server, len(slots), merchants, shards=3)


def test_missing_feed_is_one_clear_line(tmp_path: Path) -> None:
    result = leasehold("serve", "--feed", str(tmp_path / "nope.json"), "--port", "0")
    assert result.returncode == 2
    assert result.stderr.startswith("leasehold: error: cannot load the feed:")
    assert result.stderr.count("\n") == 1


def test_bad_feed_names_entry_and_field(tmp_path: Path) -> None:
    document = feed_document()
    entries = document["service_availability"][0]["availability"]  # type: ignore[index]
    entries[1]["duration_sec"] = 0
    bad = write_feed(tmp_path / "bad.json", document)
    result = leasehold("serve", "--feed", str(bad), "--port", "0")
    assert result.returncode == 2
    assert "feed entry 1 (merchant_id 'm-one')" in result.stderr
    assert "'duration_sec'" in result.stderr


def test_busy_port_is_one_clear_line(tmp_path: Path, feed: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = leasehold(
            *("serve", "--feed", str(feed), "--port", str(port), "--health-port", "0"),
            *("--data-dir", str(tmp_path / "d")),
        )
    assert result.returncode == 1
    assert result.stderr.startswith(f"leasehold: error: cannot listen on 127.0.0.1:{port}:")


def corrupt_journal(shard: Path, damage: str) -> tuple[str, int]:
    """Write a two-segment journal with `damage`; the file and byte offset it is found at."""
    records = [frame(encode_events([LeaseExpiredEvent(f"L{i}")])) for i in range(3)]
    first = bytearray(HEADER + records[0] + records[1])
    second_seq = 2
    if damage == "checksum":
        first[len(HEADER) + 10] ^= 0xFF  # a payload byte of record 0; record 1 is intact
    else:  # "gap": the second segment misnamed, as the roll race left it
        second_seq = 3
    shard.mkdir(parents=True)
    (shard / segment_name(0)).write_bytes(first)
    (shard / segment_name(second_seq)).write_bytes(HEADER + records[2])
    return (segment_name(0), len(HEADER)) if damage == "checksum" else (segment_name(3), 0)


@pytest.mark.parametrize("damage", ["checksum", "gap"])
def test_a_damaged_journal_is_one_line_naming_shard_file_and_offset(
    tmp_path: Path, feed: Path, damage: str
) -> None:
    data = tmp_path / "data"
    name, offset = corrupt_journal(data / "shard-001", damage)
    result = leasehold(
        "serve", "--feed", str(feed), "--port", "0", "--health-port", "0",
        "--data-dir", str(data), "--shards", "2",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr  # one line: no traceback
    assert result.stderr.startswith(
        f"leasehold: error: cannot recover the stored state: shard 1: "
        f"{data / 'shard-001' / name}: at byte offset {offset}: "
    )


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (("--shards", "0"), "leasehold serve: error: argument --shards: '0' must be at least 1"),
        (
            ("--port", "70000"),
            "leasehold serve: error: argument --port: '70000' is not a port number (0-65535)",
        ),
        (
            ("--default-lease-ttl", "1000"),
            "leasehold: error: --default-lease-ttl must not exceed --max-lease-ttl",
        ),
        (
            ("--max-lease-ttl", "x"),
            "leasehold serve: error: argument --max-lease-ttl: 'x' is not a number",
        ),
    ],
)
def test_bad_flags_exit_two_with_usage(flags: tuple[str, ...], error: str) -> None:
    result = leasehold("serve", *flags)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("usage: leasehold "), result.stderr
    assert lines[-1] == error
    assert result.stdout == ""


def test_concurrent_clients_from_threads_see_consistent_counts(tmp_path: Path, feed: Path) -> None:
    """Many channels at once (separate HTTP/2 connections), each leasing on the 5-spot slot."""
    with running_server(tmp_path / "data", "--feed", str(feed), "--shards", "3") as server:

        def one(i: int) -> bool:
            with grpc.insecure_channel(server.target) as channel:
                stub = grpc2.BookingServiceStub(channel)
                reply = stub.CreateLease(lease_v2(FIVE, f"t{i}"), timeout=CALL_TIMEOUT_S)
                return reply.HasField("lease")

        with ThreadPoolExecutor(max_workers=16) as pool:
            granted = sum(pool.map(one, range(40)))
        assert granted == 5
