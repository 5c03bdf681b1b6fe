"""What both kinds of child of the supervisor's tree share: their start and their failure.

Each role has its own entry module, so that a process imports only what its role
runs: `python -m leasehold._shard_main INDEX RUNTIME_DIR` (trio, msgpack, core,
shards, link: no gRPC, protobuf or health stream) and `python -m
leasehold._gateway_main INDEX RUNTIME_DIR` (grpclib on asyncio). Settings come
from the supervisor's spec in RUNTIME_DIR (its own `serve` flags); a child exits
with the supervisor (leasehold._tree.die_with_parent).
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from leasehold._logging import configure as configure_logging
from leasehold._logging import event
from leasehold._tree import TreeSpec, die_with_parent, read_spec, say_failed


@dataclass(frozen=True, slots=True)
class ChildStart:
    index: int
    runtime_dir: Path
    spec: TreeSpec
    args: argparse.Namespace  # the supervisor's `serve` flags
    feed_text: str
    # CPU seconds this process had used when its entry ran: the interpreter and imports.
    import_cpu_s: float

    def timings(self) -> dict[str, object]:
        """For the ready line: where this process's CPU went (the supervisor logs it)."""
        return {"import_cpu_s": round(self.import_cpu_s, 3), "cpu_s": round(time.process_time(), 3)}


def begin(argv: list[str]) -> ChildStart:
    """Read the spec, tie this process's life to the supervisor's, set up logging."""
    import_cpu_s = time.process_time()
    index, runtime_dir = int(argv[0]), Path(argv[1])
    spec, feed_text = read_spec(runtime_dir)
    die_with_parent(spec.supervisor_pid)
    args = spec_args(spec.serve_args)
    configure_logging(args.log_format, args.log_level)
    return ChildStart(index, runtime_dir, spec, args, feed_text, import_cpu_s)


def spec_args(serve_args: dict[str, object]) -> argparse.Namespace:
    """The supervisor's parsed `serve` flags, as JSON gave them back (paths made paths)."""
    args = argparse.Namespace(**serve_args)
    for name in ("feed", "data_dir", "tls_cert", "tls_key", "tls_client_ca"):
        value = getattr(args, name, None)
        if isinstance(value, str):
            setattr(args, name, Path(value))
    return args


def failed(line: str) -> int:
    """Tell the supervisor why (before serving), or log it (while serving); exit 1."""
    if not say_failed(line):
        event(logging.ERROR, "server_failed", line, reason=line)
    return 1


def first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
