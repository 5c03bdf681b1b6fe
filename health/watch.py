"""`leasehold watch [URL]`: a live terminal view of every shard, from the health stream.

Three parts: `open_watch` (the protocol's client side: connect, subscribe, read the
hello), `WatchState` + `render` (pure: what the screen shows, from frames), and
`run_watch` (the loop: connect, apply frames, reconnect with backoff when the
server goes away; refuse to retry what retrying cannot fix, such as a wrong token).
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import trio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, wrap_client_stream

from leasehold.health.frames import (
    MAX_FRAME_BYTES,
    FrameError,
    GatewayFigures,
    Health,
    Hello,
    ShardFigures,
    Subscribe,
    decode,
)

# A shard is hot when its mailbox is this full, or it serves this many times its fair
# share of the throughput (and at least HOT_MIN_RPS).
HOT_MAILBOX_FRACTION = 0.5
HOT_SHARE = 2.0
HOT_MIN_RPS = 10.0
# A shard is lagging when its latest timer expirations ran this late.
LAGGING_S = 0.1
SPARK_FRAMES = 60
_SPARKS = "▁▂▃▄▅▆▇█"
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 5.0
CONNECT_TIMEOUT_S = 5.0
# Close codes after which reconnecting cannot help: the server refused what we sent.
_FATAL_CLOSE_CODES = frozenset({1003, 1008, 1009})


class WatchRefused(Exception):
    """The server refused this watcher (wrong token, bad request): do not retry."""


# ---- the client side of the protocol ----


@contextlib.asynccontextmanager
async def open_watch(
    url: str,
    *,
    interval_s: float | None = None,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[tuple[WebSocketConnection, Hello]]:
    """Connect to a health stream, subscribe, and yield the connection and its hello.

    A wss:// URL is served over TLS with `ssl_context` (default: the system's trust).
    The TCP stream is opened and closed here: trio-websocket's own client leaves it
    open when the server closes first.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream: trio.abc.Stream
    with trio.fail_after(CONNECT_TIMEOUT_S):
        if parts.scheme == "wss":
            context = ssl_context or ssl.create_default_context()
            stream = await trio.open_ssl_over_tcp_stream(
                parts.hostname, parts.port or 443, ssl_context=context
            )
        else:
            stream = await trio.open_tcp_stream(parts.hostname, parts.port or 80)
    try:
        with _lone_exception_as_itself():
            async with trio.open_nursery() as nursery:
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    ws = await wrap_client_stream(
                        nursery,
                        stream,
                        parts.netloc,
                        resource,
                        max_message_size=MAX_FRAME_BYTES,
                    )
                    await ws.send_message(Subscribe(interval_s=interval_s, token=token).encode())
                    hello = await _read_frame(ws)
                if not isinstance(hello, Hello):
                    raise FrameError(f"expected hello, got {hello.type}")
                yield ws, hello
                with trio.move_on_after(CONNECT_TIMEOUT_S):
                    await ws.aclose()  # 1000: we are done
                nursery.cancel_scope.cancel()
    finally:
        # Shielded from the cancel that brought us here, but bounded: a TLS close_notify
        # to a peer that no longer reads must not keep the watcher from exiting.
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CONNECT_TIMEOUT_S):
            await stream.aclose()


