"""The gateway's link outbox (link/_client.py): what it still sends when it is written, an
event-loop iteration after the call, and with how much time left."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from _core_helpers import CUT_A, lease_v2

from leasehold.link import FrameDecoder, ShardLink
from leasehold.link._messages import parse_request
from leasehold.shards import ShardFault

pytestmark = pytest.mark.timeout(30)
LIMIT_S = 10.0
HELD_S = 0.030  # how long the test holds the loop between a call and the outbox's write


class _Transport:
    """Stands for the Unix socket: keeps what is written."""

    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data


def _connected_link() -> tuple[ShardLink, _Transport]:
    link = ShardLink("unused", max_in_flight=8)
    transport = _Transport()
    link._transport = transport  # type: ignore[assignment]
    link._ready = True
    return link, transport


def _sent(transport: _Transport) -> list[tuple[object, ...]]:
    return FrameDecoder().feed(bytes(transport.written))


def run(body: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(LIMIT_S):
            return await body()

    return asyncio.run(bounded())


def test_a_request_carries_the_time_left_when_it_is_written() -> None:
    async def body() -> list[tuple[object, ...]]:
        link, transport = _connected_link()
        link.call(0, lease_v2(CUT_A, "r1"), 5.0)
        time.sleep(HELD_S)  # noqa: ASYNC251 (the point: the rest of the iteration is long)
        await asyncio.sleep(0)  # the outbox is written
        return _sent(transport)

    (message,) = run(body)
    remaining = parse_request(message).remaining_s
    assert remaining is not None
    assert remaining <= 5.0 - HELD_S


def test_a_request_whose_caller_left_while_it_was_queued_is_not_sent() -> None:
    async def body() -> tuple[list[tuple[object, ...]], int]:
        link, transport = _connected_link()
        link.call(0, lease_v2(CUT_A, "gone"), 5.0).cancel()  # its deadline, or a reset
        kept = link.call(0, lease_v2(CUT_A, "kept"), 5.0)
        await asyncio.sleep(0)
        assert not kept.done()
        return _sent(transport), link.in_flight

    sent, in_flight = run(body)
    assert [parse_request(m).request_id for m in sent] == [2]  # "kept" alone
    assert in_flight == 1  # the cancelled one's entry is gone too


def test_a_request_whose_time_ran_out_in_the_outbox_is_answered_unsent() -> None:
    async def body() -> tuple[object, list[tuple[object, ...]], int]:
        link, transport = _connected_link()
        late = link.call(0, lease_v2(CUT_A, "late"), HELD_S / 3)
        time.sleep(HELD_S)  # noqa: ASYNC251
        reply, _ = await late
        return reply, _sent(transport), link.in_flight

    reply, sent, in_flight = run(body)
    assert reply is ShardFault.DEADLINE_EXCEEDED
    assert sent == []
    assert in_flight == 0
