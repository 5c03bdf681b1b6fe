"""The gateway's h2 connection receives frames without formatting them for a trace line."""

from __future__ import annotations

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import RequestReceived, StreamEnded
from hyperframe.frame import Frame

from leasehold.gateway._h2quiet import QuietH2Connection

_REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", "/x.Y/Z"), (":authority", "a")]


def _client_bytes() -> bytes:
    client = H2Connection(H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, _REQUEST)
    client.send_data(1, b"\0\0\0\0\0", end_stream=True)
    client.reset_stream(1)  # a frame for a stream the server will see closed
    return client.data_to_send()


def _boom(frame: Frame) -> str:
    raise AssertionError(f"{type(frame).__name__} formatted")


def test_no_frame_is_formatted_while_received(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Frame, "__repr__", _boom)
    server = QuietH2Connection(H2Configuration(client_side=False))
    server.initiate_connection()
    events = server.receive_data(_client_bytes())
    assert [type(e) for e in events if isinstance(e, RequestReceived | StreamEnded)] == [
        RequestReceived,
        StreamEnded,
    ]


def test_h2_itself_formats_every_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    # Why QuietH2Connection exists: if h2 stops formatting frames, it can go.
    monkeypatch.setattr(Frame, "__repr__", _boom)
    server = H2Connection(H2Configuration(client_side=False))
    server.initiate_connection()
    with pytest.raises(AssertionError, match="formatted"):
        server.receive_data(_client_bytes())
