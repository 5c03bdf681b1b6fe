"""One socket send per gRPC connection per event-loop iteration, instead of one per frame.

grpclib hands asyncio's transport every HTTP/2 frame it makes as its own
`write`: a unary response is three (headers, message, trailers), and reading a
request adds window updates. On a selector loop each `write` to an idle socket
is a `send()` syscall at once, and on loopback each is a TCP segment that the
client must wake up for. Here writes made during one loop iteration are joined
and handed to the socket together, by a callback queued with `call_soon`: the
same iteration's responses to one connection leave in one send. Nothing waits
on a timer, so latency stays that of the iteration.

Order is kept (one buffer per connection, flushed before close and before
`write_eof`); `abort` drops what is queued, as asyncio's own abort does; flow
control is untouched (the real transport still pauses and resumes the protocol,
and `get_write_buffer_size` counts what is queued here too).
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from grpclib.protocol import H2Protocol
from grpclib.server import Server

from leasehold.gateway._admission import Admission, DroppingHandler
from leasehold.gateway._h2guard import CountedTLSProtocol, GuardedH2Protocol, flow_control_config
from leasehold.gateway._limits import ConnectionTracker, GuardLimits
from leasehold.gateway._refusals import Refusals
from leasehold.gateway._settings import AdmissionSettings

if TYPE_CHECKING:
    from grpclib._typing import IServable


class CoalescingTransport(asyncio.Transport):
    """Wraps a connected transport; `write` queues, one `call_soon` sends the lot."""

    def __init__(self, inner: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._inner = inner
        self._loop = loop
        # None when nothing is queued (and no flush is scheduled).
        self._queued: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._queued is None:
            self._queued = [bytes(data)]
            self._loop.call_soon(self._flush)
        else:
            self._queued.append(bytes(data))

    def _flush(self) -> None:
        queued, self._queued = self._queued, None
        if queued:
            self._inner.write(queued[0] if len(queued) == 1 else b"".join(queued))

    def close(self) -> None:
        self._flush()
        self._inner.close()

    def abort(self) -> None:
        self._queued = None
        self._inner.abort()

    def write_eof(self) -> None:
        self._flush()
        self._inner.write_eof()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._inner.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        queued = sum(map(len, self._queued)) if self._queued else 0
        return self._inner.get_write_buffer_size() + queued

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()


class CoalescingServer(Server):
    """grpclib's Server: connections write through a CoalescingTransport, under GuardLimits."""

    def __init__(
        self,
        handlers: Collection[IServable],
        *,
        limits: GuardLimits | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.limits = limits or GuardLimits()
        super().__init__(handlers, config=flow_control_config(self.limits))
        self.admission = admission or Admission(AdmissionSettings(), Refusals())
        self.refusals = self.admission.refusals
        self.connections = ConnectionTracker(self.limits.max_connections)
        self._tls: ssl_module.SSLContext | None = None

    async def start(
        self, *args: Any, ssl: ssl_module.SSLContext | None = None, **kwargs: Any
    ) -> None:
        """grpclib's start; with `ssl`, the TLS layer is made by _protocol_factory, counted."""
        self._tls = ssl
        await super().start(*args, **kwargs)

    def _protocol_factory(self) -> H2Protocol | CountedTLSProtocol:  # type: ignore[override]
        # grpclib's factory, with our handler and protocol: the handler is registered
        # with the server (for close and wait_closed) as grpclib's own would be.
        self.__gc_step__()
        handler = DroppingHandler(
            self._mapping,
            self._codec,
            self._status_details_codec,
            self.__dispatch__,
            admission=self.admission,
        )
        self._handlers.add(handler)
        loop = asyncio.get_running_loop()
        tls = self._tls
        protocol = GuardedH2Protocol(
            handler,
            self._config,
            self._h2_config,
            limits=self.limits,
            refusals=self.refusals,
            tracker=None if tls else self.connections,
            wrap_transport=lambda transport: CoalescingTransport(transport, loop),
        )
        if tls is None:
            return protocol
        return CountedTLSProtocol(
            protocol, tls, limits=self.limits, refusals=self.refusals, tracker=self.connections
        )
