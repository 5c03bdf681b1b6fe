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
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from prometheus_client.parser import text_string_to_metric_families

from leasehold.bench._feed import SlotGroup, build_slots, write_feed
from leasehold.bench._h2load_parse import (
    H2loadOutputError,
    LogFigures,
    Summary,
    grpc_frame,
    parse_log,
    parse_summary,
)
from leasehold.bench._server import ServerError, SpawnedServer, serve_command
from leasehold.core import SlotKey, parse_feed_json
from leasehold.proto.v2 import booking_pb2 as pb2

EXIT_CHECK_FAILED = 1
EXIT_NOT_MADE = 2
CLIENT_NICE = 10
CREATE_LEASE = "/ext.maps.booking.partner.v2.BookingService/CreateLease"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = b"\x08\x01"  # HealthCheckResponse(status=SERVING), as protobuf encodes it
SAMPLE_CALLS = 3
# A run's lease must outlive it: replays of an expired lease are not what is measured.
MAX_DURATION_S = 240.0
MAX_OUTPUT_BYTES = 1 << 20  # h2load's summary is ~2 KB; its progress lines are bounded by -n
# h2load's per-request log takes ~30 bytes a call in the scratch dir: ~300 MB at most.
MAX_REQUESTS = 10_000_000
SPAWN_SPOTS = 10_000  # one spot per run's lease: never runs out
INSTALL_HINT = "install nghttp2-client (as root: bash tests/install_h2load.sh)"


class RunError(Exception):
    """The run could not be made (the message says why)."""


@dataclass(frozen=True, slots=True)
class Load:
    """h2load's settings for one run: -c, -m, -t, and -D (seconds) or -n (requests)."""

    connections: int
    streams: int
    threads: int
    duration_s: float | None
    requests: int | None
    grpc_timeout_s: float
    nice: int
    time_limit_s: float

    def in_flight_bound(self) -> int:
        """Calls the server may answer after h2load stops counting (-D ends mid-flight)."""
        return 0 if self.duration_s is None else self.connections * self.streams


@dataclass(frozen=True, slots=True)
class Call:
    """One kind of call h2load repeats: its path, its request message, its reply's test."""

    name: str
    path: str
    message: bytes
    reply_problem: Callable[[bytes], str | None]


def lease_call(key: SlotKey, reference: str) -> Call:
    slot = pb2.Slot(merchant_id=key.merchant_id, service_id=key.service_id)
    slot.start_time.seconds = key.start_sec
    slot.duration.seconds = key.duration_sec
    request = pb2.CreateLeaseRequest(lease=pb2.Lease(slot=slot, user_reference=reference))
    return Call("create-lease", CREATE_LEASE, request.SerializeToString(), _lease_problem)


def _lease_problem(reply: bytes) -> str | None:
    try:
        response = pb2.CreateLeaseResponse.FromString(reply)
    except DecodeError:
        return "a reply that is not a CreateLeaseResponse"
    if response.HasField("booking_failure"):
        return f"BookingFailure {pb2.BookingFailure.Cause.Name(response.booking_failure.cause)}"
    return None if response.lease.lease_id else "a reply with no lease_id"


def health_call() -> Call:
    return Call("health", HEALTH_CHECK, b"", lambda r: None if r == SERVING else "not SERVING")


@dataclass(frozen=True, slots=True)
class Checks:
    """What was verified beyond h2load's HTTP 200s (None: not checked in this run).

    - http: h2load saw answers, all HTTP 200, none failed, errored or timed out.
    - samples: SAMPLE_CALLS grpcio calls of the same body, before and after the
      run, all grpc-status 0 with the expected reply (a lease; SERVING), all
      byte-identical (for create-lease: the replay returned the same lease).
    - bodies: h2load's DATA bytes = 2xx answers x the sample's reply length: every
      answer carried that message. grpclib sends an error status trailers-only,
      with no message, so error answers show here, counted (e.g. RESOURCE_EXHAUSTED
      from admission: its queueing-delay target is 20 ms).
    - shard_answers (create-lease, when /metrics is reachable): over the run, the
      shards answered CreateLease OK as often as h2load counted 2xx (up to the
      calls in flight when a -D run stops), refused none, shed none.
    Not checked: each answer's grpc-status trailer itself (h2load does not show
    trailers): an answer with the right message and then a non-zero status
    would pass; the gateway's handlers send the message last, so none does.
    """

    http: str | None  # None when fine, else what was wrong
    samples: str | None  # None when fine, else what was wrong
    bodies: str | None  # None when fine, else what was wrong
    shard_answers: str | None  # "ok", what was wrong, or None when /metrics was not read

    @property
    def ok(self) -> bool:
        fine = self.http is None and self.samples is None and self.bodies is None
        return fine and self.shard_answers in ("ok", None)


