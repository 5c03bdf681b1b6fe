"""What every call passes before its request is read: deadline, queueing delay, size limits.

Each service method is wrapped once (`guard_services`), so the booking services,
health and reflection all get the same treatment:
- A call whose deadline is closer than the time a reply takes (the median handler
  time of the last second: more likely to miss than to make it; the shard's own
  margin guards what is applied) is answered DEADLINE_EXCEEDED before its body is
  read or decoded, with a pushback.
- Calls under way are bounded by an adaptive limit (gateway/_concurrency.py); one
  more is refused RESOURCE_EXHAUSTED as its HEADERS arrive, with a pushback.
- Admission by queueing delay, CoDel-like as in Facebook's "Fail at Scale": a
  call's wait is the time from its HEADERS being parsed to its handler
  starting. While waits have stayed above TARGET for a whole INTERVAL the
  server is behind, and a call that waited over TARGET is refused
  RESOURCE_EXHAUSTED at once, with a `grpc-retry-pushback-ms` trailer; when
  not, a wait up to INTERVAL is a burst and is served.
- `stream.recv_message` reads through `_wire.read_message`: a body over 64 KiB
  is refused RESOURCE_EXHAUSTED before it is read, a malformed one is
  INVALID_ARGUMENT (grpclib's own reader buffers any length, answers UNKNOWN).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from grpclib import Status
from grpclib.const import Handler
from grpclib.metadata import Deadline, decode_timeout, encode_grpc_message
from grpclib.protocol import Stream as H2Stream
from grpclib.server import Handler as ConnectionHandler
from grpclib.server import Stream

from leasehold.gateway._concurrency import AdaptiveLimit
from leasehold.gateway._looplag import LoopLag
from leasehold.gateway._refusals import Refusal, Refusals
from leasehold.gateway._return_path import HANDLER_TASK
from leasehold.gateway._settings import AdmissionSettings
from leasehold.gateway._wire import read_message, read_request
from leasehold.shards import RecentQuantile

if TYPE_CHECKING:
    from grpclib._typing import IServable

_Method = Callable[[Stream[Any, Any]], Coroutine[Any, Any, None]]
PUSHBACK_TRAILER = "grpc-retry-pushback-ms"
_TOO_CLOSE = "deadline too close to be met; nothing was done"
_STOPPING = "the server is stopping"
_BEHIND = "the server is behind; retry after the pushback"
_BAD_TIMEOUT = "grpc-timeout header is not valid (at most 8 digits and a unit of H M S m u n)"
# The gRPC spec's TimeoutValue is at most 8 digits; grpc-go refuses a longer one too.
_TIMEOUT_DIGITS = 8


class QueueDelayGate:
    """CoDel's decision on plain numbers: admit a call that waited `waited_s`, at `now`?"""

    def __init__(self, settings: AdmissionSettings) -> None:
        self._settings = settings
        # Since when every call has waited over target; None: the last one did not.
        self._above_since: float | None = None
        self.last_wait_s = 0.0
        self._sampled_at = 0.0

    def behind(self, now: float) -> bool:
        """Have calls waited over target for longer than the interval (a standing queue)?

        Only while calls are still being started: with none started for an interval
        (all refused, the queue drained) there is no standing queue to speak of.
        """
        since, interval = self._above_since, self._settings.interval_s
        return since is not None and now - since > interval and now - self._sampled_at < interval

    def admit(self, waited_s: float, now: float) -> bool:
        s = self._settings
        self.last_wait_s = waited_s
        self._sampled_at = now
        if waited_s <= s.target_s:
            self._above_since = None
            return True
        if self._above_since is None:
            self._above_since = now
        return waited_s <= (s.target_s if self.behind(now) else s.interval_s)

    def pushback_ms(self, waited_s: float, floor_ms: float = 0.0) -> int:
        """How long a refused caller should wait: ten times this call's wait (at least
        `floor_ms`), jittered."""
        s = self._settings
        base = min(max(10_000 * waited_s, floor_ms, s.pushback_min_ms), s.pushback_max_ms)
        return round(base * random.uniform(0.5, 1.5))


