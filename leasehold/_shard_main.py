"""`python -m leasehold._shard_main INDEX RUNTIME_DIR`: a shard process of the tree.

It imports what a shard process runs and no more (trio, msgpack, core, shards,
the link's server side; no asyncio: tests/test_child_imports.py pins it): each of
the tree's processes starts at once on a machine's few cores, and what one imports
is CPU the others' recovery waits for, and memory held while it serves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import trio

from leasehold._child import ChildStart, begin, failed, first_leaf
from leasehold._shard_process import ShardProcessConfig, run_shard_process
from leasehold._slot_json import ordered_example
from leasehold._tree import say_ready, served_file, shard_socket
from leasehold.core import NANOS_PER_SECOND, LeaseSettings, parse_feed_json
from leasehold.shards import (
    DataDirError,
    Durability,
    JournalFailed,
    Persistence,
    RecoveryError,
    ShardSet,
    warm_up,
)
from leasehold.tuning import tune_for_long_lived_state, tune_thread_handoffs

# What a shard process may fail with and say in one line; anything else is a bug.
_KNOWN = (JournalFailed, RecoveryError, DataDirError, OSError)


def main(argv: list[str]) -> int:
    start = begin(argv)
    try:
        trio.run(_serve, start)
    except BaseExceptionGroup as group:
        journal, _ = group.split(JournalFailed)
        known, _ = group.split(_KNOWN)
        if known is None:
            raise
        return failed(_one_line(first_leaf(journal or known), start.args, start.spec.port))
    except _KNOWN as problem:
        return failed(_one_line(problem, start.args, start.spec.port))
    return 0


def _one_line(problem: BaseException, args: argparse.Namespace, port: int) -> str:
    """What `leasehold serve` says of this failure in the one-process mode, word for word."""
    if isinstance(problem, JournalFailed):
        return f"stopped: {problem}"
    if isinstance(problem, RecoveryError):
        return f"cannot recover the stored state: {problem}"
    if isinstance(problem, DataDirError):
        return f"cannot use --data-dir {args.data_dir}: {problem}"
    if isinstance(problem, OSError):
        return f"cannot listen on {args.host}:{port}: {problem.strerror}"
    return str(problem)


def _config(start: ChildStart) -> ShardProcessConfig:
    args = start.args
    warm_up()  # the link's decoders, before the first call needs them
    tune_for_long_lived_state()
    tune_thread_handoffs()
    return ShardProcessConfig(
        index=start.index,
        process_count=start.spec.shard_processes,
        socket_path=shard_socket(start.runtime_dir, start.index),
        slots=parse_feed_json(start.feed_text).slots,
        shard_count=args.shards,
        mailbox_capacity=args.mailbox,
        lease_settings=LeaseSettings(
            default_ttl_ns=round(args.default_lease_ttl * NANOS_PER_SECOND),
            max_ttl_ns=round(args.max_lease_ttl * NANOS_PER_SECOND),
        ),
        persistence=Persistence(
            args.data_dir,
            Durability(args.durability),
            args.snapshot_every,
            args.snapshot_interval,
        ),
    )


async def _serve(start: ChildStart) -> None:
    config = _config(start)
    async with trio.open_nursery() as nursery:
        shard_set: ShardSet = await nursery.start(run_shard_process, config)
        reports = shard_set.recovery
        _write_served(shard_set, served_file(start.runtime_dir, start.index))
        say_ready(
            {
                "shards": len(reports),
                "snapshots": sum(r.snapshot_seq is not None for r in reports),
                "records": sum(r.records_replayed for r in reports),
                "seconds": sum(r.seconds for r in reports),
                **start.timings(),
            }
        )


def _write_served(shard_set: ShardSet, path: Path) -> None:
    served = [spec for shard in shard_set.shards for spec in shard.state.slot_specs()]
    document = {
        "slots": len(served),
        "merchants": sorted({s.key.merchant_id for s in served}),
        "example": ordered_example(served),
    }
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps(document), encoding="utf-8")
    temp.replace(path)  # a restart rewrites it; the supervisor never reads half of it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
