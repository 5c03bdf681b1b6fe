"""The link's transport: Unix sockets on one host (a cluster mode would add TCP + TLS here).

Framing (`_framing.py`) never sees a socket; this module never sees a frame.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import trio

# Linux's sun_path holds 108 bytes, the terminating NUL included.
MAX_SOCKET_PATH_BYTES = 107


class SocketPathTooLong(ValueError):
    pass


def check_socket_path(path: Path) -> str:
    text = os.fsencode(path)
    if len(text) > MAX_SOCKET_PATH_BYTES:
        raise SocketPathTooLong(
            f"{path} is {len(text)} bytes; a Unix socket path holds at most "
            f"{MAX_SOCKET_PATH_BYTES}: use a shorter runtime dir"
        )
    return str(path)


async def open_unix_listener(path: Path, backlog: int = 64) -> trio.SocketListener:
    """Listen on `path` (replacing a stale socket file a killed process left there)."""
    name = check_socket_path(path)
    _remove_stale(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(name)
        os.chmod(name, 0o600)  # only this user's processes may speak to a shard
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


def _remove_stale(path: Path) -> None:
    if path.is_socket():
        path.unlink()


async def connect_unix(path: Path) -> trio.SocketStream:
    return await trio.open_unix_socket(check_socket_path(path))
