"""One thread per process for the journals' writes and fsyncs, without trio.to_thread.

A journal flush is the shard's most frequent trip off the event loop: one per
group commit, and at low load a group is a command or two. On this project's
VM `trio.to_thread.run_sync` cost ~180 us of CPU per call doing nothing (its
context copy, cancel scope, thread-cache handoff and per-call delivery), more
than the write and fdatasync it carried (~80 us); a plain queue to a waiting
thread and one `run_sync_soon` back cost ~100 us (docs/performance.md,
"Journal flushes off trio's thread pool").

The thread takes every job queued while it worked and hands their results back
in one `run_sync_soon` per trio run, so the flushes of a process's shards that
meet share a wake-up. The jobs run one at a time, in order: the shards of a
process share one disk, where parallel fsyncs gain little.

A job is not cancellable once handed over (as `to_thread.run_sync` by default):
the caller gets its result, or its exception, whatever happens meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import TypeVar

import outcome
import trio

_T = TypeVar("_T")
_Job = tuple[Callable[[], object], trio.lowlevel.TrioToken, trio.lowlevel.Task]
_Done = list[tuple[trio.lowlevel.Task, outcome.Outcome[object]]]


class DiskThread:
    """`await run(fn)`: `fn()` in this object's thread; the thread starts on first use."""

    def __init__(self, name: str = "leasehold-disk") -> None:
        self._name = name
        self._jobs: SimpleQueue[_Job] = SimpleQueue()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[[], _T]) -> _T:
        self._ensure_started()
        self._jobs.put((fn, trio.lowlevel.current_trio_token(), trio.lowlevel.current_task()))
        # reschedule() hands over fn's outcome, which this unwraps: its value, or its raise.
        result: _T = await trio.lowlevel.wait_task_rescheduled(_cannot_abort)
        return result

    def _ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                # Daemon: it holds no state; a job is always awaited before its run ends.
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            batch = [self._jobs.get()]
            while True:
                try:
                    batch.append(self._jobs.get_nowait())
                except Empty:
                    break
            done: dict[trio.lowlevel.TrioToken, _Done] = {}
            for fn, token, task in batch:
                done.setdefault(token, []).append((task, outcome.capture(fn)))
            for token, results in done.items():
                with contextlib.suppress(trio.RunFinishedError):  # nobody is left to tell
                    token.run_sync_soon(_deliver, results)


def _deliver(results: _Done) -> None:
    for task, result in results:
        trio.lowlevel.reschedule(task, result)


def _cannot_abort(_raise_cancel: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


# The process's one disk thread (shards/_journal.py's flushes).
DISK = DiskThread()
