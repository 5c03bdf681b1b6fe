"""The internal link between gateway workers and shard processes: the only place that
knows both sides of a process boundary.

Imports core and shards (its commands, replies and figures travel in shards'
codec); imported by gateway workers and the shard-process host in the
composition root. `_framing` (frames, sans I/O) and `_transport` (Unix sockets)
are kept apart so that a cluster mode can run the same frames over TCP with TLS.
"""

from leasehold.link._client import ShardLink, call_over_link
from leasehold.link._framing import (
    FORMAT_VERSION,
    MAX_FRAME_BYTES,
    FrameDecoder,
    FrameTooLarge,
    Kind,
    LinkProtocolError,
    encode_frame,
    encode_frames,
)
from leasehold.link._routes import LinkedShards, RemoteShard, call_linked
from leasehold.link._server import (
    LinkCounters,
    ProcessFigures,
    ShardProcessStats,
    process_figures,
    serve_link,
)
from leasehold.link._stats import StatsLink
from leasehold.link._transport import (
    MAX_SOCKET_PATH_BYTES,
    SocketPathTooLong,
    check_socket_path,
    connect_unix,
    open_unix_listener,
)

__all__ = [
    "FORMAT_VERSION",
    "MAX_FRAME_BYTES",
    "MAX_SOCKET_PATH_BYTES",
    "FrameDecoder",
    "FrameTooLarge",
    "Kind",
    "LinkCounters",
    "LinkProtocolError",
    "LinkedShards",
    "ProcessFigures",
    "RemoteShard",
    "ShardLink",
    "ShardProcessStats",
    "SocketPathTooLong",
    "StatsLink",
    "call_linked",
    "call_over_link",
    "check_socket_path",
    "connect_unix",
    "encode_frame",
    "encode_frames",
    "open_unix_listener",
    "process_figures",
    "serve_link",
]
