"""`python -m leasehold._child ROLE INDEX RUNTIME_DIR`: one process of the supervisor's tree.

ROLE is `shard` (a shard process) or `gateway` (a gateway worker). Settings come
from the supervisor's spec in RUNTIME_DIR (its own `serve` flags); a child exits
with the supervisor (leasehold._tree.die_with_parent).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import trio
from grpclib.exceptions import GRPCError

from leasehold._app import DEFAULT_ADMISSION, AdminConfig, ServerFailed, _plain
from leasehold._gateway_worker import (
    ADMIN_WORKER,
    LINK_WAIT_S,
    GatewayWorkerConfig,
    WorkerReady,
    serve_gateway_worker,
)
from leasehold._logging import configure as configure_logging
from leasehold._logging import event
from leasehold._serve_cmd import _admin_config, _ssl_context, guard_limits
from leasehold._shard_process import ShardProcessConfig, run_shard_process
from leasehold._slots import ordered_example
from leasehold._tree import (
    APPLY_CHANGE_ENV,
    LINK_WAIT_ENV,
    TreeSpec,
    connections_file,
    die_with_parent,
    read_change,
    read_spec,
    say_failed,
    say_ready,
    served_file,
    shard_socket,
)
from leasehold.core import NANOS_PER_SECOND, LeaseSettings, SlotSpec, parse_feed_json
from leasehold.health import HealthListenError
from leasehold.shards import (
    DataDirError,
    Durability,
    Persistence,
    RecoveryError,
    ShardSet,
    warm_up,
)
from leasehold.tuning import tune_for_long_lived_state, tune_thread_handoffs


def main(argv: list[str]) -> int:
    role, index, runtime_dir = argv[0], int(argv[1]), Path(argv[2])
    spec, feed_text = read_spec(runtime_dir)
    die_with_parent(spec.supervisor_pid)
    args = spec_args(spec.serve_args)
    configure_logging(args.log_format, args.log_level)
    try:
        return _run_role(role, index, runtime_dir, spec, args, feed_text)
    except BaseExceptionGroup as group:
        problem = _plain(group)
        if problem is group:
            raise
        return _failed(_one_line(problem, args, spec.port))
    except (RecoveryError, DataDirError, ServerFailed, HealthListenError, OSError) as problem:
        return _failed(_one_line(problem, args, spec.port))
    except GRPCError as refused:  # the --feed change, refused by a shard
        return _failed(f"cannot apply --feed {args.feed}: {refused.message}")


def _one_line(problem: BaseException, args: argparse.Namespace, port: int) -> str:
    """What `leasehold serve` says of this failure in the one-process mode, word for word."""
    if isinstance(problem, RecoveryError):
        return f"cannot recover the stored state: {problem}"
    if isinstance(problem, DataDirError):
        return f"cannot use --data-dir {args.data_dir}: {problem}"
    if isinstance(problem, ServerFailed):
        return f"stopped: {problem}"
    if isinstance(problem, OSError):
        return f"cannot listen on {args.host}:{port}: {problem.strerror}"
    return str(problem)


def _failed(line: str) -> int:
    """Tell the supervisor why (before serving), or log it (while serving); exit 1."""
    if not say_failed(line):
        event(logging.ERROR, "server_failed", line, reason=line)
    return 1


def _run_role(
    role: str,
    index: int,
    runtime_dir: Path,
    spec: TreeSpec,
    args: argparse.Namespace,
    feed_text: str,
) -> int:
    slots = parse_feed_json(feed_text).slots
    warm_up()  # the link's decoders, before the first call needs them
    tune_for_long_lived_state()  # a gateway worker too: fewer collections per call
    if role == "shard":
        tune_thread_handoffs()
        config = ShardProcessConfig(
            index=index,
            process_count=spec.shard_processes,
            socket_path=shard_socket(runtime_dir, index),
            slots=slots,
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
        trio.run(_shard_process, config, served_file(runtime_dir, index))
        return 0
    if role == "gateway":
        worker = GatewayWorkerConfig(
            index=index,
            slots=slots,
            shard_count=args.shards,
            socket_paths=[shard_socket(runtime_dir, i) for i in range(spec.shard_processes)],
            host=args.host,
            port=spec.port,
            ssl_context=_ssl_context(args),
            tls_client_name=args.tls_client_name,
            limits=guard_limits(args),
            admission=DEFAULT_ADMISSION,
            link_wait_s=float(os.environ.get(LINK_WAIT_ENV, LINK_WAIT_S)),
            admin=_admin_of_worker(index, spec, args),
            connections_path=connections_file(runtime_dir),
            feed_change=_change_to_apply(index, runtime_dir),
        )
        asyncio.run(_gateway(worker))
        return 0
    print(f"leasehold: unknown role {role!r}", file=sys.stderr)
    return 2


def _admin_of_worker(index: int, spec: TreeSpec, args: argparse.Namespace) -> AdminConfig | None:
    admin = _admin_config(args)
    if index != ADMIN_WORKER or admin is None or spec.admin_port is None:
        return None
    return dataclasses.replace(admin, port=spec.admin_port)


def _change_to_apply(index: int, runtime_dir: Path) -> Sequence[SlotSpec] | None:
    """The --feed change, for the admin worker's first start only (a restart must not
    undo the admin changes made since)."""
    if index != ADMIN_WORKER or os.environ.get(APPLY_CHANGE_ENV) != "1":
        return None
    text = read_change(runtime_dir)
    return None if text is None else parse_feed_json(text).slots


def spec_args(serve_args: dict[str, object]) -> argparse.Namespace:
    """The supervisor's parsed `serve` flags, as JSON gave them back (paths made paths)."""
    args = argparse.Namespace(**serve_args)
    for name in ("feed", "data_dir", "tls_cert", "tls_key", "tls_client_ca"):
        value = getattr(args, name, None)
        if isinstance(value, str):
            setattr(args, name, Path(value))
    return args


async def _shard_process(config: ShardProcessConfig, served_to: Path) -> None:
    async with trio.open_nursery() as nursery:
        shard_set: ShardSet = await nursery.start(run_shard_process, config)
        reports = shard_set.recovery
        _write_served(shard_set, served_to)
        say_ready(
            {
                "shards": len(reports),
                "snapshots": sum(r.snapshot_seq is not None for r in reports),
                "records": sum(r.records_replayed for r in reports),
                "seconds": sum(r.seconds for r in reports),
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


async def _gateway(config: GatewayWorkerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def ready(worker: WorkerReady) -> None:
        gc.freeze()  # what start-up made stays: no collection scans it again
        if worker.feed_change is None:
            say_ready()
            return
        names = ("added", "changed", "removed", "kept_booked")
        parts = worker.feed_change.values()
        say_ready({"feed_change": {n: sum(getattr(p, n) for p in parts) for n in names}})

    await serve_gateway_worker(config, stop, ready)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
