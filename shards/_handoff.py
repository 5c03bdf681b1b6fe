"""How quickly the journal's worker threads get the interpreter back from the event loop.

A SYNC commit runs its write and fdatasync in a trio worker thread. The thread
needs the GIL to start and again once the fdatasync returns. The loop thread
drops the GIL around every syscall, but takes it straight back, so a waiting
thread usually gets it only when CPython's switch interval (5 ms by default)
forces a hand-off. While a commit waits, the replies that may have read what it
wrote wait too (then every reply of its shard; see core/_scope.py for what they
are now), so at half load those hand-offs were the tail of every request.

`leasehold bench contention --rate 2400` against a server with a timing probe
around each flush (3 alternating pairs, default vs 0.5 ms): the fdatasync as the
worker saw it, GIL included, p99 64.5 / 2.9 / 25.1 ms vs 3.1 / 3.8 / 2.7 ms
(max 97.8 / 8.3 / 30.1 vs 4.1 / 4.1 / 2.9 ms); a whole flush round trip p99
32.6 / 9.4 / 15.9 vs 9.6 / 12.3 / 7.7 ms; request p99 34.7 / 12.1 / 14.3 vs
10.5 / 12.9 / 9.0 ms. The interval only matters while another thread waits for
the GIL, so the loop alone pays nothing for it.
"""

from __future__ import annotations

import sys

SWITCH_INTERVAL_S = 0.0005


def tune_thread_handoffs() -> None:
    """Let a waiting worker thread have the GIL within 0.5 ms instead of 5 ms."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
