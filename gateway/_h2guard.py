"""HTTP/2 limits per connection: the one place that subclasses grpclib's and h2's internals.

What h2 4.x and grpclib 0.4.x leave open, and how it is closed here:
- h2's FrameBuffer checks a frame's declared length only once the whole body
  has arrived, so a header declaring 16 MiB is buffered first. Here the length
  is checked as soon as the 9-byte header is in (FRAME_SIZE_ERROR, RFC 9113 4.2).
- A stream over MAX_CONCURRENT_STREAMS is a connection error in h2, so every
  call on the connection fails. Here it gets RST_STREAM(REFUSED_STREAM) and the
  connection lives on (the header block is still decoded: HPACK state is shared).
- Rapid reset (CVE-2023-44487): streams opened and reset at once cost the
  server a handler each. Like Envoy's premature-reset rule and grpc-go's
  limits, resets, opens and refused streams are budgeted per window, and a
  connection over budget gets GOAWAY(ENHANCE_YOUR_CALM) and is closed.
- grpclib closes on a protocol error without sending h2's GOAWAY; here it is
  flushed first. A preface timeout, an idle timeout and a cap on unread
  output bound what a silent or non-reading peer holds.
- asyncio's TLS layer calls the protocol above it only once the handshake is
  done, and never when it fails: connections in their TLS handshake went
  uncounted, and a failed one left grpclib's handler registered. Here the TLS
  layer itself is counted (CountedTLSProtocol), from accept.
The pins in pyproject.toml keep h2 and grpclib to the versions tested here.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
import time
from asyncio.sslproto import SSLProtocol
from collections.abc import Callable
from typing import Any, cast

from grpclib.config import Configuration
from grpclib.protocol import AbstractHandler, Connection, EventsProcessor, H2Protocol
from h2.config import H2Configuration
from h2.connection import _decode_headers
from h2.errors import ErrorCodes
from h2.events import Event as H2Event
from h2.events import RemoteSettingsChanged, RequestReceived, StreamReset
from h2.exceptions import DenialOfServiceError, FrameTooLargeError, ProtocolError
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes
from h2.stream import StreamClosedBy
from hyperframe.frame import Frame, HeadersFrame, RstStreamFrame

from leasehold.gateway._h2quiet import QuietH2Connection
from leasehold.gateway._limits import ConnectionTracker, GuardLimits
from leasehold.gateway._refusals import Refusal, Refusals

_FRAME_HEADER = 9


class StreamBudget:
    """Opens, resets and refusals of one connection, counted per fixed window."""

    def __init__(self, limits: GuardLimits) -> None:
        self._limits = limits
        self._window_end = -1.0
        self._opened = self._reset = self._refused = 0

    def _roll(self, now: float) -> None:
        if now >= self._window_end:
            self._window_end = now + self._limits.window_s
            self._opened = self._reset = self._refused = 0

    def opened(self, now: float) -> bool:
        """Count a new stream; False: over budget."""
        self._roll(now)
        self._opened += 1
        return self._opened <= self._limits.opens_per_window

    def reset(self, now: float) -> bool:
        """Count a RST_STREAM from the peer; False: over budget."""
        self._roll(now)
        self._reset += 1
        return self._reset <= max(self._limits.resets_per_window, self._opened // 2)

    def refused(self, now: float) -> bool:
        """Count a stream refused over the concurrency limit; False: over budget."""
        self._roll(now)
        self._refused += 1
        return self._refused <= self._limits.refused_per_window


class _HeaderFirstFrameBuffer(FrameBuffer):
    """h2's FrameBuffer, refusing an overlong frame from its header, before its body."""

    def __next__(self) -> Frame:
        data = self._data
        if len(data) >= _FRAME_HEADER:
            self._validate_frame_length(int.from_bytes(data[:3], "big"))
        return super().__next__()


