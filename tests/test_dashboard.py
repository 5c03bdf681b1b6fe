"""The browser dashboard, in headless Chromium, against `leasehold serve` under load.

The test is a second watcher of the same interval as the page: the server builds
one frame per interval group and sends the same bytes to each of its watchers
(gateway/_health_stream.py, `_publish`), so the page's frame `seq` N is the
test's frame N. The test records its frames by seq, reads what the page shows
through Chromium's DevTools protocol (Runtime.evaluate over a websocket), and
compares every figure shown for seq N with frame N: the exact value in each
element's data-value, and its text as formatted for people.

Chromium comes from PATH, or tests/install_chromium.sh installs it (CI runs as
root); if neither works the test fails and says why: it never skips.
Loopback only; an absolute timeout on everything; Chromium is killed at the end.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

import grpc
import msgpack  # type: ignore[import-untyped]
import pytest
import trio
from _api import lease_v2, pushback_s
from _installed import found_or_installed
from _server_process import ServerProcess, leasehold_executable, running_server, write_feed
from trio_websocket import WebSocketConnection, wrap_client_stream

from leasehold import __version__
from leasehold.bench._admin import window_request
from leasehold.core import SlotKey
from leasehold.health.frames import Health, ShardFigures, Subscribe, decode
from leasehold.health.watch import Condition, condition, gateway_figures, open_watch
from leasehold.proto.admin.v1 import inventory_pb2_grpc
from leasehold.proto.v2 import booking_pb2 as pb2
from leasehold.proto.v2 import booking_pb2_grpc as grpc2

INTERVAL_S = 0.5
FRAMES_TO_CHECK = 3
START = 4_102_444_800  # 2100-01-01: slots that have not ended, whenever the test runs
KEYS = [SlotKey(f"m{i}", "svc", START, 1800) for i in range(8)]
INSTALL_SCRIPT = Path(__file__).with_name("install_chromium.sh")
INSTALL_TIMEOUT_S = 480
DEVTOOLS = re.compile(rb"DevTools listening on (ws://\S+)")
HEALTH_URL = re.compile(r"ws://\S+")
NOTHING_SHOWN = "\N{EN DASH}"  # how the page writes a null figure (no journal)
CONDITIONS = {Condition.SHEDDING: "shed", Condition.HOT: "hot", Condition.LAGGING: "lag"}

# Per field: (how the page scales the frame's value for its text, decimals shown).
SHARD_TEXT = {
    "id": (1, 0),
    "rps": (1, 1),
    "mailbox_depth": (1, 0),
    "mailbox_capacity": (1, 0),
    "p50_s": (1000, 2),
    "p99_s": (1000, 2),
    "max_s": (1000, 2),
    "live_leases": (1, 0),
    "confirmed_bookings": (1, 0),
    "expired": (1, 0),
    "shed": (1, 0),
    "expiry_lag_s": (1000, 1),
    "fsync_s": (1000, 2),
    "fsync_max_s": (1000, 2),
    "journal_bytes": (0.001, 1),
    "slots": (1, 0),
    "inventory_changes_total": (1, 0),
    "inventory_last_change_at": (1, 0),  # shown as the UTC time of day: see check_figure
    "orphaned_bookings": (1, 0),
}
PROCESS_TEXT = {
    "seq": (1, 0),
    "interval_s": (1, 1),
    "uptime_s": (1, 1),
    "rss_bytes": (1e-6, 1),
    "loop_lag_s": (1000, 1),
    "grpc_connections": (1, 0),
    "watchers": (1, 0),
    "frames_dropped": (1, 0),
}

GATEWAY_TEXT = {
    "in_flight": (1, 0),
    "limit": (1, 0),
    "pushback_ms": (1, 1),
    "loop_lag_ms": (1, 2),
    "return_path_ms": (1, 2),
    "overloaded": (1, 0),
    "deadline": (1, 0),
    "other_refused": (1, 0),
}

# Everything the page shows, read in one evaluation: the page updates its DOM for a
# frame in one task, so this snapshot never mixes two frames.
READ_PAGE = """(() => {
  // Chromium opens about:blank first, then the dashboard.
  if (!document.getElementById("shards") || document.readyState !== "complete") return null;
  const read = (root) => Object.fromEntries([...root.querySelectorAll("[data-field]")]
    .map((e) => [e.dataset.field, [e.dataset.value, e.textContent]]));
  const table = document.getElementById("shards");
  return {
    seq: table.dataset.seq,
    state: document.getElementById("status").dataset.state,
    rows: [...table.querySelectorAll("tbody tr")].map((r) =>
      ({ shard: r.dataset.shard, condition: r.dataset.condition, cells: read(r) })),
    totals: read(table.querySelector("tfoot")),
    process_seq: document.getElementById("process").dataset.seq,
    process: read(document.getElementById("process")),
    charts: Object.fromEntries([...document.querySelectorAll("figure[data-chart]")]
      .map((f) => [f.dataset.chart, { seq: f.dataset.seq, latest: JSON.parse(f.dataset.latest),
        axis: JSON.parse(f.dataset.axis || "[]") }])),
    version: document.getElementById("version").dataset.value,
    conditions: [...document.querySelectorAll("#conditions [data-condition]")]
      .map((e) => e.dataset.condition),
    gateways: [...document.querySelectorAll("#gateways tbody tr")]
      .map((r) => ({ name: r.dataset.gateway, cells: read(r) })),
  };
})()"""


# ---- Chromium: found or installed, never skipped ----


@pytest.fixture(scope="module")
def chromium() -> str:
    return found_or_installed("chromium", INSTALL_SCRIPT, INSTALL_TIMEOUT_S)


# ---- the server, under load ----


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    entries = [
        {
            "merchant_id": key.merchant_id,
            "service_id": key.service_id,
            "start_sec": key.start_sec,
            "duration_sec": key.duration_sec,
            "spots_total": 1_000_000,
            "spots_open": 1_000_000,
        }
        for key in KEYS
    ]
    feed = write_feed(tmp_path / "feed.json", {"service_availability": [{"availability": entries}]})
    # Leases live 1 s, so live leases, expiries and the journal all move.
    flags = ["--feed", str(feed), "--shards", "2", "--default-lease-ttl", "1"]
    with running_server(tmp_path / "data", *flags, "--max-lease-ttl", "1") as process:
        change_inventory(process)
        yield process


def change_inventory(server: ServerProcess) -> None:
    """One admin change (a spot more on KEYS[0]), so the inventory columns show one."""
    target = server.admin_target()
    assert target is not None, "".join(server.output)
    request = window_request(KEYS, [0], {0: 1_000_001})
    with grpc.insecure_channel(target) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)
        assert stub.ReplaceServiceAvailability(request, timeout=10).changed == 1


@pytest.fixture
def load(server: ServerProcess) -> Iterator[None]:
    """CreateLease calls from a thread (grpcio, blocking), until the test ends."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def lease_until_stopped() -> None:
        try:
            with grpc.insecure_channel(server.target) as channel:
                stub = grpc2.BookingServiceStub(channel)
                count = 0
                pause_s = 0.002  # a few hundred calls a second: enough to show
                while not stop.wait(pause_s):
                    key = KEYS[count % len(KEYS)]
                    pause_s = _pushback_s(stub, lease_v2(key, f"load-{count}")) or 0.002
                    count += 1
        except BaseException as problem:  # reported by the fixture, not lost in the thread
            failures.append(problem)

    thread = threading.Thread(target=lease_until_stopped, name="load", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=15)
    assert not thread.is_alive(), "the load thread did not stop"
    assert not failures, f"the load failed: {failures[0]!r}"


