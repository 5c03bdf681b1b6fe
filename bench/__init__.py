"""Leasehold's benchmarks: load tests of a running server over gRPC, and core micro-benchmarks.

`leasehold bench SCENARIO` runs a scenario (flow, contention, expiry-storm,
mixed) against a server (`--target HOST:PORT`) or one it starts (`--spawn`),
records every request and reply, and checks the full history for broken
invariants afterwards (`bench._checker`). `leasehold bench core` times `core/`
alone, with no I/O.

Import rules: bench imports core, shards and the health frames (and starts the
server only as a subprocess); only the CLI's `bench` subcommand imports bench
(`main`). Implementation lives in private `_name.py` modules; this file is the
contract the tests and the CLI use.
"""

from leasehold.bench._checker import CheckResult, Violation, ViolationKind, check_history
from leasehold.bench._cli import main
from leasehold.bench._history import BenchSlot, Kind, Op, Outcome

__all__ = [
    "BenchSlot",
    "CheckResult",
    "Kind",
    "Op",
    "Outcome",
    "Violation",
    "ViolationKind",
    "check_history",
    "main",
]
