"""`leasehold bench restart`: how long `leasehold serve` takes to come back on a full data dir.

    leasehold bench restart [--events N] [--layout journal,snapshot] [--runs R] [serve flags...]

It builds a data dir holding N events (default 1,000,000): N/2 v2 lease grants
and N/2 v2 bookings, each with its own idempotency token, consuming those
leases, one journal record per command as the server writes them. The feed is
the bench's own (the demo feed has under 2,000 spots): `--slots` slots of
twice the spots the bookings need, so no slot ever has more holders than spots.
The records are written with the server's own codec and journal writer
(shards._codec, shards._journal), and the directory's metadata with
shards._datadir, so `leasehold serve --data-dir DIR` takes it as its own.

Layouts:
- `journal`: every record in the journal, no snapshot (a server that never
  reached `--snapshot-every`). It is served with a `--snapshot-every` too large
  to trigger, so the runs leave it as it was.
- `snapshot`: as a server running with `--snapshot-every E` leaves it: per
  shard, the snapshot at the last multiple of E (written with the server's own
  snapshot writer, from the state after exactly those records), the segments it
  covers removed, and the records after it as the journal's tail.

Leases expire 14 minutes after the build (within the server's 15-minute maximum
TTL, so the journal holds nothing a server could not have written); they are
all consumed, so expiry only leaves stale timer entries that recovery rebuilds.

Each run execs `leasehold serve --data-dir DIR --port 0` (bench._server, which
also passes the feed recorded in DIR, --shards and --health-port 0) and times
it from exec to its serving line. Before the runs, the server's modules are
imported once with bytecode writing on: a server that ran before has its
bytecode cached, while with PYTHONDONTWRITEBYTECODE set and no cache each of
the tree's processes would compile its modules on every start (0.1-0.2 s of
CPU each). Each run also reads the server's CPU time at its serving line (less
sensitive than wall time to other work on a shared machine), the recovery
figures the server prints, and, from its health stream, that every shard's
confirmed bookings add up to the built number (and no lease is live); then
SIGTERM. The files of the data dir must be the same after each run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import trio

from leasehold.bench._feed import SlotGroup, build_slots, feed_document
from leasehold.bench._server import ServerError, SpawnedServer, serve_command
from leasehold.core import (
    BOOKING_ID_PREFIX,
    ID_ENTROPY_BYTES,
    LEASE_ID_PREFIX,
    NANOS_PER_SECOND,
    ApiVersion,
    Booking,
    BookingCreated,
    BookingStatus,
    Event,
    Lease,
    LeaseGranted,
    Person,
    ShardState,
    SlotKey,
    SlotRef,
    SlotSpec,
    make_id,
    parse_feed_json,
    routing_bucket,
    shard_for_key,
)
from leasehold.shards import (
    JournalWriter,
    encode_events,
    encode_snapshot,
    partition_inventory,
    prepare,
    remove_covered,
    shard_dir,
    write_snapshot,
)

LAYOUTS = ("journal", "snapshot")
MANIFEST = "bench-restart.json"
LEASE_LIFETIME_NS = 14 * 60 * NANOS_PER_SECOND
# What the tree's processes import: compiling them once warms the cache for every run.
SERVER_MODULES = ("leasehold.cli", "leasehold._shard_main", "leasehold._gateway_main")
# Served to the journal layout: the compactor must not snapshot it between runs.
NEVER_SNAPSHOT = 1_000_000_000
FLUSH_EVERY_RECORDS = 8192
HEALTH_TIMEOUT_S = 30.0
_RECOVERED = re.compile(
    r"recovered (\d+) shards: (\d+) snapshots, (\d+) journal records replayed, in ([\d.]+) s"
)


class RestartBenchError(Exception):
    """The bench could not be made (the message says why)."""


@dataclass(frozen=True, slots=True)
class Plan:
    events: int
    shards: int
    slots: int
    snapshot_every: int
    seed: int

    @property
    def bookings(self) -> int:
        return self.events // 2


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float  # exec to the serving line
    cpu_seconds: float | None  # the server's user + system CPU by then
    recovery_seconds: float  # what the server says recovery took (all shards)
    snapshots: int
    records_replayed: int
    # From the health stream, over every shard.
    confirmed_bookings: int
    live_leases: int


# ---- building --------------------------------------------------------------------


def build(plan: Plan, root: Path, layouts: Sequence[str]) -> dict[int, int]:
    """Build one data dir per layout under `root`; returns the records written per shard.

    Pair i (a grant and its booking) goes to shard i % shards, and there to the
    shard's slots in turn, so the shards hold equal shares; every slot gets at
    least twice the spots its bookings take.
    """
    started = time.time_ns()
    now_sec = started // NANOS_PER_SECOND
    group = SlotGroup("restart", plan.slots, 1, merchants=64)
    keys = [slot.key for slot in build_slots([group], now_sec)]
    on_shard: list[list[SlotKey]] = [[] for _ in range(plan.shards)]
    for key in keys:
        on_shard[shard_for_key(key.merchant_id, key.service_id, plan.shards)].append(key)
    if not all(on_shard):
        raise RestartBenchError(f"{plan.slots} slots leave a shard without any: give more")
    most = max(math.ceil(math.ceil(plan.bookings / plan.shards) / len(k)) for k in on_shard)
    group = dataclasses.replace(group, spots=2 * most)
    feed_text = json.dumps(feed_document(build_slots([group], now_sec), now_sec))
    specs = {spec.key: spec for spec in parse_feed_json(feed_text).slots}
    dirs = {layout: root / layout for layout in layouts}
    for data_dir in dirs.values():
        prepare(data_dir, shard_count=plan.shards, feed_text=feed_text)
    records: dict[int, int] = {}
    for shard_id, part in enumerate(partition_inventory(specs.values(), plan.shards)):
        shard_keys = on_shard[shard_id]
        pairs = [
            (i, specs[shard_keys[(i // plan.shards) % len(shard_keys)]])
            for i in range(shard_id, plan.bookings, plan.shards)
        ]
        events = _events(pairs, plan.seed + shard_id, started + LEASE_LIFETIME_NS)
        count = 2 * len(pairs)
        trio.run(_write_shard, dirs, shard_id, part, events, count, plan.snapshot_every)
        records[shard_id] = count
    return records


def _events(pairs: list[tuple[int, SlotSpec]], seed: int, expires_ns: int) -> Iterator[Event]:
    """Per pair, two commands: grant a lease, then book it with an idempotency token."""
    rng = random.Random(seed)
    for i, spec in pairs:
        bucket = routing_bucket(spec.key.merchant_id, spec.key.service_id)
        ref = SlotRef(spec.key, spec.availability_tag)
        lease_id = make_id(LEASE_ID_PREFIX, bucket, rng.randbytes(ID_ENTROPY_BYTES))
        yield LeaseGranted(Lease(lease_id, ApiVersion.V2, ref, f"ref-{i}", expires_ns))
        person = Person(
            user_id=f"user-{i}",
            given_name="Ann",
            family_name=f"Lee {i}",
            telephone=f"+1555{i:07d}",
            email=f"user-{i}@example.com",
        )
        booking_id = make_id(BOOKING_ID_PREFIX, bucket, rng.randbytes(ID_ENTROPY_BYTES))
        booking = Booking(booking_id, ref, person, BookingStatus.CONFIRMED, lease_id)
        yield BookingCreated(booking, f"token-{i}")


async def _write_shard(
    dirs: dict[str, Path],
    shard_id: int,
    part: list[SlotSpec],
    events: Iterator[Event],
    records: int,
    snapshot_every: int,
) -> None:
    """Journal `records` events, one record each, into this shard of every layout's dir.

    The snapshot layout also applies the records before its snapshot point to a
    ShardState and, there, does what the server's compactor does: roll the
    journal, write the snapshot of that state, remove what it covers.
    """
    writers = {
        layout: JournalWriter(shard_dir(data_dir, shard_id)) for layout, data_dir in dirs.items()
    }
    snapshot_at = (records // snapshot_every) * snapshot_every if "snapshot" in dirs else 0
    state = ShardState(part, entropy=lambda: bytes(ID_ENTROPY_BYTES)) if snapshot_at else None
    try:
        for seq, event in enumerate(events):
            if state is not None and seq == snapshot_at:
                await _snapshot(writers["snapshot"], state, seq)
                state = None
            payload = encode_events((event,))
            for writer in writers.values():
                writer.append(payload)
            if seq % FLUSH_EVERY_RECORDS == FLUSH_EVERY_RECORDS - 1:
                for writer in writers.values():
                    await writer.flush(sync=False)
            if state is not None:
                state.apply(event)
        if state is not None:  # the snapshot point is the end: an empty tail
            await _snapshot(writers["snapshot"], state, records)
        for writer in writers.values():
            await writer.flush(sync=True)
    finally:
        for writer in writers.values():
            writer.close()


async def _snapshot(writer: JournalWriter, state: ShardState, seq: int) -> None:
    """What shards._compaction.Compactor.checkpoint does, without a running shard."""
    await writer.roll()
    assert writer.next_seq == seq
    write_snapshot(writer.directory, seq, encode_snapshot(seq, state.snapshot()))
    remove_covered(writer.directory, seq)


# ---- timing ----------------------------------------------------------------------


def time_runs(
    data_dir: Path, plan: Plan, layout: str, runs: int, extra: Sequence[str]
) -> list[Run]:
    """Start and stop `leasehold serve` on `data_dir` `runs` times; each run's figures."""
    every = NEVER_SNAPSHOT if layout == "journal" else plan.snapshot_every
    flags = ["--snapshot-every", str(every), *extra]
    command = serve_command(data_dir / "feed.json", data_dir, plan.shards, flags)
    results = []
    for n in range(runs):
        before = _listing(data_dir)
        started = time.perf_counter()
        try:
            server = SpawnedServer(command)
        except ServerError as problem:
            raise RestartBenchError(str(problem)) from None
        seconds = time.perf_counter() - started
        cpu = server.cpu_seconds()
        try:
            url = server.health_url()
            if url is None:
                raise RestartBenchError("the server printed no health stream URL")
            live, confirmed = trio.run(_recovered_counts, url)
        finally:
            code = server.stop()
        output = "".join(server.output)
        if code != 0:
            raise RestartBenchError(f"the server exited {code} on SIGTERM:\n{output}")
        if (live, confirmed) != (0, plan.bookings):
            raise RestartBenchError(
                f"the server recovered {confirmed} confirmed bookings and {live} live leases, "
                f"not {plan.bookings} and 0:\n{output}"
            )
        if _listing(data_dir) != before:
            raise RestartBenchError(f"run {n + 1} changed the files of {data_dir}")
        found = _RECOVERED.search(output)
        if found is None:
            raise RestartBenchError(f"the server printed no recovery line:\n{output}")
        results.append(
            Run(
                seconds=seconds,
                cpu_seconds=cpu,
                recovery_seconds=float(found[4]),
                snapshots=int(found[2]),
                records_replayed=int(found[3]),
                confirmed_bookings=confirmed,
                live_leases=live,
            )
        )
        run = results[-1]
        print(
            f"  {layout} run {n + 1}: {seconds:.2f} s (server CPU {cpu or 0:.2f} s, "
            f"recovery {run.recovery_seconds:.2f} s)",
            file=sys.stderr,
            flush=True,
        )
    return results


