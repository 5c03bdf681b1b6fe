"""The supervisor's copy of one gateway worker's figures, read from its ready pipe.

One per life of a worker: made when it says it is ready, closed when it exits, so a
restarted worker's figures replace the old ones and a dead worker shows none. The
lines are bounded and parsed as the health stream's frames are (health.frames): a
line too long, not JSON, or with a bad field is ignored and counted, never raised.
Figures older than STALE_S (a worker alive but not sending) are not shown as live.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import trio

from leasehold._figures_line import MAX_LINE_BYTES, PREFIX, LineSplitter
from leasehold.health.frames import FrameError, GatewayFigures

# A worker sends every second: after this long without a line its figures are not live.
STALE_S = 5.0


class WorkerFigures:
    def __init__(
        self,
        stream: trio.abc.ReceiveStream,
        rest: bytes = b"",
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.stream = stream
        self._clock = clock
        self._lines = LineSplitter()
        self.latest: GatewayFigures | None = None
        self._received_at = 0.0
        self.unparsable = 0
        # Lines the worker dropped (its pipe was full), as it last said.
        self.dropped_by_worker = 0
        self._take(rest)

    @property
    def ignored(self) -> int:
        """Lines ignored: over MAX_LINE_BYTES, or not a figures line with valid fields."""
        return self._lines.ignored + self.unparsable

    def current(self) -> GatewayFigures | None:
        """The latest figures, unless they are older than STALE_S."""
        if self.latest is None or self._clock() - self._received_at > STALE_S:
            return None
        return self.latest

    async def read_until_closed(self) -> None:
        while True:
            try:
                data = await self.stream.receive_some(MAX_LINE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            self._take(bytes(data))

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)

    def _take(self, data: bytes) -> None:
        for line in self._lines.feed(data):
            parsed = _parse(line)
            if parsed is None:
                self.unparsable += 1
                continue
            self.latest, self.dropped_by_worker = parsed
            self._received_at = self._clock()


def _parse(line: bytes) -> tuple[GatewayFigures, int] | None:
    if not line.startswith(PREFIX):
        return None
    try:
        said = json.loads(line[len(PREFIX) :])
        if not isinstance(said, dict) or not isinstance(said.get("gateway"), dict):
            return None
        dropped = said.get("dropped", 0)
        if not isinstance(dropped, int) or isinstance(dropped, bool):
            return None
        return GatewayFigures.from_map(said["gateway"], "gateway"), dropped
    except (ValueError, FrameError):  # json's JSONDecodeError and UnicodeDecodeError too
        return None
