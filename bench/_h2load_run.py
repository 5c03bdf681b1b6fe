"""One `leasehold bench h2load` run: h2load at nice 10 between two grpcio samples, and checks.

h2load counts every HTTP 200 as a success; gRPC's status is in trailers it does
not show. `Checks` lists what is verified around it instead, and what is not.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.message import DecodeError
from prometheus_client.parser import text_string_to_metric_families

from leasehold.bench._h2load_parse import (
    H2loadOutputError,
    LogFigures,
    Summary,
    grpc_frame,
    parse_log,
    parse_summary,
)
from leasehold.core import SlotKey
from leasehold.proto.v2 import booking_pb2 as pb2

CREATE_LEASE = "/ext.maps.booking.partner.v2.BookingService/CreateLease"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING = b"\x08\x01"  # HealthCheckResponse(status=SERVING), as protobuf encodes it
SAMPLE_CALLS = 3
MAX_OUTPUT_BYTES = 1 << 20  # h2load's summary is ~2 KB; its progress lines are bounded by -n


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
    output, log, h2load_cpu, wall = run_h2load(target, call, load, scratch)
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


def run_h2load(
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
        code, cpu = wait_with_limit(process, load.time_limit_s)
    wall = time.monotonic() - started
    with out.open("rb") as f:
        output = f.read(MAX_OUTPUT_BYTES).decode(errors="replace")
    if code != 0:
        raise RunError(f"h2load exited {code}: {output[-800:]}")
    try:
        with log.open(encoding="ascii", errors="replace") as lines:
            return output, parse_log(lines), cpu, wall
    except OSError as problem:
        raise RunError(f"h2load's log: {problem}") from None


def wait_with_limit(process: subprocess.Popen[bytes], limit_s: float) -> tuple[int, float]:
    """wait4 the process (its own rusage, not all children's); SIGKILL it after limit_s."""
    timer = threading.Timer(limit_s, process.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime
