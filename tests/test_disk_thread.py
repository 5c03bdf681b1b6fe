"""The disk thread: journal writes and fsyncs off the event loop, results handed back."""

from __future__ import annotations

import threading

import pytest
import trio

from leasehold.shards._disk_thread import DiskThread


def test_a_job_returns_its_value_and_runs_off_the_loop() -> None:
    disk = DiskThread()

    async def main() -> tuple[int, str]:
        with trio.fail_after(10):
            return await disk.run(lambda: (41 + 1, threading.current_thread().name))

    value, thread = trio.run(main)
    assert value == 42
    assert thread == "leasehold-disk"


def test_a_job_that_raises_raises_in_its_caller() -> None:
    disk = DiskThread()

    def fail() -> None:
        raise OSError(28, "No space left on device")

    async def main() -> None:
        with trio.fail_after(10):
            await disk.run(fail)

    with pytest.raises(OSError, match="No space left"):
        trio.run(main)


def test_jobs_queued_while_one_runs_all_finish_in_order() -> None:
    disk = DiskThread()
    ran: list[str] = []
    gate = threading.Event()

    def job(name: str) -> str:
        if name == "first":
            gate.wait(10)
        ran.append(name)
        return name

    async def main() -> list[str]:
        got: list[str] = []

        async def call(name: str) -> None:
            got.append(await disk.run(lambda: job(name)))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, "first")
                await trio.sleep(0.05)  # the thread is inside "first"
                nursery.start_soon(call, "second")
                await trio.sleep(0.01)  # "second" is queued (trio runs new tasks in any order)
                nursery.start_soon(call, "third")
                await trio.sleep(0.01)
                gate.set()
        return got

    got = trio.run(main)
    assert ran == ["first", "second", "third"]
    assert sorted(got) == ["first", "second", "third"]


def test_a_cancelled_caller_still_gets_its_job_done_and_its_result() -> None:
    # A write handed to the disk is not abandoned: the caller learns how it ended.
    disk = DiskThread()
    ran = threading.Event()

    async def main() -> tuple[str, bool]:
        with trio.fail_after(10):
            with trio.CancelScope() as scope:
                scope.cancel()
                result = await disk.run(lambda: _set_and_say(ran, "written"))
                await trio.lowlevel.checkpoint()  # the cancel lands here, after the job
            return result, scope.cancelled_caught

    result, caught = trio.run(main)
    assert ran.is_set()
    assert result == "written"
    assert caught


def test_one_thread_serves_one_trio_run_after_another() -> None:
    disk = DiskThread()

    async def main(n: int) -> int:
        with trio.fail_after(10):
            return await disk.run(lambda: n * 2)

    assert [trio.run(main, n) for n in (1, 2, 3)] == [2, 4, 6]


def _set_and_say(event: threading.Event, said: str) -> str:
    event.set()
    return said
