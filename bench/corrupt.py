"""Damage a data dir and start on it: `python -m leasehold.bench.corrupt [--flips N] [--seed S]`.

Builds a data dir with real state (shards with a SYNC journal and snapshots, as
`leasehold serve` runs them, leases and bookings, a clean stop), then starts on
a damaged copy of it once per case: N random single-bit flips in snapshots and
journal segments, and every file deleted or emptied (and each shard directory
deleted). Each start is the server's (prepare, then run_shards' recovery) and
ends one of four ways:

- refused: the start stopped with one error line (RecoveryError, DataDirError);
- unchanged: it served exactly the state the intact dir holds;
- reported: it served other state, and said so (a journal tail cut, a snapshot
  passed over);
- SILENT: it served other state and said nothing. The target is 0.

Exit status 1 if any start was silent or crashed. Figures: docs/operations.md.
"""

from __future__ import annotations

import argparse
import enum
import itertools
import random
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from leasehold import core
from leasehold.core import (
    ApiVersion,
    CreateBooking,
    CreateLease,
    LeaseSettings,
    Person,
    SlotKey,
    SlotRef,
    SlotSpec,
)
from leasehold.shards import (
    DataDirError,
    Durability,
    Persistence,
    RecoveryError,
    ShardSet,
    call,
    prepare,
    run_shards,
)

SHARDS = 2
FEED_TEXT = '{"corrupt-probe": 1}'
SPECS = [SlotSpec(SlotKey(f"m{i}", "svc", 4_102_444_800, 1800), 500, 500) for i in range(8)]
SNAPSHOT_EVERY = 150
BATCHES = 3
PER_BATCH = 120
# A day: no lease lapses while the probe runs, so every start can see the same state.
_DAY_NS = 86_400 * core.NANOS_PER_SECOND
SETTINGS = LeaseSettings(default_ttl_ns=_DAY_NS, max_ttl_ns=_DAY_NS)


class Verdict(enum.Enum):
    REFUSED = "refused"
    UNCHANGED = "unchanged"
    REPORTED = "reported"
    SILENT = "SILENT"
    CRASHED = "crashed"


@dataclass(frozen=True, slots=True)
class Start:
    """What one start on a data dir did."""

    state: tuple[str, ...] | None  # None: refused
    said: tuple[str, ...]  # error line, or warnings printed at the start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leasehold.bench.corrupt", description=__doc__)
    parser.add_argument("--flips", type=int, default=100, help="random single-bit flips")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--verbose", action="store_true", help="show refusals too")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        intact = Path(tmp) / "intact"
        trio.run(build, intact)
        reference = trio.run(start, _copy(intact, Path(tmp) / "reference"))
        if reference.state is None or reference.said:
            print(f"the intact data dir did not start cleanly: {reference.said}", file=sys.stderr)
            return 1
        cases = flip_cases(intact, random.Random(args.seed), args.flips) + missing_cases(intact)
        verdicts: Counter[tuple[str, Verdict]] = Counter()
        for n, (kind, label, damage) in enumerate(cases):
            copy = _copy(intact, Path(tmp) / f"case-{n}")
            damage(copy)
            verdict, said = judge(copy, reference)
            verdicts[kind, verdict] += 1
            if verdict is not Verdict.REFUSED or args.verbose:
                print(f"{verdict.value}: {label}: {' | '.join(said)}")
            shutil.rmtree(copy)
    print(f"{len(cases)} damaged starts ({args.flips} bit flips, seed {args.seed}):")
    for kind in ("bit flip", "missing"):
        counts = ", ".join(f"{v.value} {verdicts[kind, v]}" for v in Verdict)
        print(f"  {kind}: {counts}")
    bad = sum(verdicts[k, v] for k, v in verdicts if v in (Verdict.SILENT, Verdict.CRASHED))
    return 1 if bad else 0


async def build(data_dir: Path) -> None:
    """Leases and bookings over a few compaction rounds, then a clean stop."""
    prepare(data_dir, shard_count=SHARDS, feed_text=FEED_TEXT)
    async with trio.open_nursery() as nursery:
        shard_set = await _start_shards(nursery, data_dir, SNAPSHOT_EVERY)
        counter = itertools.count()
        for _ in range(BATCHES):
            for _ in range(PER_BATCH):
                await _lease_and_maybe_book(shard_set, next(counter))
            await trio.sleep(1.2)  # the compactor looks once a second
        shard_set.close()


async def _lease_and_maybe_book(shard_set: ShardSet, n: int) -> None:
    spec = SPECS[n % len(SPECS)]
    handle = shard_set.for_key(spec.key.merchant_id, spec.key.service_id)
    lease = await call(handle, CreateLease(ApiVersion.V2, SlotRef(spec.key), f"r{n}", None))
    if isinstance(lease, core.Lease) and n % 2:
        person = Person(user_id=f"u{n}")
        await call(
            handle, CreateBooking(ApiVersion.V2, lease.slot, lease.lease_id, person, f"t{n}")
        )


