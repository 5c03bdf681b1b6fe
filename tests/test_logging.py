"""Structured logs: timestamped records with an event name and fields; shedding summarised."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import grpc
import pytest
from _api import lease_v2
from _server_process import leasehold_executable, write_feed

from leasehold._app import _plain
from leasehold._logging import ShedSummary, configure, event
from leasehold._run import _summarise_shedding
from leasehold._serve_settings import ServerFailed
from leasehold.core import SlotKey
from leasehold.proto.v2 import booking_pb2_grpc
from leasehold.shards import JournalFailed, ShardSet

START = 4_102_444_800  # 2100-01-01


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure("json", "info", out)
    yield out
    configure("text", "info")


def records(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_json_record_has_time_level_event_message_and_fields(captured: io.StringIO) -> None:
    event(logging.WARNING, "thing", "a thing happened", count=3)
    (record,) = records(captured)
    assert str(record.pop("ts")).endswith("Z")
    assert record == {
        "level": "warning",
        "event": "thing",
        "message": "a thing happened",
        "count": 3,
    }


def test_text_records_carry_time_and_level_before_the_message() -> None:
    out = io.StringIO()
    configure("text", "warning", out)
    try:
        event(logging.INFO, "quiet", "below the level")
        event(logging.ERROR, "loud", "above it")
    finally:
        configure("text", "info")
    (line,) = out.getvalue().splitlines()
    stamp, level, rest = line.split(maxsplit=2)
    assert stamp.endswith("Z")
    assert (level, rest) == ("ERROR", "leasehold: above it")


def test_shedding_is_one_summary_per_period_and_none_when_quiet(captured: io.StringIO) -> None:
    summary = ShedSummary([0, 0], [0, 0])
    summary.update([0, 0], [0, 0], 10.0)
    assert records(captured) == []
    summary.update([500, 20], [0, 3], 10.0)
    summary.update([500, 20], [0, 3], 10.0)  # nothing new: nothing logged
    (record,) = records(captured)
    assert record["event"] == "shedding"
    assert (record["shed"], record["deadline_dropped"], record["shed_by_shard"]) == (
        520,
        3,
        [500, 20],
    )


class Exhausted(Exception):
    pass


def test_the_shedding_task_reads_totals_every_period(captured: io.StringIO) -> None:
    totals = [0, 0, 7, 7]  # at start, then per period

    def statistics() -> list[SimpleNamespace]:
        if not totals:
            raise Exhausted
        return [SimpleNamespace(shed=totals.pop(0), deadline_dropped=0)]

    shard_set = cast(ShardSet, SimpleNamespace(statistics=statistics))
    with pytest.raises(Exhausted):  # after three periods
        asyncio.run(_summarise_shedding(shard_set, 0.001))
    assert [r["shed"] for r in records(captured)] == [7]


def test_a_journal_failure_is_told_as_one_error_alone_or_in_a_group() -> None:
    failed = JournalFailed("disk full")
    nested = ExceptionGroup("run", [ExceptionGroup("shard", [failed])])
    told = _plain(nested)
    assert isinstance(told, ServerFailed)
    assert str(told) == "disk full"
    assert isinstance(_plain(ExceptionGroup("run", [failed, ValueError()])), ServerFailed)
    bug = ExceptionGroup("run", [ValueError("bug")])
    assert _plain(bug) is bug  # anything else keeps its group and traceback


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_json_logged_run_has_its_events_and_no_line_per_request(tmp_path: Path) -> None:
    entry = {"merchant_id": "m", "service_id": "s", "start_sec": START, "duration_sec": 1800}
    entry |= {"spots_total": 100, "spots_open": 100}
    feed = write_feed(tmp_path / "feed.json", {"service_availability": [{"availability": [entry]}]})
    command = [leasehold_executable(), "serve", "--port", "0", "--feed", str(feed)]
    command += ["--data-dir", str(tmp_path / "d"), "--log-format", "json"]
    # SpawnedServer waits for "leasehold: serving": a json run never prints it, so this test
    # reads the process itself.
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        assert server.stdout is not None
        started = [json.loads(server.stdout.readline()) for _ in range(5)]
        assert [r["event"] for r in started] == [
            "recovered",
            "admin_service",
            "health_stream",
            "example_slot",
            "serving",
        ]
        serving = started[-1]
        assert (serving["slots"], serving["merchants"], serving["shards"]) == (1, 1, 4)
        with grpc.insecure_channel(f"127.0.0.1:{serving['port']}") as channel:
            stub = booking_pb2_grpc.BookingServiceStub(channel)
            for i in range(20):
                stub.CreateLease(lease_v2(SlotKey("m", "s", START, 1800), f"r{i}"), timeout=10)
        server.send_signal(signal.SIGTERM)
        rest = [json.loads(line) for line in server.stdout]
        assert server.wait(timeout=30) == 0
    assert [r["event"] for r in rest] == ["stopping", "stopped"]  # nothing per request
    assert rest[0]["signal"] == "SIGTERM"
    assert all({"ts", "level", "event", "message"} <= set(r) for r in started + rest)
