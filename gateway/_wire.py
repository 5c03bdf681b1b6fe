"""Reading a request off the wire with bounds, and turning decode failures into answers.

grpclib's own `Stream.recv_message` trusts the 4-byte length prefix and buffers
(and acknowledges) up to 4 GiB, and a body that is not valid protobuf becomes
UNKNOWN. Here the prefix is checked against a limit first and a bad body is
INVALID_ARGUMENT naming the message type.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol, TypeVar

from google.protobuf.message import DecodeError, Message
from grpclib import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

MAX_REQUEST_BYTES = 64 * 1024  # the largest request of this API is a few KiB
_PREFIX = struct.Struct(">?I")

M = TypeVar("M", bound=Message)


class _RawStream(Protocol):
    async def recv_data(self, size: int) -> bytes: ...


async def read_request(
    stream: Stream[Any, Any], message_type: type[M], limit: int = MAX_REQUEST_BYTES
) -> M:
    """The single request message of a unary call, or a GRPCError that says what is wrong.

    `limit`: the largest body read (the admin port's feeds are larger than 64 KiB)."""
    message = await read_message(stream, message_type, limit)
    if message is None:
        raise GRPCError(Status.INVALID_ARGUMENT, "request body: no message was sent")
    return message


async def read_message(
    stream: Stream[Any, Any], message_type: type[M], limit: int = MAX_REQUEST_BYTES
) -> M | None:
    """The next request message, None at the end of the stream, or a GRPCError."""
    # grpclib keeps the HTTP/2 stream as `_stream`; stable across 0.4.x, and the only way
    # to see the length prefix before the body is buffered.
    raw: _RawStream = stream._stream
    try:
        prefix = await raw.recv_data(_PREFIX.size)
        if not prefix:
            return None
        if len(prefix) != _PREFIX.size:
            raise GRPCError(Status.INVALID_ARGUMENT, "request body: truncated message")
        compressed, length = _PREFIX.unpack(prefix)
        if compressed:
            raise GRPCError(Status.UNIMPLEMENTED, "request body: compression is not supported")
        if length > limit:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"request body: {length} bytes exceeds the limit of {limit}",
            )
        body = await raw.recv_data(length)
    except AssertionError:  # grpclib's Buffer: the stream ended inside the message
        raise GRPCError(Status.INVALID_ARGUMENT, "request body: truncated message") from None
    try:
        return message_type.FromString(body)
    except DecodeError:
        name = message_type.DESCRIPTOR.full_name
        raise GRPCError(
            Status.INVALID_ARGUMENT, f"request body: not a valid {name} message"
        ) from None
