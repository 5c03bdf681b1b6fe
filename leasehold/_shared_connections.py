"""--max-connections over every gateway worker together, not per worker.

The kernel spreads connections over the workers by hash, so a per-worker cap
would let N workers hold N times the cap (or refuse early, if divided). Each
worker instead counts its own open connections in its own 8-byte slot of a
small file in the runtime dir (shared by mmap) and admits a connection only
while the sum of all slots is under the cap. One writer per slot: no lock, and
a worker killed with -9 leaves no stale count (its restart zeroes its slot).
Two workers admitting at the same instant may each see room for one: the total
can pass the cap by at most the number of workers less one.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from leasehold.gateway import ConnectionTracker

_SLOT = struct.Struct("=q")


def create_counts(path: Path, workers: int) -> None:
    """The zeroed file of one slot per worker (the supervisor makes it before the workers)."""
    path.write_bytes(bytes(_SLOT.size * max(workers, 1)))


class SharedConnectionTracker(ConnectionTracker):
    """Open connections of this worker, admitted against the whole tree's cap."""

    def __init__(self, cap: int, path: Path, index: int) -> None:
        super().__init__(cap)
        with path.open("r+b") as file:
            self._counts = mmap.mmap(file.fileno(), 0)
        self._at = index * _SLOT.size
        self._publish()

    def admit(self) -> bool:
        total = sum(n for (n,) in _SLOT.iter_unpack(self._counts))
        if total >= self.cap:
            return False
        self.open += 1
        self._publish()
        return True

    def release(self) -> None:
        self.open -= 1
        self._publish()

    def _publish(self) -> None:
        _SLOT.pack_into(self._counts, self._at, self.open)
