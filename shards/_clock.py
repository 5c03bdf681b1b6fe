"""Wall-clock time for the core, derived from trio's clock so virtual time controls it.

The core's times are wall-clock nanoseconds (lease expirations are timestamps on
the wire), while timers must run on trio's clock (so MockClock/autojump tests
control expiry). An AnchoredClock maps one to the other from a single anchor
taken at start. It never reads `time.time()` after that, so a wall-clock jump
does not fire or delay timers; long-running drift is bounded by NTP slewing.
"""

from __future__ import annotations

import time

import trio

_NANOS = 1_000_000_000


class AnchoredClock:
    """wall_ns() = wall anchor + trio time elapsed since the anchor. Create inside trio."""

    def __init__(self, wall_anchor_ns: int | None = None) -> None:
        self._wall_anchor_ns = time.time_ns() if wall_anchor_ns is None else wall_anchor_ns
        self._trio_anchor = trio.current_time()

    def wall_ns(self) -> int:
        return self.wall_ns_at(trio.current_time())

    def wall_ns_at(self, trio_time: float) -> int:
        """The wall clock at trio clock reading `trio_time` (one clock read serves both)."""
        return self._wall_anchor_ns + round((trio_time - self._trio_anchor) * _NANOS)

    def trio_time_at(self, wall_ns: int) -> float:
        """The trio clock reading at which wall-clock `wall_ns` is reached."""
        return self._trio_anchor + (wall_ns - self._wall_anchor_ns) / _NANOS
