"""The shard process's end of the link (trio): requests in, replies out, coalesced.

One task per connection reads frames and puts each request in its shard's
mailbox with `send_nowait`, exactly as the in-process gateway does; the shard's
reply callback (same thread) appends the encoded reply to the connection's
outbox, and one writer task sends everything the outbox holds in one write, so
the replies of one trio scheduling round leave together. After the hello both
read and write through a LeanStream: no checkpoint but their waits.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import trio

from leasehold.core import Command
from leasehold.link._framing import (
    FrameDecoder,
    Kind,
    LinkProtocolError,
    check_hello,
    encode_frames,
    encode_sendable,
    hello,
)
from leasehold.link._messages import parse_request, parse_stats_request, reply
from leasehold.link._transport import LeanStream
from leasehold.shards import (
    CorruptRecord,
    Reply,
    ShardFault,
    ShardRequest,
    ShardStats,
    ShardUnavailable,
    decode_command,
    encode_reply,
    encode_value,
)

if TYPE_CHECKING:
    from leasehold.shards import ShardHandle  # the shard actor: only its type, here

# A peer that has not said hello by then is not one of ours.
HELLO_TIMEOUT_S = 5.0
_READ_BYTES = 1 << 16


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    """One process of the tree, for the health stream."""

    role: str  # "shard" or "gateway" (or "supervisor")
    index: int  # which of its role
    pid: int
    cpu_s: float  # user + system CPU seconds since it started
    rss_bytes: int
    links: int  # link connections open
    in_flight: int  # requests sent over its links and not yet answered (link queue depth)


# What a shard process tells the supervisor: itself, its shards' figures, and each
# shard's largest service time since the previous ask (the health stream's max_s).
ShardProcessStats = tuple[ProcessFigures, tuple[ShardStats, ...], tuple[float, ...]]


class LinkCounters:
    """The link's figures in a shard process, over all its connections."""

    def __init__(self) -> None:
        self.links = 0
        self.in_flight = 0
        # Replies queued on connections and not yet written (a stop waits for these).
        self.unsent = 0
        self.protocol_errors = 0
        self.unencodable = 0  # replies the codec could not carry (answered UNAVAILABLE)
        self._all_sent = trio.Event()

    def sent(self, count: int) -> None:
        self.unsent -= count
        if not self.unsent:
            self._all_sent.set()
            self._all_sent = trio.Event()

    async def wait_all_sent(self) -> None:
        """Until nothing queued is left unwritten (at once if nothing is)."""
        if self.unsent:
            await self._all_sent.wait()


def process_figures(role: str, index: int, counters: LinkCounters) -> ProcessFigures:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return ProcessFigures(
        role,
        index,
        os.getpid(),
        usage.ru_utime + usage.ru_stime,
        _rss_bytes(),
        counters.links,
        counters.in_flight,
    )


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class _Connection:
    def __init__(
        self,
        stream: LeanStream,
        shards: Mapping[int, ShardHandle],
        max_in_flight: int,
        counters: LinkCounters,
    ) -> None:
        self._stream = stream
        self._shards = shards
        self._max_in_flight = max_in_flight
        self._counters = counters
        self._outbox: list[object] = []
        self._wake = trio.Event()
        self._in_flight = 0
        self._open = True

    def queue(self, message: object) -> None:
        if self._open:
            self._outbox.append(message)
            self._counters.unsent += 1
            self._wake.set()

    async def write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            batch, self._outbox = self._outbox, []
            try:
                data, too_large = encode_sendable(batch)
                for position in too_large:  # a reply larger than a frame: a fault instead
                    request_id = cast(int, cast(tuple[object, ...], batch[position])[1])
                    fault = reply(request_id, encode_reply(ShardFault.UNAVAILABLE), 0.0)
                    data += encode_frames([fault])
                await self._stream.send_all(data)
            finally:
                self._counters.sent(len(batch))

    def submit(self, message: tuple[object, ...]) -> None:
        request = parse_request(message)
        handle = self._shards.get(request.shard_id)
        if handle is None:
            raise LinkProtocolError(f"shard {request.shard_id} is not served here")
        try:
            command: Command = decode_command(request.command)
        except CorruptRecord as problem:
            raise LinkProtocolError(f"request {request.request_id}: {problem}") from None
        if self._in_flight >= self._max_in_flight:
            self._answer(request.request_id, ShardFault.OVERLOADED)  # the gateway bounds it too
            return
        remaining = request.remaining_s
        received_at = trio.current_time()
        deadline = math.inf if remaining is None else received_at + remaining
        request_id = request.request_id

        def deliver(result: Reply) -> None:
            if not self._open:
                return  # the connection ended; close() already uncounted this request
            self._in_flight -= 1
            self._counters.in_flight -= 1
            self._answer(request_id, result, trio.current_time() - received_at)

        try:
            handle.submit(ShardRequest(command, deliver, deadline))
        except ShardUnavailable as refused:
            self._answer(request_id, refused.fault)
            return
        self._in_flight += 1
        self._counters.in_flight += 1

    def _answer(self, request_id: int, result: Reply, held_s: float = 0.0) -> None:
        try:
            encoded = encode_reply(result)
        except (TypeError, ValueError):
            # A result of a type the codec cannot carry (a bug): the caller hears a fault,
            # the shard (whose reply callback this is) keeps serving.
            self._counters.unencodable += 1
            encoded = encode_reply(ShardFault.UNAVAILABLE)
        self.queue(reply(request_id, encoded, max(held_s, 0.0)))

    def close(self) -> None:
        self._open = False
        self._counters.in_flight -= self._in_flight  # their replies go nowhere now
        self._in_flight = 0
        self._counters.sent(len(self._outbox))
        self._outbox = []


