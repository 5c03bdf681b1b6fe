"""The trio side: single-owner shard tasks, their timers, their supervisor.

Imports core; imported by gateway. Nothing here knows protobuf or grpclib.
"""

from shards._clock import AnchoredClock
from shards._durable_sink import Durability, JournalFailed
from shards._entropy import buffered_entropy
from shards._messages import (
    JournalFigures,
    Reply,
    ShardFault,
    ShardRequest,
    ShardStats,
    ShardUnavailable,
)
from shards._metrics import SERVICE_TIME_BOUNDS_S, LatencyHistogram, percentile
from shards._persistence import RecoveryError, RecoveryReport
from shards._shard import EventSink, Shard, ShardHandle, call
from shards._supervisor import Persistence, ShardSet, partition_inventory, run_shards

__all__ = [
    "SERVICE_TIME_BOUNDS_S",
    "AnchoredClock",
    "Durability",
    "EventSink",
    "JournalFailed",
    "JournalFigures",
    "LatencyHistogram",
    "Persistence",
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
    "partition_inventory",
    "percentile",
    "run_shards",
]