class GuardedH2Connection(QuietH2Connection):
    """h2's server connection with stream budgets and REFUSED_STREAM past the limit."""

    def __init__(
        self,
        config: H2Configuration,
        budget: StreamBudget,
        refusals: Refusals,
        quick_reset_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(config=config)
        self._quick_reset_s = quick_reset_s
        self.incoming_buffer = _HeaderFirstFrameBuffer(server=True)
        self._budget = budget
        self._refusals = refusals
        self._clock = clock
        self._limit = self.local_settings.max_concurrent_streams
        # When each stream the peer opened was opened; pruned to the open ones when large.
        self._opened_at: dict[int, float] = {}

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Frame], list[H2Event]]:
        stream_id = frame.stream_id
        if stream_id not in self.streams and stream_id > self.highest_inbound_stream_id:
            now = self._clock()
            if not self._budget.opened(now):
                raise DenialOfServiceError("streams opened too fast")
            if stream_id % 2 and self.open_inbound_streams >= self._limit:
                return self._refuse(frame)
            self._note_open(stream_id, now)
        return super()._receive_headers_frame(frame)

    def _note_open(self, stream_id: int, now: float) -> None:
        opened = self._opened_at
        if len(opened) > 2 * self._limit:
            for gone in [s for s in opened if s not in self.streams]:
                del opened[gone]
        opened[stream_id] = now

    def _refuse(self, frame: HeadersFrame) -> tuple[list[Frame], list[H2Event]]:
        if not self._budget.refused(self._clock()):
            raise DenialOfServiceError("streams opened past the limit too often")
        self._refusals.count(Refusal.REFUSED_STREAM)
        _decode_headers(self.decoder, frame.data)  # HPACK state is the connection's
        self.highest_inbound_stream_id = frame.stream_id
        # Later frames on it are answered as on any stream closed by our reset.
        self._closed_streams[frame.stream_id] = StreamClosedBy.SEND_RST_STREAM
        refusal = RstStreamFrame(frame.stream_id)
        refusal.error_code = ErrorCodes.REFUSED_STREAM
        return [refusal], []

    def _receive_rst_stream_frame(self, frame: RstStreamFrame) -> tuple[list[Frame], list[H2Event]]:
        now = self._clock()
        opened = self._opened_at.pop(frame.stream_id, None)
        quick = opened is None or now - opened < self._quick_reset_s
        if quick and not self._budget.reset(now):
            raise DenialOfServiceError("streams reset too fast")
        return super()._receive_rst_stream_frame(frame)


class GuardedH2Protocol(H2Protocol):
    """grpclib's server protocol with the limits above; see the module docstring."""

    def __init__(
        self,
        handler: AbstractHandler,
        config: Configuration,
        h2_config: H2Configuration,
        *,
        limits: GuardLimits,
        refusals: Refusals,
        tracker: ConnectionTracker | None,
        wrap_transport: Callable[[asyncio.Transport], asyncio.Transport],
    ) -> None:
        """`tracker` None: the connection is counted by the TLS layer beneath."""
        super().__init__(handler, config, h2_config)
        self._limits = limits
        self._refusals = refusals
        self._tracker = tracker
        self._wrap = wrap_transport
        self._state = _Lifecycle.NEW
        self._timer: asyncio.TimerHandle | None = None
        self._quiet_since = 0.0  # monotonic time when no stream was last seen open

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        if self._tracker is not None and not self._tracker.admit():
            self._refusals.count(Refusal.CONNECTION_CAP)
            self.never_served()
            transport.abort()
            return
        self._state = _Lifecycle.HANDSHAKE
        transport = self._wrap(transport)
        self._made(transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._limits.handshake_timeout_s, self._handshake_expired)

    @property
    def made(self) -> bool:
        """Has connection_made been called (after TLS: the handshake is done)?"""
        return self._state is not _Lifecycle.NEW

    def never_served(self) -> None:
        """Refused, or its TLS handshake failed: connection_made is not (or no longer) due."""
        self._state = _Lifecycle.REFUSED
        self.handler.close()  # grpclib's server keeps it until it is marked closing

    def _made(self, transport: asyncio.Transport) -> None:
        # grpclib's connection_made, with our H2Connection in place of h2's.
        h2_conn = GuardedH2Connection(
            self.h2_config, StreamBudget(self._limits), self._refusals, self._limits.quick_reset_s
        )
        h2_conn.initiate_connection()
        initial = h2_conn.local_settings.initial_window_size
        conn_delta = self.config.http2_connection_window_size - initial
        if conn_delta:
            h2_conn.increment_flow_control_window(conn_delta)
        if self.config.http2_stream_window_size != initial:
            h2_conn.update_settings(
                {SettingCodes.INITIAL_WINDOW_SIZE: self.config.http2_stream_window_size}
            )
        self.connection = Connection(h2_conn, transport, config=self.config)
        self.connection.flush()
        self.connection.initialize()
        self.processor = EventsProcessor(self.handler, self.connection)

    def data_received(self, data: bytes) -> None:
        if self._state in _ENDED:
            return
        try:
            events = self.connection.feed(data)
        except ProtocolError as error:
            self._refusals.count(_refusal_for(error))
            self._close_now()
            return
        self.connection.flush()
        stillborn = _reset_in_same_read(events)
        for event in events:
            if stillborn and isinstance(event, _STREAM_LIFE) and event.stream_id in stillborn:
                # Opened and reset in one read: no handler is started for it. (Its DATA
                # still goes to grpclib, which returns the flow-control window.)
                continue
            if self._state is _Lifecycle.HANDSHAKE and isinstance(event, RemoteSettingsChanged):
                self._serving()
            self.processor.process(event)
        self.connection.flush()
        if self.connection.is_closing():
            return
        transport = self.connection._transport
        if transport.get_write_buffer_size() > self._limits.max_unread_bytes:
            self._refusals.count(Refusal.SLOW_READER)
            self._state = _Lifecycle.CLOSED
            transport.abort()

    def _serving(self) -> None:
        self._state = _Lifecycle.SERVING
        self._quiet_since = time.monotonic()
        self._rearm(self._limits.idle_timeout_s, self._idle_check)

    def _handshake_expired(self) -> None:
        self._timer = None
        if self._state is _Lifecycle.HANDSHAKE:
            self._refusals.count(Refusal.HANDSHAKE_TIMEOUT)
            self._close_now()

    def _idle_check(self) -> None:
        self._timer = None
        if self._state is not _Lifecycle.SERVING:
            return
        now = time.monotonic()
        created = self.connection.last_stream_created or 0.0
        if self.processor.streams:
            self._quiet_since = now
        quiet_since = max(self._quiet_since, created)
        left = quiet_since + self._limits.idle_timeout_s - now
        if left > 0:
            self._rearm(left, self._idle_check)
            return
        self._refusals.count(Refusal.IDLE_CLOSED)
        self.connection._connection.close_connection(ErrorCodes.NO_ERROR)
        self._close_now()

    def _rearm(self, delay: float, callback: Callable[[], None]) -> None:
        self._timer = asyncio.get_running_loop().call_later(delay, callback)

    def _close_now(self) -> None:
        """Send what h2 has queued (a GOAWAY), close, and cancel this connection's calls."""
        self._state = _Lifecycle.CLOSED
        if not self.connection.is_closing():
            self.connection.flush()
        self.processor.close("connection closed by the server's limits")

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._state is _Lifecycle.REFUSED or self._state is _Lifecycle.NEW:
            return  # never counted open
        if self._tracker is not None:
            self._tracker.release()
        self._state = _Lifecycle.CLOSED
        super().connection_lost(exc)


