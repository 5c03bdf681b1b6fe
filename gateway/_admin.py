"""leasehold.admin.v1.InventoryService: change the inventory while serving (spec section 8).

Served on its own port (never the partner API's): reflection lists it there, health
answers there. An optional bearer token (`authorization: Bearer TOKEN` metadata,
compared in constant time) is checked before the request body is read; without it
the call is UNAUTHENTICATED. Requests may be larger than the partner API's (a whole
feed) but are bounded (`AdminSettings.max_request_bytes`).
"""

from __future__ import annotations

import asyncio
import hmac
from typing import TYPE_CHECKING, Any

from grpclib import Status
from grpclib.exceptions import GRPCError
from grpclib.health.service import Health
from grpclib.reflection.service import ServerReflection
from grpclib.server import Stream

from leasehold.core import END_OF_TIME, ListInventory
from leasehold.gateway import _admin_codec as codec
from leasehold.gateway._admission import Admission, guard_services
from leasehold.gateway._inventory import Changes, list_inventory
from leasehold.gateway._refusals import Refusals
from leasehold.gateway._router import Router
from leasehold.gateway._settings import AdminSettings, AdmissionSettings
from leasehold.gateway._wire import read_request
from leasehold.proto.admin.v1 import inventory_grpc
from leasehold.proto.admin.v1 import inventory_pb2 as pb

if TYPE_CHECKING:
    from grpclib._typing import IServable


class InventoryService(inventory_grpc.InventoryServiceBase):
    def __init__(self, router: Router, settings: AdminSettings) -> None:
        self._router = router
        self._settings = settings
        self._changes = Changes(router)

    async def ApplyFeed(self, stream: Stream[Any, Any]) -> None:
        request = await self._read(stream, pb.ApplyFeedRequest)
        # Parsing a big feed takes seconds of CPU: in a worker thread, so that the event
        # loop (and the shards, its guests) keep serving in between (GIL switches).
        window = await asyncio.to_thread(codec.feed_window, request)
        parts = await self._changes.apply([window], request.dry_run)
        await stream.send_message(codec.change_report(parts, request.dry_run))

    async def ReplaceServiceAvailability(self, stream: Stream[Any, Any]) -> None:
        request = await self._read(stream, pb.ReplaceServiceAvailabilityRequest)
        windows = await asyncio.to_thread(codec.windows, request)
        parts = await self._changes.apply(windows, request.dry_run)
        await stream.send_message(codec.change_report(parts, request.dry_run))

    async def GetInventory(self, stream: Stream[Any, Any]) -> None:
        request = await self._read(stream, pb.GetInventoryRequest)
        if not request.merchant_id:
            raise codec.invalid("merchant_id", "is required")
        limit = min(request.limit or 1000, codec.MAX_LISTED)
        query = ListInventory(
            request.merchant_id,
            request.service_id,
            request.start_sec_from,
            request.start_sec_to or END_OF_TIME,
            limit,
        )
        found = await list_inventory(self._router, query)
        answer = pb.GetInventoryResponse(truncated=len(found) > limit)
        answer.slots.extend(codec.slot_state(s) for s in found[:limit])
        await stream.send_message(answer)

    async def _read(self, stream: Stream[Any, Any], message_type: Any) -> Any:
        self._authorize(stream)
        return await read_request(stream, message_type, self._settings.max_request_bytes)

    def _authorize(self, stream: Stream[Any, Any]) -> None:
        token = self._settings.token
        if token is None:
            return
        given = stream.metadata.get("authorization") if stream.metadata else None
        expected = f"Bearer {token}".encode()
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected):
            raise GRPCError(
                Status.UNAUTHENTICATED, "authorization: a valid bearer token is required"
            )


def build_admin_services(
    router: Router, settings: AdminSettings, admission: Admission | None = None
) -> list[IServable]:
    """The inventory service, health and reflection (which lists only these), each method
    behind `admission` (deadline, queueing delay; health and reflection read 64 KiB)."""
    if admission is None:
        admission = Admission(AdmissionSettings(), Refusals())
    inventory = InventoryService(router, settings)
    health = Health({inventory: []})
    return guard_services(ServerReflection.extend([inventory, health]), admission)
