"""The gateway's end of the link (link/_client.py): what its outbox still sends when it is
written, an event-loop iteration after the call, with how much time left; and the time a
call spent on the link, from its reply."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
from _core_helpers import CUT_A, lease_v2

from leasehold.link import FrameDecoder, Kind, LinkProtocolError, ShardLink, encode_frames
from leasehold.link._messages import parse_reply, parse_request, reply
from leasehold.shards import ShardFault, encode_reply

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
        reply, _, _ = await late
        return reply, _sent(transport), link.in_flight

    reply, sent, in_flight = run(body)
    assert reply is ShardFault.DEADLINE_EXCEEDED
    assert sent == []
    assert in_flight == 0


def test_a_reply_tells_the_time_its_call_spent_on_the_link() -> None:
    """Sent to arrived, less what the shard process says it held the request: the link's
    part of the return path (gateway/_return_path.py)."""

    async def body() -> tuple[float, float]:
        link, _ = _connected_link()
        future = link.call(0, lease_v2(CUT_A, "r1"), 5.0)
        await asyncio.sleep(0)  # written
        time.sleep(HELD_S)  # noqa: ASYNC251 (the round trip takes this long)
        held_s = HELD_S / 3  # of which the shard process held it this long
        link._on_data(encode_frames([reply(1, encode_reply(ShardFault.OVERLOADED), held_s)]))
        answer, _, on_link_s = await future
        assert answer is ShardFault.OVERLOADED
        return on_link_s, held_s

    on_link_s, held_s = run(body)
    assert HELD_S - held_s <= on_link_s < 5.0 - held_s


@pytest.mark.parametrize("held", [-0.001, math.nan, math.inf, 1, "0.1", None])
def test_a_reply_without_a_held_time_in_seconds_ends_the_link(held: object) -> None:
    with pytest.raises(LinkProtocolError, match="held time"):
        parse_reply((Kind.REPLY, 1, encode_reply(3), held))


def test_a_reply_to_a_request_not_yet_written_ends_the_link() -> None:
    async def body() -> None:
        link, _ = _connected_link()
        link.call(0, lease_v2(CUT_A, "r1"), 5.0)
        with pytest.raises(LinkProtocolError, match="never sent"):
            link._on_data(encode_frames([reply(1, encode_reply(3), 0.0)]))

    run(body)
