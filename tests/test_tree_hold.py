"""Gateway workers started held (a --feed change at the tree's start): a worker binds
nothing before the supervisor's release, and a stop while held ends it unserved."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from leasehold._gateway_main import _released
from leasehold._supervisor import Tree

pytestmark = pytest.mark.timeout(30)


def test_a_held_worker_goes_on_at_the_release_not_before() -> None:
    read_end, write_end = os.pipe()

    async def scenario() -> tuple[bool, bool]:
        stop = asyncio.Event()
        waiting = asyncio.ensure_future(_released(read_end, stop))
        await asyncio.sleep(0.05)
        before = waiting.done()
        os.close(write_end)  # what Tree.release_held does
        return before, await asyncio.wait_for(waiting, 10)

    assert asyncio.run(scenario()) == (False, True)
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(read_end)  # the worker closed its end


def test_a_stop_while_held_ends_the_worker_unserved() -> None:
    read_end, write_end = os.pipe()

    async def scenario() -> bool:
        stop = asyncio.Event()
        waiting = asyncio.ensure_future(_released(read_end, stop))
        await asyncio.sleep(0.05)
        stop.set()
        return await asyncio.wait_for(waiting, 10)

    try:
        assert asyncio.run(scenario()) is False
    finally:
        os.close(write_end)


def test_the_supervisor_releases_once_and_closes_its_pipes(tmp_path: Path) -> None:
    tree = Tree(tmp_path, workers=2, shard_processes=2)
    held_read = tree._hold_read
    tree.release_held()
    assert os.read(held_read, 1) == b""  # end-of-file: every held worker goes on
    tree.release_held()  # again: nothing to do
    tree.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(held_read)
