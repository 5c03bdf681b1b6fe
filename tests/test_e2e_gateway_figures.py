"""The gateway's refusals, live: a refused call shows in the health stream's gateway figures
and on /metrics (docs/operations.md, "Shedding, live"): in each gateway worker's row of a
multi-process server, at the top level of a one-process server's frames."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from _h2_raw import HEALTH_CHECK, RawH2, request_headers
from _health_frames import next_frame, next_health
from _server_process import ServerProcess, running_server, write_feed
from h2.events import StreamEnded
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from leasehold.health.frames import GatewayFigures, Subscribe

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SEEN_WITHIN_S = 15.0  # figures are sent once a second and sampled every 0.5 s


@pytest.fixture(params=[2, 0], ids=["workers-2", "workers-0"])
def workers(request: pytest.FixtureRequest) -> int:
    count: int = request.param
    return count


@pytest.fixture
def server(tmp_path: Path, workers: int) -> Iterator[ServerProcess]:
    slot = {
        "merchant_id": "m1",
        "service_id": "svc",
        "start_sec": 4_102_444_800,
        "duration_sec": 1800,
        "spots_total": 1,
        "spots_open": 1,
    }
    document = {"service_availability": [{"availability": [slot]}]}
    feed = write_feed(tmp_path / "feed.json", document)
    args = ["--feed", str(feed), "--shards", "2", "--shard-processes", "1"]
    with running_server(tmp_path / "data", *args, "--workers", str(workers)) as server:
        yield server


def send_bad_timeout(port: int) -> None:
    """A call whose grpc-timeout is malformed: refused at its HEADERS (BAD_TIMEOUT)."""
    with RawH2(port) as client:
        stream_id = client.conn.get_next_available_stream_id()
        headers = [*request_headers(HEALTH_CHECK), ("grpc-timeout", "soon")]
        client.conn.send_headers(stream_id, headers, end_stream=True)
        client.flush()
        ended = client.events_until(
            lambda events: any(isinstance(e, StreamEnded) for e in events), 5.0
        )
        assert any(isinstance(e, StreamEnded) for e in ended)


async def gateway_figures(url: str, workers: int) -> dict[int, GatewayFigures]:
    """The gateways' figures (by worker; 0 for a one-process server's) in the first frame
    where every gateway's are present and one counts a BAD_TIMEOUT."""
    async with open_websocket_url(url) as ws:
        await ws.send_message(Subscribe(interval_s=0.5).encode())
        await next_frame(ws)  # hello
        while True:
            frame = await next_health(ws)
            rows = {r.index: r.gateway for r in frame.processes if r.role == "gateway"}
            if workers == 0:
                assert not rows
                rows = {0: frame.gateway}
            figures = {i: g for i, g in rows.items() if g is not None}
            complete = len(figures) == max(workers, 1)
            if complete and any(g.refusals["BAD_TIMEOUT"] for g in figures.values()):
                return figures


def refusal_metrics(url: str) -> dict[tuple[str, str], float]:
    host = url.split("//", 1)[1].rstrip("/")
    with urllib.request.urlopen(f"http://{host}/metrics", timeout=10) as answer:
        text = bytes(answer.read()).decode()
    return {
        (s.labels["worker"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "leasehold_gateway_refusals_total"
    }


def test_a_refused_call_shows_in_the_gateway_figures_and_on_metrics(
    server: ServerProcess, workers: int
) -> None:
    url = server.health_url()
    assert url is not None
    send_bad_timeout(server.port)

    async def watch() -> dict[int, GatewayFigures]:
        with trio.fail_after(SEEN_WITHIN_S):
            return await gateway_figures(url, workers)

    figures = trio.run(watch)
    assert sum(g.refusals["BAD_TIMEOUT"] for g in figures.values()) == 1
    assert all(g.limit >= 1 and g.in_flight >= 0 for g in figures.values())
    give_up = time.monotonic() + SEEN_WITHIN_S
    while True:
        metrics = refusal_metrics(url)
        bad = sum(v for (_, reason), v in metrics.items() if reason == "BAD_TIMEOUT")
        if bad == 1 or time.monotonic() > give_up:
            break
        time.sleep(0.2)
    assert bad == 1, metrics
    assert {worker for worker, _ in metrics} == {str(i) for i in range(max(workers, 1))}
