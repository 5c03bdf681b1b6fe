"""Load generation in client processes: closed loop and open loop, every op recorded.

The coordinator starts `--clients` worker processes (multiprocessing, spawn) and
sends each a `PhaseSpec` per phase; a worker runs it on its own grpc.aio channel
and sends back every record (as rows), its CPU time, and a progress line per
second while it runs.

- Closed loop: `concurrency` callers, each issuing its next request as soon as the
  previous one is answered (plus whatever think time the scenario has).
- Open loop: arrivals at a fixed rate, each at its *intended* time t0 + n/rate,
  whatever happened to earlier ones. A late arrival (the client fell behind, or too
  many are in flight) still records its intended time, and latency is measured from
  it, so a server stall shows up in full (no coordinated omission).
- Every phase is bounded in time (`end_ns`; in-flight calls then finish or hit their
  timeout) and in count (`max_requests` per worker).
- Loopback only: the coordinator refuses any other target.
- No cyclic-GC pause inside a phase (`_collector_paused`): a worker's own stall
  would be measured as the server's latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing.connection
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from leasehold.bench._client import Client
from leasehold.bench._fastloop import run as run_loop
from leasehold.bench._h2call import H2Channel
from leasehold.bench._history import OK, Op, Outcome
from leasehold.core import SlotKey

NANOS = 1_000_000_000
# Open loop: how many arrivals a worker lets be in flight before the next ones wait
# (late, and measured from their intended times).
MAX_OPEN_IN_FLIGHT = 20_000
# asyncio's epoll waits whole milliseconds, rounded up, so a sleep until an arrival's
# intended time woke up to 1 ms late, counted as the server's latency. Arrivals wake
# this much early instead; one sent early is measured from its send (Op.latency_ns),
# one sent late still from its intended time.
EARLY_WAKE_NS = 1_000_000
GRACE_S = 5.0
# The load processes' gRPC clients (bench/_client.py): the low-CPU HTTP/2 one first.
LOAD_CLIENTS = ("h2", "grpcio")
# Connections each client process opens (README, "Processes": the kernel spreads
# connections, not calls, over a multi-process server's gateway workers). grpcio's 4
# per process, 8 in all, once split 7 to 1 over 2 workers; h2's cost little, so 8.
CONNECTIONS_PER_CLIENT = {"h2": 8, "grpcio": 4}
# What a client process sends once, when it is connected and waits for its first phase.
READY = "ready"


@dataclass(frozen=True, slots=True)
class PhaseSpec:
    name: str
    scenario: str
    mode: str  # "closed" or "open"
    # closed: callers in this worker. open: ignored.
    concurrency: int
    # open: arrivals per second for this worker. closed: ignored.
    rate: float
    start_ns: int
    end_ns: int
    max_requests: int
    params: dict[str, Any]
    worker: int
    workers: int
    seed: int
    # Name prefix that makes references, tokens and users unique across runs.
    run_id: str
    # Whether this phase's records count in the figures (warm-up does not).
    measured: bool = True
    # The phase's place in the run: the rounds of one phase share its name, not this.
    number: int = 0


@dataclass(frozen=True, slots=True)
class PhaseResult:
    worker: int
    name: str
    rows: list[tuple[object, ...]]
    cpu_s: float
    wall_s: float
    # Arrivals that had to wait because MAX_OPEN_IN_FLIGHT were already in flight.
    held_back: int = 0
    # The phase overran its hard limit and was cut short: calls may be missing.
    incomplete: bool = False


@dataclass(frozen=True, slots=True)
class Progress:
    worker: int
    phase: str
    second: int
    completed: int
    failed: int
    p99_ms: float
    in_flight: int


class Behaviour(Protocol):
    """What a scenario's callers do; built in the worker from the phase's params."""

    async def caller(self, ctx: Ctx, index: int) -> None:
        """Closed loop: one caller's life; return once `ctx.running()` is false."""

    async def arrival(self, ctx: Ctx, index: int, intended_ns: int) -> None:
        """Open loop: what one arrival does (its first request uses `intended_ns`)."""

    async def alongside(self, ctx: Ctx) -> None:
        """Runs beside the callers or arrivals for the whole phase (may return at once)."""


@dataclass
class Ctx:
    client: Client
    spec: PhaseSpec
    rng: random.Random
    ops: list[Op] = field(default_factory=list)
    in_flight: int = 0
    _names: int = 0

    def running(self) -> bool:
        return time.time_ns() < self.spec.end_ns and len(self.ops) < self.spec.max_requests

    def record(self, op: Op) -> Op:
        self.ops.append(op)
        return op

    def name(self, kind: str) -> str:
        """A name unique to this run, phase, worker and kind: references, tokens, users.

        Unique to the phase's number too: a --ceiling round that reused the reference
        of an earlier round of the same phase got that round's lease back (an
        idempotent replay, as the API requires), often consumed or expired by then.
        """
        self._names += 1
        spec = self.spec
        return f"{spec.run_id}-{spec.name}{spec.number}-{kind}{spec.worker}-{self._names}"

    async def call(self, request: Awaitable[Op]) -> Op:
        self.in_flight += 1
        try:
            return self.record(await request)
        finally:
            self.in_flight -= 1


BehaviourFactory = Callable[[PhaseSpec, list[SlotKey]], Behaviour]


def worker_main(
    index: int,
    target: str,
    key_rows: list[tuple[str, str, int, int, str, str, int]],
    timeout_s: float,
    conn: multiprocessing.connection.Connection,
    progress: Any,
    nice: int = 0,
    load_client: str = "h2",
) -> None:
    """A client process: run each PhaseSpec received on `conn`; None ends it."""
    from leasehold.bench._behaviours import behaviour_for  # the worker's own import, after spawn

    if nice:
        # Below the server on a shared machine: see --client-nice.
        os.nice(nice)
    keys = [SlotKey(*row) for row in key_rows]
    opener = _h2_channels if load_client == "h2" else _grpcio_channels
    serve = _serve(index, target, keys, timeout_s, conn, progress, behaviour_for, opener)
    run_loop(serve, fast=load_client == "h2")


