"""Where the health stream reads shard figures: the shards in this process (shards.ShardSet)
or, in a multi-process server, the supervisor's copies of its shard processes' figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from leasehold.shards import ShardStats


class IntervalMax(Protocol):
    def take_interval_max(self) -> float:
        """The largest service time since the previous call (seconds), and start again."""
        ...


class ShardTimes(Protocol):
    @property
    def service_times(self) -> IntervalMax: ...


class ShardSource(Protocol):
    @property
    def shards(self) -> Sequence[ShardTimes]: ...

    def statistics(self) -> tuple[ShardStats, ...]: ...