def _pushback_s(stub: grpc2.BookingServiceStub, request: pb2.CreateLeaseRequest) -> float | None:
    """Make one call; None if answered, or the pushback of a RESOURCE_EXHAUSTED refusal
    (a busy machine's server may shed a call: a caller that honours it is served later)."""
    try:
        stub.CreateLease(request, timeout=10)
    except grpc.RpcError as refused:
        pause = pushback_s(refused)
        if pause is None:
            raise
        return pause
    return None


def health_url(server: ServerProcess) -> str:
    url = server.health_url()
    assert url is not None, "the server printed no health stream URL:\n" + "".join(server.output)
    assert HEALTH_URL.fullmatch(url), url
    return url


# ---- Chromium over the DevTools protocol ----


class Page:
    """One page's DevTools session: evaluate JavaScript, get its value."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._ids = 0

    async def evaluate(self, expression: str) -> Any:
        self._ids += 1
        request = {
            "id": self._ids,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "returnByValue": True},
        }
        await self._ws.send_message(json.dumps(request))
        while True:  # events are not enabled, but skip anything that is not our answer
            answer = json.loads(await self._ws.get_message())
            if answer.get("id") == self._ids:
                break
        result = answer["result"]
        assert "exceptionDetails" not in result, result["result"].get("description")
        return result["result"].get("value")


@asynccontextmanager
async def headless_page(chromium: str, url: str, profile: Path) -> AsyncIterator[Page]:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        url,
    ]
    # Its own process group: Chromium's helper processes are killed with it.
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        async with trio.open_nursery() as nursery:
            browser_url = await nursery.start(_drain_stderr, process.stderr)
            port = urlsplit(browser_url).port
            assert port is not None
            async with _page_session(nursery, port) as page:
                yield page
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await _kill(process)


async def _drain_stderr(
    stderr: trio.abc.ReceiveStream | None, *, task_status: trio.TaskStatus[str]
) -> None:
    """Find the DevTools URL on Chromium's stderr, then keep reading it so it never blocks."""
    assert stderr is not None
    seen = b""
    with trio.fail_after(30):
        while (match := DEVTOOLS.search(seen)) is None:
            chunk = await stderr.receive_some()
            assert chunk, "chromium exited before DevTools listened:\n" + seen.decode("replace")
            seen += chunk
    task_status.started(match.group(1).decode())
    while await stderr.receive_some():
        pass


