"""The health stream's messages, defined once: typed frames with msgpack encode/decode.

Every message is a msgpack map with a version `v` and a type tag `type`:

- `subscribe` (client -> server, the client's first and only message): the interval
  it wants frames at, and the token when the server requires one.
- `hello` (server -> client, once): the interval granted and the shard count.
- `health` (server -> client, every interval): figures per shard and for the process.

Decoding validates everything and raises FrameError naming the field; fields a
decoder does not know are ignored, so adding a field does not bump `v` (removing
or changing one does). Durations are seconds, sizes bytes, rates per second.
docs/health-stream.md documents the same schema for other clients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

# msgpack ships neither stubs nor a py.typed marker (as in shards/_codec.py).
import msgpack  # type: ignore[import-untyped]

FRAME_VERSION: Final = 1
# Decoding refuses larger inputs before parsing them (frames are a few KiB).
MAX_FRAME_BYTES: Final = 1 << 20


class FrameError(ValueError):
    """A message that is not a valid frame of this version (says which field is wrong)."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    # None: the server's default interval. The server rounds and clamps what it is asked.
    interval_s: float | None = None
    token: str | None = None
    v: int = FRAME_VERSION
    type: Literal["subscribe"] = field(default="subscribe", init=False)

    def encode(self) -> bytes:
        m = {"v": self.v, "type": self.type, "interval_s": self.interval_s, "token": self.token}
        return _pack(m)


@dataclass(frozen=True, slots=True)
class Hello:
    interval_s: float  # the interval granted
    shard_count: int
    # The server's version (added in place: older servers send none).
    server_version: str | None = None
    v: int = FRAME_VERSION
    type: Literal["hello"] = field(default="hello", init=False)

    def encode(self) -> bytes:
        m = {"v": self.v, "type": self.type, "interval_s": self.interval_s}
        extra = {} if self.server_version is None else {"server_version": self.server_version}
        return _pack({**m, "shard_count": self.shard_count, **extra})


