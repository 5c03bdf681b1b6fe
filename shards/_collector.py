"""Recovery without the cyclic garbage collector walking what it loads.

The shards hold millions of long-lived objects (leases, bookings, ids) that
form no reference cycles: reference counting frees them, and the cyclic
collector only ever walks them to find nothing. With its default thresholds
(a young collection every 700 allocations, a full one every ~70k once the heap
has grown a quarter) the walks were 25-45% of the time of a lease grant in
`leasehold bench core` on a heap of a million leases.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused_then_frozen() -> Iterator[None]:
    """Recovery builds millions of long-lived objects: keep the cyclic GC out of it.

    Each collection the allocations trigger walks every object still alive, so
    with it on, loading N objects costs O(N^2)-ish: recovering 100k records took
    3.2 s of CPU with it, 2.2 s without. Afterwards the recovered state is frozen
    (moved out of the collector's generations): it is acyclic and lives as long
    as the shard, so later full collections need not walk it either.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
