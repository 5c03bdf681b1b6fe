"""GET /metrics on the health port: Prometheus text, read back with a real parser."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from _api import lease_v2
from _installed import found_or_installed
from _server_process import running_server, write_feed
from prometheus_client.parser import text_string_to_metric_families

from leasehold import __version__
from leasehold.core import SlotKey
from leasehold.health._http import answer, is_upgrade
from leasehold.health._metrics import (
    MetricsSnapshot,
    answer_name,
    buckets,
    gateways_of,
    render,
)
from leasehold.health.frames import GatewayFigures, ProcessRow
from leasehold.proto.v2 import booking_pb2_grpc
from leasehold.shards import SERVICE_TIME_BOUNDS_S, HistogramSnapshot, JournalFigures, ShardStats

INSTALL_SCRIPT = Path(__file__).with_name("install_promtool.sh")
INSTALL_TIMEOUT_S = 300

START = 4_102_444_800  # 2100-01-01
ONE = SlotKey("m-one", "svc", START, 1800)
EMPTY = (0,) * (len(SERVICE_TIME_BOUNDS_S) + 1)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found[name, frozenset(labels.items())]


def test_buckets_are_cumulative_at_every_fourth_bound() -> None:
    counts = list(EMPTY)
    counts[0], counts[5], counts[len(EMPTY) - 1] = 2, 3, 1  # 1 us, ~3 us, above the last
    pairs = buckets(HistogramSnapshot(tuple(counts), 1.0))
    bounds = [repr(SERVICE_TIME_BOUNDS_S[i]) for i in (0, 4, 8)]
    assert pairs[:3] == list(zip(bounds, [2.0, 2.0, 5.0], strict=True))
    assert pairs[-2][1] == 5
    assert pairs[-1] == ("+Inf", 6)


def test_refusal_names_become_answer_labels() -> None:
    assert answer_name("SlotUnavailable") == "SLOT_UNAVAILABLE"
    assert answer_name("NotFound") == "NOT_FOUND"


GATEWAY = GatewayFigures({"OVERLOADED": 12, "DEADLINE": 3}, 16, 15, 800.0, 2.5, 1.25)


def test_gateway_figures_render_by_worker() -> None:
    gateways = (("0", GATEWAY), ("1", GatewayFigures({"OVERLOADED": 1}, 64, 0, 5.0, 0.0, 0.5)))
    found = samples(render(MetricsSnapshot((), 0, 0, None, gateways)).decode())
    refusals = "leasehold_gateway_refusals_total"
    assert value(found, refusals, worker="0", reason="OVERLOADED") == 12
    assert value(found, refusals, worker="0", reason="DEADLINE") == 3
    assert value(found, refusals, worker="1", reason="OVERLOADED") == 1
    assert value(found, "leasehold_gateway_concurrency_limit", worker="0") == 16
    assert value(found, "leasehold_gateway_calls_in_flight", worker="0") == 15
    assert value(found, "leasehold_gateway_pushback_seconds", worker="0") == 0.8
    assert value(found, "leasehold_gateway_loop_lag_seconds", worker="0") == 0.0025
    assert value(found, "leasehold_gateway_return_path_seconds", worker="1") == 0.0005


def test_no_gateway_figures_no_gateway_metrics() -> None:
    text = render(MetricsSnapshot((), 0, 0, None)).decode()
    assert "leasehold_gateway_" not in text


def test_gateway_figures_come_from_the_one_gateway_or_the_live_workers_rows() -> None:
    supervisor = ProcessRow("supervisor", 0, 1, True, 0, None, None, None)
    live = ProcessRow("gateway", 1, 3, True, 0, None, None, None, GATEWAY)
    silent = ProcessRow("gateway", 0, None, False, 1, None, None, None)
    assert gateways_of(None, (supervisor, silent, live)) == (("1", GATEWAY),)
    assert gateways_of(GATEWAY, ()) == (("0", GATEWAY),)


def shard(shard_id: int, journal: JournalFigures | None) -> ShardStats:
    lease_times = list(EMPTY)
    lease_times[10] = 3
    return ShardStats(
        shard_id=shard_id,
        mailbox_depth=2,
        mailbox_capacity=8,
        live_leases=1,
        confirmed_bookings=4,
        operations=3,
        expirations=5,
        refused=1,
        deadline_dropped=0,
        shed=7,
        last_expiry_lag_s=0.25,
        operations_by_kind={"CreateLease": 3},
        service_time_counts=tuple(lease_times),
        journal=journal,
        service_times_by_kind={"CreateLease": HistogramSnapshot(tuple(lease_times), 0.5)},
        refusals={("CreateLease", "SlotUnavailable"): 1},
        inventory_changes=6 + shard_id,
        inventory_last_change_unix=1_767_225_600.5 if shard_id == 0 else 0.0,
        orphaned_bookings=2,
        slots=40 + shard_id,
    )


def test_a_snapshot_renders_every_figure_summed_or_by_shard() -> None:
    journal = JournalFigures(0.001, 0.002, 4096, HistogramSnapshot(EMPTY, 0.0))
    snapshot = MetricsSnapshot((shard(0, journal), shard(1, None)), 3, 9, None)
    found = samples(render(snapshot).decode())
    assert value(found, "leasehold_requests_total", command="CreateLease", answer="OK") == 4
    assert (
        value(found, "leasehold_requests_total", command="CreateLease", answer="SLOT_UNAVAILABLE")
        == 2
    )
    assert value(found, "leasehold_request_duration_seconds_count", command="CreateLease") == 6
    assert value(found, "leasehold_request_duration_seconds_sum", command="CreateLease") == 1.0
    assert value(found, "leasehold_shed_requests_total", shard="1") == 7
    assert value(found, "leasehold_expiry_lag_seconds", shard="0") == 0.25
    assert value(found, "leasehold_journal_written_bytes_total", shard="0") == 4096
    assert ("leasehold_journal_written_bytes_total", frozenset({("shard", "1")})) not in found
    assert value(found, "leasehold_health_watchers") == 3
    assert value(found, "leasehold_slots", shard="1") == 41
    assert value(found, "leasehold_inventory_changes_total", shard="1") == 7
    assert value(found, "leasehold_orphaned_bookings", shard="0") == 2
    last = "leasehold_inventory_last_change_timestamp_seconds"
    assert (value(found, last, shard="0"), value(found, last, shard="1")) == (1_767_225_600.5, 0)
    assert value(found, "leasehold_build_info", version=__version__) == 1
    assert not any(name == "leasehold_grpc_connections" for name, _ in found)  # unknown


async def test_the_port_answers_plain_requests_with_http() -> None:
    async def never() -> bytes:
        raise AssertionError("only /metrics renders")

    async def broken() -> bytes:
        raise ValueError("bad figure")

    assert (await answer(b"GET / HTTP/1.1\r\n\r\n", never)).startswith(b"HTTP/1.1 404 ")
    assert (await answer(b"POST /metrics HTTP/1.1\r\n\r\n", never)).startswith(b"HTTP/1.1 405 ")
    assert (await answer(b"GET /metrics HTTP/1.1\r\n", never)).startswith(b"HTTP/1.1 431 ")
    failed = await answer(b"GET /metrics HTTP/1.1\r\n\r\n", broken)
    assert failed.startswith(b"HTTP/1.1 500 ")
    assert failed.endswith(b"metrics failed: ValueError: bad figure\n")


def test_only_a_websocket_upgrade_goes_to_the_websocket() -> None:
    assert is_upgrade(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n\r\n")
    assert not is_upgrade(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return str(reply.read().decode())


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_live_server_scrapes_and_its_figures_move(tmp_path: Path, promtool: str) -> None:
    entry = {"merchant_id": "m-one", "service_id": "svc", "start_sec": START}
    entry |= {"duration_sec": 1800, "spots_total": 1, "spots_open": 1}
    feed = write_feed(tmp_path / "feed.json", {"service_availability": [{"availability": [entry]}]})
    with running_server(tmp_path / "data", "--feed", str(feed)) as server:
        url = server.health_url()
        assert url is not None
        metrics_url = url.replace("ws://", "http://") + "metrics"
        with grpc.insecure_channel(server.target) as channel:
            stub = booking_pb2_grpc.BookingServiceStub(channel)
            assert stub.CreateLease(lease_v2(ONE, "r1"), timeout=10).HasField("lease")
            assert stub.CreateLease(lease_v2(ONE, "r2"), timeout=10).HasField("booking_failure")
            text = scrape(metrics_url)
        found = samples(text)
        assert value(found, "leasehold_requests_total", command="CreateLease", answer="OK") == 1
        slot_unavailable = {"command": "CreateLease", "answer": "SLOT_UNAVAILABLE"}
        assert value(found, "leasehold_requests_total", **slot_unavailable) == 1
        assert value(found, "leasehold_request_duration_seconds_count", command="CreateLease") == 2
        assert sum(v for (n, _), v in found.items() if n == "leasehold_live_leases") == 1
        fsyncs = [
            v
            for (n, _), v in found.items()
            if n == "leasehold_journal_fsync_duration_seconds_count"
        ]
        assert sum(fsyncs) >= 1  # --durability sync: the lease was fsynced before its reply
        assert value(found, "leasehold_grpc_connections") >= 1
        assert value(found, "process_resident_memory_bytes") > 0
        assert value(found, "leasehold_build_info", version=__version__) == 1
        with pytest.raises(urllib.error.HTTPError, match="404"):
            scrape(url.replace("ws://", "http://") + "nothing")
        assert promtool_check(promtool, text) == ""


@pytest.fixture(scope="module")
def promtool() -> str:
    return found_or_installed("promtool", INSTALL_SCRIPT, INSTALL_TIMEOUT_S)


def promtool_check(promtool: str, text: str) -> str:
    """What `promtool check metrics` finds wrong with `text` ("" when it accepts it)."""
    checked = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return (
        ""
        if checked.returncode == 0
        else f"exit {checked.returncode}: {checked.stdout}{checked.stderr}"
    )


def test_promtool_accepts_the_rendered_text(promtool: str) -> None:
    journal = JournalFigures(0.001, 0.002, 4096, HistogramSnapshot(EMPTY, 0.0))
    shards = (shard(0, journal), shard(1, None))
    text = render(MetricsSnapshot(shards, 3, 9, 2, (("0", GATEWAY), ("1", GATEWAY)))).decode()
    assert "leasehold_gateway_refusals_total" in text
    assert promtool_check(promtool, text) == ""


def test_promtool_refuses_what_is_not_the_exposition_format(promtool: str) -> None:
    # The check above can fail: a metric name with a dash is not valid text format.
    assert promtool_check(promtool, "# TYPE bad-name counter\nbad-name 1\n") != ""
