"""The overload probe's callers (bench/_attacks.py): closed-loop CreateLease callers in one
asyncio process, on the low-CPU HTTP/2 client (bench/_h2call.py, the default) or grpcio.

Each caller calls again as soon as its call ends, like a real client retrying at once;
after a refusal that carries `grpc-retry-pushback-ms` it first sleeps that long, as
gRPC's retry policy requires of a client honouring server pushback (gRFC A6). A
caller's deadline is its own: the call fails DEADLINE_EXCEEDED on the client's clock.
After such a deadline, which no server answer carried (so no pushback), the caller
calls again at once too (`retry="at-once"`, the default: the issue's crowd), or first
backs off (`retry="backoff"`): randomized and exponential, from one deadline up to
MAX_BACKOFF_S, as client libraries' retry policies do. At once, a load process that
fell behind retries what its own lag expired and falls further behind: on a shared
2-core machine its callers' deadlines expired 60,000-136,000 times in a run, in the
client. The backoff keeps such a load process alive, and offers the server less: in
runs that did not collapse it gave less goodput (docs/performance.md, "Overload,
eighth pass").

A granted call's latency runs from the caller's start to the moment the client had the
whole reply (h2: as its last frame is decoded), as a gRPC client library's own figure
does; the caller's coroutine may resume later, when the load process's loop gets to
it, and that later moment is kept too (`resumed`): the load process's own lag, which
the server does not cause.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from leasehold.bench import _h2wire as w
from leasehold.bench._h2call import H2Channel
from leasehold.core import NANOS_PER_SECOND, SlotKey
from leasehold.proto.v2 import booking_pb2 as pb2

CREATE_LEASE = "/ext.maps.booking.partner.v2.BookingService/CreateLease"
PUSHBACK = "grpc-retry-pushback-ms"
CALLERS_PER_CONNECTION = 100  # grpcio's: one connection of at most 100 streams
# At least this many connections per load process: the kernel spreads connections, not
# calls, over the gateway workers (README, "Processes"), so the capacity phase's 50
# callers on one connection measured one worker's capacity, not the server's. With 8,
# all on one of 2 workers happens 1 time in 128.
MIN_CONNECTIONS = 8
CLIENTS = ("h2", "grpcio")
# Leases live past the run, so every spot a phase took is still held when counted.
LEASE_TTL_S = 600
SPOTS_PER_SLOT = 1000  # the probe's feed: a slot never runs out in a 30 s run
RETRY_MODES = ("backoff", "at-once")  # after a deadline that expired in the client
MAX_BACKOFF_S = 1.0


@dataclass(frozen=True, slots=True)
class PhaseResult:
    granted: int  # leases granted to their callers
    latencies: list[float]  # of the granted calls, to the reply's receipt
    codes: dict[str, int]
    client_cpu_s: float = 0.0  # user + system CPU of the load processes
    # How late the load processes' event loops woke from 10 ms sleeps: their own backlog,
    # which delays sends and the reading of replies alike (the server cannot see it).
    client_lags: list[float] = dataclasses.field(default_factory=list)
    # h2 client only: OK replies that arrived after the call's deadline ended it on the
    # client, and by how much (seconds). Each is a lease the caller never heard of.
    late_ok: list[float] = dataclasses.field(default_factory=list)
    # Of the granted calls, to the caller's coroutine resuming with the reply.
    resumed: list[float] = dataclasses.field(default_factory=list)
    backoffs: int = 0  # sleeps after a deadline that expired in the client

    @property
    def calls(self) -> int:
        return self.granted + sum(self.codes.values())


# A call's outcome: (status name, reply body or None, trailers, when the reply was had
# (time.monotonic(); 0.0 if none came)); "OK" has a body.
Outcome = tuple[str, bytes | None, dict[str, str], float]
CallFn = Callable[[int, bytes, float], Awaitable[Outcome]]
# Closes the connections; returns the late OK replies seen (h2) or none (grpcio).
CloseFn = Callable[[], Awaitable[list[float]]]


def lease_request(key: SlotKey, reference: str, expiry_ns: int) -> pb2.CreateLeaseRequest:
    slot = pb2.Slot(merchant_id=key.merchant_id, service_id=key.service_id)
    slot.start_time.seconds = key.start_sec
    slot.duration.seconds = key.duration_sec
    lease = pb2.Lease(slot=slot, user_reference=reference)
    lease.lease_expiration_time.seconds, lease.lease_expiration_time.nanos = divmod(
        expiry_ns, NANOS_PER_SECOND
    )
    return pb2.CreateLeaseRequest(lease=lease)


class LeaseBodies:
    """Serialized CreateLeaseRequests: per slot, the lease without its reference is encoded
    once; a call's body adds its own user_reference (field 3) by concatenation, which
    protobuf parses as the same message (fields may come in any order)."""

    def __init__(self, keys: list[SlotKey], expiry_ns: int) -> None:
        self._leases = [lease_request(k, "", expiry_ns).lease.SerializeToString() for k in keys]

    def __len__(self) -> int:
        return len(self._leases)

    def body(self, index: int, reference: str) -> bytes:
        ref = reference.encode()
        lease = self._leases[index] + b"\x1a" + _varint(len(ref)) + ref
        return b"\x0a" + _varint(len(lease)) + lease


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


async def run_callers(
    client: str,
    target: str,
    keys: list[SlotKey],
    callers: int,
    deadline_s: float,
    seconds: float,
    tag: str,
    retry: str = "at-once",
) -> PhaseResult:
    connections = max(MIN_CONNECTIONS, callers // CALLERS_PER_CONNECTION)
    opened = await (_h2_calls if client == "h2" else _grpcio_calls)(target, connections)
    call, close = opened
    cpu_before = time.process_time()  # every thread's: grpcio's own included
    try:
        backoff = retry == "backoff"
        result = await _closed_loop(call, keys, callers, deadline_s, seconds, tag, backoff)
        await asyncio.sleep(min(1.0, deadline_s))  # the last late replies
    finally:
        late_ok = await close()
    cpu_s = time.process_time() - cpu_before
    return dataclasses.replace(result, client_cpu_s=cpu_s, late_ok=late_ok)


def backoff_s(deadline_s: float, expired_in_a_row: int) -> float:
    """How long a caller waits after its `expired_in_a_row`-th client-side deadline in a
    row: one deadline, doubling, at most MAX_BACKOFF_S; jittered by +-50 %."""
    base: float = min(MAX_BACKOFF_S, deadline_s * 2.0 ** min(expired_in_a_row - 1, 30))
    return base * random.uniform(0.5, 1.5)


def pause_after(
    outcome: Outcome, expired: int, deadline_s: float, backoff: bool
) -> tuple[float, int]:
    """(seconds to wait before the next call, client-side deadlines in a row now) after a
    failed call, given the count before it."""
    code, _, trailers, received_at = outcome
    pushback = trailers.get(PUSHBACK)
    if pushback is not None and pushback.isdigit():
        return int(pushback) / 1000, 0
    if backoff and code == "DEADLINE_EXCEEDED" and not received_at:
        return backoff_s(deadline_s, expired + 1), expired + 1
    return 0.0, 0


async def _closed_loop(
    call: CallFn,
    keys: list[SlotKey],
    callers: int,
    deadline_s: float,
    seconds: float,
    tag: str,
    backoff: bool,
) -> PhaseResult:
    bodies = LeaseBodies(keys, (int(time.time()) + LEASE_TTL_S) * NANOS_PER_SECOND)
    latencies: list[float] = []
    resumed: list[float] = []
    codes: dict[str, int] = {}
    end = time.monotonic() + seconds

    backoffs = 0

    async def caller(index: int) -> None:
        nonlocal backoffs
        n = expired = 0
        while time.monotonic() < end:
            n += 1
            body = bodies.body((index * 7919 + n) % len(bodies), f"{tag}-{index}-{n}")
            started = time.monotonic()
            code, reply, trailers, received_at = await call(index, body, deadline_s)
            if code == "OK" and reply is not None:
                if pb2.CreateLeaseResponse.FromString(reply).HasField("lease"):
                    now = time.monotonic()
                    latencies.append((received_at or now) - started)
                    resumed.append(now - started)
                    expired = 0
                    continue
                code = "BOOKING_FAILURE"
            codes[code] = codes.get(code, 0) + 1
            outcome: Outcome = (code, reply, trailers, received_at)
            pause, expired = pause_after(outcome, expired, deadline_s, backoff)
            if pause:
                if expired:  # a backoff, not the server's pushback
                    backoffs += 1
                await asyncio.sleep(pause)

    lags: list[float] = []

    async def lag_monitor() -> None:
        while time.monotonic() < end:
            asleep = time.monotonic()
            await asyncio.sleep(0.010)
            lags.append(time.monotonic() - asleep - 0.010)

    await asyncio.gather(lag_monitor(), *(caller(i) for i in range(callers)))
    return PhaseResult(
        len(latencies), latencies, codes, client_lags=lags, resumed=resumed, backoffs=backoffs
    )


async def _h2_calls(target: str, connections: int) -> tuple[CallFn, CloseFn]:
    host, port = target.rsplit(":", 1)
    channels = [await H2Channel.connect(host, int(port)) for _ in range(connections)]
    block = w.request_block(CREATE_LEASE, target)

    async def call(index: int, body: bytes, timeout_s: float) -> Outcome:
        reply = await channels[index % len(channels)].call(block, body, timeout_s)
        body_ok = reply.body if reply.code == w.OK else None
        return reply.code_name, body_ok, reply.trailers or {}, reply.received_at

    async def close() -> list[float]:
        for channel in channels:
            channel.close()
        return [late for channel in channels for late in channel.late_ok]

    return call, close


async def _grpcio_calls(target: str, connections: int) -> tuple[CallFn, CloseFn]:
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(connections)]
    stubs = [c.unary_unary(CREATE_LEASE, lambda b: b, lambda b: b) for c in channels]

    async def call(index: int, body: bytes, timeout_s: float) -> Outcome:
        try:
            reply: bytes = await stubs[index % len(stubs)](body, timeout=timeout_s)
        except grpc.aio.AioRpcError as error:
            trailers = {str(k): str(v) for k, v in error.trailing_metadata() or ()}
            return error.code().name, None, trailers, 0.0
        return "OK", reply, {}, 0.0  # grpcio's own moment of receipt is not shown

    async def close() -> list[float]:
        for channel in channels:
            await channel.close()
        return []  # grpcio does not show replies that arrive after the deadline

    return call, close