@dataclass(frozen=True, slots=True)
class ShardFigures:
    """One shard over one interval. Counters named *_total count since the server started."""

    id: int
    mailbox_depth: int
    mailbox_capacity: int
    # Requests served per second over the interval, by RPC (command) name.
    rps: dict[str, float]
    # Service time (queued + run + reply) over the interval: histogram bucket upper
    # bounds (~12% error) capped at the exact max; 0 when nothing was served.
    p50_s: float
    p99_s: float
    max_s: float
    live_leases: int
    confirmed_bookings: int
    expired: int  # leases expired during the interval
    shed: int  # requests refused RESOURCE_EXHAUSTED (mailbox full) during the interval
    requests_total: int
    expired_total: int
    shed_total: int
    # How late (after their deadline) the shard's most recent timer expirations ran.
    expiry_lag_s: float
    # Journal figures; None when the shard keeps no journal (--durability none).
    fsync_s: float | None = None  # the most recent fsync's duration (0 before the first)
    fsync_max_s: float | None = None  # the longest fsync since start
    journal_bytes: int | None = None  # written since start
    # Live inventory (issue 19); None from a server that predates it.
    inventory_changes_total: int | None = None  # inventory changes applied since start
    inventory_last_change_at: float | None = None  # Unix seconds of the last; None: none yet
    orphaned_bookings: int | None = None  # CONFIRMED bookings on slots removed from sale
    slots: int | None = None  # bookable slots now

    @property
    def total_rps(self) -> float:
        return sum(self.rps.values())

    def to_map(self) -> dict[str, object]:
        return {
            "id": self.id,
            "mailbox_depth": self.mailbox_depth,
            "mailbox_capacity": self.mailbox_capacity,
            "rps": dict(self.rps),
            "p50_s": self.p50_s,
            "p99_s": self.p99_s,
            "max_s": self.max_s,
            "live_leases": self.live_leases,
            "confirmed_bookings": self.confirmed_bookings,
            "expired": self.expired,
            "shed": self.shed,
            "requests_total": self.requests_total,
            "expired_total": self.expired_total,
            "shed_total": self.shed_total,
            "expiry_lag_s": self.expiry_lag_s,
            "fsync_s": self.fsync_s,
            "fsync_max_s": self.fsync_max_s,
            "journal_bytes": self.journal_bytes,
            "inventory_changes_total": self.inventory_changes_total,
            "inventory_last_change_at": self.inventory_last_change_at,
            "orphaned_bookings": self.orphaned_bookings,
            "slots": self.slots,
        }

    @classmethod
    def from_map(cls, m: Mapping[str, object], where: str) -> ShardFigures:
        rps_map = _map(m, "rps", where)
        rps = {_key(k, f"{where}.rps"): _number(rps_map, k, f"{where}.rps") for k in rps_map}
        return cls(
            id=_int(m, "id", where),
            mailbox_depth=_int(m, "mailbox_depth", where),
            mailbox_capacity=_int(m, "mailbox_capacity", where),
            rps=rps,
            p50_s=_number(m, "p50_s", where),
            p99_s=_number(m, "p99_s", where),
            max_s=_number(m, "max_s", where),
            live_leases=_int(m, "live_leases", where),
            confirmed_bookings=_int(m, "confirmed_bookings", where),
            expired=_int(m, "expired", where),
            shed=_int(m, "shed", where),
            requests_total=_int(m, "requests_total", where),
            expired_total=_int(m, "expired_total", where),
            shed_total=_int(m, "shed_total", where),
            expiry_lag_s=_number(m, "expiry_lag_s", where),
            fsync_s=_optional_number(m, "fsync_s", where),
            fsync_max_s=_optional_number(m, "fsync_max_s", where),
            journal_bytes=_optional_int(m, "journal_bytes", where),
            inventory_changes_total=_optional_count(m, "inventory_changes_total", where),
            inventory_last_change_at=_optional_number(m, "inventory_last_change_at", where),
            orphaned_bookings=_optional_count(m, "orphaned_bookings", where),
            slots=_optional_count(m, "slots", where),
        )


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    uptime_s: float
    rss_bytes: int | None  # None where the platform does not say (no /proc)
    # The latest a fixed timer woke in the trio guest during the interval.
    loop_lag_s: float
    grpc_connections: int | None  # None when the stream runs without a gRPC server
    watchers: int  # health-stream connections
    frames_dropped: int  # frames not sent to slow watchers since start, all watchers

    def to_map(self) -> dict[str, object]:
        return {
            "uptime_s": self.uptime_s,
            "rss_bytes": self.rss_bytes,
            "loop_lag_s": self.loop_lag_s,
            "grpc_connections": self.grpc_connections,
            "watchers": self.watchers,
            "frames_dropped": self.frames_dropped,
        }

    @classmethod
    def from_map(cls, m: Mapping[str, object], where: str) -> ProcessFigures:
        return cls(
            uptime_s=_number(m, "uptime_s", where),
            rss_bytes=_optional_int(m, "rss_bytes", where),
            loop_lag_s=_number(m, "loop_lag_s", where),
            grpc_connections=_optional_int(m, "grpc_connections", where),
            watchers=_int(m, "watchers", where),
            frames_dropped=_int(m, "frames_dropped", where),
        )


# Refusal kinds a gateway may report: a bound on the map's size, not a list of names.
MAX_REFUSAL_KINDS: Final = 64


