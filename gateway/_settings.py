"""The gateway's settings as plain values, apart from the services that read them.

So that a process that only configures the gateway (the supervisor builds them
from its flags, and never serves gRPC) imports no grpclib, h2 or protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from leasehold.gateway._concurrency import LimitSettings

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class AdminSettings:
    # None: no token is asked for (the port is loopback by default; see docs/inventory.md).
    token: str | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES


@dataclass(frozen=True, slots=True)
class AdmissionSettings:
    # CoDel's target wait. Fail at Scale's 5 ms is under one event-loop batch here: 64
    # closed-loop callers at saturation wait 10-20 ms, which is a busy server, not one
    # behind (the bench's storm setup was refused at 5 ms).
    target_s: float = 0.020
    interval_s: float = 0.100  # waits above target this long: the server is behind
    # The smallest time left before a deadline that a call is started with.
    min_margin_s: float = 0.002
    pushback_min_ms: int = 50
    # High enough to hold back a crowd: N callers refused at R/s keep R near N / pushback,
    # so 1,000 callers against ~2,000 admissions/s need 4 s to bring refusals to the
    # eighth of admissions the adaptive pushback aims at. At 1 s refusals stayed at
    # half of admissions (~940/s) and took a third of the server's CPU (docs/performance.md).
    pushback_max_ms: int = 4000
    # Unary calls accepted and not yet answered, server-wide: the most the adaptive
    # limit may grow to (without a bound, 100 per connection times the connection cap).
    max_active: int = 1024
    limit: LimitSettings = field(default_factory=LimitSettings)