def _listing(data_dir: Path) -> dict[str, int]:
    """Every file under the data dir and its size; not the lock, nor the shards' manifests
    (each start rewrites them; a clean stop records how far the journal is durable)."""
    return {
        str(path.relative_to(data_dir)): path.stat().st_size
        for path in data_dir.rglob("*")
        if path.is_file() and path.name not in ("leasehold.lock", "manifest.json")
    }


async def _recovered_counts(url: str) -> tuple[int, int]:
    """(live leases, confirmed bookings) over every shard, from the first health frame."""
    from leasehold.health.frames import Health, decode
    from leasehold.health.watch import open_watch

    with trio.fail_after(HEALTH_TIMEOUT_S):
        async with open_watch(url, interval_s=0.1) as (ws, _):
            while True:
                message = await ws.get_message()
                if not isinstance(message, bytes):
                    raise RestartBenchError("the health stream sent text, not a frame")
                frame = decode(message)
                if isinstance(frame, Health):
                    live = sum(s.live_leases for s in frame.shards)
                    return live, sum(s.confirmed_bookings for s in frame.shards)


# ---- the command -----------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="leasehold bench restart",
        description="Time `leasehold serve` recovering a data dir of N events "
        "(flags it does not know are passed to serve).",
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="grants + bookings (even)")
    parser.add_argument("--layout", default=",".join(LAYOUTS), help="journal, snapshot or both")
    parser.add_argument("--runs", type=int, default=3, help="restarts timed per layout")
    parser.add_argument("--shards", type=int, default=4, help="serve's --shards (its default 4)")
    parser.add_argument("--slots", type=int, default=1024, help="slots in the bench's feed")
    parser.add_argument(
        "--snapshot-every",
        type=int,
        default=100_000,
        metavar="RECORDS",
        help="snapshot layout: as a server with this --snapshot-every leaves it",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dir",
        type=Path,
        help="build the data dirs here and keep them (reused if built with the same "
        "settings); default: a temporary directory, removed afterwards",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    args, extra = parser.parse_known_args(argv)
    layouts = [name.strip() for name in args.layout.split(",") if name.strip()]
    if not layouts or set(layouts) - set(LAYOUTS):
        parser.error(f"--layout: one or more of {', '.join(LAYOUTS)}")
    if args.events < 2 or args.events % 2:
        parser.error("--events must be even and at least 2 (a grant and its booking)")
    if min(args.runs, args.shards, args.slots, args.snapshot_every) < 1:
        parser.error("--runs, --shards, --slots and --snapshot-every must be at least 1")
    plan = Plan(
        args.events,
        args.shards,
        min(args.slots, args.events // 2),
        args.snapshot_every,
        args.seed,
    )
    try:
        if args.dir is not None:
            return _bench(plan, layouts, args.runs, extra, args.dir, args.json)
        with tempfile.TemporaryDirectory(prefix="leasehold-restart-") as scratch:
            return _bench(plan, layouts, args.runs, extra, Path(scratch), args.json)
    except RestartBenchError as problem:
        print(f"leasehold bench restart: {problem}", file=sys.stderr)
        return 2


def _bench(
    plan: Plan,
    layouts: list[str],
    runs: int,
    extra: Sequence[str],
    root: Path,
    json_path: Path | None,
) -> int:
    records = _built(plan, layouts, root)
    warm_bytecode()
    per_layout = {layout: time_runs(root / layout, plan, layout, runs, extra) for layout in layouts}
    report = _report(plan, records, per_layout)
    print(report)
    if json_path is not None:
        document = {
            "plan": asdict(plan),
            "records_per_shard": records,
            "runs": {k: [asdict(r) for r in v] for k, v in per_layout.items()},
        }
        json_path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return 0


def warm_bytecode() -> None:
    """Import the server's modules once with bytecode writing on (see the module doc)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code = "import " + ", ".join(SERVER_MODULES)
    try:
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as problem:
        raise RestartBenchError(f"could not import the server's modules: {problem}") from None


def _built(plan: Plan, layouts: list[str], root: Path) -> list[int]:
    """Build the layouts under `root`, or reuse them if a build of this plan is there."""
    manifest = root / MANIFEST
    if manifest.exists():
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
        if recorded["plan"] == asdict(plan) and set(layouts) <= set(recorded["layouts"]):
            print(f"reusing the data dirs built in {root}", file=sys.stderr)
            return list(recorded["records_per_shard"])
        raise RestartBenchError(f"{root} holds another build ({manifest}); use another --dir")
    if root.exists() and any(root.iterdir()):
        raise RestartBenchError(f"{root} is not empty; use another --dir")
    started = time.perf_counter()
    print(f"building {plan.events:,} events in {root} ...", file=sys.stderr, flush=True)
    try:
        built = build(plan, root, layouts)
    except BaseException:
        for layout in layouts:
            shutil.rmtree(root / layout, ignore_errors=True)
        raise
    records = [built[shard] for shard in sorted(built)]
    document = {"plan": asdict(plan), "layouts": layouts, "records_per_shard": records}
    manifest.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(f"built in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return records


def _report(plan: Plan, records: list[int], per_layout: dict[str, list[Run]]) -> str:
    lines = [
        f"leasehold bench restart: {plan.events:,} events ({plan.bookings:,} lease grants, "
        f"{plan.bookings:,} bookings consuming them), {plan.shards} shards, {plan.slots} slots; "
        f"records per shard {', '.join(f'{n:,}' for n in records)}",
        "seconds from exec of `leasehold serve` (bytecode cache warm) to its serving line; "
        "cpu: the server's CPU "
        "by then; recovery: what the server logs (all shards, one after another)",
    ]
    runs = max(len(r) for r in per_layout.values())
    head = f"{'layout':<9} {'snapshots':>9} {'replayed':>10} "
    head += "".join(f"{f'run {n + 1}':>8}" for n in range(runs))
    head += f"{'median':>8}{'cpu med':>9}{'recovery med':>14}"
    lines.append(head)
    for layout, results in per_layout.items():
        row = f"{layout:<9} {results[0].snapshots:>9} {results[0].records_replayed:>10,} "
        row += "".join(f"{r.seconds:>8.2f}" for r in results)
        row += f"{statistics.median(r.seconds for r in results):>8.2f}"
        cpus = [r.cpu_seconds for r in results if r.cpu_seconds is not None]
        row += f"{statistics.median(cpus):>9.2f}" if cpus else f"{'-':>9}"
        row += f"{statistics.median(r.recovery_seconds for r in results):>14.2f}"
        lines.append(row)
    return "\n".join(lines)