class Admission:
    """The gate every call passes; one per server."""

    def __init__(self, settings: AdmissionSettings, refusals: Refusals) -> None:
        self.settings = settings
        self.refusals = refusals
        self.gate = QueueDelayGate(settings)
        # Handler times of the last second; their median is the early drop's line.
        self.reply_times = RecentQuantile(0.5, 1.0, max_samples=1024)
        # Invariant: unary calls whose handler task was created and is not done.
        self.active = 0
        pushback_range_s = (settings.pushback_min_ms / 1000, settings.pushback_max_ms / 1000)
        self.limit = AdaptiveLimit(settings.limit, settings.max_active, pushback_range_s)
        # Paths of server-streaming methods (guard_services fills it in).
        self.streaming_paths: set[str] = set()
        # The caller's time lost before HEADERS were read: charged to every call's deadline.
        self.loop_lag = LoopLag()

    def started(self, timeout_s: float | None) -> Callable[[object], None]:
        """Count a unary call's task as under way; the callback for when it is done."""
        self.active += 1
        return partial(self._finished, time.monotonic(), self.limit.target_s(timeout_s))

    def _finished(self, started: float, target_s: float, _task: object) -> None:
        self.active -= 1
        now = time.monotonic()
        self.limit.observe(now - started, target_s, now)

    def pushback_ms(self, waited_s: float) -> int:
        """The pushback for a call refused after waiting `waited_s` in the server."""
        return self.gate.pushback_ms(waited_s, floor_ms=1000 * self.limit.pushback_s)

    def pushed_back(self) -> list[tuple[str, str]]:
        """The pushback trailer of a call refused as its HEADERS arrive (counted)."""
        self.limit.refused(time.monotonic())
        return [(PUSHBACK_TRAILER, str(self.pushback_ms(self.gate.last_wait_s)))]

    def counts(self, headers: list[tuple[str, str]]) -> bool:
        """Does this call count against max_active? (A watch stream lasts as long as its
        watcher: not a call waiting for its reply.)"""
        path = next((value for name, value in headers if name == ":path"), None)
        return path not in self.streaming_paths

    def too_close(self, timeout_s: float) -> bool:
        """Is `timeout_s` too little for a reply to reach the caller? (Counted if so.)"""
        margin = max(self.settings.min_margin_s, self.reply_times.value(time.monotonic()))
        if timeout_s >= margin:
            return False
        self.refusals.count(Refusal.DEADLINE)
        return True

    async def refuse(self, stream: Stream[Any, Any]) -> bool:
        """Answer the call now if it should not start; True if it was answered."""
        now = time.monotonic()
        waited = now - (stream._stream.created or now)
        if stream.deadline is not None:
            # grpclib starts the deadline's clock when the handler starts; the caller's
            # started before the wait in our queue, and before the wait in the socket
            # (gateway/_looplag.py). What reaches the shards is the caller's.
            left = stream.deadline.time_remaining() - waited - self.loop_lag.seconds()
            stream.deadline = Deadline.from_timeout(left)
            if self.too_close(left):
                self.limit.refused(now)
                pushback = self.pushback_ms(waited)
                await _send_pushback(stream, pushback, Status.DEADLINE_EXCEEDED, _TOO_CLOSE)
                return True
        if self.gate.admit(waited, now):
            return False
        self.refusals.count(Refusal.OVERLOADED)
        self.limit.refused(now)
        await _send_pushback(stream, self.pushback_ms(waited), Status.RESOURCE_EXHAUSTED, _BEHIND)
        return True

    def wrap(self, handler: Handler) -> Handler:
        func: _Method = handler.func
        streaming: bool = handler.cardinality.client_streaming
        request_type = handler.request_type
        read = partial(read_message, message_type=request_type) if streaming else None
        # A server-streaming call (Health.Watch) lasts as long as its watcher: not a reply time.
        timed = not handler.cardinality.server_streaming

        async def guarded(stream: Stream[Any, Any]) -> None:
            if await self.refuse(stream):
                return
            started = time.monotonic()
            HANDLER_TASK.set(asyncio.current_task())  # (the return path's measure, per call)
            # Health and reflection read with stream.recv_message(): bound it the same way.
            reader = partial(read, stream) if read else partial(read_request, stream, request_type)
            setattr(stream, "recv_message", reader)  # noqa: B010 (a method, set on one instance)
            try:
                await func(stream)
            finally:
                # The reader refers to the stream: left on it, each call's objects would form
                # a cycle that only the collector frees (docs/performance.md).
                delattr(stream, "recv_message")
                if timed:
                    now = time.monotonic()
                    self.reply_times.observe(now - started, now)
                    if stream.deadline is not None and not stream.deadline.time_remaining():
                        self.refusals.count(Refusal.LATE_REPLY)

        return handler._replace(func=guarded)


