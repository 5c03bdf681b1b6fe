"""A gateway worker's figures on its ready pipe: the worker's sender never blocks, the
supervisor's reader keeps the latest good line and ignores (and counts) anything else."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio
from trio.testing import MemoryReceiveStream

from leasehold._figures_line import MAX_LINE_BYTES, FiguresSender, LineSplitter, figures_line
from leasehold._figures_reader import STALE_S, WorkerFigures
from leasehold._supervisor import Tree
from leasehold._tree_figures import TreeFigures
from leasehold.health.frames import GatewayFigures

GATEWAY = GatewayFigures({"OVERLOADED": 5, "DEADLINE": 1}, 16, 9, 250.0, 1.5, 0.75)


def test_lines_over_the_limit_are_skipped_to_their_end_and_counted() -> None:
    lines = LineSplitter(limit=16)
    assert lines.feed(b"short\n" + b"x" * 20) == [b"short\n"]
    assert lines.feed(b"y" * 40) == []  # still the same long line: counted once
    assert lines.feed(b"z\nnext\n") == [b"next\n"]
    assert lines.ignored == 1
    assert lines.feed(b"a" * 15 + b"\n") == [b"a" * 15 + b"\n"]  # 16 bytes: the limit
    assert lines.feed(b"a" * 16 + b"\n") == []  # 17: over by one
    assert lines.ignored == 2


@pytest.mark.timeout(10)
async def test_a_good_line_updates_the_view_and_garbage_is_ignored_and_counted() -> None:
    read_end, write_end = os.pipe()
    now = [100.0]
    reader = WorkerFigures(trio.lowlevel.FdStream(read_end), clock=lambda: now[0])
    bad_field = {**GATEWAY.to_map(), "limit": "16"}
    sent = [
        b"not json at all\n",
        b"figures " + b"9" * (2 * MAX_LINE_BYTES) + b"\n",  # oversized
        figures_line(bad_field, 0),
        b"figures [1, 2]\n",
        figures_line(GATEWAY.to_map(), 3),
    ]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader.read_until_closed)
        for line in sent:
            os.write(write_end, line)
        os.close(write_end)
    assert reader.current() == GATEWAY
    assert reader.dropped_by_worker == 3
    assert reader.ignored == 4
    now[0] += STALE_S + 0.1  # a worker that stopped sending: not live
    assert reader.current() is None
    await reader.aclose()


@pytest.mark.timeout(10)
async def test_figures_after_the_ready_line_in_the_same_read_are_kept() -> None:
    read_end, write_end = os.pipe()
    os.close(write_end)
    reader = WorkerFigures(trio.lowlevel.FdStream(read_end), figures_line(GATEWAY.to_map(), 0))
    assert reader.current() == GATEWAY
    await reader.aclose()


def test_the_sender_drops_and_counts_a_line_when_the_pipe_is_full() -> None:
    read_end, write_end = os.pipe()
    sender = FiguresSender()
    sender.attach(write_end)
    try:
        _fill(write_end)  # the supervisor fell behind
        sender.send(GATEWAY.to_map())  # returns at once: the pipe is full
        assert sender.dropped == 1
        os.read(read_end, 1 << 20)
        sender.send(GATEWAY.to_map())
        said = json.loads(os.read(read_end, MAX_LINE_BYTES).removeprefix(b"figures "))
        assert said == {"gateway": GATEWAY.to_map(), "dropped": 1}
    finally:
        sender.close()
        os.close(read_end)


def test_the_sender_stops_once_the_supervisor_is_gone() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    sender = FiguresSender()
    sender.attach(write_end)
    sender.send(GATEWAY.to_map())  # EPIPE: closed, not raised
    sender.send(GATEWAY.to_map())
    assert sender.dropped == 0
    sender.close()


def _fill(fd: int) -> None:
    """Write to a non-blocking pipe until it takes no more."""
    for size in (4096, 1):
        while True:
            try:
                os.write(fd, b"\0" * size)
            except BlockingIOError:
                break


class _Process:
    """What the supervisor's rows read of a child's process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.returncode: int | None = None


async def test_only_a_live_worker_shows_its_figures(tmp_path: Path) -> None:
    tree = Tree(tmp_path, workers=1, shard_processes=0)
    try:
        figures = TreeFigures(tree, shard_count=0)
        worker, process = tree.gateways[0], _Process()
        worker.process = process  # type: ignore[assignment]
        now = [0.0]
        line = figures_line(GATEWAY.to_map(), 0)
        worker.figures = WorkerFigures(MemoryReceiveStream(), line, clock=lambda: now[0])
        await figures.poll()
        assert figures.processes()[-1].gateway == GATEWAY
        process.returncode = -9  # killed: not yet reaped by its watcher
        await figures.poll()
        assert figures.processes()[-1].gateway is None
    finally:
        tree.close()
