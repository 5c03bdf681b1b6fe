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


class LeanStream:
    """A connected socket's reads and writes with no checkpoint but their waits.

    trio's SocketStream yields once more after every receive or send that did not
    block: a scheduling round each, paid on every wake-up of a shard process that sleeps
    between calls (docs/performance.md, "The tree by role, and shard process rounds per
    wake-up"). Here a read first waits for the socket to be readable (always a
    checkpoint: a reader that finds data waiting still lets the other tasks run) and
    then reads what is there; a write writes at once and waits only while the socket is
    full. Errors are trio's: BrokenResourceError for a connection the peer broke,
    ClosedResourceError for a stream closed while a read or write waits on it.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        self._fd = stream.socket.fileno()

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` (b"" at the peer's end of stream)."""
        while True:
            await trio.lowlevel.wait_readable(self._fd)
            try:
                return os.read(self._fd, max_bytes)
            except BlockingIOError:
                continue  # readable, then taken: wait again
            except OSError as broken:
                raise trio.BrokenResourceError(broken) from broken

    async def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._fd)
            except OSError as broken:
                raise trio.BrokenResourceError(broken) from broken
