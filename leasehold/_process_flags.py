"""`serve`'s process flags: how many gateway workers and shard processes run."""

from __future__ import annotations

import argparse
import os


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0))


# The multi-process mode is the default (see README, "Processes").
MULTI_PROCESS_DEFAULT = True


def default_workers() -> int:
    """One gateway worker per usable CPU; 0 (one process) while the tree is not the default."""
    return usable_cpus() if MULTI_PROCESS_DEFAULT else 0


def default_shard_processes(cpus: int) -> int:
    """One shard process per two usable CPUs, at least two (README: why)."""
    return max(2, cpus // 2)


def add_process_flags(serve_cmd: argparse.ArgumentParser) -> None:
    group = serve_cmd.add_argument_group("processes (docs/architecture.md)")
    group.add_argument(
        "--workers",
        type=_count,
        default=default_workers(),
        metavar="N",
        help="gateway worker processes sharing the gRPC port; 0: one process serves "
        "everything (gateway and shards)",
    )
    group.add_argument(
        "--shard-processes",
        type=_positive,
        default=default_shard_processes(usable_cpus()),
        metavar="M",
        help="processes the shards are spread over (with --workers > 0; at most --shards)",
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value
