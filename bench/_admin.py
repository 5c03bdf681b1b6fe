"""The bench's inventory admin client: windowed replacements, one record per slot touched.

One `ReplaceServiceAvailability` call replaces one window of one merchant's
service: the slots it lists get their new capacity, those of the window it does
not list are removed (spec section 8). The call is recorded as one INVENTORY `Op`
per slot of the window, all with the call's status and times, so the checker
learns each slot's capacity from the same send/recv bracket as every other op.
Like `Client`, it catches every gRPC failure and records its status.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from leasehold.bench._history import NO_STATUS, OK, Kind, Op
from leasehold.core import SlotKey
from leasehold.proto.admin.v1 import inventory_pb2 as pba

REPLACE = "/leasehold.admin.v1.InventoryService/ReplaceServiceAvailability"
_ID_BITS = 40
# Admin records get ids of their own: worker numbers from this one up are admin clients.
ADMIN_WORKER_BASE = 1 << 16


@dataclass(frozen=True, slots=True)
class AdminCall:
    """One replacement's status, and when it went and came back."""

    status: int
    send_ns: int
    recv_ns: int


class AdminClient:
    """ReplaceServiceAvailability on one channel to the admin port."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        slots: Sequence[SlotKey],
        *,
        worker: int,
        timeout_s: float,
        token: str | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.worker = ADMIN_WORKER_BASE + worker
        self.phase = ""
        self.timeout_s = timeout_s
        self._keys = list(slots)
        self._clock = clock
        self._ids = itertools.count()
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._replace: grpc.aio.UnaryUnaryMultiCallable[Any, Any] = channel.unary_unary(
            REPLACE,
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=pba.ChangeReport.FromString,
        )

    async def replace(self, window: Sequence[int], capacity: Mapping[int, int]) -> list[Op]:
        """Replace the window of `window`'s slots (one merchant and service, consecutive).

        `capacity` maps a slot of the window to its new capacity; a slot of the window
        it does not map is removed.
        """
        call = await self._call(window_request(self._keys, window, capacity))
        return [
            Op(
                op_id=(self.worker << _ID_BITS) | next(self._ids),
                kind=Kind.INVENTORY,
                phase=self.phase,
                worker=self.worker,
                slot=slot,
                count=capacity.get(slot, 0),
                removed=slot not in capacity,
                status=call.status,
                send_ns=call.send_ns,
                recv_ns=call.recv_ns,
            )
            for slot in window
        ]

    async def _call(self, request: pba.ReplaceServiceAvailabilityRequest) -> AdminCall:
        send = self._clock()
        try:
            await self._replace(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            return AdminCall(int(error.code().value[0]), send, self._clock())
        except grpc.RpcError:
            return AdminCall(NO_STATUS, send, self._clock())
        return AdminCall(OK, send, self._clock())


def window_request(
    keys: Sequence[SlotKey], window: Sequence[int], capacity: Mapping[int, int]
) -> pba.ReplaceServiceAvailabilityRequest:
    """One windowed entry: every restriction that pins the window to exactly these slots."""
    chosen = [keys[i] for i in window]
    first = chosen[0]
    if any((k.merchant_id, k.service_id) != (first.merchant_id, first.service_id) for k in chosen):
        raise ValueError("a window covers one merchant's service")
    entry = pba.ServiceAvailability(
        start_timestamp_restrict=min(k.start_sec for k in chosen),
        end_timestamp_restrict=max(k.start_sec for k in chosen) + 1,
        merchant_id_restrict=first.merchant_id,
        service_id_restrict=first.service_id,
        duration_restrict_sec=first.duration_sec,
    )
    for slot in window:
        if slot in capacity:
            key = keys[slot]
            entry.availability.add(
                merchant_id=key.merchant_id,
                service_id=key.service_id,
                start_sec=key.start_sec,
                duration_sec=key.duration_sec,
                spots_total=capacity[slot],
                spots_open=capacity[slot],
            )
    return pba.ReplaceServiceAvailabilityRequest(service_availability=[entry])