async def _send_pushback(
    stream: Stream[Any, Any], pushback_ms: int, status: Status, message: str
) -> None:
    """A trailers-only answer carrying `grpc-retry-pushback-ms`.

    grpclib refuses metadata keys starting "grpc-" (reserved for the protocol, which is
    what this one is), so the trailers go to its HTTP/2 stream directly, as its own
    send_trailing_metadata would send them; then grpclib sees the call answered.
    """
    headers = [
        (":status", "200"),
        ("content-type", stream._content_type),
        ("grpc-status", str(status.value)),
        ("grpc-message", encode_grpc_message(message)),
        (PUSHBACK_TRAILER, str(pushback_ms)),
    ]
    raw = stream._stream
    await raw.send_headers(headers, end_stream=True)
    stream._send_trailing_metadata_done = True
    if raw.closable:
        raw.reset_nowait()


class DroppingHandler(ConnectionHandler):
    """grpclib's per-connection handler, answering as a call's HEADERS arrive (no task,
    nothing read) when its `grpc-timeout` is malformed (INVALID_ARGUMENT) or already too
    short (DEADLINE_EXCEEDED), or when the server is behind or has as many calls under
    way as its adaptive limit allows (RESOURCE_EXHAUSTED with pushback): the cheapest
    refusal."""

    def __init__(self, *args: Any, admission: Admission) -> None:
        super().__init__(*args)
        self._admission = admission

    def accept(
        self, stream: H2Stream, headers: list[tuple[str, str]], release_stream: Callable[[], Any]
    ) -> None:
        admission = self._admission
        timeout = _timeout(headers)
        if timeout is not None and timeout != _INVALID:
            timeout = max(0.0, timeout - admission.loop_lag.seconds())
        counted = admission.counts(headers)
        if self.closing:
            # Server.close() has cancelled this connection's calls and nobody awaits a
            # new handler task now: one made here would be left pending at the loop's end.
            _answer_now(stream, Status.UNAVAILABLE, _STOPPING, [])
        elif timeout == _INVALID:
            # grpclib would answer UNKNOWN; bad input is INVALID_ARGUMENT.
            admission.refusals.count(Refusal.BAD_TIMEOUT)
            _answer_now(stream, Status.INVALID_ARGUMENT, _BAD_TIMEOUT, [])
        elif timeout is not None and admission.too_close(timeout):
            _answer_now(stream, Status.DEADLINE_EXCEEDED, _TOO_CLOSE, admission.pushed_back())
        elif admission.gate.behind(time.monotonic()) or (
            counted and not admission.limit.allows(admission.active, timeout)
        ):
            admission.refusals.count(Refusal.OVERLOADED)
            _answer_now(stream, Status.RESOURCE_EXHAUSTED, _BEHIND, admission.pushed_back())
        else:
            super().accept(stream, headers, release_stream)
            if counted:
                self._tasks[stream].add_done_callback(admission.started(timeout))
            return
        release_stream()


def _answer_now(
    stream: H2Stream, status: Status, message: str, extra: list[tuple[str, str]]
) -> None:
    """A trailers-only answer written to h2 at once (the protocol flushes after the read)."""
    assert stream.id is not None
    stream._h2_connection.send_headers(
        stream.id,
        [
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", str(status.value)),
            ("grpc-message", encode_grpc_message(message)),
            *extra,
        ],
        end_stream=True,
    )
    if stream.closable:  # as grpclib does after a non-OK answer
        stream.reset_nowait()


_INVALID = -1.0  # what _timeout returns for a malformed grpc-timeout (a real one is >= 0)


def _timeout(headers: list[tuple[str, str]]) -> float | None:
    """The call's grpc-timeout in seconds; None when absent, _INVALID when malformed."""
    values = [v for k, v in headers if k == "grpc-timeout"]
    if not values:
        return None
    try:
        if any(len(v) > _TIMEOUT_DIGITS + 1 for v in values):
            return _INVALID
        return min(decode_timeout(v) for v in values)
    except ValueError:
        return _INVALID


class _Guarded:
    """A servable whose methods all pass through an Admission first."""

    def __init__(self, inner: IServable, admission: Admission) -> None:
        self._mapping = {path: admission.wrap(h) for path, h in inner.__mapping__().items()}
        admission.streaming_paths.update(
            path for path, h in self._mapping.items() if h.cardinality.server_streaming
        )

    def __mapping__(self) -> dict[str, Handler]:
        return self._mapping


def guard_services(services: Sequence[IServable], admission: Admission) -> list[IServable]:
    return [_Guarded(service, admission) for service in services]
