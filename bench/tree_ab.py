"""A/B: the multi-process tree against `--workers 0`, driven by h2load (little client CPU).

    python -m leasehold.bench.tree_ab [--rounds 3] [--duration 8] [--connections 16]
        [--streams 16] [--what lease|health] [--rate N] [-- serve flags for both ...]

Alternates the two modes (A, B, A, B, ...) on fresh servers, each driven by
h2load with a fixed gRPC body: a replay-heavy CreateLease (one reference, so the
first call grants and every later one replays) or a health Check. Prints, per
run, calls/s, the server's CPU per call (its whole process tree), h2load's own
CPU and the machine's load average; then the medians per mode. Needs `h2load`
(Debian: nghttp2-client) on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from leasehold.bench._server import SpawnedServer, serve_command
from leasehold.core import SlotKey
from leasehold.proto.v2 import booking_pb2 as pb2

KEY = SlotKey("m-ab", "svc", 4_102_444_800, 1800)
PATHS = {
    "lease": "/ext.maps.booking.partner.v2.BookingService/CreateLease",
    "health": "/grpc.health.v1.Health/Check",
}
MODES = {"tree": [], "one": ["--workers", "0"]}
_DONE = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_STATUS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded")


def body(what: str) -> bytes:
    if what == "health":
        message = b""
    else:
        lease = pb2.Lease(user_reference="ab-replay")
        slot = lease.slot
        slot.merchant_id, slot.service_id = KEY.merchant_id, KEY.service_id
        slot.start_time.seconds, slot.duration.seconds = KEY.start_sec, KEY.duration_sec
        message = pb2.CreateLeaseRequest(lease=lease).SerializeToString()
    return struct.pack("!BI", 0, len(message)) + message


def run_once(mode: str, o: argparse.Namespace, root: Path, data: Path) -> dict[str, float]:
    feed = root / "feed.json"
    entry: dict[str, object] = {"merchant_id": KEY.merchant_id, "service_id": KEY.service_id}
    entry |= {"start_sec": KEY.start_sec, "duration_sec": KEY.duration_sec}
    entry |= {"spots_total": 100, "spots_open": 100}
    feed.write_text(json.dumps({"service_availability": [{"availability": [entry]}]}))
    server = SpawnedServer(serve_command(feed, data, o.shards, [*MODES[mode], *o.serve]))
    try:
        time.sleep(1.0)  # let the tree settle after its serving line
        cpu0, kids0 = server.cpu_seconds() or 0.0, resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [
                "h2load", f"-D{o.duration}", f"-c{o.connections}", f"-m{o.streams}",
                f"-t{o.threads}", "-d", str(root / "body.bin"), *_rps(o),
                "-H", "content-type: application/grpc", "-H", "te: trailers",
                f"http://{server.target}{PATHS[o.what]}",
            ],
            capture_output=True, text=True, timeout=o.duration + 60, check=False,
        )  # fmt: skip
        cpu1, kids1 = server.cpu_seconds() or 0.0, resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)
    finished, status = _DONE.search(done.stdout), _STATUS.search(done.stdout)
    if finished is None or status is None:
        raise SystemExit(f"h2load said:\n{done.stdout}\n{done.stderr}")
    calls = int(status.group(4))
    client_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    return {
        "calls_per_s": float(finished.group(3)),
        "server_us_per_call": (cpu1 - cpu0) / max(calls, 1) * 1e6,
        "h2load_cores": client_cpu / o.duration,
        "load_1m": os.getloadavg()[0],
    }


def _rps(o: argparse.Namespace) -> list[str]:
    """h2load's --rps is per connection: the total --rate split over them."""
    return [f"--rps={o.rate / o.connections:g}"] if o.rate else []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leasehold.bench.tree_ab")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per h2load run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--streams", type=int, default=16, help="in flight per connection")
    parser.add_argument("--threads", type=int, default=1, help="h2load threads")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="calls per second in all (0: as fast as it goes)"
    )
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--what", choices=list(PATHS), default="lease")
    parser.add_argument("serve", nargs="*", help="serve flags for both modes (after --)")
    o = parser.parse_args(argv)
    if shutil.which("h2load") is None:
        print("h2load is not on PATH (Debian: apt-get install nghttp2-client)", file=sys.stderr)
        return 2
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="leasehold-ab-") as tmp:
        root = Path(tmp)
        (root / "body.bin").write_bytes(body(o.what))
        for round_ in range(o.rounds):
            for mode in MODES:
                figures = run_once(mode, o, root, root / f"data-{mode}-{round_}")
                results[mode].append(figures)
                shown = "  ".join(f"{k} {v:.2f}" for k, v in figures.items())
                print(f"{o.what} round {round_} {mode:>4}: {shown}", flush=True)
    for mode, runs in results.items():
        medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        shown = "  ".join(f"{k} {v:.2f}" for k, v in medians.items())
        print(f"{o.what} median {mode:>4}: {shown}")
    tree, one = (statistics.median(r["calls_per_s"] for r in results[m]) for m in MODES)
    cpu_tree, cpu_one = (
        statistics.median(r["server_us_per_call"] for r in results[m]) for m in MODES
    )
    ratio, cpu_ratio = tree / one, cpu_tree / cpu_one
    print(f"{o.what}: tree/one calls/s {ratio:.2f}x, server CPU per call {cpu_ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
