"""`leasehold slots --target`: each slot's live count from a running server, over gRPC.

Apart from `_slots` so that listing a feed's slots imports no grpclib or protobuf.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from grpclib import Status
from grpclib.client import Channel
from grpclib.exceptions import GRPCError

from leasehold._slots import SlotsError
from leasehold.core import SlotSpec
from leasehold.proto.v2 import booking_pb2 as pb
from leasehold.proto.v2.booking_grpc import BookingServiceStub

# CheckAvailability calls in flight at once.
_CONCURRENT_CALLS = 16
CALL_TIMEOUT_S = 5.0


async def live_counts(target: str, slots: Sequence[SlotSpec]) -> list[int]:
    """Each slot's count_available from a running server (v2 CheckAvailability)."""
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise SlotsError(f"--target {target!r} is not HOST:PORT")
    gate = asyncio.Semaphore(_CONCURRENT_CALLS)
    channel = Channel(host.strip("[]"), int(port))
    stub = BookingServiceStub(channel)

    async def one(spec: SlotSpec) -> int:
        request = pb.CheckAvailabilityRequest()
        _fill(request.slot, spec)
        async with gate:
            reply = await stub.CheckAvailability(request, timeout=CALL_TIMEOUT_S)
        assert reply is not None  # grpclib returns None only for a call it did not make
        return int(reply.count_available)

    try:
        return list(await asyncio.gather(*(one(spec) for spec in slots)))
    except (OSError, TimeoutError, GRPCError) as problem:
        raise SlotsError(f"cannot ask {target}: {_reason(problem)}") from problem
    finally:
        channel.close()


def _fill(slot: pb.Slot, spec: SlotSpec) -> None:
    key = spec.key
    slot.merchant_id, slot.service_id = key.merchant_id, key.service_id
    slot.start_time.seconds, slot.duration.seconds = key.start_sec, key.duration_sec
    slot.resources.staff_id, slot.resources.room_id = key.staff_id, key.room_id
    slot.resources.party_size = key.party_size
    slot.availability_tag = spec.availability_tag


def _reason(problem: BaseException) -> str:
    if isinstance(problem, GRPCError):
        # A slot the server does not know: it serves another feed than the one read here.
        hint = " (does it serve this feed? give its --feed or --data-dir)"
        return f"{problem.status.name}: {problem.message}" + (
            hint if problem.status in (Status.NOT_FOUND, Status.INVALID_ARGUMENT) else ""
        )
    if isinstance(problem, OSError) and problem.strerror:
        return problem.strerror
    return type(problem).__name__
