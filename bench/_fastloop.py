"""The load processes' event loop: uvloop when it is installed (the `bench` extra), else asyncio.

A load generator must not be what a run measures. On a shared 2-core machine, at
nice 10, the low-CPU HTTP/2 client's process on asyncio spent ~200 us of CPU per
call in the overload probe, and when it fell behind, its own lag became the
callers' latency and their deadlines (docs/performance.md, "Overload, eighth
pass"). uvloop runs the same protocol code with its I/O and timers in C. Only the
HTTP/2 client runs on it: grpcio's asyncio integration is asyncio's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


def run(main: Coroutine[Any, Any, _T], fast: bool = True) -> _T:
    """`asyncio.run(main)`, on uvloop if `fast` and it is installed."""
    if fast:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main)
    return asyncio.run(main)
