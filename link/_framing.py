"""The link's frames, sans I/O: length-prefixed msgpack batches of messages.

    frame   = u32 big-endian body length, body
    body    = msgpack array of messages (all one loop iteration produced, coalesced)
    message = msgpack array whose first item is its kind (see Kind)

Nothing here touches a socket, so the same framing runs over a Unix socket today
and over TCP with TLS in a cluster mode later. Decoding checks the length before
reading a body (a frame larger than `max_frame_bytes` is refused unread) and
returns well-formed message arrays or raises LinkProtocolError, never anything else.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import cast

# msgpack ships neither stubs nor a py.typed marker (as in shards/_codec.py).
import msgpack  # type: ignore[import-untyped]

# Bumped on any change to the messages below; the hello carries it, a mismatch ends
# the connection before any command crosses.
FORMAT_VERSION = 2
# Far above any command or reply the gateway's request-size bound lets through, and
# small enough that a peer cannot make the other side buffer much.
MAX_FRAME_BYTES = 4 << 20
_HEADER = struct.Struct("!I")
_UNPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException)


class Kind(enum.IntEnum):
    HELLO = 0  # [HELLO, FORMAT_VERSION, role]: each side's first message
    REQUEST = 1  # [REQUEST, id, shard_id, remaining_s | nil, command]
    REPLY = 2  # [REPLY, id, reply, held_s]: held_s, the request's time in the shard process
    STATS = 3  # [STATS, id]: the shard process's figures, asked for by the supervisor
    STATS_REPLY = 4  # [STATS_REPLY, id, process figures, [shard stats, ...], [max_s, ...]]


class LinkProtocolError(Exception):
    """The peer sent something that is not this link's protocol; the connection ends."""


class FrameTooLarge(LinkProtocolError):
    pass


def encode_frame(messages: Sequence[object], max_frame_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """One frame holding `messages`; FrameTooLarge if its body would pass the bound."""
    body = cast(bytes, msgpack.packb(messages))
    if len(body) > max_frame_bytes:
        raise FrameTooLarge(f"a frame of {len(body)} bytes passes the {max_frame_bytes} bound")
    return _HEADER.pack(len(body)) + body


def encode_frames(messages: Sequence[object], max_frame_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """`messages` in as few frames as the bound allows (one, nearly always).

    A single message larger than the bound raises FrameTooLarge.
    """
    try:
        return encode_frame(messages, max_frame_bytes)
    except FrameTooLarge:
        if len(messages) == 1:
            raise
    half = len(messages) // 2
    first = encode_frames(messages[:half], max_frame_bytes)
    return first + encode_frames(messages[half:], max_frame_bytes)


def encode_sendable(
    messages: Sequence[object], max_frame_bytes: int = MAX_FRAME_BYTES
) -> tuple[bytes, list[int]]:
    """As encode_frames, but a message too large for any frame is left out: the bytes of
    the others, and the positions of those left out (for the sender to answer otherwise)."""
    try:
        return encode_frames(messages, max_frame_bytes), []
    except FrameTooLarge:
        pass
    sent, left_out = [], []
    for position, message in enumerate(messages):
        try:
            sent.append(encode_frame([message], max_frame_bytes))
        except FrameTooLarge:
            left_out.append(position)
    return b"".join(sent), left_out


def hello(role: str) -> tuple[object, ...]:
    return (Kind.HELLO, FORMAT_VERSION, role)


def check_hello(message: tuple[object, ...]) -> str:
    """The peer's role, from its first message; LinkProtocolError if it is no hello of ours."""
    if len(message) != 3 or message[0] != Kind.HELLO or type(message[2]) is not str:
        raise LinkProtocolError("the peer's first message is not a hello")
    if message[1] != FORMAT_VERSION:
        raise LinkProtocolError(
            f"the peer speaks link format {message[1]!r}, this one {FORMAT_VERSION}"
        )
    return message[2]


class FrameDecoder:
    """Bytes in, messages out. Buffers at most one frame (header + `max_frame_bytes`)."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._max = max_frame_bytes
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes | bytearray) -> list[tuple[object, ...]]:
        """The messages completed by `data`, in order; LinkProtocolError on bad bytes."""
        buffer = self._buffer
        buffer += data
        messages: list[tuple[object, ...]] = []
        start = 0
        while len(buffer) - start >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buffer, start)
            if length > self._max:
                raise FrameTooLarge(f"the peer announced a frame of {length} bytes")
            end = start + _HEADER.size + length
            if end > len(buffer):
                break
            messages.extend(_messages(bytes(buffer[start + _HEADER.size : end])))
            start = end
        del buffer[:start]
        return messages


def _messages(body: bytes) -> list[tuple[object, ...]]:
    try:
        batch = msgpack.unpackb(body, raw=False, use_list=False)
    except _UNPACK_ERRORS as problem:
        detail = str(problem) or type(problem).__name__
        raise LinkProtocolError(f"a frame is not msgpack: {detail}") from None
    if type(batch) is not tuple:
        raise LinkProtocolError("a frame's body is not an array of messages")
    for message in batch:
        if type(message) is not tuple or not message or type(message[0]) is not int:
            raise LinkProtocolError("a message is not an array starting with its kind")
    return list(batch)
