"""`leasehold bench attack PROBE`: the hostile-load probes of issue 15, printing its target figures.

    leasehold bench attack rapid-reset [--seconds 10] [--runs N] [serve flags...]
    leasehold bench attack overload [--seconds 30] [--callers 1000] [--deadline-ms 100]
    leasehold bench attack big-frames [--connections 40]

Each run starts its own server (`--spawn` style, on a fresh data dir and feed),
sends the attack from client processes at nice 10, samples the memory of the
server's process tree from /proc (RSS summed, and PSS summed: bench/_memory.py),
and prints one line of figures; with --runs N, also the medians.
- rapid-reset: HEADERS + RST_STREAM(CANCEL) pairs at full speed, reconnecting
  whenever the server closes; a health Check every 10 ms meanwhile (p99), and
  each attacking connection's time from its first frame to its close.
- overload: CreateLease at concurrency 50 with 5 s deadlines (the capacity),
  then `--callers` callers with `--deadline-ms` deadlines (two load processes,
  one connection per 100 callers, at least 8 per process; `--client h2`, the
  default, is the low-CPU HTTP/2 client of bench/_h2call.py, on uvloop when it
  is installed; `--client grpcio` grpc.aio; callers are described in
  bench/_overload_load.py: a caller whose call failed calls again at once,
  after the server's grpc-retry-pushback-ms if it sent one; `--retry backoff`
  adds a randomized exponential backoff after a deadline that expired in the
  client, for a machine where the load processes collapse); goodput against
  capacity, p99 of successes (to the moment the client had the reply;
  `p99_ok_resumed_ms` adds the wait for the caller's coroutine to run), and the
  spots held by leases whose creating call failed (spots taken during the
  phase, from CheckAvailability, less the leases granted to callers, out of all
  spots taken). Also the cores used by the server and by the load processes
  (and the load's CPU per call), how late the load processes' event loops run
  (a starved client delays its sends and its reading of replies: client-side
  latency includes it; `load_collapsed` 1 when it lagged over 1.5 deadlines at
  p99, a run that measured the load generator), and the load average.
  LEASEHOLD_ATTACK_VERBOSE=1 prints every kind of refusal.
- big-frames: connections that each declare a 16 MiB frame and send its body.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import queue
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import grpc

from leasehold.bench._fastloop import run as run_loop
from leasehold.bench._feed import SlotGroup, build_slots, write_feed
from leasehold.bench._memory import MemorySampler, TreeMemory
from leasehold.bench._overload_load import (
    CLIENTS,
    PUSHBACK,
    RETRY_MODES,
    SPOTS_PER_SLOT,
    PhaseResult,
    lease_request,
    run_callers,
)
from leasehold.bench._server import ROLES, SpawnedServer, serve_command
from leasehold.core import SlotKey
from leasehold.proto.v2 import booking_pb2 as pb2

CLIENT_NICE = 10
_NICE_ENV = "LEASEHOLD_ATTACK_NICE"  # how the spawned load processes learn --client-nice
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
CHECK_AVAILABILITY = "/ext.maps.booking.partner.v2.BookingService/CheckAvailability"
# Enough spots that a slot never runs out in a 30 s run at the server's capacity.
SLOT_COUNT = 400


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="leasehold bench attack")
    parser.add_argument("probe", choices=sorted(PROBES))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seconds", type=float, help="attack length (default per probe)")
    parser.add_argument("--callers", type=int, default=1000)
    parser.add_argument("--deadline-ms", type=float, default=100.0)
    parser.add_argument("--connections", type=int, default=40)
    parser.add_argument(
        "--client", choices=CLIENTS, default="h2", help="overload: the callers' gRPC client"
    )
    parser.add_argument(
        "--retry",
        choices=RETRY_MODES,
        default="at-once",
        help="overload: after a deadline that expired in the client, call again or back off",
    )
    parser.add_argument(
        "--client-nice", type=int, default=CLIENT_NICE, help="nice increment of the load processes"
    )
    ns, serve_flags = parser.parse_known_args(argv)
    os.environ[_NICE_ENV] = str(ns.client_nice)
    figures: list[dict[str, float]] = []
    for run in range(ns.runs):
        with _server(serve_flags) as server:
            result = PROBES[ns.probe](server, ns)
        figures.append(result)
        print(f"run {run + 1}: " + _line(result), flush=True)
    if ns.runs > 1:
        medians = {k: statistics.median(f[k] for f in figures) for k in figures[0]}
        print(f"median of {ns.runs}: " + _line(medians))
    return 0


def _line(figures: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4g}" for name, value in figures.items())


@contextlib.contextmanager
def _server(serve_flags: list[str]) -> Iterator[SpawnedServer]:
    with tempfile.TemporaryDirectory(prefix="leasehold-attack-") as tmp:
        now = int(time.time())
        slots = build_slots([SlotGroup("attack", SLOT_COUNT, SPOTS_PER_SLOT)], now)
        feed = write_feed(Path(tmp) / "feed.json", slots, now)
        server = SpawnedServer(serve_command(feed, Path(tmp) / "data", None, serve_flags))
        try:
            yield server
        finally:
            server.stop()


def _memory_growth(before: TreeMemory, peak: TreeMemory, after: TreeMemory) -> dict[str, float]:
    return {
        "rss_before_mb": before.rss_mb,
        "rss_growth_peak_mb": peak.rss_mb - before.rss_mb,
        "rss_growth_after_mb": after.rss_mb - before.rss_mb,
        "pss_before_mb": before.pss_mb,
        "pss_growth_peak_mb": peak.pss_mb - before.pss_mb,
        "pss_growth_after_mb": after.pss_mb - before.pss_mb,
    }


def _in_child(target: Callable[..., None], *args: Any) -> tuple[Any, Any]:
    """Start `target(*args, results)` in a fresh process (spawned: grpcio must not fork)."""
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    process = context.Process(target=target, args=(*args, results), daemon=True)
    process.start()
    return process, results


def _collect(processes: list[tuple[Any, Any]], timeout_s: float) -> list[Any]:
    out = []
    for process, results in processes:
        try:
            out.append(results.get(timeout=timeout_s))
        except queue.Empty:
            raise RuntimeError("a load process gave no result") from None
        process.join(timeout=10)
    return out


# --- rapid reset ------------------------------------------------------------------------


def rapid_reset(server: SpawnedServer, ns: argparse.Namespace) -> dict[str, float]:
    seconds = ns.seconds or 10.0
    sampler = MemorySampler(server.process.pid)
    attacker = _in_child(_reset_attacker, server.port, seconds)
    latencies, failures = _health_probe(server.target, seconds)
    [(pairs, closes)] = _collect([attacker], timeout_s=seconds + 30)
    time.sleep(1.0)  # what the server keeps after the attack
    after = sampler.stop()
    return {
        "health_p99_ms": _percentile(latencies, 99) * 1000,
        "health_failed": failures,
        "pairs_per_s": pairs / seconds,
        "connections": len(closes),
        "close_median_s": statistics.median(closes) if closes else float("nan"),
        "close_max_s": max(closes) if closes else float("nan"),
        **_memory_growth(sampler.before, sampler.peak, after),
    }


def _health_probe(target: str, seconds: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    with grpc.insecure_channel(target) as channel:
        check = channel.unary_unary(HEALTH_CHECK, lambda b: b, lambda b: b)
        check(b"", timeout=5)  # connected before the attack starts
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                check(b"", timeout=1.0)
                latencies.append(time.monotonic() - started)
            except grpc.RpcError:
                failures += 1
                latencies.append(1.0)
            time.sleep(0.01)
    return latencies, failures


def _reset_attacker(port: int, seconds: float, results: Any) -> None:
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.errors import ErrorCodes

    _be_nice()
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", HEALTH_CHECK),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    pairs, closes = 0, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
        conn = H2Connection(H2Configuration(client_side=True))
        conn.initiate_connection()
        started = time.monotonic()
        try:
            sock.sendall(conn.data_to_send())
            while time.monotonic() < end:
                for _ in range(100):
                    stream_id = conn.get_next_available_stream_id()
                    conn.send_headers(stream_id, headers)
                    conn.reset_stream(stream_id, ErrorCodes.CANCEL)
                sock.sendall(conn.data_to_send())
                pairs += 100
                if closed_by_peer(sock):
                    raise ConnectionResetError
        except OSError:
            closes.append(time.monotonic() - started)
        finally:
            sock.close()
    results.put((pairs, closes))


def closed_by_peer(sock: socket.socket) -> bool:
    """Read what the server sent, without waiting; True once it has closed."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except ConnectionError:  # reset by the server: closed too
        return True
    finally:
        sock.settimeout(timeout)


