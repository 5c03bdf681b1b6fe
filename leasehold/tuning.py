"""How a server process is tuned: Python's cyclic GC and the GIL switch interval.

Both are process-wide settings, so they belong to the composition root, not to a
package: `leasehold serve` and `leasehold bench core` call them once at start.
The figures behind each choice are in docs/performance.md.
"""

from __future__ import annotations

import gc
import sys

# Shard state is millions of acyclic long-lived objects: young collections every
# 10k allocations and full ones ten times rarer than the default.
GC_THRESHOLDS = (10_000, 10, 10)

# A journal worker thread waiting for the GIL gets it within 0.5 ms, not 5 ms.
SWITCH_INTERVAL_S = 0.0005


def tune_for_long_lived_state() -> None:
    """Set the collector's thresholds for a process that holds shard state."""
    gc.set_threshold(*GC_THRESHOLDS)


def tune_thread_handoffs() -> None:
    """Let a waiting worker thread have the GIL within 0.5 ms instead of 5 ms."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
