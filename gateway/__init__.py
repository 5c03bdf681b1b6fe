"""The gRPC face: grpclib services, request decoding, routing to shards, status mapping.

Imports core and shards. `_bridge` is the only module that knows both asyncio and trio;
the composition root (`leasehold._app`, `leasehold.cli`) assembles these parts.
"""

from leasehold.gateway._admin import (
    DEFAULT_MAX_REQUEST_BYTES as DEFAULT_ADMIN_MAX_REQUEST_BYTES,
)
from leasehold.gateway._admin import AdminSettings, build_admin_services
from leasehold.gateway._admission import PUSHBACK_TRAILER, Admission, AdmissionSettings
from leasehold.gateway._bridge import TrioGuest
from leasehold.gateway._coalesce import CoalescingServer
from leasehold.gateway._h2guard import ConnectionTracker, GuardLimits
from leasehold.gateway._inventory import Changes
from leasehold.gateway._refusals import Refusal, Refusals, RefusalStats, quiet_floods
from leasehold.gateway._router import Router
from leasehold.gateway._services import build_services
from leasehold.gateway._tls import (
    TlsSettings,
    certificate_names,
    pin_client_name,
    server_context,
)

__all__ = [
    "DEFAULT_ADMIN_MAX_REQUEST_BYTES",
    "PUSHBACK_TRAILER",
    "AdminSettings",
    "Admission",
    "AdmissionSettings",
    "Changes",
    "CoalescingServer",
    "ConnectionTracker",
    "GuardLimits",
    "Refusal",
    "RefusalStats",
    "Refusals",
    "Router",
    "TlsSettings",
    "TrioGuest",
    "build_admin_services",
    "build_services",
    "certificate_names",
    "pin_client_name",
    "quiet_floods",
    "server_context",
]
