"""The coordinator: client processes, phases, progress on the terminal, and its own reads.

The coordinator sends no load itself. It starts the client processes, hands each
phase to all of them with one start instant, prints a progress line per second
while they run, and collects every record. Before the run it checks that the
slots are free (the checker assumes so); after it, with nothing in flight, it
reads every slot's availability (the final read the checker compares with the
history).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import queue
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import grpc

from leasehold.bench._client import Client
from leasehold.bench._history import (
    CANCELLED,
    DEADLINE_EXCEEDED,
    NO_STATUS,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    BenchSlot,
    Op,
    Outcome,
)
from leasehold.bench._loadgen import (
    NANOS,
    READY,
    PhaseResult,
    PhaseSpec,
    Progress,
    worker_main,
)

# Answers that turn a request away (or never came): not work the server did for it.
TURNED_AWAY = frozenset({RESOURCE_EXHAUSTED, UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, NO_STATUS})

START_DELAY_S = 0.5
# How long the client processes may take to start and connect (spawn, imports) on a
# loaded machine, beyond the call timeout they wait for the channel.
CLIENT_START_S = 60.0
READ_CONCURRENCY = 32
# How long the preflight asks again for slots whose reads were turned away.
PREFLIGHT_REFUSED_S = 10.0


class RunError(Exception):
    """The run could not be made (not a violation: nothing was proven either way)."""


@dataclass(frozen=True, slots=True)
class PhaseOutcome:
    name: str
    scenario: str
    mode: str
    concurrency: int
    rate: float
    measured: bool
    start_ns: int
    end_ns: int
    ops: list[Op]
    client_cpu_s: float
    # None when the server is not ours to measure (--target).
    server_cpu_s: float | None
    # Busy fraction of the whole machine (all cores) over the phase.
    machine_busy: float
    wall_s: float
    held_back: int
    # server_cpu_s by role (a multi-process server's gateway workers, shard processes,
    # supervisor; bench._server.SpawnedServer.cpu_by_role), when measured.
    server_cpu_by_role: tuple[tuple[str, float], ...] = ()
    # The time windows measured, when the phase ran in rounds (merge_rounds); empty: the
    # one window [start_ns, end_ns).
    windows: tuple[tuple[int, int], ...] = ()

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        return self.windows or ((self.start_ns, self.end_ns),)

    @property
    def seconds(self) -> float:
        return sum(end - start for start, end in self.spans) / NANOS

    def within(self, ns: int) -> bool:
        return any(start <= ns < end for start, end in self.spans)

    def answered(self) -> list[Op]:
        """The requests answered within the phase: what its throughput counts.

        Not those *sent* within it: a closed loop ends with up to its concurrency in
        flight (1000 callers over 10 s would add 100/s to every rate), and an open loop
        with whatever a stall has queued.
        """
        return [op for op in self.ops if self.within(op.recv_ns)]

    def served(self) -> list[Op]:
        """Answered, less those turned away (TURNED_AWAY): a server shedding load answers
        fast, and counting its refusals as throughput would flatter it."""
        return [op for op in self.answered() if op.status not in TURNED_AWAY]


def merge_rounds(phases: Sequence[PhaseOutcome]) -> list[PhaseOutcome]:
    """Phases that ran in rounds (several of one name) as one each, in first-run order.

    Its figures are over all its rounds' windows: requests answered in any of them,
    per second of their summed lengths.
    """
    by_name: dict[str, list[PhaseOutcome]] = {}
    for phase in phases:
        by_name.setdefault(phase.name, []).append(phase)
    return [rounds[0] if len(rounds) == 1 else _merged(rounds) for rounds in by_name.values()]


def _merged(rounds: list[PhaseOutcome]) -> PhaseOutcome:
    first = rounds[0]
    server = [p.server_cpu_s for p in rounds]
    wall = sum(p.wall_s for p in rounds)
    return PhaseOutcome(
        name=first.name,
        scenario=first.scenario,
        mode=first.mode,
        concurrency=first.concurrency,
        rate=first.rate,
        measured=first.measured,
        start_ns=first.start_ns,
        end_ns=rounds[-1].end_ns,
        ops=[op for p in rounds for op in p.ops],
        client_cpu_s=sum(p.client_cpu_s for p in rounds),
        server_cpu_s=None if None in server else sum(s for s in server if s is not None),
        machine_busy=sum(p.machine_busy * p.wall_s for p in rounds) / wall if wall else 0.0,
        wall_s=wall,
        held_back=sum(p.held_back for p in rounds),
        server_cpu_by_role=_summed_roles(p.server_cpu_by_role for p in rounds),
        windows=tuple(span for p in rounds for span in p.spans),
    )


def _summed_roles(
    phases: Iterable[tuple[tuple[str, float], ...]],
) -> tuple[tuple[str, float], ...]:
    total: dict[str, float] = {}
    for roles in phases:
        for role, seconds in roles:
            total[role] = total.get(role, 0.0) + seconds
    return tuple(total.items())


def _role_deltas(
    before: Mapping[str, float] | None, after: Mapping[str, float] | None
) -> tuple[tuple[str, float], ...]:
    if before is None or after is None:
        return ()
    return tuple((role, seconds - before.get(role, 0.0)) for role, seconds in after.items())


class Runner:
    """Client processes for one run. Use as a context manager."""

    def __init__(
        self,
        target: str,
        slots: Sequence[BenchSlot],
        *,
        clients: int,
        timeout_s: float,
        run_id: str,
        seed: int,
        server_cpu: Callable[[], Mapping[str, float] | None] = lambda: None,
        out: TextIO = sys.stderr,
        client_nice: int = 0,
        load_client: str = "h2",
    ) -> None:
        self.target = target
        self.slots = list(slots)
        self.clients = clients
        self.timeout_s = timeout_s
        self.run_id = run_id
        self._phases_started = 0
        self.seed = seed
        self.server_cpu = server_cpu
        self.out = out
        self.client_nice = client_nice
        self.load_client = load_client
        self._context = multiprocessing.get_context("spawn")
        self._progress: Any = self._context.Queue()
        self._conns: list[multiprocessing.connection.Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._op_ids = 0
        self._clients_ready = False

    def __enter__(self) -> Runner:
        rows = [s.key.as_tuple() for s in self.slots]  # a SlotKey's hash is per process
        for index in range(self.clients):
            mine, theirs = self._context.Pipe()
            process = self._context.Process(
                target=worker_main,
                args=(
                    index,
                    self.target,
                    rows,
                    self.timeout_s,
                    theirs,
                    self._progress,
                    self.client_nice,
                    self.load_client,
                ),
                name=f"bench-client-{index}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self._conns.append(mine)
            self._procs.append(process)
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self._conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(None)
        for process in self._procs:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self._progress.close()
        self._progress.join_thread()

    # ----- phases -----------------------------------------------------------------------

    def phase(
        self,
        name: str,
        scenario: str,
        *,
        mode: str = "closed",
        concurrency: int = 0,
        rate: float = 0.0,
        duration_s: float,
        params: dict[str, Any] | None = None,
        per_worker: Callable[[int], dict[str, Any]] | None = None,
        measured: bool = True,
        max_requests: int = 10_000_000,
    ) -> PhaseOutcome:
        """Run one phase on every client process and wait for all of it."""
        self._await_clients()
        start_ns = time.time_ns() + round(START_DELAY_S * NANOS)
        end_ns = start_ns + round(duration_s * NANOS)
        self._phases_started += 1
        for worker, conn in enumerate(self._conns):
            worker_params = dict(params or {})
            if per_worker is not None:
                worker_params.update(per_worker(worker))
            spec = PhaseSpec(
                name=name,
                scenario=scenario,
                mode=mode,
                concurrency=_share(concurrency, worker, self.clients),
                rate=rate / self.clients,
                start_ns=start_ns,
                end_ns=end_ns,
                max_requests=max(1, max_requests // self.clients),
                params=worker_params,
                worker=worker,
                workers=self.clients,
                seed=self.seed,
                run_id=self.run_id,
                measured=measured,
                number=self._phases_started,
            )
            conn.send(spec)
        cpu0, busy0 = self.server_cpu(), _machine_ticks()
        results = self._collect(name, duration_s)
        cpu1, busy1 = self.server_cpu(), _machine_ticks()
        by_role = _role_deltas(cpu0, cpu1)
        incomplete = [r.worker for r in results if r.incomplete]
        ops = [Op.from_row(row) for r in results for row in r.rows]
        if incomplete:
            raise RunError(f"phase {name} overran its time limit on clients {incomplete}")
        return PhaseOutcome(
            name=name,
            scenario=scenario,
            mode=mode,
            concurrency=concurrency,
            rate=rate,
            measured=measured,
            start_ns=start_ns,
            end_ns=end_ns,
            ops=ops,
            client_cpu_s=sum(r.cpu_s for r in results),
            server_cpu_s=sum(s for _, s in by_role) if by_role else None,
            machine_busy=_busy_fraction(busy0, busy1),
            wall_s=max(r.wall_s for r in results),
            held_back=sum(r.held_back for r in results),
            server_cpu_by_role=by_role,
        )

    def _await_clients(self) -> None:
        """Wait (once) until every client process is connected and waiting for a phase.

        A phase is timed from when it is sent: a client still starting (spawning,
        importing, connecting; seconds on a loaded machine) would miss a short one.
        """
        if self._clients_ready:
            return
        deadline = time.monotonic() + CLIENT_START_S + self.timeout_s
        for worker, conn in enumerate(self._conns):
            while not conn.poll(0.1):
                if not self._procs[worker].is_alive() and not conn.poll():
                    raise RunError(f"client process {worker} died before it connected")
                if time.monotonic() > deadline:
                    raise RunError(f"client process {worker} did not connect in time")
            try:
                said = conn.recv()
            except EOFError:
                raise RunError(f"client process {worker} died before it connected") from None
            if said != READY:
                raise RunError(f"client process {worker} said {said!r} before its first phase")
        self._clients_ready = True

    def _collect(self, name: str, duration_s: float) -> list[PhaseResult]:
        results: dict[int, PhaseResult] = {}
        seconds: dict[int, list[Progress]] = {}
        printed = 0
        deadline = time.monotonic() + START_DELAY_S + duration_s + self.timeout_s + 60
        while len(results) < self.clients:
            if time.monotonic() > deadline:
                raise RunError(f"phase {name}: the client processes did not finish")
            for worker, conn in enumerate(self._conns):
                if worker in results:
                    continue
                if not self._procs[worker].is_alive() and not conn.poll():
                    raise RunError(f"client process {worker} died during phase {name}")
                if conn.poll():
                    try:
                        results[worker] = conn.recv()
                    except EOFError:
                        raise RunError(f"client process {worker} died during {name}") from None
            try:
                report: Progress = self._progress.get(timeout=0.1)
            except queue.Empty:
                continue
            if report.phase != name:
                continue
            seconds.setdefault(report.second, []).append(report)
            ready = [s for s, rs in seconds.items() if len(rs) == self.clients and s > printed]
            for second in sorted(ready):
                self._print_progress(name, seconds.pop(second))
                printed = second
        return [results[w] for w in sorted(results)]

    def _print_progress(self, name: str, reports: list[Progress]) -> None:
        done = sum(r.completed for r in reports)
        failed = sum(r.failed for r in reports)
        p99 = max(r.p99_ms for r in reports)
        flight = sum(r.in_flight for r in reports)
        print(
            f"  {name:<10} {reports[0].second:>4}s {done:>8,d} req/s   p99 <= {p99:8.2f} ms"
            f"   unknown {failed:>5}   in flight {flight:>5}",
            file=self.out,
            flush=True,
        )

    # ----- the coordinator's own reads --------------------------------------------------

    def read_all(self, phase: str) -> list[Op]:
        """CheckAvailability of every slot (nothing else in flight), recorded as `phase`."""
        return asyncio.run(self._read_all(phase))

    async def _read_all(self, phase: str) -> list[Op]:
        async with grpc.aio.insecure_channel(self.target) as channel:
            client = Client(
                channel, [s.key for s in self.slots], worker=self.clients, timeout_s=self.timeout_s
            )
            client.phase = phase
            limit = asyncio.Semaphore(READ_CONCURRENCY)

            async def read(slot: int) -> Op:
                async with limit:
                    return await client.check(slot)

            ops = await asyncio.gather(*(read(i) for i in range(len(self.slots))))
        # Unique ids across calls: the coordinator's ids continue where the last read left.
        renumbered = [_renumber(op, self.clients, self._op_ids + i) for i, op in enumerate(ops)]
        self._op_ids += len(ops)
        return renumbered

    def wait_until_free(self, wait_s: float) -> None:
        """Raise RunError unless every slot shows all its spots open (within `wait_s`).

        A read the server turned away (TURNED_AWAY: shed while the client processes
        start beside it, say) says nothing of its slot: those are asked again for up to
        PREFLIGHT_REFUSED_S, whatever `wait_s`.
        """
        started = time.monotonic()
        give_up = started + wait_s
        while True:
            reads = self.read_all("preflight")
            busy = [
                (self.slots[op.slot], op)
                for op in reads
                if op.outcome is not Outcome.APPLIED or op.count != self.slots[op.slot].spots
            ]
            if not busy:
                return
            refused_only = all(op.status in TURNED_AWAY for _, op in busy)
            if refused_only and time.monotonic() < started + PREFLIGHT_REFUSED_S:
                time.sleep(0.5)
                continue
            if time.monotonic() >= give_up:
                slot, op = busy[0]
                raise RunError(
                    f"{len(busy)} slots are not free at the start (e.g. {slot.label()}: "
                    f"status {op.status}, {op.count} of {slot.spots} open); the checker needs "
                    "free slots: restart the server with the bench feed, or wait for leases "
                    "of an earlier run to expire (--preflight-wait)"
                )
            time.sleep(0.5)

    def cancel_all(self, bookings: Sequence[tuple[str, int, str]]) -> None:
        """Cancel bookings (after the run, to leave a --target server reusable)."""
        asyncio.run(self._cancel_all(bookings))

    async def _cancel_all(self, bookings: Sequence[tuple[str, int, str]]) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            client = Client(
                channel, [s.key for s in self.slots], worker=self.clients, timeout_s=self.timeout_s
            )
            limit = asyncio.Semaphore(READ_CONCURRENCY)

            async def cancel(booking_id: str, slot: int, version: str) -> None:
                async with limit:
                    await client.cancel(booking_id, slot, version=version)

            await asyncio.gather(*(cancel(*b) for b in bookings))


def _renumber(op: Op, worker: int, n: int) -> Op:
    row = list(op.row())
    row[0] = (worker << 40) | n
    return Op.from_row(row)


def _share(total: int, worker: int, workers: int) -> int:
    return total // workers + (1 if worker < total % workers else 0)


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot (Linux /proc/stat)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return (0, 0)
    values = [int(v) for v in first]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle, sum(values))


def _busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0
