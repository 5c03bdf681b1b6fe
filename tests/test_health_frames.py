"""Health-stream frames: encode/decode round trips, validation, and figures from snapshots."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from leasehold.health._server import grant_interval, shard_figures
from leasehold.health.frames import (
    FRAME_VERSION,
    MAX_FRAME_BYTES,
    FrameError,
    GatewayFigures,
    Health,
    Hello,
    ProcessFigures,
    ProcessRow,
    ShardFigures,
    Subscribe,
    decode,
)
from leasehold.shards import SERVICE_TIME_BOUNDS_S, JournalFigures, ShardStats

FIGURES = ShardFigures(
    id=3,
    mailbox_depth=7,
    mailbox_capacity=1024,
    rps={"CheckAvailability": 12.5, "CreateLease": 100.0},
    p50_s=0.000_2,
    p99_s=0.003,
    max_s=0.004,
    live_leases=40,
    confirmed_bookings=9,
    expired=2,
    shed=1,
    requests_total=5000,
    expired_total=30,
    shed_total=4,
    expiry_lag_s=0.001,
)
PROCESS = ProcessFigures(
    uptime_s=12.0,
    rss_bytes=50_000_000,
    loop_lag_s=0.002,
    grpc_connections=3,
    watchers=2,
    frames_dropped=0,
)
HEALTH = Health(seq=5, at=1_767_225_600.5, interval_s=1.0, shards=(FIGURES,), process=PROCESS)


def packed(document: object) -> bytes:
    data = msgpack.packb(document, use_bin_type=True)
    assert isinstance(data, bytes)
    return data


def health_map() -> dict[str, Any]:
    document = msgpack.unpackb(HEALTH.encode(), raw=False)
    assert isinstance(document, dict)
    return document


ROW = ProcessRow("gateway", 0, 7, True, 0, 0.5, 1, None).to_map()
GATEWAY = GatewayFigures(
    refusals={"OVERLOADED": 40, "DEADLINE": 2, "BAD_TIMEOUT": 0},
    limit=16,
    in_flight=15,
    pushback_ms=800.0,
    loop_lag_ms=3.5,
    return_path_ms=1.25,
)


def test_a_one_process_frame_sends_no_process_rows() -> None:
    assert "processes" not in health_map()


def test_a_frame_without_gateway_figures_sends_none_and_decodes() -> None:
    # As an older server's frames: no `gateway` anywhere, and a row without one.
    document = {**health_map(), "processes": [ROW]}
    assert "gateway" not in document
    assert "gateway" not in ROW
    frame = decode(packed(document))
    assert isinstance(frame, Health)
    assert frame.gateway is None
    assert frame.processes[0].gateway is None


@pytest.mark.parametrize(
    "frame",
    [
        Subscribe(),
        Subscribe(interval_s=0.5, token="s3cret"),
        Hello(interval_s=1.0, shard_count=4),
        Hello(interval_s=1.0, shard_count=4, server_version="1.2.3"),
        HEALTH,
        Health(
            seq=1,
            at=0.0,
            interval_s=0.1,
            shards=(
                ShardFigures(**{**FIGURES.to_map(), "fsync_s": 0.001, "journal_bytes": 99}),  # type: ignore[arg-type]
            ),
            process=ProcessFigures(**{**PROCESS.to_map(), "rss_bytes": None}),  # type: ignore[arg-type]
        ),
        Health(
            seq=2,
            at=0.0,
            interval_s=1.0,
            shards=(FIGURES,),
            process=PROCESS,
            processes=(
                ProcessRow("supervisor", 0, 10, True, 0, 0.02, 1 << 20, None),
                ProcessRow("shard", 1, None, False, 3, None, None, None),
            ),
        ),
        Health(
            seq=4,
            at=0.0,
            interval_s=1.0,
            shards=(FIGURES,),
            process=PROCESS,
            processes=(ProcessRow("gateway", 1, 12, True, 0, 0.9, 1 << 20, None, GATEWAY),),
        ),
        Health(seq=5, at=0.0, interval_s=1.0, shards=(), process=PROCESS, gateway=GATEWAY),
        Health(
            seq=3,
            at=0.0,
            interval_s=1.0,
            shards=(
                ShardFigures(
                    **{  # type: ignore[arg-type]
                        **FIGURES.to_map(),
                        "inventory_changes_total": 12,
                        "inventory_last_change_at": 1_767_225_599.25,
                        "orphaned_bookings": 3,
                        "slots": 480,
                    }
                ),
            ),
            process=PROCESS,
        ),
    ],
)
def test_every_frame_type_round_trips(frame: Subscribe | Hello | Health) -> None:
    assert decode(frame.encode()) == frame


def test_the_wire_form_is_a_versioned_typed_map() -> None:
    document = health_map()
    assert document["v"] == FRAME_VERSION
    assert document["type"] == "health"
    assert document["shards"][0]["rps"] == {"CheckAvailability": 12.5, "CreateLease": 100.0}
    assert document["shards"][0]["fsync_s"] is None  # no journal yet: present, nil
    assert set(document["process"]) == {
        "uptime_s",
        "rss_bytes",
        "loop_lag_s",
        "grpc_connections",
        "watchers",
        "frames_dropped",
    }


def test_unknown_fields_are_ignored_so_fields_can_be_added() -> None:
    document = health_map()
    document["new_top"] = 1
    document["shards"][0]["new_figure"] = [1, 2]
    assert decode(packed(document)) == HEALTH


def test_integers_are_accepted_where_numbers_are_expected() -> None:
    # JavaScript encoders write 1.0 as the integer 1.
    frame = decode(packed({"v": 1, "type": "subscribe", "interval_s": 2}))
    assert frame == Subscribe(interval_s=2.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("seq"), "health.seq is missing"),
        (lambda d: d.update(v=2), "unsupported frame version 2"),
        (lambda d: d.update(v="1"), "frame.v must be an integer"),
        (lambda d: d.update(type="gossip"), "unknown frame type 'gossip'"),
        (lambda d: d.update(seq=True), "health.seq must be an integer"),
        (lambda d: d.update(interval_s="1"), "health.interval_s must be a finite number"),
        (lambda d: d.update(interval_s=float("nan")), "must be a finite number"),
        (lambda d: d.update(shards={}), "health.shards must be a list"),
        (lambda d: d.update(shards=[3]), "shards[0] must be a map"),
        (lambda d: d["shards"][0].pop("live_leases"), "shards[0].live_leases is missing"),
        (lambda d: d["shards"][0].update(rps={"x": "fast"}), "shards[0].rps.x must be"),
        (lambda d: d["shards"][0].update(fsync_s="slow"), "shards[0].fsync_s must be"),
        (lambda d: d["shards"][0].update(slots=-1), "shards[0].slots must not be negative"),
        (
            lambda d: d["shards"][0].update(orphaned_bookings=1.5),
            "shards[0].orphaned_bookings must be an integer",
        ),
        (
            lambda d: d["shards"][0].update(inventory_changes_total="7"),
            "shards[0].inventory_changes_total must be an integer",
        ),
        (
            lambda d: d["shards"][0].update(inventory_last_change_at=float("inf")),
            "shards[0].inventory_last_change_at must be a finite number",
        ),
        (lambda d: d["process"].update(watchers=1.5), "process.watchers must be an integer"),
        (lambda d: d.update(process=None), "health.process must be a map"),
        (lambda d: d.update(processes={}), "health.processes must be a list"),
        (lambda d: d.update(processes=[{"role": "shard"}]), "processes[0].alive is missing"),
        (lambda d: d.update(processes=[{**ROW, "alive": 1}]), "processes[0].alive must be true"),
        (lambda d: d.update(processes=[{**ROW, "restarts": "2"}]), "processes[0].restarts must"),
        (
            lambda d: d.update(processes=[{**ROW, "gateway": {**GATEWAY.to_map(), "limit": -1}}]),
            "processes[0].gateway.limit must not be negative",
        ),
        (
            lambda d: d.update(processes=[{**ROW, "gateway": []}]),
            "processes[0].gateway must be a map",
        ),
        (
            lambda d: d.update(gateway={**GATEWAY.to_map(), "refusals": {"OVERLOADED": 1.5}}),
            "health.gateway.refusals.OVERLOADED must be an integer",
        ),
        (
            lambda d: d.update(gateway={**GATEWAY.to_map(), "refusals": {b"OVERLOADED": 2}}),
            "health.gateway.refusals keys must be strings",
        ),
        (
            lambda d: d.update(gateway={**GATEWAY.to_map(), "pushback_ms": float("nan")}),
            "health.gateway.pushback_ms must be a finite number",
        ),
        (
            lambda d: d.update(
                gateway={**GATEWAY.to_map(), "refusals": {str(i): 0 for i in range(65)}}
            ),
            "health.gateway.refusals has over 64 kinds",
        ),
        (
            lambda d: d.update(
                gateway={k: v for k, v in GATEWAY.to_map().items() if k != "in_flight"}
            ),
            "health.gateway.in_flight is missing",
        ),
    ],
)
def test_malformed_frames_are_refused_naming_the_field(change: Any, message: str) -> None:
    document = health_map()
    change(document)
    with pytest.raises(FrameError, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode(packed(document))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not msgpack"),
        (b"\xc1", "not msgpack"),
        (packed([1, 2]), "a frame is a map, not list"),
        (packed({"v": 1, "type": "subscribe"}) + b"\x00", "not msgpack"),
        (packed({1: 1}), "not msgpack"),  # strict_map_key: keys are strings
        (packed({"v": 1, "type": "subscribe", "token": 5}), "subscribe.token must be a string"),
        (b"\x00" * (MAX_FRAME_BYTES + 1), "exceeds"),
    ],
)
def test_garbage_is_refused_with_a_frame_error(data: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode(data)


# ---- figures from two snapshots (pure: plain numbers, no event loop) ----

BUCKETS = len(SERVICE_TIME_BOUNDS_S) + 1


def stats(
    *,
    operations: dict[str, int],
    service: dict[int, int],
    expirations: int = 0,
    shed: int = 0,
    live: int = 0,
    journal: JournalFigures | None = None,
) -> ShardStats:
    counts = [0] * BUCKETS
    for bucket, count in service.items():
        counts[bucket] = count
    return ShardStats(
        shard_id=1,
        mailbox_depth=3,
        mailbox_capacity=64,
        live_leases=live,
        confirmed_bookings=2,
        operations=sum(operations.values()),
        expirations=expirations,
        refused=0,
        deadline_dropped=0,
        shed=shed,
        last_expiry_lag_s=0.25,
        operations_by_kind=operations,
        service_time_counts=tuple(counts),
        journal=journal,
    )


def test_figures_are_the_difference_between_snapshots_over_the_elapsed_time() -> None:
    before = stats(operations={"CreateLease": 100}, service={10: 100}, expirations=5, shed=1)
    after = stats(
        operations={"CreateLease": 300, "CreateBooking": 50},
        # In the interval: 200 leases at bucket 10, 49 bookings at 20, 1 at 40.
        service={10: 300, 20: 49, 40: 1},
        expirations=8,
        shed=4,
        live=12,
    )
    figures = shard_figures(before, after, elapsed_s=2.0, service_max_s=1.0)
    assert figures.rps == {"CreateBooking": 25.0, "CreateLease": 100.0}
    assert figures.total_rps == 125.0
    assert figures.p50_s == SERVICE_TIME_BOUNDS_S[10]  # 200 of 250 in bucket 10
    assert figures.p99_s == SERVICE_TIME_BOUNDS_S[20]  # rank 247.5 falls in bucket 20
    assert figures.max_s == 1.0
    assert (figures.expired, figures.shed) == (3, 3)
    assert (figures.requests_total, figures.expired_total, figures.shed_total) == (350, 8, 4)
    assert (figures.live_leases, figures.confirmed_bookings) == (12, 2)
    assert (figures.mailbox_depth, figures.mailbox_capacity) == (3, 64)
    assert figures.expiry_lag_s == 0.25
    assert (figures.fsync_s, figures.fsync_max_s, figures.journal_bytes) == (None, None, None)


def test_a_server_without_live_inventory_sends_no_inventory_figures() -> None:
    document = health_map()
    for key in (
        "inventory_changes_total",
        "inventory_last_change_at",
        "orphaned_bookings",
        "slots",
    ):
        document["shards"][0].pop(key)
    frame = decode(packed(document))
    assert isinstance(frame, Health)
    shard = frame.shards[0]
    assert (shard.inventory_changes_total, shard.orphaned_bookings, shard.slots) == (None,) * 3
    assert shard.inventory_last_change_at is None


def test_inventory_figures_are_the_latest_snapshots_own() -> None:
    base = stats(operations={}, service={})
    before = dataclasses.replace(base, inventory_changes=2, inventory_last_change_unix=100.5)
    after = dataclasses.replace(
        base,
        inventory_changes=5,
        inventory_last_change_unix=1_767_225_600.25,
        orphaned_bookings=4,
        slots=96,
    )
    figures = shard_figures(before, after, elapsed_s=1.0, service_max_s=0.0)
    assert figures.inventory_changes_total == 5
    assert figures.inventory_last_change_at == 1_767_225_600.25
    assert (figures.orphaned_bookings, figures.slots) == (4, 96)
    never = shard_figures(base, base, elapsed_s=1.0, service_max_s=0.0)
    assert (never.inventory_changes_total, never.inventory_last_change_at) == (0, None)


def test_journal_figures_are_the_latest_snapshots_own() -> None:
    before = stats(operations={}, service={}, journal=JournalFigures(0.001, 0.002, 100))
    after = stats(operations={}, service={}, journal=JournalFigures(0.0005, 0.004, 4096))
    figures = shard_figures(before, after, elapsed_s=1.0, service_max_s=0.0)
    assert (figures.fsync_s, figures.fsync_max_s, figures.journal_bytes) == (0.0005, 0.004, 4096)


def test_percentiles_never_exceed_the_exact_max_and_an_idle_interval_is_zero() -> None:
    before = stats(operations={"CreateLease": 1}, service={10: 1})
    after = stats(operations={"CreateLease": 2}, service={10: 1, 30: 1})
    exact_max = SERVICE_TIME_BOUNDS_S[29] * 1.01  # inside bucket 30, below its upper bound
    figures = shard_figures(before, after, 1.0, exact_max)
    assert figures.p50_s == figures.p99_s == exact_max
    idle = shard_figures(after, after, 1.0, 0.0)
    assert (idle.p50_s, idle.p99_s, idle.max_s, idle.rps) == (0.0, 0.0, 0.0, {"CreateLease": 0.0})


@pytest.mark.parametrize(
    ("requested", "granted"),
    [(None, 1.0), (0.5, 0.5), (0.26, 0.3), (0.0, 0.1), (-5.0, 0.1), (1e9, 60.0), (2.04, 2.0)],
)
def test_intervals_are_rounded_to_tenths_and_clamped(
    requested: float | None, granted: float
) -> None:
    assert grant_interval(requested, 1.0) == granted
