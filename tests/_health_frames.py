"""Reading health-stream frames in tests: one place for the frame-type checks."""

from __future__ import annotations

from trio_websocket import WebSocketConnection

from leasehold.health.frames import Health, Hello, Subscribe, decode


async def next_frame(ws: WebSocketConnection) -> Health | Hello | Subscribe:
    message = await ws.get_message()
    assert isinstance(message, bytes)
    return decode(message)


async def next_health(ws: WebSocketConnection) -> Health:
    frame = await next_frame(ws)
    assert isinstance(frame, Health)
    return frame
