"""What health watchers cost the server: `python -m bench.watchers [N] [--interval S]`.

Starts `leasehold serve` (memory only, free ports), attaches N watchers at the
given frame interval, and prints the server's CPU use over 10 s with them
attached, and the frames delivered per second. Idle server: the figure is
the health stream's own cost.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import trio

from gateway.watch import open_watch

MEASURE_S = 10.0
SETTLE_S = 2.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watchers", description=__doc__)
    parser.add_argument("watchers", type=int, nargs="?", default=50)
    parser.add_argument("--interval", type=float, default=0.1, metavar="S")
    args = parser.parse_args(argv)
    leasehold = str(Path(sys.executable).with_name("leasehold"))
    command = [leasehold, "serve", "--port", "0", "--health-port", "0", "--durability", "none"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            url = _health_url(server)
            cpu_share, frames_per_s = trio.run(_measure, server.pid, url, args)
        finally:
            server.terminate()
            server.wait(timeout=15)
    print(
        f"{args.watchers} watchers every {args.interval} s: server CPU "
        f"{100 * cpu_share:.1f}% of a core, {frames_per_s:.0f} frames/s delivered"
    )
    return 0


def _health_url(server: subprocess.Popen[str]) -> str:
    assert server.stdout is not None
    url = None
    for line in server.stdout:
        found = re.search(r"health stream on (\S+)", line)
        url = found.group(1) if found else url
        if "serving" in line and url:
            return url
    raise SystemExit("the server stopped before serving")


async def _measure(pid: int, url: str, args: argparse.Namespace) -> tuple[float, float]:
    counts = [0] * args.watchers
    async with trio.open_nursery() as nursery:
        for n in range(args.watchers):
            nursery.start_soon(_watch, url, args.interval, counts, n)
        await trio.sleep(SETTLE_S)
        cpu0, t0, frames0 = _cpu_seconds(pid), time.monotonic(), sum(counts)
        await trio.sleep(MEASURE_S)
        cpu1, t1, frames1 = _cpu_seconds(pid), time.monotonic(), sum(counts)
        nursery.cancel_scope.cancel()
    return (cpu1 - cpu0) / (t1 - t0), (frames1 - frames0) / (t1 - t0)


async def _watch(url: str, interval_s: float, counts: list[int], n: int) -> None:
    async with open_watch(url, interval_s=interval_s) as (ws, _):
        while True:
            await ws.get_message()
            counts[n] += 1


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    raise SystemExit(main())
