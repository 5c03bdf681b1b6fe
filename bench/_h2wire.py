"""The HTTP/2 and gRPC bytes of a unary call, with no I/O (bench/_h2call.py sends them).

A gRPC client's per-call work is mostly encoding: grpcio's and h2's general HPACK
encoders and frame builders cost more than the server's share of a small call, so a
load generator built on them starves first. A request here is a header block built
once per path (static-table indices and literals never indexed, so the block can be
reused on any connection) plus a short `grpc-timeout` literal per call, and its
frames are two 9-byte headers around the bytes. Replies are read by `FrameReader`
(frames out of a byte stream, bounded) and their header blocks decoded by `hpack`.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FRAME_HEADER = struct.Struct(">I B I")  # (length << 8 | type), flags, stream id
MAX_FRAME = 16_384  # the frame size this client accepts (the protocol's default)
MAX_STREAM_ID = 2**31 - 1
END_STREAM, END_HEADERS, ACK, PADDED, PRIORITY = 0x1, 0x4, 0x1, 0x8, 0x20


class FrameType(enum.IntEnum):
    DATA = 0
    HEADERS = 1
    PRIORITY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PUSH_PROMISE = 5
    PING = 6
    GOAWAY = 7
    WINDOW_UPDATE = 8
    CONTINUATION = 9


class Setting(enum.IntEnum):
    HEADER_TABLE_SIZE = 1
    ENABLE_PUSH = 2
    MAX_CONCURRENT_STREAMS = 3
    INITIAL_WINDOW_SIZE = 4
    MAX_FRAME_SIZE = 5


class WireError(Exception):
    """The server sent bytes this client will not read on (the connection is dropped)."""


@dataclass(frozen=True, slots=True)
class Frame:
    type: int  # a FrameType, or an unknown type (ignored, as RFC 9113 requires)
    flags: int
    stream_id: int
    payload: bytes


def frame(type_: FrameType, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return _FRAME_HEADER.pack(len(payload) << 8 | type_, flags, stream_id) + payload


def settings(values: dict[Setting, int]) -> bytes:
    body = b"".join(struct.pack(">HI", key, value) for key, value in values.items())
    return frame(FrameType.SETTINGS, 0, 0, body)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(FrameType.WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def rst_stream(stream_id: int, error_code: int) -> bytes:
    return frame(FrameType.RST_STREAM, 0, stream_id, struct.pack(">I", error_code))


def parse_settings(payload: bytes) -> dict[int, int]:
    if len(payload) % 6:
        raise WireError(f"SETTINGS payload of {len(payload)} bytes, not a multiple of 6")
    return dict(struct.iter_unpack(">HI", payload))


def parse_u32(payload: bytes, what: str) -> int:
    if len(payload) < 4:
        raise WireError(f"{what} payload of {len(payload)} bytes, under 4")
    value: int = struct.unpack_from(">I", payload)[0]
    return value


def parse_goaway(payload: bytes) -> tuple[int, int]:
    """(last stream id, error code)."""
    if len(payload) < 8:
        raise WireError(f"GOAWAY payload of {len(payload)} bytes, under 8")
    last, code = struct.unpack_from(">II", payload)
    return last & MAX_STREAM_ID, code


def strip_padding(f: Frame) -> bytes:
    """A DATA or HEADERS frame's payload without its padding and priority fields."""
    payload = f.payload
    start, pad = 0, 0
    if f.flags & PADDED:
        if not payload:
            raise WireError("PADDED frame with no pad length")
        start, pad = 1, payload[0]
    if f.type == FrameType.HEADERS and f.flags & PRIORITY:
        start += 5
    if start + pad > len(payload):
        raise WireError("padding longer than the frame")
    return payload[start : len(payload) - pad]


