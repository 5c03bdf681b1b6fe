"""A gateway worker's figures, sent to the supervisor once a second on its ready pipe.

The pipe that carried the worker's "ready" line stays open (leasehold._tree) and
carries one line a second after it: `figures {"gateway": {...}, "dropped": N}`,
where the map is gateway.AdmissionFigures.to_map() and N counts the lines this
worker dropped. The worker never waits on it: the write end is non-blocking, and
a line is at most MAX_LINE_BYTES (no more than PIPE_BUF), so a write is whole or
fails with EAGAIN, and then that line is dropped and counted. The supervisor reads
with LineSplitter: a line that is too long or not a line is ignored (counted there).
Plain os and json: a gateway worker imports no trio and no health stream.
"""

from __future__ import annotations

import json
import os
import select
from collections.abc import Mapping

PREFIX = b"figures "
# <= PIPE_BUF (4096 on Linux, 512 by POSIX): a write of a line is atomic.
MAX_LINE_BYTES = min(4096, select.PIPE_BUF)


def figures_line(gateway: Mapping[str, object], dropped: int) -> bytes:
    return PREFIX + json.dumps({"gateway": gateway, "dropped": dropped}).encode() + b"\n"


class FiguresSender:
    """The worker's end: `send` never blocks; what does not fit is dropped and counted."""

    def __init__(self) -> None:
        # Invariant: non-blocking, or None (not ready yet, or the supervisor is gone).
        self._fd: int | None = None
        self.dropped = 0

    def attach(self, fd: int | None) -> None:
        if fd is not None:
            os.set_blocking(fd, False)
        self._fd = fd

    def send(self, gateway: Mapping[str, object]) -> None:
        if self._fd is None:
            return
        line = figures_line(gateway, self.dropped)
        if len(line) > MAX_LINE_BYTES:
            self.dropped += 1
            return
        try:
            os.write(self._fd, line)
        except BlockingIOError:  # the supervisor is behind: this second's figures are lost
            self.dropped += 1
        except OSError:  # the supervisor is gone (the lifeline ends this process)
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LineSplitter:
    """The supervisor's end, on plain bytes: complete lines of at most `limit` bytes.

    A longer line is skipped to its end and counted in `ignored`, as the caller counts a
    line it cannot parse; the buffer never holds more than `limit` bytes."""

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self._limit = limit
        self._buffer = b""
        self._skipping = False  # inside a line already over the limit
        self.ignored = 0

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        *complete, rest = (self._buffer + data).split(b"\n")
        for line in complete:
            if self._skipping:  # the end of a line counted when it went over
                self._skipping = False
            elif len(line) + 1 > self._limit:
                self.ignored += 1
            else:
                lines.append(line + b"\n")
        if len(rest) >= self._limit:
            if not self._skipping:
                self.ignored += 1
            self._skipping, rest = True, b""
        self._buffer = rest
        return lines

    def rest(self) -> bytes:
        """What came after the last complete line (before end-of-file, a partial line)."""
        return self._buffer