async def _serve(
    index: int,
    target: str,
    keys: list[SlotKey],
    timeout_s: float,
    conn: multiprocessing.connection.Connection,
    progress: Any,
    factory: BehaviourFactory,
    opener: Opener,
) -> None:
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        channels = await opener(stack, target, timeout_s)
        conn.send(READY)  # the coordinator starts no phase before every client says so
        client = Client(channels, keys, worker=index, timeout_s=timeout_s)
        while True:
            spec = await loop.run_in_executor(None, conn.recv)
            if spec is None:
                return
            with _collector_paused():
                result = await run_phase(client, spec, factory(spec, keys), progress.put)
            conn.send(result)


Opener = Callable[
    [contextlib.AsyncExitStack, str, float],
    Awaitable[list[grpc.aio.Channel] | list[H2Channel]],
]


async def _grpcio_channels(
    stack: contextlib.AsyncExitStack, target: str, timeout_s: float
) -> list[grpc.aio.Channel]:
    # A connection per channel (no shared subchannel pool): the server's kernel spreads
    # connections over its gateway workers, so each client opens several.
    options = [("grpc.so_reuseport", 0), ("grpc.use_local_subchannel_pool", 1)]
    channels = [
        await stack.enter_async_context(grpc.aio.insecure_channel(target, options=options))
        for _ in range(CONNECTIONS_PER_CLIENT["grpcio"])
    ]
    await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), timeout_s)
    return channels


async def _h2_channels(
    stack: contextlib.AsyncExitStack, target: str, timeout_s: float
) -> list[H2Channel]:
    host, port = target.rsplit(":", 1)
    channels = []
    for _ in range(CONNECTIONS_PER_CLIENT["h2"]):
        # "[::1]:PORT" names an IPv6 host; the socket wants it without the brackets.
        channel = await H2Channel.connect(host.strip("[]"), int(port), timeout_s)
        stack.callback(channel.close)
        channels.append(channel)
    return channels


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Keep Python's cyclic GC out of a phase: collect before it, pause it during it.

    With the collector on, a worker's full collections walk every op recorded so
    far, and every open-loop arrival due meanwhile goes out late by that much,
    counted against the server (docs/benchmarks.md). A phase's cyclic garbage is
    bounded by its time and count limits.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def run_phase(
    client: Client,
    spec: PhaseSpec,
    behaviour: Behaviour,
    report: Callable[[Progress], None],
) -> PhaseResult:
    client.phase = spec.name
    ctx = Ctx(client, spec, random.Random(spec.seed * 1000 + spec.worker))
    await _sleep_until(spec.start_ns)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ticker = asyncio.create_task(_progress(ctx, report))
    held_back = 0
    incomplete = False
    # A safety net only: callers stop at end_ns and every call has a timeout, so a phase
    # that overruns this has a bug; its cut-short calls are missing from the history.
    hard_limit = (spec.end_ns - time.time_ns()) / NANOS + client.timeout_s + GRACE_S
    try:
        async with asyncio.timeout(max(hard_limit, 1.0)), asyncio.TaskGroup() as group:
            group.create_task(behaviour.alongside(ctx))
            if spec.mode == "closed":
                for i in range(spec.concurrency):
                    group.create_task(behaviour.caller(ctx, i))
            else:
                held_back = await _open_loop(ctx, behaviour)
    except TimeoutError:
        incomplete = True
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
    return PhaseResult(
        worker=spec.worker,
        name=spec.name,
        rows=[op.row() for op in ctx.ops],
        cpu_s=time.process_time() - cpu0,
        wall_s=time.perf_counter() - wall0,
        held_back=held_back,
        incomplete=incomplete,
    )


async def _open_loop(ctx: Ctx, behaviour: Behaviour) -> int:
    spec = ctx.spec
    if spec.rate <= 0:
        return 0
    interval = NANOS / spec.rate
    # Workers interleave their arrivals instead of firing together.
    first = spec.start_ns + interval * spec.worker / max(spec.workers, 1)
    pending: set[asyncio.Task[None]] = set()
    held_back = 0
    n = 0
    while True:
        intended = round(first + n * interval)
        if intended >= spec.end_ns or len(ctx.ops) >= spec.max_requests:
            break
        await _sleep_until(intended - EARLY_WAKE_NS)
        if len(pending) >= MAX_OPEN_IN_FLIGHT:
            held_back += 1
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(behaviour.arrival(ctx, n, intended))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
    if pending:
        await asyncio.gather(*pending)
    return held_back


async def _sleep_until(when_ns: int) -> None:
    delay = (when_ns - time.time_ns()) / NANOS
    if delay > 0:
        await asyncio.sleep(delay)


async def _progress(ctx: Ctx, report: Callable[[Progress], None]) -> None:
    seen = 0
    second = 0
    while True:
        await asyncio.sleep(1.0)
        second += 1
        fresh = ctx.ops[seen:]
        seen += len(fresh)
        latencies = sorted(op.latency_ns for op in fresh)
        p99 = latencies[int(0.99 * (len(latencies) - 1))] / 1e6 if latencies else 0.0
        failed = sum(1 for op in fresh if op.status != OK and op.outcome is Outcome.UNKNOWN)
        report(
            Progress(ctx.spec.worker, ctx.spec.name, second, len(fresh), failed, p99, ctx.in_flight)
        )