# --- overload ---------------------------------------------------------------------------


def overload(server: SpawnedServer, ns: argparse.Namespace) -> dict[str, float]:
    seconds = ns.seconds or 30.0
    keys = build_slots([SlotGroup("attack", SLOT_COUNT, SPOTS_PER_SLOT)], int(time.time()))
    # The server's feed was built from the same clock moments ago: same keys unless a
    # day turned over in between (then the run fails loudly: unknown slots).
    slot_keys = [s.key for s in keys]
    capacity_cpu = server.cpu_seconds() or 0.0
    capacity = _phase(server, slot_keys, 50, 5.0, 10.0, "cap", ns.client)
    capacity_cpu = (server.cpu_seconds() or 0.0) - capacity_cpu
    held_before = _held(server.target, slot_keys)
    sampler = MemorySampler(server.process.pid)
    server_cpu = server.cpu_seconds() or 0.0  # the whole process tree
    deadline_s = ns.deadline_ms / 1000
    hostile = _phase(
        server, slot_keys, ns.callers, deadline_s, seconds, "over", ns.client, 2, ns.retry
    )
    server_cpu = (server.cpu_seconds() or 0.0) - server_cpu
    after = sampler.stop()
    time.sleep(1.2)  # the server's last summary line of refusals
    if os.environ.get("LEASEHOLD_ATTACK_VERBOSE"):
        print(f"  server refusals: {server_refusals(server.output)}", flush=True)
        print(f"  client codes: {hostile.codes}", flush=True)
    phantom = _held(server.target, slot_keys) - held_before - hostile.granted
    capacity_per_s = capacity.granted / 10.0
    goodput = hostile.granted / seconds
    return {
        "capacity_per_s": capacity_per_s,
        "goodput_per_s": goodput,
        "goodput_share": goodput / capacity_per_s if capacity_per_s else 0.0,
        "p99_ok_ms": _percentile(hostile.latencies, 99) * 1000,
        # The same calls timed to their callers' resuming: adds the load processes' lag.
        "p99_ok_resumed_ms": _percentile(hostile.resumed, 99) * 1000,
        "resource_exhausted": hostile.codes.get("RESOURCE_EXHAUSTED", 0),
        "deadline_exceeded": hostile.codes.get("DEADLINE_EXCEEDED", 0),
        "client_backoffs": hostile.backoffs,  # after a deadline that expired in the client
        "server_late_replies": _summed(server.output, "replies finished after"),
        "server_dropped_too_close": _summed(server.output, "calls dropped: deadline too close"),
        "server_refused_behind": _summed(server.output, "calls refused RESOURCE_EXHAUSTED"),
        "phantom_spots": phantom,
        "phantom_share": phantom / max(hostile.granted + phantom, 1),
        # (h2 client) OK replies that arrived after the client's deadline: phantoms seen
        # from the client's side, and how late they came.
        "client_late_ok": len(hostile.late_ok) if ns.client == "h2" else float("nan"),
        "late_ok_p50_ms": _percentile(hostile.late_ok, 50) * 1000,
        "late_ok_p99_ms": _percentile(hostile.late_ok, 99) * 1000,
        "rss_before_mb": sampler.before.rss_mb,
        "rss_peak_mb": sampler.peak.rss_mb,
        "rss_after_mb": after.rss_mb,
        "pss_before_mb": sampler.before.pss_mb,
        "pss_peak_mb": sampler.peak.pss_mb,
        "pss_after_mb": after.pss_mb,
        # Where the growth is: each role's PSS after the phase, less before it.
        **{
            f"pss_growth_{role}s_mb": after.pss_by_role_mb.get(role, 0.0)
            - sampler.before.pss_by_role_mb.get(role, 0.0)
            for role in ROLES
        },
        # Cores used during the hostile phase: the load's own share is reported, not hidden.
        "server_cores": server_cpu / seconds,
        # The server tree's CPU per call answered: at concurrency 50 (nearly all leases
        # granted) and in the hostile phase (most calls refused at HEADERS).
        "server_cpu_us_per_call_cap": capacity_cpu / max(capacity.calls, 1) * 1e6,
        "server_cpu_us_per_call_over": server_cpu / max(hostile.calls, 1) * 1e6,
        "client_cores": hostile.client_cpu_s / seconds,
        "client_cpu_us_per_call": hostile.client_cpu_s / max(hostile.calls, 1) * 1e6,
        "client_lag_p50_ms": _percentile(hostile.client_lags, 50) * 1000,
        "client_lag_p99_ms": _percentile(hostile.client_lags, 99) * 1000,
        # 1 when the load processes, not the server, decided the run (see load_collapsed).
        "load_collapsed": float(load_collapsed(_percentile(hostile.client_lags, 99), deadline_s)),
        "load_avg_1m": os.getloadavg()[0],
    }


