"""What the gateway's admission is doing, as one frozen value read about once a second.

The health stream shows it per gateway worker (docs/operations.md, "Shedding, live"):
refusals counted since start by kind, the adaptive limit on calls under way and how
many are under way, the pushback base, and the two charges taken off every call's
deadline (the loop lag and the return path). Reading it is cheap (a copy of a few
counters and two cached quantiles) and starts no timer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from leasehold.gateway._admission import Admission
from leasehold.gateway._return_path import ReturnPath


@dataclass(frozen=True, slots=True)
class AdmissionFigures:
    # Counts since start by Refusal name ("OVERLOADED", "DEADLINE", ...): every kind present.
    refusals: Mapping[str, int]
    limit: int  # the adaptive limit on calls under way, now
    in_flight: int  # unary calls under way, now
    pushback_ms: float  # the pushback base (a refusal's pushback is at least this, jittered)
    loop_lag_ms: float  # charged to a call arriving now (the loop lag's high quantile)
    return_path_ms: float  # taken off the time a shard is given (the return path's quantile)

    @classmethod
    def of(cls, admission: Admission, return_path: ReturnPath) -> AdmissionFigures:
        counts = admission.refusals.snapshot().counts
        return cls(
            refusals=MappingProxyType({r.name: n for r, n in counts.items()}),
            limit=int(admission.limit.limit),
            in_flight=admission.active,
            pushback_ms=round(1000 * admission.limit.pushback_s, 3),
            loop_lag_ms=round(1000 * admission.loop_lag.recent_seconds(), 3),
            return_path_ms=round(1000 * return_path.seconds(), 3),
        )

    def to_map(self) -> dict[str, object]:
        """The health stream's `gateway` map (health/frames.py GatewayFigures)."""
        return {
            "refusals": dict(self.refusals),
            "limit": self.limit,
            "in_flight": self.in_flight,
            "pushback_ms": self.pushback_ms,
            "loop_lag_ms": self.loop_lag_ms,
            "return_path_ms": self.return_path_ms,
        }
