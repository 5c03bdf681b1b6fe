"""The supervisor's one view of its tree, for the health stream.

Every POLL_S it asks each shard process for its shards' figures over the link
(StatsLink) and samples every process's CPU and RSS from /proc; each gateway
worker's admission figures are its own, sent once a second (Child.figures). The health
stream reads the latest copies (`statistics()`, `processes()`), so a frame never
waits for a child; a shard process that cannot answer keeps its last figures.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import trio

from leasehold._supervisor import Child, Tree
from leasehold._tree import shard_socket
from leasehold.health.frames import ProcessRow
from leasehold.link import StatsLink
from leasehold.shards import SERVICE_TIME_BOUNDS_S, ShardStats, process_of_shard

POLL_S = 0.5
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class _IntervalMax:
    def __init__(self) -> None:
        self._max = 0.0

    def note(self, seconds: float) -> None:
        self._max = max(self._max, seconds)

    def take_interval_max(self) -> float:
        largest, self._max = self._max, 0.0
        return largest


class _RemoteShard:
    __slots__ = ("service_times",)

    def __init__(self) -> None:
        self.service_times = _IntervalMax()


class TreeFigures:
    """What the health stream shows of a multi-process server (health._source.ShardSource)."""

    def __init__(self, tree: Tree, shard_count: int) -> None:
        self._tree = tree
        self.shards = tuple(_RemoteShard() for _ in range(shard_count))
        self._stats = [_nothing_yet(i) for i in range(shard_count)]
        self._links = [StatsLink(shard_socket(tree.runtime_dir, c.index)) for c in tree.shards]
        self._in_flight: list[int | None] = [None] * len(tree.shards)
        self._cpu: dict[int, tuple[float, float]] = {}  # pid -> (when, CPU seconds)
        self._rows: tuple[ProcessRow, ...] = ()

    def statistics(self) -> tuple[ShardStats, ...]:
        return tuple(self._stats)

    def processes(self) -> tuple[ProcessRow, ...]:
        return self._rows

    async def poll_forever(self) -> None:
        while True:
            await trio.sleep(POLL_S)
            await self.poll()

    async def poll(self) -> None:
        async with trio.open_nursery() as nursery:
            for index, link in enumerate(self._links):
                nursery.start_soon(self._ask, index, link)
        supervisor = _row("supervisor", 0, os.getpid(), True, 0, None, self._cpu)
        children = [self._child_row(child) for child in self._tree.children]
        self._rows = (supervisor, *children)

    async def aclose(self) -> None:
        for link in self._links:
            await link.aclose()

    async def _ask(self, index: int, link: StatsLink) -> None:
        answer = await link.ask()
        if answer is None:
            self._in_flight[index] = None
            return
        process, stats, maxima = answer
        self._in_flight[index] = process.in_flight
        shard_count = len(self._stats)
        for figures, largest in zip(stats, maxima, strict=True):
            shard_id = figures.shard_id
            if (
                0 <= shard_id < shard_count
                and process_of_shard(shard_id, len(self._links)) == index
            ):
                self._stats[shard_id] = figures
                self.shards[shard_id].service_times.note(largest)

    def _child_row(self, child: Child) -> ProcessRow:
        process = child.process
        alive = process is not None and process.returncode is None
        in_flight = self._in_flight[child.index] if child.role == "shard" else None
        row = _row(child.role, child.index, child.pid, alive, child.restarts, in_flight, self._cpu)
        figures = child.figures.current() if alive and child.figures is not None else None
        return row if figures is None else dataclasses.replace(row, gateway=figures)


def _row(
    role: str,
    index: int,
    pid: int | None,
    alive: bool,
    restarts: int,
    in_flight: int | None,
    cpu: dict[int, tuple[float, float]],
) -> ProcessRow:
    share = rss = None
    if pid is not None and alive:
        sample = _read_proc(pid)
        if sample is not None:
            cpu_s, rss = sample
            now = time.monotonic()
            before = cpu.get(pid)
            if before is not None and now > before[0]:
                share = round((cpu_s - before[1]) / (now - before[0]), 3)
            cpu[pid] = (now, cpu_s)
    return ProcessRow(role, index, pid, alive, restarts, share, rss, in_flight)


def _read_proc(pid: int) -> tuple[float, int] | None:
    """(CPU seconds, RSS bytes) of a process, from /proc; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except (OSError, IndexError):
        return None
    return (int(stat[11]) + int(stat[12])) / _TICKS, int(statm[1]) * _PAGE


def _nothing_yet(shard_id: int) -> ShardStats:
    return ShardStats(
        shard_id=shard_id,
        mailbox_depth=0,
        mailbox_capacity=0,
        live_leases=0,
        confirmed_bookings=0,
        operations=0,
        expirations=0,
        refused=0,
        deadline_dropped=0,
        shed=0,
        last_expiry_lag_s=0.0,
        operations_by_kind={},
        service_time_counts=(0,) * (len(SERVICE_TIME_BOUNDS_S) + 1),
    )


def established_on(port: int) -> int | None:
    """TCP connections established to `port` on this host (the gateway workers' gRPC
    connections, all workers together), from the kernel's tables; None if unreadable."""
    wanted = f":{port:04X}"
    count = 0
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table, encoding="ascii") as lines:
                next(lines, None)  # the header
                for line in lines:
                    fields = line.split(maxsplit=4)
                    # local_address ends with :PORT (hex); state 01 is ESTABLISHED
                    count += fields[1].endswith(wanted) and fields[3] == "01"
    except (OSError, IndexError):
        return None
    return count