@contextlib.contextmanager
def _lone_exception_as_itself() -> Iterator[None]:
    """Re-raise a nursery's lone error as itself, so that callers catch it by type.

    The nursery is an implementation detail of open_watch; strict exception groups
    would otherwise turn a ConnectionClosed into an ExceptionGroup.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        lone = group.exceptions[0] if len(group.exceptions) == 1 else None
        if isinstance(lone, Exception) and not isinstance(lone, BaseExceptionGroup):
            raise lone from None
        raise


async def _read_frame(ws: WebSocketConnection) -> Health | Hello | Subscribe:
    message = await ws.get_message()
    if isinstance(message, str):
        raise FrameError("the server sent text; frames are binary msgpack")
    return decode(message)


# ---- what the screen shows (pure) ----


class Condition(enum.Enum):
    SHEDDING = "SHED"  # refused requests RESOURCE_EXHAUSTED in the interval
    HOT = "HOT"
    LAGGING = "LAG"
    OK = ""


_STYLES = {
    Condition.SHEDDING: "bold red",
    Condition.HOT: "yellow",
    Condition.LAGGING: "magenta",
    Condition.OK: "",
}


def condition(shard: ShardFigures, fair_share_rps: float) -> Condition:
    """The worst thing to say about a shard, in that order: shedding, hot, lagging."""
    if shard.shed > 0:
        return Condition.SHEDDING
    full = shard.mailbox_depth >= HOT_MAILBOX_FRACTION * shard.mailbox_capacity
    busy = shard.total_rps >= max(HOT_SHARE * fair_share_rps, HOT_MIN_RPS)
    if full or busy:
        return Condition.HOT
    if shard.expiry_lag_s >= LAGGING_S:
        return Condition.LAGGING
    return Condition.OK


def sparkline(values: Sequence[float]) -> str:
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return _SPARKS[0] * len(values)
    last = len(_SPARKS) - 1
    return "".join(_SPARKS[min(last, round(v / top * last))] for v in values)


@dataclass
class WatchState:
    url: str
    hello: Hello | None = None
    frame: Health | None = None
    # Whether we are connected now, and if not, why and when we try again.
    status: str = "connecting"
    connected: bool = False
    # Frames this watcher did not get (gaps in seq: dropped by the server for us).
    missed: int = 0
    throughput: deque[float] = field(default_factory=lambda: deque(maxlen=SPARK_FRAMES))

    def on_connect(self, hello: Hello) -> None:
        self.hello, self.frame, self.connected = hello, None, True
        self.status = f"connected, every {hello.interval_s:g} s"
        if hello.server_version is not None:
            self.status += f", server {hello.server_version}"

    def on_frame(self, frame: Health) -> None:
        if self.frame is not None and frame.seq > self.frame.seq + 1:
            self.missed += frame.seq - self.frame.seq - 1
        self.frame = frame
        self.throughput.append(sum(s.total_rps for s in frame.shards))

    def on_disconnect(self, why: str, retry_in_s: float) -> None:
        self.connected = False
        self.status = f"{why}; reconnecting in {retry_in_s:.1f} s"


def render(state: WatchState) -> RenderableType:
    head = Text.assemble(
        ("leasehold watch ", "bold"), (state.url, "cyan"), "  ", _status_text(state)
    )
    frame = state.frame
    if frame is None:
        return Group(head, Text("waiting for the first frame…", style="dim"))
    process = frame.process
    facts = [
        f"up {_duration(process.uptime_s)}",
        f"RSS {_bytes(process.rss_bytes)}",
        f"loop lag {_seconds(process.loop_lag_s)}",
        f"gRPC conns {_count(process.grpc_connections)}",
        f"watchers {process.watchers}",
        f"frames dropped {process.frames_dropped} (for us {state.missed})",
        f"seq {frame.seq}",
    ]
    total = sum(s.total_rps for s in frame.shards)
    spark = Text.assemble(
        ("throughput ", "bold"), (sparkline(state.throughput), "green"), f" {total:,.0f}/s"
    )
    parts: list[RenderableType] = [head, Text("  ".join(facts), style="dim"), spark]
    if frame.processes:
        parts.append(process_table(frame))
    gateways = gateway_figures(frame)
    if gateways:
        parts.append(gateway_table(gateways))
    return Group(*parts, shard_table(frame))


def gateway_figures(frame: Health) -> list[tuple[str, GatewayFigures]]:
    """(name, figures) of the one-process gateway, or of each gateway worker that sent some."""
    if frame.gateway is not None:
        return [("gateway", frame.gateway)]
    return [(f"gateway {r.index}", r.gateway) for r in frame.processes if r.gateway is not None]


# Refusal kinds with a column of their own; the rest are summed in "other".
_OWN_COLUMNS = ("OVERLOADED", "DEADLINE")


def gateway_table(gateways: Sequence[tuple[str, GatewayFigures]]) -> Table:
    """What each gateway refuses (counts since start) and its adaptive limit."""
    table = Table(header_style="bold")
    table.add_column("gateway")
    table.add_column("in flight/limit", justify="right")
    table.add_column("pushback", justify="right")
    table.add_column("loop lag", justify="right")
    table.add_column("return path", justify="right")
    for kind in _OWN_COLUMNS:
        table.add_column(kind.lower(), justify="right")
    table.add_column("other refused", justify="right")
    for name, g in gateways:
        at_limit = g.in_flight >= g.limit
        table.add_row(
            name,
            Text(f"{g.in_flight}/{g.limit}", "bold red" if at_limit else ""),
            _seconds(g.pushback_ms / 1000),
            _seconds(g.loop_lag_ms / 1000),
            _seconds(g.return_path_ms / 1000),
            *(f"{g.refusals.get(kind, 0):,}" for kind in _OWN_COLUMNS),
            f"{sum(n for k, n in g.refusals.items() if k not in _OWN_COLUMNS):,}",
        )
    return table


def process_table(frame: Health) -> Table:
    """Every process of a multi-process server: role, pid, CPU, RSS, restarts, link queue."""
    table = Table(header_style="bold")
    table.add_column("process")
    table.add_column("pid", justify="right")
    table.add_column("CPU", justify="right")
    table.add_column("RSS", justify="right")
    table.add_column("restarts", justify="right")
    table.add_column("link queue", justify="right")
    for row in frame.processes:
        cpu = "-" if row.cpu_share is None else f"{row.cpu_share * 100:.0f}%"
        table.add_row(
            f"{row.role} {row.index}"
            if row.alive
            else Text(f"{row.role} {row.index} (down)", "red"),
            _count(row.pid),
            cpu,
            _bytes(row.rss_bytes),
            str(row.restarts),
            _count(row.link_in_flight),
        )
    return table


def shard_table(frame: Health) -> Table:
    """All shards, busiest first, coloured by condition, with a totals row."""
    shards = sorted(frame.shards, key=lambda s: (-s.total_rps, -s.mailbox_depth, s.id))
    fair_share = sum(s.total_rps for s in shards) / max(1, len(shards))
    table = Table(show_footer=True, header_style="bold", footer_style="bold")
    table.add_column("shard", "total", justify="right")
    table.add_column("state", "")
    table.add_column("req/s", f"{sum(s.total_rps for s in shards):,.0f}", justify="right")
    table.add_column("top RPCs")
    table.add_column("mailbox", f"{sum(s.mailbox_depth for s in shards)}", justify="right")
    table.add_column("p50", justify="right")
    table.add_column("p99", _seconds(max((s.p99_s for s in shards), default=0)), justify="right")
    table.add_column("max", _seconds(max((s.max_s for s in shards), default=0)), justify="right")
    table.add_column("leases", f"{sum(s.live_leases for s in shards):,}", justify="right")
    table.add_column("booked", f"{sum(s.confirmed_bookings for s in shards):,}", justify="right")
    table.add_column("expired", f"{sum(s.expired for s in shards):,}", justify="right")
    table.add_column("shed", f"{sum(s.shed for s in shards):,}", justify="right")
    table.add_column("expiry lag", justify="right")
    # The journal falling behind shows as slow fsyncs ("-": no journal, or no fsync yet).
    table.add_column(
        "fsync", _seconds(max((s.fsync_s or 0 for s in shards), default=0)), justify="right"
    )
    # Live inventory: bookable slots, changes applied (and how long ago the last), and
    # CONFIRMED bookings left on removed slots. "-": a server without live inventory.
    table.add_column("slots", _sum(s.slots for s in shards), justify="right")
    latest = max((s.inventory_last_change_at or 0 for s in shards), default=0)
    changes = _sum(s.inventory_changes_total for s in shards)
    table.add_column("changes", _changes(changes, latest, frame.at), justify="right")
    table.add_column("orphaned", _sum(s.orphaned_bookings for s in shards), justify="right")
    for shard in shards:
        state = condition(shard, fair_share)
        table.add_row(
            str(shard.id),
            state.value,
            f"{shard.total_rps:,.0f}",
            _top_rpcs(shard),
            f"{shard.mailbox_depth}/{shard.mailbox_capacity}",
            _seconds(shard.p50_s),
            _seconds(shard.p99_s),
            _seconds(shard.max_s),
            f"{shard.live_leases:,}",
            f"{shard.confirmed_bookings:,}",
            f"{shard.expired:,}",
            f"{shard.shed:,}",
            _seconds(shard.expiry_lag_s),
            "-" if shard.fsync_s is None else _seconds(shard.fsync_s),
            _sum([shard.slots]),
            _changes(
                _sum([shard.inventory_changes_total]),
                shard.inventory_last_change_at or 0,
                frame.at,
            ),
            _sum([shard.orphaned_bookings]),
            style=_STYLES[state],
        )
    return table


def _sum(values: Iterable[int | None]) -> str:
    """The total of the values a server sent, or "-" when it sent none."""
    known = [v for v in values if v is not None]
    return f"{sum(known):,}" if known else "-"


def _changes(count: str, last_at: float, now: float) -> str:
    """Changes applied, and how long before this frame the last one was ("12, 3s ago")."""
    if count in ("-", "0") or last_at <= 0:
        return count
    return f"{count}, {_duration(max(0.0, now - last_at))} ago"


def _status_text(state: WatchState) -> Text:
    return Text(state.status, style="green" if state.connected else "bold yellow")


def _top_rpcs(shard: ShardFigures) -> str:
    busiest = sorted(((r, k) for k, r in shard.rps.items() if r > 0), reverse=True)[:2]
    return " ".join(f"{kind} {rate:,.0f}" for rate, kind in busiest)


def _seconds(value: float) -> str:
    if value <= 0:
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.0f}µs"
    if value < 1:
        return f"{value * 1e3:.1f}ms"
    return f"{value:.2f}s"


def _duration(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _bytes(value: int | None) -> str:
    return "?" if value is None else f"{value / 1e6:,.0f} MB"


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


# ---- the loop ----

Connect = Callable[[], AbstractAsyncContextManager[tuple[WebSocketConnection, Hello]]]


async def run_watch(
    state: WatchState, connect: Connect, on_change: Callable[[WatchState], None]
) -> None:
    """Show frames until cancelled, reconnecting whenever the stream ends.

    Raises WatchRefused when the server closed us for something a retry repeats.
    """
    delay = RECONNECT_FIRST_S
    while True:
        try:
            async with connect() as (ws, hello):
                state.on_connect(hello)
                on_change(state)
                delay = RECONNECT_FIRST_S
                while True:
                    frame = await _read_frame(ws)
                    if isinstance(frame, Health):
                        state.on_frame(frame)
                        on_change(state)
        except ConnectionClosed as closed:
            reason = closed.reason
            code = 1006 if reason is None else reason.code
            why = f"closed {code}" + (f" ({reason.reason})" if reason and reason.reason else "")
            if code in _FATAL_CLOSE_CODES:
                raise WatchRefused(f"the server refused this watcher: {why}") from None
        except (OSError, HandshakeError, trio.BrokenResourceError, trio.TooSlowError) as problem:
            why = _describe(problem)
        except FrameError as problem:
            why = f"bad frame: {problem}"
        state.on_disconnect(why, delay)
        on_change(state)
        await trio.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_S)


async def watch_until_interrupted(
    state: WatchState, connect: Connect, on_change: Callable[[WatchState], None]
) -> None:
    """run_watch until Ctrl-C, which cancels it as any trio cancellation does.

    Raised as KeyboardInterrupt instead, Ctrl-C lands in whichever task reaches a
    checkpoint, trio-websocket's own tasks included, and its cleanup could hang there
    (a watcher that did not exit within 10 s, now and then under load). A signal that
    arrives before the receiver is open is still a KeyboardInterrupt (watch_main).
    """
    with _lone_exception_as_itself():  # a WatchRefused reaches watch_main as itself
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_interrupt, nursery.cancel_scope)
            await run_watch(state, connect, on_change)
            nursery.cancel_scope.cancel()


async def _cancel_on_interrupt(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


def _describe(problem: BaseException) -> str:
    if isinstance(problem, OSError) and problem.strerror:
        return problem.strerror.lower()
    if isinstance(problem, trio.TooSlowError):
        return "no answer"
    return str(problem) or type(problem).__name__


def client_context(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """For wss://: trust `ca` (else the system's); present `cert` and `key` if given."""
    context = ssl.create_default_context(cafile=None if ca is None else str(ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def watch_main(
    url: str,
    interval_s: float | None,
    token: str | None,
    ssl_context: ssl.SSLContext | None = None,
) -> int:
    """Run the terminal view until Ctrl-C (exit 0) or a refusal (exit 1)."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 150  # piped: room for every column
    state = WatchState(url)

    def connect() -> AbstractAsyncContextManager[tuple[WebSocketConnection, Hello]]:
        return open_watch(url, interval_s=interval_s, token=token, ssl_context=ssl_context)

    # Ctrl-C is raised only at a checkpoint: raised anywhere, it could land inside
    # trio-websocket's or rich's code, and 1 in ~20 wss runs then hung after it.
    try:
        if console.is_terminal:
            with Live(render(state), console=console, auto_refresh=False) as live:
                trio.run(
                    watch_until_interrupted,
                    state,
                    connect,
                    lambda s: live.update(render(s), refresh=True),
                    restrict_keyboard_interrupt_to_checkpoints=True,
                )
        else:  # piped: one plain snapshot per change, for logs
            trio.run(
                watch_until_interrupted,
                state,
                connect,
                partial_print(console),
                restrict_keyboard_interrupt_to_checkpoints=True,
            )
    except (KeyboardInterrupt, BaseExceptionGroup) as stopped:
        # Ctrl-C reaches us as itself or, out of a nursery, inside a group, maybe beside
        # what it caused (the connection it cut short closed under the reader).
        if isinstance(stopped, BaseExceptionGroup) and stopped.subgroup(KeyboardInterrupt) is None:
            raise
        return 0
    except WatchRefused as refused:
        console.print(f"leasehold: error: {refused}", style="bold red")
        return 1
    return 0


def partial_print(console: Console) -> Callable[[WatchState], None]:
    def show(state: WatchState) -> None:
        stamp = time.strftime("%H:%M:%S")
        console.print(f"--- {stamp}")
        console.print(render(state))

    return show