def load_collapsed(client_lag_p99_s: float, deadline_s: float) -> bool:
    """Did the load processes fall behind by more than 1.5 deadlines (p99 of their loop lag)?

    Then their own lag expired their callers' deadlines, which they retried: the run
    measured the load generator (docs/performance.md, "Overload, eighth pass"). Under
    a 100 ms deadline, 30 s runs that did not collapse lagged 56-86 ms at p99 (a 5 s
    run, its first second's crowd weighing more, 107 ms); collapsed ones 180-260 ms."""
    return client_lag_p99_s > 1.5 * deadline_s


def _phase(
    server: SpawnedServer,
    keys: list[SlotKey],
    callers: int,
    deadline_s: float,
    seconds: float,
    tag: str,
    client: str,
    processes: int = 1,
    retry: str = "at-once",
) -> PhaseResult:
    children = [
        _in_child(
            _lease_callers,
            client,
            server.target,
            keys,
            callers // processes,
            deadline_s,
            seconds,
            f"{tag}{i}",
            retry,
        )
        for i in range(processes)
    ]
    parts: list[PhaseResult] = _collect(children, timeout_s=seconds + 60)
    codes: dict[str, int] = {}
    for part in parts:
        for code, n in part.codes.items():
            codes[code] = codes.get(code, 0) + n
    return PhaseResult(
        sum(p.granted for p in parts),
        [x for p in parts for x in p.latencies],
        codes,
        sum(p.client_cpu_s for p in parts),
        [x for p in parts for x in p.client_lags],
        [x for p in parts for x in p.late_ok],
        [x for p in parts for x in p.resumed],
        sum(p.backoffs for p in parts),
    )


