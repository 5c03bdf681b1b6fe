"""Recovery without the cyclic garbage collector walking what it loads.

The shards hold millions of long-lived objects (leases, bookings, ids) that
form no reference cycles: reference counting frees them, and the cyclic
collector only ever walks them to find nothing (its cost: docs/performance.md).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused_then_frozen() -> Iterator[None]:
    """Recovery builds millions of long-lived objects: keep the cyclic GC out of it.

    Each collection the allocations trigger walks every object still alive, so
    with it on, loading N objects costs O(N^2)-ish. Afterwards the recovered state
    is frozen (moved out of the collector's generations): it is acyclic and lives
    as long as the shard, so later full collections need not walk it either.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
