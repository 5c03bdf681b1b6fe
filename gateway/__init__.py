"""The gRPC face: grpclib services, request decoding, routing to shards, status mapping.

Imports core and shards. `_bridge` is the only module that knows both asyncio and trio;
the composition root (`leasehold._app`, `leasehold.cli`) assembles these parts.
"""

from leasehold.gateway._bridge import TrioGuest
from leasehold.gateway._coalesce import CoalescingServer
from leasehold.gateway._router import Router
from leasehold.gateway._services import build_services
from leasehold.gateway._tls import (
    TlsSettings,
    certificate_names,
    pin_client_name,
    server_context,
)

__all__ = [
    "CoalescingServer",
    "Router",
    "TlsSettings",
    "TrioGuest",
    "build_services",
    "certificate_names",
    "pin_client_name",
    "server_context",
]