def _lease_callers(client: str, *args: Any) -> None:
    *call_args, results = args
    _be_nice()
    results.put(run_loop(run_callers(client, *call_args), fast=client == "h2"))


_SUMMARY = "refused in the last second: "


def server_refusals(output: list[str]) -> dict[str, int]:
    """Every kind of refusal in the server's summary lines so far, totalled."""
    totals: dict[str, int] = {}
    for line in output:
        if _SUMMARY not in line:
            continue
        for part in line.split(_SUMMARY, 1)[1].split("; "):
            count, _, text = part.strip().partition(" ")
            if count.isdigit():
                totals[text] = totals.get(text, 0) + int(count)
    return totals


def _summed(output: list[str], what: str) -> int:
    """The total of one kind of refusal over the server's summary lines so far."""
    return sum(n for text, n in server_refusals(output).items() if text.startswith(what))


def _held(target: str, keys: list[SlotKey]) -> int:
    """Spots taken now, over all the run's slots."""
    with grpc.insecure_channel(target) as channel:
        check = channel.unary_unary(
            CHECK_AVAILABILITY,
            pb2.CheckAvailabilityRequest.SerializeToString,
            pb2.CheckAvailabilityResponse.FromString,
        )
        available = 0
        for key in keys:
            request = pb2.CheckAvailabilityRequest(slot=lease_request(key, "", 0).lease.slot)
            reply = _with_retries(partial(check, request, timeout=10))
            available += reply.count_available
    return len(keys) * SPOTS_PER_SLOT - available