@dataclass(frozen=True, slots=True)
class GatewayFigures:
    """What a gateway (worker) refuses and its adaptive limit, now (docs/operations.md)."""

    # Counts since start by refusal kind ("OVERLOADED", "DEADLINE", ...; gateway.Refusal).
    refusals: dict[str, int]
    limit: int  # the adaptive limit on calls under way
    in_flight: int  # calls under way
    pushback_ms: float  # the pushback base
    loop_lag_ms: float  # the loop-lag charge (p90)
    return_path_ms: float  # the return path (p90)

    def to_map(self) -> dict[str, object]:
        return {
            "refusals": dict(self.refusals),
            "limit": self.limit,
            "in_flight": self.in_flight,
            "pushback_ms": self.pushback_ms,
            "loop_lag_ms": self.loop_lag_ms,
            "return_path_ms": self.return_path_ms,
        }

    @classmethod
    def from_map(cls, m: Mapping[str, object], where: str) -> GatewayFigures:
        counts = _map(m, "refusals", where)
        if len(counts) > MAX_REFUSAL_KINDS:
            raise FrameError(f"{where}.refusals has over {MAX_REFUSAL_KINDS} kinds")
        at = f"{where}.refusals"
        return cls(
            refusals={_key(k, at): _count(counts, k, at) for k in counts},
            limit=_count(m, "limit", where),
            in_flight=_count(m, "in_flight", where),
            pushback_ms=_duration(m, "pushback_ms", where),
            loop_lag_ms=_duration(m, "loop_lag_ms", where),
            return_path_ms=_duration(m, "return_path_ms", where),
        )


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One process of a multi-process server (--workers N): its role and what it uses."""

    role: str  # "supervisor", "gateway" (a gateway worker) or "shard" (a shard process)
    index: int  # which of its role
    pid: int | None  # None while it is being started again
    alive: bool
    restarts: int  # times the supervisor started it again
    cpu_share: float | None  # CPUs used over the last sample (1.0: one whole core)
    rss_bytes: int | None
    # Requests sent over its links and not yet answered (shard processes; None: not known).
    link_in_flight: int | None
    # A live gateway worker's refusals and limit (added in place: None from older servers,
    # from other roles, and while a worker has sent none since it started).
    gateway: GatewayFigures | None = None

    def to_map(self) -> dict[str, object]:
        m: dict[str, object] = {
            "role": self.role,
            "index": self.index,
            "pid": self.pid,
            "alive": self.alive,
            "restarts": self.restarts,
            "cpu_share": self.cpu_share,
            "rss_bytes": self.rss_bytes,
            "link_in_flight": self.link_in_flight,
        }
        if self.gateway is not None:
            m["gateway"] = self.gateway.to_map()
        return m

    @classmethod
    def from_map(cls, m: Mapping[str, object], where: str) -> ProcessRow:
        alive = _get(m, "alive", where)
        if not isinstance(alive, bool):
            raise FrameError(f"{where}.alive must be true or false, not {alive!r}")
        role = _get(m, "role", where)
        if not isinstance(role, str):
            raise FrameError(f"{where}.role must be a string, not {role!r}")
        return cls(
            role=role,
            index=_int(m, "index", where),
            pid=_optional_int(m, "pid", where),
            alive=alive,
            restarts=_int(m, "restarts", where),
            cpu_share=_optional_number(m, "cpu_share", where),
            rss_bytes=_optional_int(m, "rss_bytes", where),
            link_in_flight=_optional_int(m, "link_in_flight", where),
            gateway=_optional_gateway(m, where),
        )


@dataclass(frozen=True, slots=True)
class Health:
    # Counts frames of this interval; a gap tells a watcher that frames were dropped for it.
    seq: int
    at: float  # server wall clock, Unix seconds
    interval_s: float  # the time the figures actually cover (the nominal interval, or more)
    shards: tuple[ShardFigures, ...]
    process: ProcessFigures
    # Every process of a multi-process server; empty (and not sent) in the one-process mode.
    processes: tuple[ProcessRow, ...] = ()
    # The one-process mode's gateway (a multi-process server's are in `processes`); None:
    # not sent (an older server, or a stream without a gRPC server).
    gateway: GatewayFigures | None = None
    v: int = FRAME_VERSION
    type: Literal["health"] = field(default="health", init=False)

    def encode(self) -> bytes:
        m: dict[str, object] = {
            "v": self.v,
            "type": self.type,
            "seq": self.seq,
            "at": self.at,
            "interval_s": self.interval_s,
            "shards": [s.to_map() for s in self.shards],
            "process": self.process.to_map(),
        }
        if self.processes:
            m["processes"] = [p.to_map() for p in self.processes]
        if self.gateway is not None:
            m["gateway"] = self.gateway.to_map()
        return _pack(m)


Frame = Subscribe | Hello | Health


def decode(data: bytes) -> Frame:
    """The frame in `data`. Raises FrameError if it is not one, saying why."""
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        top = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, msgpack.UnpackException) as problem:  # ExtraData, FormatError, ...
        raise FrameError(f"not msgpack: {problem}") from None
    if not isinstance(top, dict):
        raise FrameError(f"a frame is a map, not {type(top).__name__}")
    version = _int(top, "v", "frame")
    if version != FRAME_VERSION:
        raise FrameError(f"unsupported frame version {version} (this is {FRAME_VERSION})")
    kind = top.get("type")
    if kind == "subscribe":
        return Subscribe(
            interval_s=_optional_number(top, "interval_s", "subscribe"),
            token=_optional_str(top, "token", "subscribe"),
        )
    if kind == "hello":
        return Hello(
            interval_s=_number(top, "interval_s", "hello"),
            shard_count=_int(top, "shard_count", "hello"),
            server_version=_optional_str(top, "server_version", "hello"),
        )
    if kind == "health":
        shards = _list(top, "shards", "health")
        return Health(
            seq=_int(top, "seq", "health"),
            at=_number(top, "at", "health"),
            interval_s=_number(top, "interval_s", "health"),
            shards=tuple(
                ShardFigures.from_map(_as_map(s, f"shards[{i}]"), f"shards[{i}]")
                for i, s in enumerate(shards)
            ),
            process=ProcessFigures.from_map(_map(top, "process", "health"), "process"),
            processes=tuple(
                ProcessRow.from_map(_as_map(p, f"processes[{i}]"), f"processes[{i}]")
                for i, p in enumerate(
                    _list(top, "processes", "health") if "processes" in top else []
                )
            ),
            gateway=_optional_gateway(top, "health"),
        )
    raise FrameError(f"unknown frame type {kind!r}")


def _pack(m: dict[str, object]) -> bytes:
    packed = msgpack.packb(m, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


# Field readers: each names the field in its error. bool is an int to Python, never here.


def _get(m: Mapping[str, object], key: str, where: str) -> object:
    if key not in m:
        raise FrameError(f"{where}.{key} is missing")
    return m[key]


def _int(m: Mapping[str, object], key: str, where: str) -> int:
    value = _get(m, key, where)
    if not isinstance(value, int) or isinstance(value, bool):
        raise FrameError(f"{where}.{key} must be an integer, not {value!r}")
    return value


def _number(m: Mapping[str, object], key: str, where: str) -> float:
    value = _get(m, key, where)
    # Integers are accepted: encoders such as JavaScript's write 1.0 as 1.
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise FrameError(f"{where}.{key} must be a finite number, not {value!r}")
    return float(value)


def _optional_int(m: Mapping[str, object], key: str, where: str) -> int | None:
    return None if m.get(key) is None else _int(m, key, where)


def _optional_count(m: Mapping[str, object], key: str, where: str) -> int | None:
    value = _optional_int(m, key, where)
    if value is not None and value < 0:
        raise FrameError(f"{where}.{key} must not be negative, not {value!r}")
    return value


def _count(m: Mapping[str, object], key: str, where: str) -> int:
    value = _int(m, key, where)
    if value < 0:
        raise FrameError(f"{where}.{key} must not be negative, not {value!r}")
    return value


def _duration(m: Mapping[str, object], key: str, where: str) -> float:
    value = _number(m, key, where)
    if value < 0:
        raise FrameError(f"{where}.{key} must not be negative, not {value!r}")
    return value


def _optional_gateway(m: Mapping[str, object], where: str) -> GatewayFigures | None:
    if m.get("gateway") is None:
        return None
    return GatewayFigures.from_map(_map(m, "gateway", where), f"{where}.gateway")


def _optional_number(m: Mapping[str, object], key: str, where: str) -> float | None:
    return None if m.get(key) is None else _number(m, key, where)


def _optional_str(m: Mapping[str, object], key: str, where: str) -> str | None:
    value = m.get(key)
    if value is not None and not isinstance(value, str):
        raise FrameError(f"{where}.{key} must be a string, not {value!r}")
    return value


def _key(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise FrameError(f"{where} keys must be strings, not {value!r}")
    return value


def _as_map(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise FrameError(f"{where} must be a map, not {type(value).__name__}")
    return value


def _map(m: Mapping[str, object], key: str, where: str) -> dict[str, object]:
    return _as_map(_get(m, key, where), f"{where}.{key}")


def _list(m: Mapping[str, object], key: str, where: str) -> list[object]:
    value = _get(m, key, where)
    if not isinstance(value, list):
        raise FrameError(f"{where}.{key} must be a list, not {type(value).__name__}")
    return value
