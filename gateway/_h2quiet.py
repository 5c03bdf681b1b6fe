"""h2's connection without the text of a trace line it never writes.

h2 4.4's `H2Connection._receive_frame` starts with
`self.config.logger.trace("Received frame: %s", repr(frame))`: the frame is
formatted for every frame received, although the default logger drops the
line. Under the overload probe that `repr` took 4-6 % of a gateway worker's CPU
(docs/performance.md). `QuietH2Connection._receive_frame` is h2's own, word for
word, without that line (h2 is pinned to 4.4.x in pyproject.toml for this).
"""

from __future__ import annotations

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import Event
from h2.exceptions import StreamClosedError, StreamIDTooLowError
from hyperframe.frame import Frame, RstStreamFrame


class QuietH2Connection(H2Connection):
    """h2's H2Connection, receiving frames without formatting each for a dropped trace."""

    def _receive_frame(self, frame: Frame) -> list[Event]:
        events: list[Event]
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            # Closed by our RST_STREAM: answer with RST_STREAM; else a connection error.
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            # A stream cleaned up after it closed, or closed implicitly by a higher one.
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events