async def serve_link(
    stream: trio.SocketStream,
    shards: Mapping[int, ShardHandle],
    stats: Callable[[], ShardProcessStats],
    *,
    max_in_flight: int,
    counters: LinkCounters,
) -> None:
    """Serve one link connection until the peer closes it or breaks the protocol."""
    lean = LeanStream(stream)  # after the hello: a round fewer per wake-up each way
    connection = _Connection(lean, shards, max_in_flight, counters)
    decoder = FrameDecoder()
    counters.links += 1
    try:
        pending = await _greet(stream, decoder, counters)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.write_forever)
            try:
                while True:
                    for message in pending:
                        _dispatch(connection, message, stats)
                    data = await lean.receive_some(_READ_BYTES)
                    if not data:
                        break
                    pending = decoder.feed(data)
            except LinkProtocolError:
                counters.protocol_errors += 1
            nursery.cancel_scope.cancel()
    except* (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the peer went away: its calls are its to fail
    finally:
        connection.close()
        counters.links -= 1
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def _greet(
    stream: trio.abc.Stream, decoder: FrameDecoder, counters: LinkCounters
) -> list[tuple[object, ...]]:
    """Read the peer's hello and answer ours; the messages that came after it.

    A peer with no hello or a bad one gets a closed connection (BrokenResourceError).
    """
    try:
        pending = await _read_hello(stream, decoder)
    except LinkProtocolError:
        counters.protocol_errors += 1
        raise trio.BrokenResourceError("not a link peer") from None
    await stream.send_all(encode_frames([hello("shard")]))
    return pending


async def _read_hello(stream: trio.abc.Stream, decoder: FrameDecoder) -> list[tuple[object, ...]]:
    with trio.move_on_after(HELLO_TIMEOUT_S):
        while True:
            data = await stream.receive_some(_READ_BYTES)
            if not data:
                raise LinkProtocolError("the peer closed before its hello")
            messages = decoder.feed(data)
            if messages:
                check_hello(messages[0])
                return messages[1:]
    raise LinkProtocolError(f"no hello within {HELLO_TIMEOUT_S:g} s")


def _dispatch(
    connection: _Connection,
    message: tuple[object, ...],
    stats: Callable[[], ShardProcessStats],
) -> None:
    kind = message[0]
    if kind == Kind.REQUEST:
        connection.submit(message)
    elif kind == Kind.STATS:
        request_id = parse_stats_request(message)
        process, shard_stats, maxima = stats()
        figures = [encode_value(s) for s in shard_stats]
        answer = (Kind.STATS_REPLY, request_id, encode_value(process), figures, maxima)
        connection.queue(answer)
    else:
        raise LinkProtocolError(f"unexpected message kind {kind}")