def _with_retries(call: Callable[[], Any], attempts: int = 20) -> Any:
    """`call()`, again after the server's pushback (at least 0.1 s) while it is refused:
    just after an overload phase the server may still be shedding."""
    for _ in range(attempts - 1):
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() not in (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.UNAVAILABLE,
            ):
                raise
            trailers = {str(m.key): str(m.value) for m in error.trailing_metadata() or ()}
            time.sleep(max(0.1, int(trailers.get(PUSHBACK, 0)) / 1000))
    return call()


# --- declared 16 MiB frames -------------------------------------------------------------


def big_frames(server: SpawnedServer, ns: argparse.Namespace) -> dict[str, float]:
    seconds = ns.seconds or 5.0
    sampler = MemorySampler(server.process.pid)
    child = _in_child(_frame_senders, server.port, ns.connections, seconds)
    [(closed, sent_mb)] = _collect([child], timeout_s=seconds + 30)
    after = sampler.stop()
    return {
        "connections_closed": closed,
        "sent_mb": sent_mb,
        **_memory_growth(sampler.before, sampler.peak, after),
    }


def _frame_senders(port: int, connections: int, seconds: float, results: Any) -> None:
    from h2.config import H2Configuration
    from h2.connection import H2Connection

    _be_nice()
    socks = []
    header = (2**24 - 1).to_bytes(3, "big") + b"\x00\x00" + (1).to_bytes(4, "big")
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        conn = H2Connection(H2Configuration(client_side=True))
        conn.initiate_connection()
        # A DATA frame on stream 1 declaring 2**24 - 1 bytes (the most the header can say).
        with contextlib.suppress(OSError):  # closed already: counted below
            sock.sendall(conn.data_to_send() + header)
        sock.setblocking(False)
        socks.append(sock)
    body = b"\x00" * 65536
    sent, open_ = 0, set(range(connections))
    end = time.monotonic() + seconds
    while open_ and time.monotonic() < end:
        for i in list(open_):
            try:
                sent += socks[i].send(body)
            except BlockingIOError:
                pass
            except OSError:
                open_.discard(i)
                continue
            if closed_by_peer(socks[i]):
                open_.discard(i)
        time.sleep(0.001)
    for sock in socks:
        sock.close()
    results.put((connections - len(open_), sent / 1024 / 1024))


def _be_nice() -> None:
    os.nice(int(os.environ.get(_NICE_ENV, CLIENT_NICE)))


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


PROBES: dict[str, Callable[[SpawnedServer, argparse.Namespace], dict[str, float]]] = {
    "big-frames": big_frames,
    "overload": overload,
    "rapid-reset": rapid_reset,
}
