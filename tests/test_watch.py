"""`leasehold watch`: what the screen shows (pure), reconnecting, and a clean exit.

The screen is tested from frames alone (health.watch's WatchState and render are
pure). The loop is tested twice: its backoff in virtual time with a connect that
always fails, and its reconnect over real loopback against a health server that
stops and comes back (real sockets: the real clock, absolute timeouts, and no
assertion on how long anything took).
"""

from __future__ import annotations

import io
import itertools
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace

import pytest
import trio
import trio.testing
from _server_process import leasehold_executable
from rich.console import Console, RenderableType
from rich.table import Table
from trio_websocket import WebSocketConnection

from leasehold.core import ApiVersion, CreateLease, Lease, SlotKey, SlotRef, SlotSpec
from leasehold.health import HealthConfig, HealthServer, serve_health
from leasehold.health.frames import (
    GatewayFigures,
    Health,
    Hello,
    ProcessFigures,
    ProcessRow,
    ShardFigures,
)
from leasehold.health.watch import (
    RECONNECT_FIRST_S,
    RECONNECT_MAX_S,
    SPARK_FRAMES,
    Condition,
    WatchRefused,
    WatchState,
    condition,
    open_watch,
    render,
    run_watch,
    shard_table,
    sparkline,
)
from leasehold.shards import ShardSet, call, run_shards

URL = "ws://127.0.0.1:1/"
PROCESS = ProcessFigures(
    uptime_s=61.0,
    rss_bytes=50_000_000,
    loop_lag_s=0.002,
    grpc_connections=3,
    watchers=1,
    frames_dropped=0,
)


def shard(
    shard_id: int,
    rps: float = 0.0,
    *,
    shed: int = 0,
    depth: int = 0,
    lag_s: float = 0.0,
    leases: int = 0,
) -> ShardFigures:
    return ShardFigures(
        id=shard_id,
        mailbox_depth=depth,
        mailbox_capacity=100,
        rps={"CreateLease": rps},
        p50_s=0.001,
        p99_s=0.001 * (shard_id + 1),
        max_s=0.002 * (shard_id + 1),
        live_leases=leases,
        confirmed_bookings=0,
        expired=0,
        shed=shed,
        requests_total=0,
        expired_total=0,
        shed_total=shed,
        expiry_lag_s=lag_s,
    )


def health(seq: int, *shards: ShardFigures) -> Health:
    return Health(seq=seq, at=0.0, interval_s=1.0, shards=shards, process=PROCESS)


