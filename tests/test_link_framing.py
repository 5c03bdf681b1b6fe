"""The link's frames: length-prefixed msgpack batches, bounded, and any bytes decode cleanly."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leasehold.link import (
    FORMAT_VERSION,
    FrameDecoder,
    FrameTooLarge,
    Kind,
    LinkProtocolError,
    encode_frame,
    encode_frames,
)
from leasehold.link._framing import check_hello, encode_sendable, hello

MESSAGES = [(Kind.REQUEST, 1, 0, 0.5, ("GetBooking", "b-1")), (Kind.REPLY, 1, ("v", 3))]


def test_messages_of_one_frame_come_back_in_order() -> None:
    assert FrameDecoder().feed(encode_frame(MESSAGES)) == MESSAGES


def test_a_frame_split_anywhere_decodes_once_whole() -> None:
    data = encode_frame(MESSAGES) + encode_frame(MESSAGES[:1])
    for cut in range(len(data) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert got == [*MESSAGES, MESSAGES[0]]
        assert decoder.buffered == 0


def test_a_frame_over_the_bound_is_refused_before_its_body_arrives() -> None:
    decoder = FrameDecoder(max_frame_bytes=100)
    with pytest.raises(FrameTooLarge):
        decoder.feed(struct.pack("!I", 101))
    with pytest.raises(FrameTooLarge):
        encode_frame([("x" * 200,)], max_frame_bytes=100)


def test_a_batch_over_the_bound_is_split_into_frames() -> None:
    batch = [(Kind.REPLY, i, "x" * 40) for i in range(20)]
    data = encode_frames(batch, max_frame_bytes=200)
    assert FrameDecoder(max_frame_bytes=200).feed(data) == batch
    assert data.count(b"\x00\x00\x00") > 1  # more than one length prefix


def test_a_message_too_large_for_any_frame_is_left_out_and_named() -> None:
    batch = [(Kind.REPLY, 1, "x"), (Kind.REPLY, 2, "y" * 300), (Kind.REPLY, 3, "z")]
    data, left_out = encode_sendable(batch, max_frame_bytes=200)
    assert left_out == [1]
    assert FrameDecoder(max_frame_bytes=200).feed(data) == [batch[0], batch[2]]


def test_the_hello_carries_the_format_version() -> None:
    assert check_hello(hello("gateway")) == "gateway"
    with pytest.raises(LinkProtocolError, match="format"):
        check_hello((Kind.HELLO, FORMAT_VERSION + 1, "gateway"))
    with pytest.raises(LinkProtocolError):
        check_hello((Kind.REQUEST, FORMAT_VERSION, "gateway"))


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=300))
def test_any_bytes_are_messages_or_a_clean_error(data: bytes, chunk: int) -> None:
    decoder = FrameDecoder(max_frame_bytes=256)
    try:
        for start in range(0, len(data), chunk):
            for message in decoder.feed(data[start : start + chunk]):
                assert type(message) is tuple
                assert type(message[0]) is int
    except LinkProtocolError:
        return
    assert decoder.buffered <= 4 + 256


@given(st.binary(max_size=200))
def test_any_body_behind_a_right_length_is_messages_or_a_clean_error(body: bytes) -> None:
    try:
        messages = FrameDecoder().feed(struct.pack("!I", len(body)) + body)
    except LinkProtocolError:
        return
    assert all(type(m) is tuple and m and type(m[0]) is int for m in messages)
