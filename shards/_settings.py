"""How the shards keep their state, as plain values, apart from the code that keeps it.

So that the supervisor, which reads them from flags and prepares the data dir but
runs no shard, imports no journal, snapshot or recovery code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

# A shard snapshots after this many journal records (_compaction), checked this often.
DEFAULT_EVERY_RECORDS = 100_000
DEFAULT_INTERVAL_S = 1.0


class Durability(enum.Enum):
    SYNC = "sync"
    ASYNC = "async"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Persistence:
    """Where and how durably the shards keep their state (None in run_shards: memory only)."""

    data_dir: Path
    durability: Durability
    # A shard snapshots (and drops the journal before it) after this many records.
    snapshot_every: int = DEFAULT_EVERY_RECORDS
    # How often a shard checks whether `snapshot_every` records have accumulated.
    snapshot_interval_s: float = DEFAULT_INTERVAL_S