class FrameReader:
    """Frames out of the bytes received so far; a frame over MAX_FRAME is refused."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Frame]:
        buffer = self._buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= 9:
            length_type, flags, stream_id = _FRAME_HEADER.unpack_from(buffer, offset)
            length = length_type >> 8
            if length > MAX_FRAME:
                raise WireError(f"frame of {length} bytes, over {MAX_FRAME}")
            end = offset + 9 + length
            if end > len(buffer):
                break
            payload = bytes(buffer[offset + 9 : end])
            offset = end
            yield Frame(length_type & 0xFF, flags, stream_id & MAX_STREAM_ID, payload)
        del buffer[:offset]


# --- HPACK: request header blocks (RFC 7541) -------------------------------------------


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    """`value` on a `prefix_bits` prefix whose other bits are `first` (RFC 7541, 5.1)."""
    top = (1 << prefix_bits) - 1
    if value < top:
        return bytes([first | value])
    out = bytearray([first | top])
    value -= top
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _hpack_str(text: str) -> bytes:
    raw = text.encode("ascii")
    return _hpack_int(len(raw), 7, 0) + raw  # no Huffman coding: cheaper to build


def _literal(name_index: int, value: str) -> bytes:
    """Literal never indexed, its name from the static table (RFC 7541, 6.2.3)."""
    return _hpack_int(name_index, 4, 0x10) + _hpack_str(value)


def _literal_named(name: str, value: str) -> bytes:
    return b"\x10" + _hpack_str(name) + _hpack_str(value)


# Static table indices (RFC 7541, appendix A).
_METHOD_POST, _SCHEME_HTTP, _PATH, _AUTHORITY, _CONTENT_TYPE, _USER_AGENT = 3, 6, 4, 1, 31, 58


def request_block(path: str, authority: str, user_agent: str = "leasehold-bench-h2") -> bytes:
    """The header block of a gRPC request to `path`, without its grpc-timeout."""
    return b"".join(
        [
            bytes([0x80 | _METHOD_POST, 0x80 | _SCHEME_HTTP]),
            _literal(_PATH, path),
            _literal(_AUTHORITY, authority),
            _literal(_CONTENT_TYPE, "application/grpc"),
            _literal_named("te", "trailers"),
            _literal(_USER_AGENT, user_agent),
        ]
    )


def grpc_timeout(seconds: float) -> bytes:
    """The `grpc-timeout` header (whole milliseconds, at least 1; at most 8 digits)."""
    millis = min(max(1, int(seconds * 1000)), 99_999_999)
    return _literal_named("grpc-timeout", f"{millis}m")


def grpc_message(body: bytes) -> bytes:
    """A gRPC length-prefixed message, uncompressed."""
    return struct.pack(">BI", 0, len(body)) + body


# --- gRPC replies ------------------------------------------------------------------------

# gRPC status codes by name (grpc/doc/statuscodes.md): the wire carries the numbers.
OK, CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED = 0, 1, 2, 4, 8
INTERNAL, UNAVAILABLE = 13, 14
CODE_NAMES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
# RST_STREAM error codes as gRPC statuses (grpc/doc/PROTOCOL-HTTP2.md, "Errors").
_RST_STATUS = {0: INTERNAL, 7: UNAVAILABLE, 8: CANCELLED, 11: RESOURCE_EXHAUSTED}
CANCEL_CODE = 8


def rst_status(error_code: int) -> int:
    return _RST_STATUS.get(error_code, INTERNAL)


@dataclass(frozen=True, slots=True)
class Reply:
    """A call's outcome: its status, its message body if OK, and its trailers."""

    code: int
    message: str = ""
    body: bytes = b""
    trailers: dict[str, str] | None = None
    # When the client had the whole reply (time.monotonic()); 0.0 if none came (a
    # refusal made on the client's side, such as its own deadline).
    received_at: float = 0.0

    @property
    def code_name(self) -> str:
        return CODE_NAMES.get(self.code, str(self.code))


def reply_from(headers: dict[str, str], data: bytes, received_at: float = 0.0) -> Reply:
    """The call's Reply from its response headers + trailers (merged) and DATA bytes, had
    by the client at `received_at`."""
    at = received_at
    http = headers.get(":status", "200")
    if http != "200":
        code = UNAVAILABLE if http in ("502", "503", "504") else UNKNOWN
        return Reply(code, f"HTTP status {http}", trailers=headers, received_at=at)
    raw = headers.get("grpc-status")
    if raw is None or not raw.isdigit():
        why = f"grpc-status missing or malformed: {raw!r}"
        return Reply(UNKNOWN, why, trailers=headers, received_at=at)
    code, message = int(raw), unquote(headers.get("grpc-message", ""))
    if code != OK:
        return Reply(code, message, trailers=headers, received_at=at)
    if len(data) < 5 or data[0] != 0 or int.from_bytes(data[1:5], "big") != len(data) - 5:
        why = f"reply body of {len(data)} bytes is not one gRPC message"
        return Reply(INTERNAL, why, received_at=at)
    return Reply(OK, message, data[5:], headers, received_at=at)
