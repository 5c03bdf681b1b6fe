"""`python -m leasehold._child ROLE INDEX RUNTIME_DIR`: one process of the supervisor's tree.

ROLE is `shard` (a shard process) or `gateway` (a gateway worker). Settings come
from the supervisor's spec in RUNTIME_DIR (its own `serve` flags); a child exits
with the supervisor (leasehold._tree.die_with_parent).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import trio

from leasehold._app import DEFAULT_ADMISSION
from leasehold._gateway_worker import GatewayWorkerConfig, serve_gateway_worker
from leasehold._logging import configure as configure_logging
from leasehold._serve_cmd import _ssl_context, guard_limits
from leasehold._shard_process import ShardProcessConfig, run_shard_process
from leasehold._tree import die_with_parent, read_spec, say_ready, shard_socket
from leasehold.core import NANOS_PER_SECOND, LeaseSettings, parse_feed_json
from leasehold.shards import Durability, Persistence
from leasehold.tuning import tune_for_long_lived_state, tune_thread_handoffs


def main(argv: list[str]) -> int:
    role, index, runtime_dir = argv[0], int(argv[1]), Path(argv[2])
    spec, feed_text = read_spec(runtime_dir)
    die_with_parent(spec.supervisor_pid)
    args = spec_args(spec.serve_args)
    configure_logging(args.log_format, args.log_level)
    slots = parse_feed_json(feed_text).slots
    if role == "shard":
        tune_for_long_lived_state()
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
        trio.run(_shard_process, config)
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
        )
        asyncio.run(_gateway(worker))
        return 0
    print(f"leasehold: unknown role {role!r}", file=sys.stderr)
    return 2


def spec_args(serve_args: dict[str, object]) -> argparse.Namespace:
    """The supervisor's parsed `serve` flags, as JSON gave them back (paths made paths)."""
    args = argparse.Namespace(**serve_args)
    for name in ("feed", "data_dir", "tls_cert", "tls_key", "tls_client_ca"):
        value = getattr(args, name, None)
        if isinstance(value, str):
            setattr(args, name, Path(value))
    return args


async def _shard_process(config: ShardProcessConfig) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(run_shard_process, config)
        say_ready()


async def _gateway(config: GatewayWorkerConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve_gateway_worker(config, stop, lambda port: say_ready())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
