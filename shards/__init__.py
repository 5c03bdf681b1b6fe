"""The trio side: single-owner shard tasks, their timers, their supervisor.

Imports core; imported by gateway. Nothing here knows protobuf or grpclib.
"""

from leasehold.shards._clock import AnchoredClock
from leasehold.shards._codec import encode_events
from leasehold.shards._datadir import (
    DataDirError,
    lock,
    prepare,
    read_meta,
    recorded_feed,
    shard_dir,
)
from leasehold.shards._durable_sink import Durability, JournalFailed
from leasehold.shards._entropy import buffered_entropy
from leasehold.shards._journal import JournalWriter
from leasehold.shards._messages import (
    JournalFigures,
    Reply,
    ShardFault,
    ShardRequest,
    ShardStats,
    ShardUnavailable,
)
from leasehold.shards._metrics import (
    SERVICE_TIME_BOUNDS_S,
    HistogramSnapshot,
    LatencyHistogram,
    percentile,
)
from leasehold.shards._persistence import RecoveryError, RecoveryReport
from leasehold.shards._recent import RecentQuantile
from leasehold.shards._shard import EventSink, Shard, ShardHandle, call
from leasehold.shards._snapshots import encode_snapshot, remove_covered, write_snapshot
from leasehold.shards._supervisor import Persistence, ShardSet, partition_inventory, run_shards

__all__ = [
    "SERVICE_TIME_BOUNDS_S",
    "AnchoredClock",
    "DataDirError",
    "Durability",
    "EventSink",
    "HistogramSnapshot",
    "JournalFailed",
    "JournalFigures",
    "JournalWriter",
    "LatencyHistogram",
    "Persistence",
    "RecentQuantile",
    "RecoveryError",
    "RecoveryReport",
    "Reply",
    "Shard",
    "ShardFault",
    "ShardHandle",
    "ShardRequest",
    "ShardSet",
    "ShardStats",
    "ShardUnavailable",
    "buffered_entropy",
    "call",
    "encode_events",
    "encode_snapshot",
    "lock",
    "partition_inventory",
    "percentile",
    "prepare",
    "read_meta",
    "recorded_feed",
    "remove_covered",
    "run_shards",
    "shard_dir",
    "write_snapshot",
]