@asynccontextmanager
async def _page_session(nursery: trio.Nursery, port: int) -> AsyncIterator[Page]:
    targets = await trio.to_thread.run_sync(_targets, port)
    pages = [t for t in targets if t["type"] == "page"]
    assert len(pages) == 1, targets
    resource = urlsplit(pages[0]["webSocketDebuggerUrl"]).path
    # Our own TCP stream: trio-websocket leaves its own open if the peer closes first.
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        ws = await wrap_client_stream(
            nursery, stream, f"127.0.0.1:{port}", resource, max_message_size=1 << 24
        )
        async with ws:
            yield Page(ws)


def _targets(port: int) -> list[dict[str, str]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
        return cast(list[dict[str, str]], json.load(answer))


async def _kill(process: trio.Process) -> None:
    if process.returncode is None:
        os.killpg(process.pid, signal.SIGKILL)
    with trio.move_on_after(10):
        await process.wait()
    if process.stderr is not None:
        await process.stderr.aclose()


# ---- the test ----


async def record_frames(ws: WebSocketConnection, frames: dict[int, Health]) -> None:
    while True:
        message = await ws.get_message()
        assert isinstance(message, bytes)
        frame = decode(message)
        assert isinstance(frame, Health)
        frames[frame.seq] = frame


async def dashboard_path() -> Path:
    printed = await trio.run_process([leasehold_executable(), "dashboard"], capture_stdout=True)
    path = Path(printed.stdout.decode().strip())
    assert path.name == "dashboard.html"
    assert await trio.Path(path).is_file()
    return path


@pytest.mark.e2e
@pytest.mark.usefixtures("load")
@pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)  # the chromium fixture may install it first
async def test_the_page_shows_the_figures_of_the_frames_the_server_sent(
    server: ServerProcess, chromium: str, tmp_path: Path
) -> None:
    ws_url = health_url(server)
    query = urlencode({"ws": ws_url, "interval": INTERVAL_S})
    page_url = f"{(await dashboard_path()).as_uri()}?{query}"
    frames: dict[int, Health] = {}
    checked: list[int] = []
    with trio.fail_after(90):
        # The test's watcher joins first, so the page joins its interval group.
        async with open_watch(ws_url, interval_s=INTERVAL_S) as (ws, hello):
            assert hello.interval_s == INTERVAL_S
            async with trio.open_nursery() as nursery:
                nursery.start_soon(record_frames, ws, frames)
                async with headless_page(chromium, page_url, tmp_path / "profile") as page:
                    while len(checked) < FRAMES_TO_CHECK:
                        shown = await page.evaluate(READ_PAGE)  # None: still loading
                        seq = int(shown["seq"]) if shown and shown["seq"] else None
                        frame = None if seq is None else frames.get(seq)
                        if frame is None or seq in checked or not _busy(frame):
                            await trio.sleep(0.1)  # no new frame shown yet (or no load yet)
                            continue
                        check_page(shown, frame)
                        checked.append(frame.seq)
                nursery.cancel_scope.cancel()
    assert len(set(checked)) == FRAMES_TO_CHECK