def text_of(renderable: RenderableType) -> str:
    console = Console(width=200, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def column(table: Table, header: str) -> list[str]:
    (found,) = [c for c in table.columns if c.header == header]
    return [str(cell) for cell in found.cells]


# ---- what the screen shows ----


@pytest.mark.parametrize(
    ("figures", "expected"),
    [
        (shard(0, rps=10), Condition.OK),
        (shard(0, rps=10, lag_s=0.5), Condition.LAGGING),
        (shard(0, rps=10, depth=50), Condition.HOT),  # half its mailbox
        (shard(0, rps=201), Condition.HOT),  # over twice the fair share of 100/s
        (shard(0, rps=9, depth=49, lag_s=0.09), Condition.OK),  # just under every line
        (shard(0, rps=201, lag_s=0.5), Condition.HOT),  # hot outranks lagging
        (shard(0, rps=201, depth=99, shed=1), Condition.SHEDDING),  # shedding outranks all
    ],
)
def test_a_shard_shows_the_worst_of_shedding_hot_lagging(
    figures: ShardFigures, expected: Condition
) -> None:
    assert condition(figures, fair_share_rps=100.0) is expected


def test_a_quiet_server_has_no_hot_shard_however_uneven() -> None:
    # 9/s against a fair share of 2/s is uneven, but too little to call hot.
    assert condition(shard(0, rps=9), fair_share_rps=2.0) is Condition.OK


def test_sparkline_scales_to_the_largest_value() -> None:
    assert sparkline([]) == ""
    assert sparkline([0, 0, 0]) == "▁▁▁"
    assert sparkline([0, 50, 100]) == "▁▅█"
    assert sparkline([7, 7]) == "██"


def test_the_table_lists_shards_busiest_first_with_totals() -> None:
    frame = health(1, shard(0, rps=5, leases=1), shard(1, rps=300, leases=2), shard(2, rps=40))
    table = shard_table(frame)
    assert column(table, "shard") == ["1", "2", "0"]
    assert column(table, "req/s") == ["300", "40", "5"]
    footers = {str(c.header): str(c.footer) for c in table.columns}
    assert footers["req/s"] == "345"
    assert footers["leases"] == "3"
    assert footers["p99"] == "3.0ms"  # the worst shard's, not a sum


def test_the_fsync_column_shows_each_journal_and_the_slowest() -> None:
    journaled = replace(shard(0, rps=2), fsync_s=0.004, fsync_max_s=0.02, journal_bytes=10)
    frame = health(1, journaled, replace(shard(1, rps=1), fsync_s=0.0005), shard(2))
    table = shard_table(frame)
    assert column(table, "fsync") == ["4.0ms", "500µs", "-"]  # "-": no journal
    assert {str(c.header): str(c.footer) for c in table.columns}["fsync"] == "4.0ms"


def test_the_inventory_columns_show_slots_changes_with_their_age_and_orphans() -> None:
    changed = replace(
        shard(0, rps=2),
        slots=40,
        inventory_changes_total=12,
        inventory_last_change_at=1_000.0,
        orphaned_bookings=3,
    )
    quiet = replace(shard(1, rps=1), slots=60, inventory_changes_total=0, orphaned_bookings=0)
    older = replace(
        shard(3), slots=5, inventory_changes_total=1, inventory_last_change_at=400.0,
        orphaned_bookings=1,
    )  # fmt: skip
    frame = replace(health(1, changed, quiet, shard(2), older), at=1_003.0)
    table = shard_table(frame)
    assert column(table, "shard") == ["0", "1", "2", "3"]
    assert column(table, "slots") == ["40", "60", "-", "5"]  # "-": no live inventory
    assert column(table, "changes") == ["12, 0m03s ago", "0", "-", "1, 10m03s ago"]
    assert column(table, "orphaned") == ["3", "0", "-", "1"]
    footers = {str(c.header): str(c.footer) for c in table.columns}
    assert footers["slots"] == "105"
    assert footers["changes"] == "13, 0m03s ago"  # the total, and the latest of all
    assert footers["orphaned"] == "4"


def test_ties_in_load_go_to_the_fuller_mailbox_then_the_lower_id() -> None:
    frame = health(1, shard(2, rps=5), shard(1, rps=5), shard(0, rps=5, depth=3))
    assert column(shard_table(frame), "shard") == ["0", "1", "2"]


def test_rows_are_coloured_by_condition() -> None:
    frame = health(
        1,
        shard(0, rps=100),
        shard(1, rps=100, shed=4),
        shard(2, rps=100, lag_s=1.0),
        shard(3, rps=100, depth=80),
    )
    table = shard_table(frame)
    styles = dict(zip(column(table, "shard"), (row.style for row in table.rows), strict=True))
    states = dict(zip(column(table, "shard"), column(table, "state"), strict=True))
    assert styles == {"0": "", "1": "bold red", "2": "magenta", "3": "yellow"}
    assert states == {"0": "", "1": "SHED", "2": "LAG", "3": "HOT"}


def test_state_counts_frames_missed_and_keeps_a_bounded_throughput_history() -> None:
    state = WatchState(URL)
    state.on_connect(Hello(interval_s=1.0, shard_count=2))
    for seq in (1, 2, 5, 6):  # 3 and 4 were dropped for us
        state.on_frame(health(seq, shard(0, rps=seq), shard(1, rps=10)))
    assert state.missed == 2
    assert list(state.throughput) == [11, 12, 15, 16]
    for seq in range(7, 7 + SPARK_FRAMES):
        state.on_frame(health(seq, shard(0)))
    assert len(state.throughput) == SPARK_FRAMES
    assert state.missed == 2


def test_a_new_connection_starts_a_new_seq_without_counting_it_as_missed() -> None:
    state = WatchState(URL)
    state.on_connect(Hello(interval_s=1.0, shard_count=1))
    state.on_frame(health(40, shard(0)))
    state.on_disconnect("closed 1001 (server stopping)", 0.5)
    assert not state.connected
    assert state.status == "closed 1001 (server stopping); reconnecting in 0.5 s"
    state.on_connect(Hello(interval_s=1.0, shard_count=1))
    assert state.frame is None
    state.on_frame(health(1, shard(0)))
    assert state.missed == 0


def test_the_screen_waits_for_a_frame_then_shows_process_figures_and_the_table() -> None:
    state = WatchState(URL)
    assert "waiting for the first frame" in text_of(render(state))
    state.on_connect(Hello(interval_s=0.5, shard_count=2, server_version="9.8.7"))
    state.on_frame(health(7, shard(0, rps=10), shard(1, rps=1234, shed=2)))
    screen = text_of(render(state))
    assert "connected, every 0.5 s, server 9.8.7" in screen
    assert "seq 7" in screen
    assert "gRPC conns 3" in screen
    assert "up 1m01s" in screen
    assert "1,244/s" in screen
    assert "SHED" in screen


def test_a_multi_process_server_shows_a_row_per_process() -> None:
    state = WatchState(URL)
    rows = (
        ProcessRow("supervisor", 0, 100, True, 0, 0.01, 20 << 20, None),
        ProcessRow("gateway", 0, 101, True, 2, 0.85, 40 << 20, None),
        ProcessRow("shard", 1, None, False, 1, None, None, None),
    )
    state.on_frame(replace(health(1, shard(0)), processes=rows))
    screen = text_of(render(state))
    assert "gateway 0" in screen
    assert "85%" in screen
    assert "shard 1 (down)" in screen
    assert "process" in text_of(render(state)).split("shard ")[0]  # the process table first
    state.on_frame(health(2, shard(0)))  # a one-process server: no process table
    assert "restarts" not in text_of(render(state))


def test_each_gateway_worker_shows_its_limit_pushback_and_refusals() -> None:
    state = WatchState(URL)
    refusals = {"OVERLOADED": 1234, "DEADLINE": 7, "BAD_TIMEOUT": 2, "LATE_REPLY": 3}
    pinned = GatewayFigures(refusals, 16, 16, 800.0, 3.5, 1.25)
    rows = (
        ProcessRow("gateway", 0, 101, True, 0, 0.85, 40 << 20, None, pinned),
        ProcessRow("gateway", 1, None, False, 1, None, None, None),  # down: no figures
    )
    state.on_frame(replace(health(1, shard(0)), processes=rows))
    screen = text_of(render(state))
    gateway_rows = [line for line in screen.splitlines() if "16/16" in line]
    assert len(gateway_rows) == 1
    for shown in ("gateway 0", "800.0ms", "3.5ms", "1.2ms", "1,234", " 7 ", " 5 "):
        assert shown in gateway_rows[0], shown
    # A one-process server's own gateway, at the top level of the frame.
    state.on_frame(replace(health(2, shard(0)), gateway=pinned))
    assert "16/16" in text_of(render(state))
    state.on_frame(health(3, shard(0)))  # an older server: no gateway table
    assert "in flight/limit" not in text_of(render(state))


# ---- the loop: backoff in virtual time ----


@dataclass
class Screens:
    """What run_watch asked to show, and when (trio time)."""

    shown: list[tuple[float, str, bool]] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    def __call__(self, state: WatchState) -> None:
        self.shown.append((trio.current_time(), state.status, state.connected))
        self.changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self.changed = trio.Event()
            await self.changed.wait()


async def test_retries_back_off_exponentially_to_a_ceiling(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts: list[float] = []

    def refused() -> AbstractAsyncContextManager[tuple[WebSocketConnection, Hello]]:
        attempts.append(trio.current_time())
        raise ConnectionRefusedError(111, "Connection refused")

    screens = Screens()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_watch, WatchState(URL), refused, screens)
        await screens.until(lambda: len(screens.shown) == 9)
        nursery.cancel_scope.cancel()
    assert attempts == pytest.approx([0, 0.5, 1.5, 3.5, 7.5, 12.5, 17.5, 22.5, 27.5])
    assert RECONNECT_FIRST_S == 0.5
    assert RECONNECT_MAX_S == 5.0
    assert screens.shown[0] == (0.0, "connection refused; reconnecting in 0.5 s", False)
    assert screens.shown[4][1] == "connection refused; reconnecting in 5.0 s"


# ---- the loop over real loopback: reconnect, refusal, clean exit ----

KEYS = [SlotKey(f"m{i}", "svc", 1_767_254_400, 1800) for i in range(4)]


async def start_shards(nursery: trio.Nursery) -> ShardSet:
    counter = itertools.count()
    shard_set: ShardSet = await nursery.start(
        lambda task_status: run_shards(
            [SlotSpec(key, spots=10, spots_total=10) for key in KEYS],
            shard_count=2,
            mailbox_capacity=64,
            entropy=lambda: next(counter).to_bytes(15, "big"),
            task_status=task_status,
        )
    )
    return shard_set


@asynccontextmanager
async def health_server(
    shard_set: ShardSet, port: int = 0, token: str | None = None
) -> AsyncIterator[HealthServer]:
    async with trio.open_nursery() as nursery:
        server: HealthServer = await nursery.start(
            serve_health, shard_set, HealthConfig(port=port, token=token)
        )
        try:
            yield server
        finally:
            server.stream.stop()
            with trio.fail_after(5):
                await server.stream.wait_stopped()


@dataclass
class Watched:
    """run_watch's states as they were shown, with a way to wait for one."""

    states: list[tuple[str, bool, int | None]] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)

    def __call__(self, state: WatchState) -> None:
        seq = None if state.frame is None else state.frame.seq
        self.states.append((state.status, state.connected, seq))
        self.changed.set()

    async def until(self, predicate: Callable[[tuple[str, bool, int | None]], bool]) -> None:
        while not (self.states and predicate(self.states[-1])):
            self.changed = trio.Event()
            await self.changed.wait()


