"""The supervisor's end of the link (trio): asks a shard process for its figures."""

from __future__ import annotations

from pathlib import Path

import trio

from leasehold.link._framing import (
    FrameDecoder,
    Kind,
    LinkProtocolError,
    check_hello,
    encode_frames,
    hello,
)
from leasehold.link._server import ProcessFigures, ShardProcessStats
from leasehold.link._transport import connect_unix
from leasehold.shards import CorruptRecord, ShardStats, decode_value

STATS_TIMEOUT_S = 2.0
_READ_BYTES = 1 << 16


class StatsLink:
    """One connection to one shard process, opened on first use and again after a drop."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stream: trio.SocketStream | None = None
        self._decoder = FrameDecoder()
        self._next_id = 0
        # One question at a time: the poller, metrics scrapes and health frames all ask,
        # and two tasks may not read one stream at once.
        self._asking = trio.Lock()

    async def ask(self) -> ShardProcessStats | None:
        """The process's figures, or None if it cannot answer within STATS_TIMEOUT_S."""
        async with self._asking:
            return await self._ask_once()

    async def _ask_once(self) -> ShardProcessStats | None:
        with trio.move_on_after(STATS_TIMEOUT_S):
            try:
                return await self._ask()
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            except (LinkProtocolError, CorruptRecord):
                pass
        await self.aclose()
        return None

    async def aclose(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _ask(self) -> ShardProcessStats:
        if self._stream is None:
            self._decoder = FrameDecoder()
            self._stream = await connect_unix(self.path)
            await self._stream.send_all(encode_frames([hello("supervisor")]))
            check_hello(await self._next())
        self._next_id += 1
        await self._stream.send_all(encode_frames([(Kind.STATS, self._next_id)]))
        message = await self._next()
        if len(message) != 5 or message[0] != Kind.STATS_REPLY or message[1] != self._next_id:
            raise LinkProtocolError("not the stats reply asked for")
        process = decode_value(ProcessFigures, message[2])
        figures, maxima = message[3], message[4]
        if type(figures) is not tuple or type(maxima) is not tuple or len(maxima) != len(figures):
            raise LinkProtocolError("shard figures are not two arrays of one length")
        if not all(type(m) is float for m in maxima):
            raise LinkProtocolError("a shard's max service time is not seconds")
        stats = tuple(decode_value(ShardStats, f) for f in figures)
        return process, stats, tuple(float(m) for m in maxima)

    async def _next(self) -> tuple[object, ...]:
        assert self._stream is not None
        pending: list[tuple[object, ...]] = []
        while not pending:
            data = await self._stream.receive_some(_READ_BYTES)
            if not data:
                raise trio.BrokenResourceError("the shard process closed the link")
            pending = self._decoder.feed(data)
        if len(pending) > 1:
            raise LinkProtocolError("more than the one message asked for")
        return pending[0]
