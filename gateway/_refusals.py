"""Counting what the gateway refuses, and saying so in the log at most once a second.

Abuse and overload come in floods: a log line (or a traceback) per refused
frame, stream, connection or call would cost more than the refusal itself and
bury the log. Each refusal is a counter here; one summary line of what changed
is written at most once a second, and `snapshot()` gives the health stream a
frozen copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import MappingProxyType

log = logging.getLogger("leasehold.gateway")

SUMMARY_INTERVAL_S = 1.0


class Refusal(enum.Enum):
    """Why the gateway refused (or dropped) something; each is counted."""

    CONNECTION_CAP = "connections over --max-connections"
    HANDSHAKE_TIMEOUT = "connections without an HTTP/2 preface in time"
    IDLE_CLOSED = "idle connections closed"
    CALMED = "connections sent GOAWAY(ENHANCE_YOUR_CALM)"
    OVERSIZED_FRAME = "frames declared over the maximum size"
    PROTOCOL_ERROR = "connections closed on an HTTP/2 protocol error"
    SLOW_READER = "connections closed for not reading their replies"
    REFUSED_STREAM = "streams refused over MAX_CONCURRENT_STREAMS"
    OVERLOADED = "calls refused RESOURCE_EXHAUSTED (behind, or at the limit of calls under way)"
    DEADLINE = "calls dropped: deadline too close to be met"
    BAD_TIMEOUT = "calls refused INVALID_ARGUMENT for a malformed grpc-timeout"
    CALL_ENDED_EARLY = "calls that ended on a deadline, cancel or reset"
    LATE_REPLY = "replies finished after the caller's deadline"
    # Its handler cancelled (the deadline, or the caller's reset) while the command was
    # at a shard: the change may be applied and nobody told (a phantom hold, issue 15).
    ABANDONED = "calls ended by deadline or reset while their command was at a shard"
    LOG_SUPPRESSED = "log records held back (at most one a second is written)"


@dataclass(frozen=True, slots=True)
class RefusalStats:
    """Counts since start, by refusal (every Refusal is present)."""

    counts: MappingProxyType[Refusal, int]

    def __getitem__(self, refusal: Refusal) -> int:
        return self.counts[refusal]


class Refusals:
    """Counters for one server; `count` is cheap and never logs by itself."""

    def __init__(self) -> None:
        self._counts = dict.fromkeys(Refusal, 0)
        # Counts at the last summary line: the next line reports what changed since.
        self._logged = dict(self._counts)
        self._summary: asyncio.TimerHandle | None = None

    def count(self, refusal: Refusal, n: int = 1) -> None:
        self._counts[refusal] += n
        if self._summary is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a unit test): counted, no summary
                return
            self._summary = loop.call_later(SUMMARY_INTERVAL_S, self._write_summary)

    def snapshot(self) -> RefusalStats:
        return RefusalStats(MappingProxyType(dict(self._counts)))

    def summary(self) -> str | None:
        """What changed since the last summary, as one line; None if nothing did."""
        changed = [
            f"{now - self._logged[r]} {r.value}"
            for r, now in self._counts.items()
            if now != self._logged[r]
        ]
        self._logged = dict(self._counts)
        return "refused in the last second: " + "; ".join(changed) if changed else None

    def close(self) -> None:
        """Cancel a pending summary (the server is stopping)."""
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None

    def _write_summary(self) -> None:
        self._summary = None
        line = self.summary()
        if line is not None:
            log.warning("%s", line)


# grpclib's per-call log records for calls that ended on a deadline, a cancel or a
# reset (some with a traceback): expected under load, so counted, not written.
_CALL_ENDED_EARLY = frozenset(
    {"Deadline exceeded", "Timeout occurred", "Request was cancelled: %s", "Protocol error"}
)
# Loggers that write a record per call or per connection under a flood.
QUIETED_LOGGERS = ("grpclib.server", "grpclib.protocol", "asyncio")


class QuietFlood(logging.Filter):
    """Counts grpclib's expected per-call records; lets anything else through once a second."""

    def __init__(self, refusals: Refusals) -> None:
        super().__init__()
        self._refusals = refusals
        self._passed_at = -SUMMARY_INTERVAL_S

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in _CALL_ENDED_EARLY:
            self._refusals.count(Refusal.CALL_ENDED_EARLY)
            return False
        now = time.monotonic()
        if now - self._passed_at < SUMMARY_INTERVAL_S:
            self._refusals.count(Refusal.LOG_SUPPRESSED)
            return False
        self._passed_at = now
        return True


@contextlib.contextmanager
def quiet_floods(refusals: Refusals) -> Iterator[None]:
    """While serving: grpclib's and asyncio's per-event records counted or rate-limited."""
    quiet = QuietFlood(refusals)
    loggers = [logging.getLogger(name) for name in QUIETED_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)
