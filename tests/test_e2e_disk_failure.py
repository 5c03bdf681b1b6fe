"""A disk that stops taking writes: calls are answered at once, the process ends with one line.

The server runs under tests/_faulty_disk.py, which fails every file write and
fsync (ENOSPC) while a trigger file exists.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from _api import lease_v2
from _server_process import running_server, write_feed

from leasehold.bench._server import SpawnedServer, serve_command
from leasehold.core import SlotKey
from leasehold.proto.v2 import booking_pb2_grpc as grpc2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

KEY = SlotKey("m1", "s1", 4_102_444_800, 1800)
LAUNCHER = Path(__file__).with_name("_faulty_disk.py")
# Far longer than the 5 s drain: an answer before it is an answer "at once".
CALL_TIMEOUT_S = 20.0


@pytest.fixture
def feed(tmp_path: Path) -> Path:
    entry = {
        "merchant_id": KEY.merchant_id,
        "service_id": KEY.service_id,
        "start_sec": KEY.start_sec,
        "duration_sec": KEY.duration_sec,
        "spots_total": 100,
        "spots_open": 100,
    }
    return write_feed(tmp_path / "feed.json", {"service_availability": [{"availability": [entry]}]})


def faulty_command(trigger: Path, feed: Path, data_dir: Path, *extra: str) -> list[str]:
    # One process: the launcher fakes the full disk inside the process it runs, and a
    # shard process runs the same journal code (its own failure path: test_e2e_tree.py).
    serve = serve_command(feed, data_dir, 1, ("--workers", "0", *extra))
    return [sys.executable, str(LAUNCHER), str(trigger), *serve[serve.index("serve") :]]


def test_a_failed_journal_write_answers_unavailable_at_once_and_exits_1(
    tmp_path: Path, feed: Path
) -> None:
    trigger = tmp_path / "disk-full"
    server = SpawnedServer(faulty_command(trigger, feed, tmp_path / "data"))
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = grpc2.BookingServiceStub(channel)
            stub.CreateLease(lease_v2(KEY, "before"), timeout=CALL_TIMEOUT_S)
            trigger.touch()
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                codes = list(pool.map(lambda i: _lease_code(stub, f"r{i}"), range(8)))
            elapsed = time.monotonic() - started
        assert set(codes) == {grpc.StatusCode.UNAVAILABLE}
        assert elapsed < 3.0  # not after the 5 s drain
        code = server.process.wait(timeout=30)
    finally:
        server.kill()
        server.stop()
    output = "".join(server.output)
    assert code == 1, output
    errors = [line for line in server.output if line.startswith("leasehold: error:")]
    assert len(errors) == 1, output
    assert "could not be written" in errors[0]
    assert "No space left on device" in errors[0]
    assert "Traceback" not in output
    assert "AlreadyUsedError" not in output


def _lease_code(stub: grpc2.BookingServiceStub, reference: str) -> grpc.StatusCode:
    try:
        stub.CreateLease(lease_v2(KEY, reference), timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as problem:
        return problem.code()
    return grpc.StatusCode.OK


def test_a_start_on_a_full_disk_fails_before_serving(tmp_path: Path, feed: Path) -> None:
    data_dir = tmp_path / "data"
    with (
        running_server(data_dir, "--feed", str(feed), "--shards", "1") as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        grpc2.BookingServiceStub(channel).CreateLease(lease_v2(KEY, "kept"), timeout=CALL_TIMEOUT_S)
    trigger = tmp_path / "disk-full"
    trigger.touch()
    done = subprocess.run(
        faulty_command(trigger, feed, data_dir),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "serving" not in done.stdout.replace("serving the feed recorded", "")
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("leasehold: error: cannot use --data-dir")
    assert "No space left on device" in lines[0]


def test_a_snapshot_that_cannot_be_written_stops_the_server_with_one_line(
    tmp_path: Path, feed: Path
) -> None:
    trigger = tmp_path / "disk-full"
    trigger.write_text("snapshot-", encoding="utf-8")  # the journal still writes
    command = faulty_command(trigger, feed, tmp_path / "data", "--snapshot-every", "3")
    server = SpawnedServer(command)
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = grpc2.BookingServiceStub(channel)
            for i in range(5):
                stub.CreateLease(lease_v2(KEY, f"r{i}"), timeout=CALL_TIMEOUT_S)
        code = server.process.wait(timeout=30)  # the compactor looks once a second
    finally:
        server.kill()
        server.stop()
    output = "".join(server.output)
    assert code == 1, output
    errors = [line for line in server.output if line.startswith("leasehold: error:")]
    assert len(errors) == 1, output
    assert errors[0].startswith("leasehold: error: stopped: ")
    assert "No space left on device" in errors[0]
    assert "snapshot-" in errors[0]
    assert "Traceback" not in output
