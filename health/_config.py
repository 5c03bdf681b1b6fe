"""The health stream's settings and its one start-up error, apart from its server.

So that the `leasehold` command's parser (its defaults) and the one-line errors
import no trio, websocket or Prometheus code.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_PORT = 50052


@dataclass(frozen=True, slots=True)
class HealthConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT  # 0: any free port
    # None: no token needed. Otherwise a watcher's subscribe must carry exactly this.
    token: str | None = None
    default_interval_s: float = 1.0
    # Frames a watcher may have waiting to be written before new ones are dropped for it.
    buffer_frames: int = 4
    # Subscribed watchers; one more is closed with 1013.
    max_watchers: int = 256
    # Connections not yet subscribed (health._admission); beyond it the oldest is dropped.
    max_pending: int = 32
    # wss:// with this context (the gRPC port's: same certificate, same client CA).
    ssl_context: ssl.SSLContext | None = None
    # With mutual TLS: whether a client certificate (getpeercert()) may watch.
    client_cert_ok: Callable[[dict[str, Any] | None], bool] | None = None


class HealthListenError(Exception):
    """The health stream's port could not be bound (the gRPC port is not involved)."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        super().__init__(f"cannot listen for the health stream on {host}:{port}: {cause.strerror}")
        self.host = host
        self.port = port
