"""What `leasehold serve` is configured with, shared by the tree's roles and the
one-process mode: defaults, the admin port's settings, and the gateway's settings
made from the flags (a gateway worker makes them again from the supervisor's spec).

It imports no grpclib, trio or shard code: the supervisor, which never serves
gRPC, and each gateway worker, which runs no trio, both read it.
"""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass

from leasehold.core import LeaseSettings
from leasehold.gateway import (
    AdminSettings,
    AdmissionSettings,
    GuardLimits,
    TlsSettings,
    server_context,
)

DEFAULT_LEASE_SETTINGS = LeaseSettings()
DEFAULT_LIMITS = GuardLimits()
DEFAULT_ADMISSION = AdmissionSettings()
DEFAULT_ADMIN_SETTINGS = AdminSettings()
# The admin port serves operators, not partners: a few connections are plenty.
ADMIN_LIMITS = GuardLimits(max_connections=16)


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The inventory admin service's own port (docs/inventory.md)."""

    host: str = "127.0.0.1"
    port: int = 0
    settings: AdminSettings = DEFAULT_ADMIN_SETTINGS


class ServerFailed(Exception):
    """The shards stopped while serving (a journal write failed); the message says why."""


def admin_config(args: argparse.Namespace) -> AdminConfig | None:
    if args.no_admin:
        return None
    settings = AdminSettings(token=args.admin_token, max_request_bytes=args.admin_max_request)
    return AdminConfig(args.admin_host, admin_port_for(args.port, args.admin_port), settings)


def admin_port_for(grpc_port: int, given: int | None) -> int:
    """The admin port: the one given, else two above the gRPC port (0 follows 0), as the
    health port's rule (one above)."""
    if given is not None:
        return given
    return 0 if grpc_port == 0 or grpc_port > 65533 else grpc_port + 2


def guard_limits(args: argparse.Namespace) -> GuardLimits:
    return GuardLimits(
        max_connections=args.max_connections,
        handshake_timeout_s=args.handshake_timeout,
        idle_timeout_s=args.idle_timeout,
    )


def ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert is None:
        return None
    return server_context(
        TlsSettings(args.tls_cert, args.tls_key, args.tls_client_ca, args.tls_client_name)
    )