async def until_no_watchers(server: HealthServer) -> None:
    # The stream has no event for this; polling is fine under the test's absolute timeout.
    while server.stream.watcher_count:  # noqa: ASYNC110
        await trio.sleep(0.01)


@pytest.mark.timeout(30)
async def test_it_reconnects_when_the_server_goes_away_and_comes_back(
    nursery: trio.Nursery,
) -> None:
    shard_set = await start_shards(nursery)
    watched = Watched()
    state = WatchState("")
    async with health_server(shard_set) as first:
        url = f"ws://127.0.0.1:{first.port}/"
        lease = CreateLease(ApiVersion.V2, SlotRef(KEYS[0], ""), "r1", None)
        assert isinstance(await call(shard_set.handles[0], lease), Lease)

        def connect() -> AbstractAsyncContextManager[tuple[WebSocketConnection, Hello]]:
            return open_watch(url, interval_s=0.1)

        watching = trio.CancelScope()

        async def watch() -> None:
            with watching:
                await run_watch(state, connect, watched)

        nursery.start_soon(watch)
        await watched.until(lambda s: s[2] == 2)
        assert state.frame is not None
        assert sum(s.live_leases for s in state.frame.shards) == 1
    # The first server stopped (1001); the watcher says so and retries.
    await watched.until(lambda s: not s[1])
    assert "closed 1001 (server stopping); reconnecting in 0.5 s" in [s[0] for s in watched.states]
    async with health_server(shard_set, port=first.port) as second:
        await watched.until(lambda s: s[1] and s[2] == 1)  # a new stream: seq anew
        assert state.missed == 0
        watching.cancel()  # what Ctrl-C does to run_watch: the stream is closed cleanly
        with trio.fail_after(5):
            await until_no_watchers(second)
    shard_set.close()


