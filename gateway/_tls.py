"""Transport security: TLS with a server certificate, and mutual TLS for the real integration.

Mutual TLS accepts only client certificates chained to the configured CA; the
handshake itself refuses the rest. Optionally the client's subject name is
pinned: a call from a certificate that does not carry that name (as its subject
common name or a DNS subject-alternative name) is answered UNAUTHENTICATED
before any handler runs.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grpclib.server import Server


@dataclass(frozen=True, slots=True)
class TlsSettings:
    cert_file: Path
    key_file: Path
    # When set: mutual TLS, clients must present a certificate chained to this CA.
    client_ca_file: Path | None = None
    # When set (with client_ca_file): the client certificate must name this subject.
    client_name: str | None = None


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """An SSLContext for the gRPC port; raises OSError/ssl.SSLError on unusable files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.cert_file, settings.key_file)
    context.set_alpn_protocols(["h2"])
    if settings.client_ca_file is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=settings.client_ca_file)
    return context


def pin_client_name(server: Server, name: str) -> None:
    """Answer UNAUTHENTICATED to calls whose client certificate does not carry `name`."""
    # Here, not at the top: the supervisor makes the TLS context and serves no gRPC.
    from grpclib import Status
    from grpclib.events import RecvRequest, listen
    from grpclib.exceptions import GRPCError

    async def check(event: RecvRequest) -> None:
        if name not in certificate_names(event.peer.cert()):
            raise GRPCError(Status.UNAUTHENTICATED, f"client certificate is not for {name!r}")

    listen(server, RecvRequest, check)


def certificate_names(cert: dict[str, Any] | None) -> set[str]:
    """Subject common names and DNS subject-alternative names of a getpeercert() dict."""
    if not cert:
        return set()
    names = {value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"}
    names.update(value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS")
    return names
