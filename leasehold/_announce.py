"""The start-up events both modes of `leasehold serve` log, word for word the same:
the one-process server (`_run`) and the supervisor of the tree (`_tree_run`).

Apart from `_run` so that the supervisor imports no grpclib or shard code with them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from leasehold._logging import event
from leasehold.core import InventoryReport

# Shedding is summed over this period: at most one warning per period, however many calls.
SHED_SUMMARY_PERIOD_S = 10.0


def feed_recorded_event(recorded_in: Path) -> None:
    event(
        logging.INFO,
        "feed_recorded",
        f"the feed is the one recorded in {recorded_in}, with the inventory changes "
        "its journal holds (--feed applies a new one over them)",
        data_dir=str(recorded_in),
    )


def admin_event(host: str, port: int) -> None:
    target = f"{host}:{port}"
    text = f"inventory admin service on {target} (leasehold feed apply FILE --target {target})"
    event(logging.INFO, "admin_service", text, host=host, port=port)


def feed_change_event(path: Path, parts: Iterable[InventoryReport]) -> None:
    parts = tuple(parts)
    added, changed, removed, kept = (
        sum(getattr(p, name) for p in parts)
        for name in ("added", "changed", "removed", "kept_booked")
    )
    event(
        logging.INFO,
        "feed_applied",
        f"applied --feed {path} over the stored state as a whole-feed change: {added} added, "
        f"{changed} changed, {removed} removed ({kept} kept because booked)",
        feed=str(path),
        added=added,
        changed=changed,
        removed=removed,
        kept_booked=kept,
    )


def recovery_summary(shards: int, snapshots: int, records: int, seconds: float) -> None:
    event(
        logging.INFO,
        "recovered",
        f"recovered {shards} shards: {snapshots} snapshots, {records} journal "
        f"records replayed, in {seconds:.2f} s",
        shards=shards,
        snapshots=snapshots,
        records_replayed=records,
        seconds=round(seconds, 3),
    )


def health_url(host: str, port: int, *, secure: bool = False) -> str:
    scheme = "wss" if secure else "ws"
    return f"{scheme}://[{host}]:{port}/" if ":" in host else f"{scheme}://{host}:{port}/"
