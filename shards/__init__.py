"""The trio side: single-owner shard tasks, their timers, their supervisor.

Imports core; imported by gateway. Nothing here knows protobuf or grpclib.

Each name is imported when first asked for (PEP 562), so that a process imports
only what it uses: the supervisor prepares the data dir without the journal's,
snapshots' or recovery's code, and a gateway worker takes the codec without trio.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    from leasehold.shards._durable_sink import JournalFailed
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
    from leasehold.shards._settings import Durability, Persistence
    from leasehold.shards._shard import EventSink, Shard, ShardHandle, call
    from leasehold.shards._snapshots import encode_snapshot, remove_covered, write_snapshot
    from leasehold.shards._supervisor import ShardSet, partition_inventory, run_shards
    from leasehold.shards._value_codec import (
        decode_command,
        decode_reply,
        decode_value,
        encode_command,
        encode_reply,
        encode_value,
        warm_up,
    )

# Each public name: (the module that defines it, its name there), imported when first
# asked for.
_WHERE = {
    "AnchoredClock": ("_clock", "AnchoredClock"),
    "CorruptRecord": ("_codec", "CorruptRecord"),
    "DataDirError": ("_datadir", "DataDirError"),
    "Durability": ("_settings", "Durability"),
    "EventSink": ("_shard", "EventSink"),
    "HistogramSnapshot": ("_metrics", "HistogramSnapshot"),
    "JournalFailed": ("_durable_sink", "JournalFailed"),
    "JournalFigures": ("_messages", "JournalFigures"),
    "JournalWriter": ("_journal", "JournalWriter"),
    "LatencyHistogram": ("_metrics", "LatencyHistogram"),
    "Persistence": ("_settings", "Persistence"),
    "RecentQuantile": ("_recent", "RecentQuantile"),
    "RecoveryError": ("_persistence", "RecoveryError"),
    "RecoveryReport": ("_persistence", "RecoveryReport"),
    "Reply": ("_messages", "Reply"),
    "SERVICE_TIME_BOUNDS_S": ("_metrics", "SERVICE_TIME_BOUNDS_S"),
    "Shard": ("_shard", "Shard"),
    "ShardFault": ("_messages", "ShardFault"),
    "ShardHandle": ("_shard", "ShardHandle"),
    "ShardRequest": ("_messages", "ShardRequest"),
    "ShardSet": ("_supervisor", "ShardSet"),
    "ShardStats": ("_messages", "ShardStats"),
    "ShardUnavailable": ("_messages", "ShardUnavailable"),
    "buffered_entropy": ("_entropy", "buffered_entropy"),
    "call": ("_shard", "call"),
    "decode_command": ("_value_codec", "decode_command"),
    "decode_reply": ("_value_codec", "decode_reply"),
    "decode_value": ("_value_codec", "decode_value"),
    "encode_command": ("_value_codec", "encode_command"),
    "encode_events": ("_codec", "encode_events"),
    "encode_reply": ("_value_codec", "encode_reply"),
    "encode_snapshot": ("_snapshots", "encode_snapshot"),
    "encode_value": ("_value_codec", "encode_value"),
    "lock": ("_datadir", "lock"),
    "partition_inventory": ("_supervisor", "partition_inventory"),
    "percentile": ("_metrics", "percentile"),
    "prepare": ("_datadir", "prepare"),
    "process_of_shard": ("_assignment", "process_of_shard"),
    "read_meta": ("_datadir", "read_meta"),
    "recorded_feed": ("_datadir", "recorded_feed"),
    "remove_covered": ("_snapshots", "remove_covered"),
    "run_shards": ("_supervisor", "run_shards"),
    "shard_dir": ("_datadir", "shard_dir"),
    "shards_of_process": ("_assignment", "shards_of_process"),
    "warm_up": ("_value_codec", "warm_up"),
    "write_snapshot": ("_snapshots", "write_snapshot"),
}

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

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name not in _WHERE:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module, attribute = _WHERE[name]
        value = getattr(import_module(f"{__name__}.{module}"), attribute)
        globals()[name] = value  # asked once: later lookups are plain
        return value
