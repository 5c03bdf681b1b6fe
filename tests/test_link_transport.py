"""The shard process's lean reads and writes (link/_transport.py LeanStream): whole data
through a full socket, the peer's end of stream, a broken peer, and a checkpoint on
every read."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from leasehold.link._transport import LeanStream

pytestmark = pytest.mark.timeout(30)
LIMIT_S = 10.0


@asynccontextmanager
async def _pair() -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours = trio.SocketStream(trio.socket.from_stdlib_socket(left))
    theirs = trio.SocketStream(trio.socket.from_stdlib_socket(right))
    async with ours, theirs:
        yield ours, theirs


async def _read(stream: trio.SocketStream, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        chunk = await stream.receive_some(1 << 16)
        assert chunk, "the writer's side ended early"
        received.extend(chunk)
    return bytes(received)


def test_a_write_larger_than_the_socket_holds_arrives_whole_and_in_order() -> None:
    data = bytes(range(256)) * 16_384  # 4 MiB: far past a Unix socket's buffer

    async def main() -> bytes:
        received: list[bytes] = []

        async def reader(stream: trio.SocketStream) -> None:
            received.append(await _read(stream, len(data)))

        with trio.fail_after(LIMIT_S):
            async with _pair() as (ours, theirs), trio.open_nursery() as nursery:
                nursery.start_soon(reader, theirs)
                await LeanStream(ours).send_all(data)
        return received[0]

    assert trio.run(main) == data


def test_a_read_returns_what_is_there_then_the_end_of_stream() -> None:
    async def main() -> list[bytes]:
        with trio.fail_after(LIMIT_S):
            async with _pair() as (ours, theirs):
                lean = LeanStream(ours)
                await theirs.send_all(b"request")
                first = await lean.receive_some(1 << 16)
                await theirs.send_eof()
                return [first, await lean.receive_some(1 << 16)]

    assert trio.run(main) == [b"request", b""]


def test_a_broken_peer_is_trios_broken_resource_error() -> None:
    async def main() -> None:
        with trio.fail_after(LIMIT_S):
            async with _pair() as (ours, theirs):
                await theirs.aclose()
                lean = LeanStream(ours)
                with pytest.raises(trio.BrokenResourceError):
                    await lean.send_all(b"x" * 1024)  # EPIPE: the peer is gone

    trio.run(main)


def test_every_read_is_a_checkpoint_even_with_data_waiting() -> None:
    # A reader that found data at once without yielding could keep the shards' tasks
    # from running for as long as its peer kept writing.
    async def main() -> bytes:
        with trio.fail_after(LIMIT_S):
            async with _pair() as (ours, theirs):
                await theirs.send_all(b"waiting")
                await trio.testing.wait_all_tasks_blocked()
                with trio.testing.assert_checkpoints():
                    return await LeanStream(ours).receive_some(1 << 16)

    assert trio.run(main) == b"waiting"
