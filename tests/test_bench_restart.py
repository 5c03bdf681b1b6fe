"""`leasehold bench restart`: the data dirs it builds are what a server would leave, and the
whole bench runs end to end (tiny N; the figures come from real runs, never from here)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _server_process import leasehold_executable

from leasehold.bench._restart import Plan, build, warm_bytecode
from leasehold.core import ShardState
from leasehold.core._feed import parse_feed_json
from leasehold.shards._datadir import read_meta, shard_dir
from leasehold.shards._persistence import recover
from leasehold.shards._snapshots import snapshot_files
from leasehold.shards._supervisor import partition_inventory

PLAN = Plan(events=2_000, shards=4, slots=64, snapshot_every=200, seed=1)


def recovered(data_dir: Path, shard_count: int) -> list[ShardState]:
    feed = parse_feed_json((data_dir / "feed.json").read_text(encoding="utf-8"))
    states = []
    for shard_id, part in enumerate(partition_inventory(feed.slots, shard_count)):
        state = ShardState(part, entropy=lambda: bytes(15))
        recover(state, shard_dir(data_dir, shard_id))
        states.append(state)
    return states


def test_both_layouts_recover_every_lease_and_booking(tmp_path: Path) -> None:
    records = build(PLAN, tmp_path, ["journal", "snapshot"])
    assert records == {0: 500, 1: 500, 2: 500, 3: 500}  # 250 pairs per shard
    for layout in ("journal", "snapshot"):
        data_dir = tmp_path / layout
        meta = read_meta(data_dir)
        assert meta is not None
        assert meta.shard_count == PLAN.shards
        counters = [state.counters() for state in recovered(data_dir, PLAN.shards)]
        assert [c.leases_granted for c in counters] == [250] * 4, layout
        assert [c.confirmed_bookings for c in counters] == [250] * 4, layout
        assert [c.live_leases for c in counters] == [0] * 4, layout
    for shard_id in range(PLAN.shards):
        # As a server with --snapshot-every 200 leaves 500 records: a snapshot at 400, the
        # segments before it gone, the last 100 records as the tail.
        directory = shard_dir(tmp_path / "snapshot", shard_id)
        assert [seq for seq, _ in snapshot_files(directory)] == [400]
        assert sorted(p.name for p in directory.glob("journal-*")) == ["journal-000000000400.log"]


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_the_bench_restarts_the_server_on_each_layout(tmp_path: Path) -> None:
    out = tmp_path / "restart.json"
    done = subprocess.run(
        [
            leasehold_executable(),
            "bench",
            "restart",
            "--events",
            "2000",
            "--runs",
            "2",
            "--slots",
            "64",
            "--snapshot-every",
            "200",
            "--dir",
            str(tmp_path / "dirs"),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "median" in done.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    expected = {"journal": (0, 2000), "snapshot": (4, 400)}  # (snapshots, records replayed)
    for layout, runs in result["runs"].items():
        assert len(runs) == 2
        for run in runs:
            assert (run["snapshots"], run["records_replayed"]) == expected[layout]
            # What the server holds after recovery, from its health stream.
            assert (run["confirmed_bookings"], run["live_leases"]) == (1000, 0)
            assert run["seconds"] > 0


def test_the_runs_start_from_a_warm_bytecode_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that ran before has its bytecode cached; with PYTHONDONTWRITEBYTECODE and
    # no cache, every process of the tree would compile its modules on every timed start.
    import importlib.util
    import os

    import leasehold.shards._replay as module

    cached = Path(importlib.util.cache_from_source(module.__file__))
    if not os.access(cached.parent.parent, os.W_OK):
        pytest.skip(f"{cached.parent.parent} is not writable: no cache can be written there")
    cached.unlink(missing_ok=True)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    warm_bytecode()
    assert cached.exists()
