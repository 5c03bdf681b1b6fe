"""Which shard process owns which shard: a pure function of the two counts.

Round-robin, so neighbouring shards (and their recovery work) spread over the
processes. The data dir records the process count it last ran with
(`leasehold.json`); the layout of shard directories does not depend on it.
"""

from __future__ import annotations


def process_of_shard(shard_id: int, process_count: int) -> int:
    if process_count < 1:
        raise ValueError("process_count must be at least 1")
    return shard_id % process_count


def shards_of_process(index: int, shard_count: int, process_count: int) -> tuple[int, ...]:
    """The shards process `index` owns (none when there are more processes than shards)."""
    return tuple(s for s in range(shard_count) if process_of_shard(s, process_count) == index)
