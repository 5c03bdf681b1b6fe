"""`leasehold bench h2load`: load from h2load, a C HTTP/2 client, so the server gets the cores.

    leasehold bench h2load --spawn [serve flags...] [--calls create-lease,health] [options]
    leasehold bench h2load --target HOST:PORT --feed FILE [--metrics HOST:PORT] [options]

h2load (Debian's nghttp2-client) posts one fixed gRPC body over and over:
- create-lease: a v2 CreateLease for one slot with one `user_reference`. The
  sample made before the run creates the lease; every later call is a replay,
  answered from the shard's idempotency memory with the same lease. Each run
  uses a fresh reference. h2load sends one body per run (`--data`), so a mix
  of distinct requests is not something it can do.
- health: grpc.health.v1 Health/Check, the gateway-only ceiling.
h2load runs at nice 10, as the other load generators, and its CPU is read from
its own rusage (wait4). It cannot see gRPC's trailers, so grpc-status is
checked around it; `Checks` says how, and what stays unchecked.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from leasehold.bench._feed import SlotGroup, build_slots, write_feed
from leasehold.bench._h2load_parse import H2loadOutputError
from leasehold.bench._h2load_run import (
    Call,
    Checks,
    Load,
    RunError,
    RunFigures,
    health_call,
    lease_call,
    one_run,
    run_h2load,
)
from leasehold.bench._server import ServerError, SpawnedServer, serve_command
from leasehold.core import SlotKey, parse_feed_json

EXIT_CHECK_FAILED = 1
EXIT_NOT_MADE = 2
CLIENT_NICE = 10
# A run's lease must outlive it: replays of an expired lease are not what is measured.
MAX_DURATION_S = 240.0
# h2load's per-request log takes ~30 bytes a call in the scratch dir: ~300 MB at most.
MAX_REQUESTS = 10_000_000
SPAWN_SPOTS = 10_000  # one spot per run's lease: never runs out
INSTALL_HINT = "install nghttp2-client (as root: bash tests/install_h2load.sh)"


def main(argv: Sequence[str]) -> int:
    ns, serve_flags = _parser().parse_known_args(argv)
    try:
        load, calls = _settings(ns, serve_flags)
        if shutil.which("h2load") is None:
            raise RunError(f"no h2load on PATH: {INSTALL_HINT}")
        with _server(ns, serve_flags) as (target, metrics_at, server_cpu, key):
            results = _rounds(ns, load, calls, target, metrics_at, server_cpu, key)
    except (RunError, ServerError, H2loadOutputError) as problem:
        print(f"leasehold bench h2load: the run could not be made: {problem}", file=sys.stderr)
        return EXIT_NOT_MADE
    _print_medians(results, ns.runs)
    failed = [r for r in results if not r.checks.ok]
    for r in failed:
        print(f"CHECK FAILED ({r.call}): {r.checks}", file=sys.stderr)
    return EXIT_CHECK_FAILED if failed else 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="leasehold bench h2load",
        description=__doc__.split("\n")[0] + " Unknown flags go to serve (with --spawn).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", metavar="HOST:PORT", help="a running server (loopback only)")
    where.add_argument("--spawn", action="store_true", help="start `leasehold serve` for the run")
    p.add_argument("--feed", type=Path, help="with --target: its feed; the first slot is leased")
    p.add_argument("--metrics", metavar="HOST:PORT", help="with --target: its health port")
    p.add_argument("--calls", default="create-lease,health", help="which, alternating per run")
    p.add_argument("--runs", type=int, default=1, help="rounds; with 2 or more, medians too")
    p.add_argument("-c", "--connections", type=int, default=8, help="h2load connections")
    p.add_argument("-m", "--streams", type=int, default=4, help="streams per connection")
    p.add_argument("-t", "--threads", type=int, default=1, help="h2load threads")
    p.add_argument("-D", "--duration", type=float, default=10.0, metavar="S", help="each run")
    p.add_argument("-n", "--requests", type=int, help="a request count instead of -D")
    p.add_argument("--warmup", type=float, default=1.0, metavar="S", help="unmeasured, per call")
    p.add_argument("--grpc-timeout", type=float, default=5.0, metavar="S", help="per call")
    p.add_argument("--time-limit", type=float, default=300.0, metavar="S", help="kill h2load")
    p.add_argument("--client-nice", type=int, default=CLIENT_NICE, help="h2load's nice")
    return p


def _settings(ns: argparse.Namespace, serve_flags: list[str]) -> tuple[Load, list[str]]:
    if serve_flags and not ns.spawn:
        raise RunError(f"unrecognized arguments: {' '.join(serve_flags)}")
    calls = [c.strip() for c in ns.calls.split(",")]
    if not calls or set(calls) - {"create-lease", "health"}:
        raise RunError(f"--calls {ns.calls!r}: name create-lease and/or health")
    for flag, value in (("-c", ns.connections), ("-m", ns.streams), ("-t", ns.threads)):
        if not 1 <= value <= 10_000:
            raise RunError(f"{flag} must be 1 to 10000")
    if ns.threads > ns.connections:
        raise RunError("-t must not exceed -c (h2load gives each thread a connection)")
    if not 1 <= ns.runs <= 100 or not 0 <= ns.client_nice <= 19:
        raise RunError("--runs must be 1 to 100 and --client-nice 0 to 19")
    if ns.requests is not None and not 1 <= ns.requests <= MAX_REQUESTS:
        raise RunError(f"-n must be 1 to {MAX_REQUESTS}")
    if not 0 < ns.duration <= MAX_DURATION_S or not 0 <= ns.warmup <= MAX_DURATION_S:
        raise RunError(f"-D and --warmup must be at most {MAX_DURATION_S:.0f} s (-D above 0)")
    if not 0 < ns.grpc_timeout <= 3600 or ns.time_limit <= 0:
        raise RunError("--grpc-timeout must be 0 to 3600 s and --time-limit positive")
    if ns.target:
        _require_loopback(ns.target, "--target")
        if "create-lease" in calls and ns.feed is None:
            raise RunError("create-lease with --target needs --feed: the slot to lease")
    if ns.metrics:
        _require_loopback(ns.metrics, "--metrics")
    load = Load(
        connections=ns.connections,
        streams=ns.streams,
        threads=ns.threads,
        duration_s=None if ns.requests else ns.duration,
        requests=ns.requests,
        grpc_timeout_s=ns.grpc_timeout,
        nice=ns.client_nice,
        time_limit_s=ns.time_limit,
    )
    return load, calls


ServerView = tuple[str, str | None, Callable[[], float | None], SlotKey | None]


@contextlib.contextmanager
def _server(ns: argparse.Namespace, serve_flags: list[str]) -> Iterator[ServerView]:
    """(target, metrics HOST:PORT or None, the server's CPU seconds so far, the slot to lease)."""
    if not ns.spawn:
        key = _first_slot(ns.feed) if ns.feed else None
        yield ns.target, ns.metrics, lambda: None, key
        return
    with tempfile.TemporaryDirectory(prefix="leasehold-h2load-") as tmp:
        now = int(time.time())
        slots = build_slots([SlotGroup("h2load", 1, SPAWN_SPOTS, merchants=1)], now)
        feed = write_feed(Path(tmp) / "feed.json", slots, now)
        server = SpawnedServer(serve_command(feed, Path(tmp) / "data", None, serve_flags))
        try:
            url = server.health_url()
            metrics_at = url.split("/")[2] if url else None
            yield server.target, metrics_at, server.cpu_seconds, slots[0].key
        finally:
            server.stop()


def _require_loopback(where: str, flag: str) -> None:
    host = where.rsplit(":", 1)[0].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise RunError(f"{flag} {where}: the bench sends load to loopback only")


def _first_slot(feed: Path) -> SlotKey:
    try:
        slots = parse_feed_json(feed.read_text(encoding="utf-8")).slots
    except (OSError, ValueError) as problem:
        raise RunError(f"--feed {feed}: {problem}") from None
    if not slots:
        raise RunError(f"--feed {feed} has no slot to lease")
    return slots[0].key


def _rounds(
    ns: argparse.Namespace,
    load: Load,
    calls: list[str],
    target: str,
    metrics_at: str | None,
    server_cpu: Callable[[], float | None],
    key: SlotKey | None,
) -> list[RunFigures]:
    results: list[RunFigures] = []
    with tempfile.TemporaryDirectory(prefix="leasehold-h2load-") as scratch:
        for name in calls:
            if ns.warmup > 0:
                warm = _call(name, key)
                run_h2load(target, warm, _warmup(load, ns.warmup), Path(scratch))
        for run in range(1, ns.runs + 1):
            for name in calls:
                figures = one_run(
                    target, _call(name, key), load, Path(scratch), metrics_at, server_cpu
                )
                print(f"run {run} {_line(figures)}", flush=True)
                results.append(figures)
    return results


def _call(name: str, key: SlotKey | None) -> Call:
    if name == "health":
        return health_call()
    assert key is not None
    return lease_call(key, f"h2load-{secrets.token_hex(8)}")


def _warmup(load: Load, seconds: float) -> Load:
    return Load(**{**asdict(load), "duration_s": seconds, "requests": None})


def _line(r: RunFigures) -> str:
    s, server = r.summary, r.per_call_us(r.server_cpu_s)
    server_text = "n/a (not spawned)"
    if server is not None and r.server_cpu_s is not None:
        server_text = f"{server:.0f} us/call ({r.server_cpu_s / r.wall_s:.2f} cores)"
    return (
        f"{r.call}: {s.requests_per_s:.0f} req/s ({_figure(r.ok_per_s(), '.0f')} OK/s), "
        f"{s.done} done, {s.failed} failed, "
        f"latency p50 {r.log.p50_s * 1e3:.2f} p99 {r.log.p99_s * 1e3:.2f} "
        f"max {s.latency_max_s * 1e3:.2f} ms; server CPU {server_text}; "
        f"h2load CPU {r.per_call_us(r.h2load_cpu_s) or 0:.1f} us/call "
        f"({r.h2load_cpu_s / r.wall_s:.2f} cores); checks: {_verdict(r.checks)}"
    )


def _figure(value: float | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def _verdict(c: Checks) -> str:
    parts = [
        f"http {c.http or 'ok'}",
        f"samples {'ok' if c.samples is None else c.samples}",
        f"bodies {c.bodies or 'ok'}",
        f"shard answers {c.shard_answers or 'not read'}",
    ]
    return ", ".join(parts)


def _print_medians(results: list[RunFigures], runs: int) -> None:
    if runs < 2:
        return
    for name in dict.fromkeys(r.call for r in results):
        mine = [r for r in results if r.call == name]
        figures: dict[str, Any] = {
            "req/s": statistics.median(r.summary.requests_per_s for r in mine),
            "OK/s": statistics.median(r.ok_per_s() or 0.0 for r in mine),
            "p50 ms": statistics.median(r.log.p50_s * 1e3 for r in mine),
            "p99 ms": statistics.median(r.log.p99_s * 1e3 for r in mine),
            "h2load CPU us/call": statistics.median(
                r.per_call_us(r.h2load_cpu_s) or 0 for r in mine
            ),
        }
        server = [r.per_call_us(r.server_cpu_s) for r in mine]
        if all(v is not None for v in server):
            figures["server CPU us/call"] = statistics.median(v for v in server if v is not None)
        text = ", ".join(f"{k} {v:.4g}" for k, v in figures.items())
        print(f"median of {len(mine)} {name}: {text}")
