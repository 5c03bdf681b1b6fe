"""The gRPC side's parts that the one-process server (`_app`) and a gateway worker
(`_gateway_worker`) share: asyncio and grpclib, no trio.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from grpclib.server import Server

from leasehold._serve_settings import ADMIN_LIMITS, AdminConfig
from leasehold.core import InventoryReport, SlotSpec, whole_inventory
from leasehold.gateway import (
    Admission,
    AdmissionSettings,
    Changes,
    CoalescingServer,
    Refusals,
    Router,
    build_admin_services,
)


def admin_server(admin: AdminConfig | None, router: Router) -> CoalescingServer | None:
    """The inventory admin service's server (not started); None when it is not served."""
    if admin is None:
        return None
    admission = Admission(AdmissionSettings(), Refusals())
    services = build_admin_services(router, admin.settings, admission)
    return CoalescingServer(services, limits=ADMIN_LIMITS, admission=admission)


async def apply_feed_change(
    router: Router, slots: Sequence[SlotSpec]
) -> dict[int, InventoryReport]:
    """A whole feed applied to the shards' state as one change (what it omits is removed)."""
    return await Changes(router).apply([whole_inventory(slots)], dry_run=False)


def open_connections(server: Server) -> int:
    """gRPC connections open now: grpclib keeps a handler per connection, marked on close."""
    return sum(not handler.closing for handler in server._handlers)


def bound_port(server: Server) -> int:
    """The port actually bound (the config may say 0: any free port)."""
    listener = server._server  # grpclib keeps its asyncio server here
    # asyncio's Server or uvloop's (the gateway workers'): both list their sockets.
    sockets: Sequence[socket.socket] = getattr(listener, "sockets", None) or ()
    if not sockets:
        raise RuntimeError("the gRPC server is not listening")
    return int(sockets[0].getsockname()[1])
