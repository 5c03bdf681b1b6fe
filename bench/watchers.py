"""What health watchers cost the server: `python -m leasehold.bench.watchers [N] [--interval S]`.

Starts `leasehold serve` (bench._server; demo feed, memory only, free ports),
attaches N watchers at the given frame interval, and prints the server's CPU use over 10 s with them
attached, and the frames delivered per second. Idle server: the figure is
the health stream's own cost.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import trio

from leasehold.bench._server import SpawnedServer, serve_command
from leasehold.core import demo_feed
from leasehold.health.watch import open_watch

MEASURE_S = 10.0
SETTLE_S = 2.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leasehold.bench.watchers", description=__doc__)
    parser.add_argument("watchers", type=int, nargs="?", default=50)
    parser.add_argument("--interval", type=float, default=0.1, metavar="S")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        feed = Path(tmp) / "feed.json"
        feed.write_text(json.dumps(demo_feed(int(time.time()))), encoding="utf-8")
        command = serve_command(feed, Path(tmp) / "data", None, [], durability="none")
        server = SpawnedServer(command)
        try:
            url = server.health_url()
            if url is None:
                raise SystemExit("the server printed no health stream URL")
            cpu_share, frames_per_s = trio.run(_measure, server, url, args)
        finally:
            server.stop()
    print(
        f"{args.watchers} watchers every {args.interval} s: server CPU "
        f"{100 * cpu_share:.1f}% of a core, {frames_per_s:.0f} frames/s delivered"
    )
    return 0


async def _measure(
    server: SpawnedServer, url: str, args: argparse.Namespace
) -> tuple[float, float]:
    counts = [0] * args.watchers
    async with trio.open_nursery() as nursery:
        for n in range(args.watchers):
            nursery.start_soon(_watch, url, args.interval, counts, n)
        await trio.sleep(SETTLE_S)
        cpu0, t0, frames0 = _cpu(server), time.monotonic(), sum(counts)
        await trio.sleep(MEASURE_S)
        cpu1, t1, frames1 = _cpu(server), time.monotonic(), sum(counts)
        nursery.cancel_scope.cancel()
    return (cpu1 - cpu0) / (t1 - t0), (frames1 - frames0) / (t1 - t0)


async def _watch(url: str, interval_s: float, counts: list[int], n: int) -> None:
    async with open_watch(url, interval_s=interval_s) as (ws, _):
        while True:
            await ws.get_message()
            counts[n] += 1


def _cpu(server: SpawnedServer) -> float:
    seconds = server.cpu_seconds()
    if seconds is None:
        raise SystemExit("cannot read the server's CPU time (/proc)")
    return seconds


if __name__ == "__main__":
    raise SystemExit(main())
