"""`python -m leasehold._gateway_main INDEX RUNTIME_DIR`: a gateway worker of the tree.

grpclib on asyncio. It imports what a gateway worker runs and no more: no trio,
health stream, Prometheus client or shard runtime (of the shards package only the
link's codec), tests/test_child_imports.py pins it; the idle tree's memory is mostly
what its processes imported (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop
from grpclib.exceptions import GRPCError

from leasehold._child import ChildStart, begin, failed, first_leaf
from leasehold._figures_line import FiguresSender
from leasehold._gateway_worker import (
    ADMIN_WORKER,
    LINK_WAIT_S,
    GatewayWorkerConfig,
    WorkerReady,
    serve_gateway_worker,
)
from leasehold._serve_settings import (
    DEFAULT_ADMISSION,
    AdminConfig,
    ServerFailed,
    admin_config,
    guard_limits,
    ssl_context,
)
from leasehold._tree import (
    APPLY_CHANGE_ENV,
    LINK_WAIT_ENV,
    TreeSpec,
    connections_file,
    read_change,
    say_ready,
    shard_socket,
    take_hold_fd,
)
from leasehold.core import SlotSpec, parse_feed_json
from leasehold.shards import warm_up
from leasehold.tuning import tune_for_long_lived_state


def main(argv: list[str]) -> int:
    start = begin(argv)
    args, port = start.args, start.spec.port
    try:
        # uvloop: asyncio's loop, transports and timers in C; a worker's CPU per call -5 %
        # saturated and at half load (docs/performance.md, "uvloop in the gateway workers").
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(_config(start), start))
    except BaseExceptionGroup as group:
        # As the one-process mode's _app._plain, for what a worker can raise: it runs no
        # shards, journal or health stream, so an OSError is the one known failure.
        known, _ = group.split(OSError)
        if known is None:
            raise
        return failed(_one_line(first_leaf(known), args, port))
    except (ServerFailed, OSError) as problem:
        return failed(_one_line(problem, args, port))
    except GRPCError as refused:  # the --feed change, refused by a shard
        return failed(f"cannot apply --feed {args.feed}: {refused.message}")
    return 0


def _one_line(problem: BaseException, args: argparse.Namespace, port: int) -> str:
    """What `leasehold serve` says of this failure in the one-process mode, word for word."""
    if isinstance(problem, ServerFailed):
        return f"stopped: {problem}"
    if isinstance(problem, OSError):
        return f"cannot listen on {args.host}:{port}: {problem.strerror}"
    return str(problem)


def _config(start: ChildStart) -> GatewayWorkerConfig:
    args, spec, index = start.args, start.spec, start.index
    warm_up()  # the link's decoders, before the first call needs them
    tune_for_long_lived_state()  # fewer collections per call
    return GatewayWorkerConfig(
        index=index,
        slots=parse_feed_json(start.feed_text).slots,
        shard_count=args.shards,
        socket_paths=[shard_socket(start.runtime_dir, i) for i in range(spec.shard_processes)],
        host=args.host,
        port=spec.port,
        ssl_context=ssl_context(args),
        tls_client_name=args.tls_client_name,
        limits=guard_limits(args),
        admission=DEFAULT_ADMISSION,
        link_wait_s=float(os.environ.get(LINK_WAIT_ENV, LINK_WAIT_S)),
        admin=_admin_of_worker(index, spec, args),
        connections_path=connections_file(start.runtime_dir),
        feed_change=_change_to_apply(index, start.runtime_dir),
    )


def _admin_of_worker(index: int, spec: TreeSpec, args: argparse.Namespace) -> AdminConfig | None:
    admin = admin_config(args)
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


async def _serve(config: GatewayWorkerConfig, start: ChildStart) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    hold_fd = take_hold_fd()
    if hold_fd is not None and not await _released(hold_fd, stop):
        return  # stopped while held: nothing was served

    # The ready pipe, kept open: the worker's figures follow its ready line.
    figures = FiguresSender()

    def ready(worker: WorkerReady) -> None:
        gc.freeze()  # what start-up made stays: no collection scans it again
        facts: dict[str, object] = start.timings()
        if worker.feed_change is not None:
            names = ("added", "changed", "removed", "kept_booked")
            parts = worker.feed_change.values()
            change = {n: sum(getattr(p, n) for p in parts) for n in names}
            facts = {"feed_change": change, **facts}
        figures.attach(say_ready(facts, keep_open=True))

    try:
        await serve_gateway_worker(config, stop, ready, lambda f: figures.send(f.to_map()))
    finally:
        figures.close()


async def _released(hold_fd: int, stop: asyncio.Event) -> bool:
    """Wait for the supervisor's release (end-of-file on `hold_fd`); False if `stop` came
    first."""
    released = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(hold_fd, released.set)
    waits = [asyncio.ensure_future(e.wait()) for e in (released, stop)]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_reader(hold_fd)
        os.close(hold_fd)
        for each in waits:
            each.cancel()
    return not stop.is_set()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