def _busy(frame: Health) -> bool:
    return all(s.total_rps > 0 for s in frame.shards)


def check_page(shown: dict[str, Any], frame: Health) -> None:
    seq = str(frame.seq)
    # The fixture changed the inventory once: its time is among the figures compared.
    assert any(s.inventory_last_change_at for s in frame.shards)
    assert shown["state"] == "connected"
    assert shown["version"] == __version__
    assert shown["conditions"] == ["shed", "hot", "lag"]  # the row colours' legend
    for chart in shown["charts"].values():
        assert chart["axis"][-1] == "now"
        assert all(re.fullmatch("\u2212\\d+ s", label) for label in chart["axis"][:-1])
    assert shown["process_seq"] == seq
    assert {name: chart["seq"] for name, chart in shown["charts"].items()} == {
        "rps": seq,
        "p99_s": seq,
        "live_leases": seq,
        "shed": seq,
    }
    rows = {int(row["shard"]): row for row in shown["rows"]}
    assert sorted(rows) == [s.id for s in frame.shards]
    fair_share = sum(s.total_rps for s in frame.shards) / len(frame.shards)
    for figures in frame.shards:
        row = rows[figures.id]
        assert row["condition"] == CONDITIONS.get(condition(figures, fair_share), "")
        expected = {name: _shard_value(figures, name) for name in SHARD_TEXT}
        assert set(row["cells"]) == set(expected)
        for name, value in expected.items():
            check_figure(row["cells"][name], value, *SHARD_TEXT[name], where=f"{seq}/{name}")
        charts = {name: chart["latest"][str(figures.id)] for name, chart in shown["charts"].items()}
        assert charts["rps"] == pytest.approx(figures.total_rps, rel=1e-12)
        assert charts["p99_s"] == pytest.approx(figures.p99_s * 1000, rel=1e-12)
        assert (charts["live_leases"], charts["shed"]) == (figures.live_leases, figures.shed)
    check_totals(shown["totals"], frame.shards, seq)
    check_gateways(shown["gateways"], frame, seq)
    process = vars_of(frame)
    for name, (scale, decimals) in PROCESS_TEXT.items():
        check_figure(shown["process"][name], process[name], scale, decimals, where=f"{seq}/{name}")