async def start(data_dir: Path) -> Start:
    """Start as `leasehold serve` does (prepare, recovery); the state served, or the refusal."""
    try:
        prepare(data_dir, shard_count=SHARDS, feed_text=FEED_TEXT)
        async with trio.open_nursery() as nursery:
            shard_set = await _start_shards(nursery, data_dir, 10**9)
            state = _fingerprint(shard_set)
            said = [
                f"journal tail cut: {r.tail_repair}" for r in shard_set.recovery if r.tail_repair
            ]
            said += [note for r in shard_set.recovery for note in r.notes]
            shard_set.close()
    except (RecoveryError, DataDirError) as refused:
        return Start(None, (str(refused),))
    except BaseExceptionGroup as group:
        known, rest = group.split((RecoveryError, DataDirError))
        if known is None or rest is not None:
            raise
        return Start(None, (str(_first_leaf(known)),))
    return Start(state, tuple(said))


def judge(data_dir: Path, reference: Start) -> tuple[Verdict, tuple[str, ...]]:
    try:
        started = trio.run(start, data_dir)
    except BaseException as problem:  # counted and shown, never a pass
        if isinstance(problem, KeyboardInterrupt):
            raise
        return Verdict.CRASHED, (repr(problem),)
    if started.state is None:
        return Verdict.REFUSED, started.said
    if started.state == reference.state:
        return Verdict.UNCHANGED, started.said
    return (Verdict.REPORTED if started.said else Verdict.SILENT), started.said


Damage = Callable[[Path], None]


def flip_cases(intact: Path, rng: random.Random, count: int) -> list[tuple[str, str, Damage]]:
    """`count` single-bit flips, half in snapshots and half in journal segments."""
    snapshots = sorted(intact.glob("shard-*/snapshot-*.msgpack"))
    segments = sorted(intact.glob("shard-*/journal-*.log"))
    if not snapshots or not segments:
        raise RuntimeError(f"the build left no snapshot or no segment in {intact}")
    cases: list[tuple[str, str, Damage]] = []
    for n in range(count):
        path = rng.choice(snapshots if n % 2 else segments)
        bit = rng.randrange(path.stat().st_size * 8)
        relative = path.relative_to(intact)
        cases.append(("bit flip", f"{relative} bit {bit}", partial(_flip, relative, bit)))
    return cases


def missing_cases(intact: Path) -> list[tuple[str, str, Damage]]:
    """Every file deleted, every file emptied, every shard directory deleted."""
    files = sorted(
        p.relative_to(intact)
        for p in intact.rglob("*")
        if p.is_file() and p.name != "leasehold.lock"
    )
    cases: list[tuple[str, str, Damage]] = []
    for relative in files:
        cases.append(("missing", f"{relative} deleted", partial(_delete, relative)))
        cases.append(("missing", f"{relative} emptied", partial(_empty, relative)))
    for shard in sorted(p.relative_to(intact) for p in intact.glob("shard-*")):
        cases.append(("missing", f"{shard}/ deleted", partial(_delete_dir, shard)))
    return cases


def _flip(relative: Path, bit: int, root: Path) -> None:
    path = root / relative
    data = bytearray(path.read_bytes())
    data[bit // 8] ^= 1 << (bit % 8)
    path.write_bytes(bytes(data))


def _delete(relative: Path, root: Path) -> None:
    (root / relative).unlink()


def _empty(relative: Path, root: Path) -> None:
    (root / relative).write_bytes(b"")


def _delete_dir(relative: Path, root: Path) -> None:
    shutil.rmtree(root / relative)


async def _start_shards(nursery: trio.Nursery, data_dir: Path, snapshot_every: int) -> ShardSet:
    counter = itertools.count()
    shard_set: ShardSet = await nursery.start(
        partial(
            run_shards,
            SPECS,
            shard_count=SHARDS,
            mailbox_capacity=256,
            entropy=lambda: next(counter).to_bytes(15, "big"),
            settings=SETTINGS,
            persistence=Persistence(data_dir, Durability.SYNC, snapshot_every),
        )
    )
    return shard_set


def _fingerprint(shard_set: ShardSet) -> tuple[str, ...]:
    """The state served, order aside (a replay and a snapshot may list things differently)."""
    parts: list[str] = []
    for shard in shard_set.shards:
        snapshot = shard.state.snapshot()
        parts += sorted(repr(x) for x in (*snapshot.leases, *snapshot.bookings, *snapshot.tokens))
        parts += [repr(sorted(snapshot.expired_order)), repr(snapshot.totals)]
    return tuple(parts)


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


if __name__ == "__main__":
    sys.exit(main())
