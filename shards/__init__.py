"""The trio side: single-owner shard tasks, their timers, their supervisor.

Imports core; imported by gateway. Nothing here knows protobuf or grpclib.
"""

from leasehold.shards._assignment import process_of_shard, shards_of_process
from leasehold.shards._clock import AnchoredClock
from leasehold.shards._codec import CorruptRecord, encode_events
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
from leasehold.shards._value_codec import (
    decode_command,
    decode_reply,
    decode_value,
    encode_command,
    encode_reply,
    encode_value,
    warm_up,
)

__all__ = [
    "SERVICE_TIME_BOUNDS_S",
    "AnchoredClock",
    "CorruptRecord",
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
    "decode_command",
    "decode_reply",
    "decode_value",
    "encode_command",
    "encode_events",
    "encode_reply",
    "encode_snapshot",
    "encode_value",
    "lock",
    "partition_inventory",
    "percentile",
    "prepare",
    "process_of_shard",
    "read_meta",
    "recorded_feed",
    "remove_covered",
    "run_shards",
    "shard_dir",
    "shards_of_process",
    "warm_up",
    "write_snapshot",
]
