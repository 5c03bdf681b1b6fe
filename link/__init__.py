"""The internal link between gateway workers and shard processes: the only place that
knows both sides of a process boundary.

Imports core and shards (its commands, replies and figures travel in shards'
codec); imported by gateway workers and the shard-process host in the
composition root. `_framing` (frames, sans I/O) and `_transport` (Unix sockets)
are kept apart so that a cluster mode can run the same frames over TCP with TLS.

Each name is imported when first asked for (PEP 562): a shard process serves the
link without the asyncio client, and a gateway worker calls over it without trio.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

# Each public name: (the module that defines it, its name there), imported when first
# asked for.
_WHERE = {
    "FORMAT_VERSION": ("_framing", "FORMAT_VERSION"),
    "FrameDecoder": ("_framing", "FrameDecoder"),
    "FrameTooLarge": ("_framing", "FrameTooLarge"),
    "Kind": ("_framing", "Kind"),
    "LinkCounters": ("_server", "LinkCounters"),
    "LinkProtocolError": ("_framing", "LinkProtocolError"),
    "LinkedShards": ("_routes", "LinkedShards"),
    "MAX_FRAME_BYTES": ("_framing", "MAX_FRAME_BYTES"),
    "MAX_SOCKET_PATH_BYTES": ("_transport", "MAX_SOCKET_PATH_BYTES"),
    "ProcessFigures": ("_server", "ProcessFigures"),
    "RemoteShard": ("_routes", "RemoteShard"),
    "ShardLink": ("_client", "ShardLink"),
    "ShardProcessStats": ("_server", "ShardProcessStats"),
    "SocketPathTooLong": ("_transport", "SocketPathTooLong"),
    "StatsLink": ("_stats", "StatsLink"),
    "call_linked": ("_routes", "call_linked"),
    "call_over_link": ("_client", "call_over_link"),
    "check_socket_path": ("_transport", "check_socket_path"),
    "connect_unix": ("_transport", "connect_unix"),
    "encode_frame": ("_framing", "encode_frame"),
    "encode_frames": ("_framing", "encode_frames"),
    "open_unix_listener": ("_transport", "open_unix_listener"),
    "process_figures": ("_server", "process_figures"),
    "serve_link": ("_server", "serve_link"),
}

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

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name not in _WHERE:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module, attribute = _WHERE[name]
        value = getattr(import_module(f"{__name__}.{module}"), attribute)
        globals()[name] = value  # asked once: later lookups are plain
        return value
