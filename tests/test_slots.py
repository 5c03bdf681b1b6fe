"""`leasehold slots`: concrete slots a caller can paste into a request, and they book."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpc
import pytest
from _server_process import leasehold_executable, running_server
from google.protobuf import json_format

from leasehold._slot_json import example_slot, slot_json
from leasehold._slots import Filters, render, select
from leasehold.core import SlotKey, SlotSpec
from leasehold.proto.v2 import booking_pb2 as pb
from leasehold.proto.v2 import booking_pb2_grpc

HOUR = 3600


def spec(merchant: str, service: str, start: int, **resources: str | int) -> SlotSpec:
    key = SlotKey(merchant, service, start, 1800, **resources)  # type: ignore[arg-type]
    return SlotSpec(key, spots=2, spots_total=3)


SLOTS = [
    spec("m2", "cut", 3 * HOUR),
    spec("m1", "cut", 2 * HOUR, staff_id="ann"),
    spec("m1", "dye", 1 * HOUR),
    spec("m1", "cut", 0),
]


def test_select_keeps_the_earliest_that_pass_every_filter() -> None:
    assert [s.key.start_sec for s in select(SLOTS, Filters(after=HOUR), 10)] == [
        HOUR,
        2 * HOUR,
        3 * HOUR,
    ]
    merchant = select(SLOTS, Filters(merchant="m1", service="cut", after=0), 10)
    assert [s.key.start_sec for s in merchant] == [0, 2 * HOUR]
    assert select(SLOTS, Filters(after=0, before=2 * HOUR), 1) == [SLOTS[3]]


def test_slot_json_is_protobufs_json_form_of_a_v2_slot() -> None:
    shown = slot_json(SLOTS[1])
    assert shown == {
        "merchant_id": "m1",
        "service_id": "cut",
        "start_time": "1970-01-01T02:00:00Z",
        "duration": "1800s",
        "resources": {"staff_id": "ann"},
    }
    slot = json_format.ParseDict(shown, pb.Slot())
    assert (slot.start_time.seconds, slot.duration.seconds) == (2 * HOUR, 1800)
    assert slot.resources.staff_id == "ann"


def test_grpcurl_format_is_one_slot_object_per_line() -> None:
    lines = render(SLOTS[:2], None, "grpcurl").splitlines()
    assert [json.loads(line) for line in lines] == [slot_json(s) for s in SLOTS[:2]]


def test_slot_time_format_is_a_batch_lookups_slot_time() -> None:
    (line,) = render(SLOTS[1:2], None, "slot_time").splitlines()
    slot_time = json_format.Parse(line, pb.SlotTime())
    assert (slot_time.service_id, slot_time.start_sec, slot_time.duration_sec) == (
        "cut",
        7200,
        1800,
    )
    assert slot_time.resources.staff_id == "ann"


def test_the_example_slot_is_the_earliest_open_one() -> None:
    full = SlotSpec(SlotKey("m0", "cut", 0, 1800), spots=0, spots_total=1)
    example = example_slot([full, *SLOTS])
    assert example is not None
    assert json.loads(example) == slot_json(SLOTS[3])


def slots(*args: str) -> str:
    result = subprocess.run(
        [leasehold_executable(), "slots", *args],
        capture_output=True,
        text=True,
        timeout=45,
        check=True,
    )
    return result.stdout


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_listed_slot_books_and_the_live_count_follows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_server(data) as server:
        started = "".join(server.output)
        assert "leasehold: a slot to try: {" in started
        first = json.loads(slots("--data-dir", str(data), "--format", "grpcurl", "--limit", "1"))
        assert first == json.loads(started.split("a slot to try: ")[1].split(" (")[0])
        with grpc.insecure_channel(server.target) as channel:
            stub = booking_pb2_grpc.BookingServiceStub(channel)
            lease = json_format.ParseDict(
                {"lease": {"slot": first, "user_reference": "r-1"}}, pb.CreateLeaseRequest()
            )
            assert stub.CreateLease(lease, timeout=10).HasField("lease")
        live = json.loads(
            slots("--data-dir", str(data), "--target", server.target, "--format", "json")
        )
        assert live[0]["available_now"] == live[0]["spots_open"] - 1
        assert all(row["available_now"] == row["spots_open"] for row in live[1:])


def test_an_unreachable_target_is_one_line() -> None:
    result = subprocess.run(
        [leasehold_executable(), "slots", "--target", "127.0.0.1:1", "--limit", "1"],
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("leasehold: error: cannot ask 127.0.0.1:1")
    assert result.stderr.count("\n") == 1


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_target_serving_another_feed_is_one_line_with_a_hint(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    entry = {"merchant_id": "elsewhere", "service_id": "svc", "start_sec": 4_102_444_800}
    entry |= {"duration_sec": 1800, "spots_total": 1, "spots_open": 1}
    other.write_text(json.dumps({"service_availability": [{"availability": [entry]}]}))
    with running_server(tmp_path / "data") as server:
        result = subprocess.run(
            [leasehold_executable(), "slots", "--feed", str(other), "--target", server.target],
            capture_output=True,
            text=True,
            timeout=45,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "does it serve this feed? give its --feed or --data-dir" in result.stderr