def check_gateways(shown: list[dict[str, Any]], frame: Health, seq: str) -> None:
    """A row per gateway the frame has figures for, as `leasehold watch` names them."""
    expected = gateway_figures(frame)
    assert expected, "the server sent no gateway figures"
    rows = {row["name"]: row["cells"] for row in shown}
    assert set(rows) == {name for name, _ in expected}
    for name, g in expected:
        others = sum(n for kind, n in g.refusals.items() if kind not in ("OVERLOADED", "DEADLINE"))
        values = {
            "in_flight": g.in_flight,
            "limit": g.limit,
            "pushback_ms": g.pushback_ms,
            "loop_lag_ms": g.loop_lag_ms,
            "return_path_ms": g.return_path_ms,
            "overloaded": g.refusals.get("OVERLOADED", 0),
            "deadline": g.refusals.get("DEADLINE", 0),
            "other_refused": others,
        }
        assert set(rows[name]) == set(values)
        for field, value in values.items():
            check_figure(rows[name][field], value, *GATEWAY_TEXT[field], where=f"{seq}/{field}")


def vars_of(frame: Health) -> dict[str, object]:
    p = frame.process
    return {
        "seq": frame.seq,
        "interval_s": frame.interval_s,
        "uptime_s": p.uptime_s,
        "rss_bytes": p.rss_bytes,
        "loop_lag_s": p.loop_lag_s,
        "grpc_connections": p.grpc_connections,
        "watchers": p.watchers,
        "frames_dropped": p.frames_dropped,
    }


def _shard_value(figures: ShardFigures, name: str) -> float | None:
    value = figures.total_rps if name == "rps" else getattr(figures, name)
    assert value is None or isinstance(value, int | float)
    return value


def check_totals(totals: dict[str, list[str]], shards: tuple[ShardFigures, ...], seq: str) -> None:
    def known(name: str) -> list[float]:
        values = [getattr(s, name) for s in shards]
        return [v for v in values if v is not None]

    journals = known("journal_bytes")
    last = known("inventory_last_change_at")
    expected: dict[str, float | None] = {
        "rps": sum(s.total_rps for s in shards),
        "mailbox_depth": sum(s.mailbox_depth for s in shards),
        "p99_s": max(s.p99_s for s in shards),
        "max_s": max(s.max_s for s in shards),
        "live_leases": sum(s.live_leases for s in shards),
        "confirmed_bookings": sum(s.confirmed_bookings for s in shards),
        "expired": sum(s.expired for s in shards),
        "shed": sum(s.shed for s in shards),
        "journal_bytes": sum(journals) if journals else None,
        "slots": sum(known("slots")) if known("slots") else None,
        "inventory_changes_total": sum(known("inventory_changes_total"))
        if known("inventory_changes_total")
        else None,
        "inventory_last_change_at": max(last) if last else None,
        "orphaned_bookings": sum(known("orphaned_bookings"))
        if known("orphaned_bookings")
        else None,
    }
    assert set(totals) == set(expected)
    for name, value in expected.items():
        check_figure(totals[name], value, *SHARD_TEXT[name], where=f"{seq}/total {name}")


def check_figure(
    shown: list[str], value: object, scale: float, decimals: int, *, where: str
) -> None:
    """The element's data-value is the frame's value; its text, that value as formatted."""
    data_value, text = shown
    if value is None:
        assert (data_value, text) == ("", NOTHING_SHOWN), where
        return
    assert isinstance(value, int | float), where
    if where.endswith("inventory_last_change_at"):
        assert float(data_value) == pytest.approx(value, rel=1e-12), where
        assert text == time.strftime("%H:%M:%S", time.gmtime(value)), (where, text, value)
        return
    # JavaScript writes the shortest text that reads back as the same double, as Python does.
    assert float(data_value) == pytest.approx(value, rel=1e-12), where
    # Rounding to `decimals` may differ between JavaScript and Python on exact halves.
    tolerance = 0.5 * 10.0**-decimals + 1e-9 * max(1.0, abs(value * scale))
    assert math.isclose(float(text), value * scale, abs_tol=tolerance), (where, text, value)


# ---- the page's own msgpack reader and writer, against Python's msgpack ----