@pytest.mark.timeout(30)
async def test_a_refused_token_is_not_retried(nursery: trio.Nursery) -> None:
    shard_set = await start_shards(nursery)
    async with health_server(shard_set, token="right") as server:

        def connect() -> AbstractAsyncContextManager[tuple[WebSocketConnection, Hello]]:
            return open_watch(f"ws://127.0.0.1:{server.port}/", token="wrong")

        with pytest.raises(WatchRefused, match="1008"):
            await run_watch(WatchState(""), connect, Watched())
    shard_set.close()


@pytest.mark.timeout(60)
async def test_the_command_prints_frames_and_exits_0_on_ctrl_c(nursery: trio.Nursery) -> None:
    shard_set = await start_shards(nursery)
    async with health_server(shard_set) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        command = [leasehold_executable(), "watch", url, "--interval", "0.1"]
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            printed = await read_until(process.stdout, b"seq 2")
            process.send_signal(signal.SIGINT)
            with trio.fail_after(10):
                code = await process.wait()
            assert process.stderr is not None
            errors = await process.stderr.receive_some()
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
                for pipe in (process.stdout, process.stderr):
                    if pipe is not None:
                        await pipe.aclose()
        assert code == 0, errors
        assert b"Traceback" not in errors
        assert b"connected, every 0.1 s" in printed
        with trio.fail_after(5):
            await until_no_watchers(server)
    shard_set.close()


async def read_until(stream: trio.abc.ReceiveStream | None, marker: bytes) -> bytes:
    assert stream is not None
    seen = b""
    with trio.fail_after(30):
        while marker not in seen:
            chunk = await stream.receive_some()
            assert chunk, "the watcher exited early:\n" + seen.decode(errors="replace")
            seen += chunk
    return seen