@dataclass(frozen=True, slots=True)
class RunFigures:
    call: str
    summary: Summary
    log: LogFigures
    h2load_cpu_s: float
    wall_s: float
    server_cpu_s: float | None
    reply_bytes: int  # the sample's framed reply; -1 when the sample got none
    checks: Checks

    def ok_per_s(self) -> float | None:
        """Answers/s that carried the reply: h2load's req/s less the gRPC errors among them."""
        s = self.summary
        missing = s.answers_without_message(self.reply_bytes)
        if missing is None or s.done == 0:
            return None
        return s.requests_per_s * (s.status_2xx - missing) / s.done

    def per_call_us(self, cpu_s: float | None) -> float | None:
        done = self.summary.done
        return None if cpu_s is None or done == 0 else cpu_s / done * 1e6


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
    p = argparse.ArgumentParser(prog="leasehold bench h2load", description=__doc__.split("\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", metavar="HOST:PORT", help="a running server (loopback only)")
    where.add_argument("--spawn", action="store_true", help="start `leasehold serve` (defaults)")
    p.add_argument("--feed", type=Path, help="with --target: its feed; the first slot is leased")
    p.add_argument("--metrics", metavar="HOST:PORT", help="with --target: its health port")
    p.add_argument("--calls", default="create-lease,health", help="which, alternating per run")
    p.add_argument("--runs", type=int, default=1, help="rounds; with 2 or more, medians too")
    p.add_argument("-c", "--connections", type=int, default=8)
    p.add_argument("-m", "--streams", type=int, default=4, help="per connection")
    p.add_argument("-t", "--threads", type=int, default=1, help="h2load threads")
    p.add_argument("-D", "--duration", type=float, default=10.0, metavar="S")
    p.add_argument("-n", "--requests", type=int, help="a request count instead of -D")
    p.add_argument("--warmup", type=float, default=1.0, metavar="S", help="unmeasured h2load run")
    p.add_argument("--grpc-timeout", type=float, default=5.0, metavar="S")
    p.add_argument("--time-limit", type=float, default=300.0, metavar="S", help="kill h2load")
    p.add_argument("--client-nice", type=int, default=CLIENT_NICE)
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
                _h2load(target, warm, _warmup(load, ns.warmup), Path(scratch))
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


def one_run(
    target: str,
    call: Call,
    load: Load,
    scratch: Path,
    metrics_at: str | None,
    server_cpu: Callable[[], float | None],
) -> RunFigures:
    """Samples, h2load, samples: the figures and what was checked."""
    before, problem = _samples(target, call)
    answers_before = _answers(metrics_at) if call.path == CREATE_LEASE else None
    cpu_before = server_cpu()
    output, log, h2load_cpu, wall = _h2load(target, call, load, scratch)
    cpu_after = server_cpu()
    answers_after = _answers(metrics_at) if answers_before is not None else None
    after, problem_after = _samples(target, call)
    summary = parse_summary(output)
    if log.answered_200 + log.not_200 != summary.done:
        raise H2loadOutputError(f"h2load logged {log.answered_200 + log.not_200} of {summary.done}")
    if problem is None and after != before:
        problem = problem_after or "the replies after the run differ from those before"
    expected = len(grpc_frame(before[0])) if before else -1
    shard = None
    if answers_before is not None and answers_after is not None:
        shard = _shard_verdict(answers_before, answers_after, summary, load.in_flight_bound())
    return RunFigures(
        call=call.name,
        summary=summary,
        log=log,
        h2load_cpu_s=h2load_cpu,
        wall_s=wall,
        server_cpu_s=None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        reply_bytes=expected,
        checks=Checks(
            http=http_problem(summary),
            samples=problem,
            bodies=bodies_problem(summary, expected),
            shard_answers=shard,
        ),
    )


def bodies_problem(s: Summary, message_bytes: int) -> str | None:
    """None when every 2xx answer carried the sample's reply, else how many did not."""
    if s.data_bytes == 0 and s.status_2xx:
        return f"all {s.status_2xx} answers carried no message (gRPC errors)"
    if message_bytes <= 0:
        return "not checked: the sample had no reply to compare with"
    missing = s.answers_without_message(message_bytes)
    if missing == 0:
        return None
    if missing is None:
        return f"{s.data_bytes} DATA bytes are not {s.status_2xx} replies of {message_bytes}"
    return f"{missing} of {s.status_2xx} answers carried no message (gRPC errors)"


def http_problem(s: Summary) -> str | None:
    """What h2load itself saw go wrong, if anything."""
    if s.status_2xx == 0:
        return "no HTTP 200 answer"
    bad = {
        "failed": s.failed,
        "errored": s.errored,
        "timeout": s.timeout,
        "not 2xx": s.status_other,
    }
    wrong = {name: n for name, n in bad.items() if n}
    return f"h2load counted {wrong}" if wrong else None


def _samples(target: str, call: Call) -> tuple[list[bytes], str | None]:
    """SAMPLE_CALLS calls of the body through grpcio: their replies, or what was wrong."""
    replies: list[bytes] = []
    with grpc.insecure_channel(target) as channel:
        method: Callable[..., bytes] = channel.unary_unary(call.path)
        for _ in range(SAMPLE_CALLS):
            try:
                reply = method(call.message, timeout=10.0)
            except grpc.RpcError as error:
                return replies, f"grpc-status {error.code().name}: {error.details()}"
            wrong = call.reply_problem(reply)
            if wrong is not None:
                return replies, wrong
            replies.append(reply)
    if len(set(replies)) != 1:
        return replies, "the sample's replies differ from each other"
    return replies, None


def _answers(metrics_at: str | None) -> dict[str, float] | None:
    """The shards' CreateLease answers by name, plus shed and late-dropped totals."""
    if metrics_at is None:
        return None
    try:
        with urllib.request.urlopen(f"http://{metrics_at}/metrics", timeout=10) as reply:
            text = reply.read(8 << 20).decode()
    except (OSError, ValueError) as problem:
        raise RunError(f"metrics at {metrics_at}: {problem}") from None
    counts: dict[str, float] = {"shed": 0.0, "deadline_dropped": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "leasehold_requests_total":
                if sample.labels.get("command") == "CreateLease":
                    counts[sample.labels["answer"]] = sample.value
            elif sample.name == "leasehold_shed_requests_total":
                counts["shed"] += sample.value
            elif sample.name == "leasehold_deadline_dropped_requests_total":
                counts["deadline_dropped"] += sample.value
    return counts


def _shard_verdict(
    before: dict[str, float], after: dict[str, float], summary: Summary, in_flight: int
) -> str:
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    wrong = {k: v for k, v in delta.items() if k != "OK" and v}
    if wrong:
        return f"shards answered CreateLease otherwise / shed: {wrong}"
    extra = delta.get("OK", 0.0) - summary.status_2xx
    if not 0 <= extra <= in_flight:
        return f"shards answered {delta.get('OK', 0.0):.0f} OK, h2load saw {summary.status_2xx}"
    return "ok"


def h2load_command(target: str, path: str, body: Path, log: Path, load: Load) -> list[str]:
    amount = (
        ["-n", str(load.requests)] if load.requests else ["-D", f"{_millis(load.duration_s)}ms"]
    )
    return [
        *("nice", "-n", str(load.nice), "h2load"),
        *("-c", str(load.connections), "-m", str(load.streams), "-t", str(load.threads)),
        *amount,
        *("-H", "content-type: application/grpc", "-H", "te: trailers"),
        *("-H", f"grpc-timeout: {_millis(load.grpc_timeout_s)}m"),
        *("-d", str(body), "--log-file", str(log)),
        f"http://{target}{path}",
    ]


def _millis(seconds: float | None) -> int:
    assert seconds is not None
    return max(1, round(seconds * 1000))


def _h2load(
    target: str, call: Call, load: Load, scratch: Path
) -> tuple[str, LogFigures, float, float]:
    """Run h2load; (its output, its log's figures, its CPU seconds, wall seconds)."""
    body, log, out = scratch / "body", scratch / "log", scratch / "out"
    body.write_bytes(grpc_frame(call.message))
    log.unlink(missing_ok=True)  # h2load appends to its log file
    command = h2load_command(target, call.path, body, log, load)
    started = time.monotonic()
    with out.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        code, cpu = _wait_with_limit(process, load.time_limit_s)
    wall = time.monotonic() - started
    with out.open("rb") as f:
        output = f.read(MAX_OUTPUT_BYTES).decode(errors="replace")
    if code != 0:
        raise RunError(f"h2load exited {code}: {output[-800:]}")
    with log.open(encoding="ascii", errors="replace") as lines:
        return output, parse_log(lines), cpu, wall


def _wait_with_limit(process: subprocess.Popen[bytes], limit_s: float) -> tuple[int, float]:
    """wait4 the process (its own rusage, not all children's); SIGKILL it after limit_s."""
    timer = threading.Timer(limit_s, process.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime


def _line(r: RunFigures) -> str:
    s, server = r.summary, r.per_call_us(r.server_cpu_s)
    server_text = "n/a (not spawned)" if server is None else f"{server:.0f} us/call"
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