# Every format family the reader handles, at the edges of its widths.
SAMPLES: list[object] = [
    None,
    True,
    False,
    0,
    127,
    128,
    255,
    256,
    65_535,
    65_536,
    2**32 - 1,
    2**32,
    2**53 - 1,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32_768,
    -32_769,
    -(2**31),
    -(2**31) - 1,
    -(2**53) + 1,
    0.5,
    -1.25e-300,
    "",
    "é" * 15,
    "x" * 31,
    "y" * 32,
    "z" * 256,
    "w" * 65_536,
    list(range(15)),
    list(range(16)),
    list(range(70_000)),
    {f"k{i}": i for i in range(15)},
    {f"k{i}": [i, {"deep": None}] for i in range(16)},
]


def _as_base64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _read_in_page(data: bytes) -> str:
    return f"""(() => {{
      const bytes = Uint8Array.from(atob("{_as_base64(data)}"), (c) => c.charCodeAt(0));
      try {{ return {{ value: decodeMsgpack(bytes) }}; }}
      catch (problem) {{ return {{ error: problem.message }}; }}
    }})()"""


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 60)
async def test_the_pages_msgpack_reader_and_writer_agree_with_python(
    chromium: str, tmp_path: Path
) -> None:
    # Nothing listens on port 1: the page just retries while the test uses its functions.
    page_url = f"{(await dashboard_path()).as_uri()}?ws=ws://127.0.0.1:1/"
    with trio.fail_after(60):
        async with headless_page(chromium, page_url, tmp_path / "profile") as page:
            # The browser offers no event for "loaded": ask until it is.
            while not await page.evaluate("typeof decodeMsgpack === 'function'"):  # noqa: ASYNC110
                await trio.sleep(0.05)  # about:blank first, then the dashboard
            for value in SAMPLES:
                packed = msgpack.packb(value, use_bin_type=True)
                assert await page.evaluate(_read_in_page(packed)) == {"value": value}
            float32 = b"\xca" + struct.pack(">f", 0.25)
            assert await page.evaluate(_read_in_page(float32)) == {"value": 0.25}
            binary = await page.evaluate(_read_in_page(msgpack.packb(b"\x00\xff")))
            assert binary == {"value": {"0": 0, "1": 255}}  # a Uint8Array, as JSON
            refusals = {
                b"\x92\x01": "msgpack: truncated",
                b"\x01\x02": "msgpack: extra bytes after the value",
                b"\xd4\x01\x00": "msgpack: unsupported type byte 0xd4",  # fixext 1
                b"\x81\x01\x02": "msgpack: map keys must be strings",
                b"\x91" * 40 + b"\xc0": "msgpack: nested too deeply",
            }
            for data, message in refusals.items():
                assert await page.evaluate(_read_in_page(data)) == {"error": message}
            for interval_s, token in [(0.5, "tök"), (None, None), (2, "x" * 300)]:
                written = await page.evaluate(
                    "btoa(String.fromCharCode(...subscribeFrame("
                    f"{json.dumps(interval_s)}, {json.dumps(token)})))"
                )
                assert decode(base64.b64decode(written)) == Subscribe(interval_s, token)


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 60)
async def test_the_page_says_what_to_do_when_it_cannot_connect(
    chromium: str, tmp_path: Path
) -> None:
    # A bound port that does not listen: every connection is refused at once.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{closed.getsockname()[1]}/"
        page_url = f"{(await dashboard_path()).as_uri()}?{urlencode({'ws': url})}"
        status = "document.getElementById('status')"
        with trio.fail_after(60):
            async with headless_page(chromium, page_url, tmp_path / "profile") as page:
                while await page.evaluate(f"{status} && {status}.dataset.state") != "unreachable":  # noqa: ASYNC110
                    await trio.sleep(0.05)
                said = await page.evaluate(f"{status}.textContent")
    assert said.startswith(f"cannot connect to {url}: is leasehold serve running?")
    assert "?ws=URL" in said
