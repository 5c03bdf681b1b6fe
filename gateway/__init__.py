"""The gRPC face: grpclib services, request decoding, routing to shards, status mapping.

Imports core and shards. `_bridge` is the only module that knows both asyncio and trio;
the composition root (`leasehold._app`, `leasehold.cli`) assembles these parts.

Each name is imported when first asked for (PEP 562), so that a process imports
only what it uses: the supervisor builds the settings and the TLS context without
grpclib, h2 or protobuf, and a gateway worker serves without trio.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from leasehold.gateway._admin import build_admin_services
    from leasehold.gateway._admission import PUSHBACK_TRAILER, Admission
    from leasehold.gateway._bridge import TrioGuest
    from leasehold.gateway._coalesce import CoalescingServer
    from leasehold.gateway._figures import AdmissionFigures
    from leasehold.gateway._inventory import Changes
    from leasehold.gateway._limits import ConnectionTracker, GuardLimits
    from leasehold.gateway._refusals import Refusal, Refusals, RefusalStats, quiet_floods
    from leasehold.gateway._router import Router
    from leasehold.gateway._services import build_services
    from leasehold.gateway._settings import (
        DEFAULT_MAX_REQUEST_BYTES as DEFAULT_ADMIN_MAX_REQUEST_BYTES,
    )
    from leasehold.gateway._settings import AdminSettings, AdmissionSettings
    from leasehold.gateway._tls import (
        TlsSettings,
        certificate_names,
        pin_client_name,
        server_context,
    )

# Each public name: (the module that defines it, its name there), imported when first
# asked for.
_WHERE = {
    "AdminSettings": ("_settings", "AdminSettings"),
    "Admission": ("_admission", "Admission"),
    "AdmissionFigures": ("_figures", "AdmissionFigures"),
    "AdmissionSettings": ("_settings", "AdmissionSettings"),
    "Changes": ("_inventory", "Changes"),
    "CoalescingServer": ("_coalesce", "CoalescingServer"),
    "ConnectionTracker": ("_limits", "ConnectionTracker"),
    "DEFAULT_ADMIN_MAX_REQUEST_BYTES": ("_settings", "DEFAULT_MAX_REQUEST_BYTES"),
    "GuardLimits": ("_limits", "GuardLimits"),
    "PUSHBACK_TRAILER": ("_admission", "PUSHBACK_TRAILER"),
    "Refusal": ("_refusals", "Refusal"),
    "RefusalStats": ("_refusals", "RefusalStats"),
    "Refusals": ("_refusals", "Refusals"),
    "Router": ("_router", "Router"),
    "TlsSettings": ("_tls", "TlsSettings"),
    "TrioGuest": ("_bridge", "TrioGuest"),
    "build_admin_services": ("_admin", "build_admin_services"),
    "build_services": ("_services", "build_services"),
    "certificate_names": ("_tls", "certificate_names"),
    "pin_client_name": ("_tls", "pin_client_name"),
    "quiet_floods": ("_refusals", "quiet_floods"),
    "server_context": ("_tls", "server_context"),
}

__all__ = [
    "DEFAULT_ADMIN_MAX_REQUEST_BYTES",
    "PUSHBACK_TRAILER",
    "AdminSettings",
    "Admission",
    "AdmissionFigures",
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

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name not in _WHERE:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module, attribute = _WHERE[name]
        value = getattr(import_module(f"{__name__}.{module}"), attribute)
        globals()[name] = value  # asked once: later lookups are plain
        return value