class _Lifecycle(enum.Enum):
    NEW = enum.auto()  # accepted, connection_made not yet called
    REFUSED = enum.auto()  # over the cap (closed at once) or its TLS handshake failed
    HANDSHAKE = enum.auto()  # waiting for the client's preface and SETTINGS
    SERVING = enum.auto()
    CLOSED = enum.auto()


_ENDED = frozenset({_Lifecycle.REFUSED, _Lifecycle.CLOSED})


class CountedTLSProtocol(SSLProtocol):
    """asyncio's TLS layer under a GuardedH2Protocol, counted against the cap from accept
    (the loop would make the same SSLProtocol with `ssl=`; see the module docstring)."""

    def __init__(
        self,
        app: GuardedH2Protocol,
        context: ssl.SSLContext,
        *,
        limits: GuardLimits,
        refusals: Refusals,
        tracker: ConnectionTracker,
    ) -> None:
        super().__init__(
            asyncio.get_running_loop(),
            app,
            context,
            cast("asyncio.Future[Any]", None),  # no waiter: asyncio's own accept passes one
            server_side=True,
            # typeshed says int; asyncio takes any positive number of seconds.
            ssl_handshake_timeout=limits.handshake_timeout_s,  # type: ignore[arg-type]
        )
        self._guarded = app
        self._refusals = refusals
        self._tracker = tracker
        self._counted = False  # Invariant: admitted by the tracker and not yet released

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        if not self._tracker.admit():
            self._refusals.count(Refusal.CONNECTION_CAP)
            self._guarded.never_served()
            transport.abort()
            return
        self._counted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._counted:
            return  # refused at connection_made: the TLS layer never started
        self._counted = False
        self._tracker.release()
        super().connection_lost(exc)
        if not self._guarded.made:
            self._guarded.never_served()  # its handshake failed or timed out

    def _check_handshake_timeout(self) -> None:
        if not self._guarded.made:  # once made, the timer was cancelled: this is the timeout
            self._refusals.count(Refusal.HANDSHAKE_TIMEOUT)
        super()._check_handshake_timeout()


_STREAM_LIFE = (RequestReceived, StreamReset)


def _reset_in_same_read(events: list[H2Event]) -> set[int]:
    """Streams both opened and reset by the peer among `events` (rapid reset's pattern)."""
    reset = {e.stream_id for e in events if type(e) is StreamReset and e.remote_reset}
    if not reset:
        return reset
    return {e.stream_id for e in events if type(e) is RequestReceived and e.stream_id in reset}


def _refusal_for(error: ProtocolError) -> Refusal:
    if isinstance(error, FrameTooLargeError):
        return Refusal.OVERSIZED_FRAME
    if isinstance(error, DenialOfServiceError):
        return Refusal.CALMED
    return Refusal.PROTOCOL_ERROR


def flow_control_config(limits: GuardLimits) -> Configuration:
    """grpclib's server configuration with our inbound windows (grpclib's are 4 MiB)."""
    return Configuration(
        http2_connection_window_size=limits.connection_window,
        http2_stream_window_size=limits.stream_window,
    )
