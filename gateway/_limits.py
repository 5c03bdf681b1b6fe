"""The connection limits and their count, as plain values: `_h2guard` enforces them.

Apart from it so that a process that only configures the gateway (the supervisor
builds the limits from its flags) imports no grpclib or h2.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """Per-connection HTTP/2 limits (docs/operations.md, "Limits and abuse")."""

    max_connections: int = 1000
    handshake_timeout_s: float = 5.0  # accept to the client's preface and SETTINGS
    idle_timeout_s: float = 300.0  # with no stream open
    window_s: float = 1.0  # the budgets below are per window
    # Quick resets (within quick_reset_s of the stream's open) allowed per window: this
    # many, or half the streams opened, if more. A later reset is a caller giving up on
    # its deadline, which overload makes common: it is not counted.
    resets_per_window: int = 100
    quick_reset_s: float = 0.002
    opens_per_window: int = 10_000
    refused_per_window: int = 100
    # Replies a peer leaves unread before it is cut off (a PING flood that never reads).
    max_unread_bytes: int = 4 * 1024 * 1024
    # Inbound flow-control windows: what a peer may send that is not yet read.
    # A stream's fits the largest request (64 KiB) with no window update.
    stream_window: int = 80 * 1024
    connection_window: int = 256 * 1024


class ConnectionTracker:
    """Open connections of one server against its cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        # Invariant: connections made and admitted, not yet lost.
        self.open = 0

    def admit(self) -> bool:
        if self.open >= self.cap:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1
