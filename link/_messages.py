"""The link's messages, checked: what a request and a reply must look like on the wire."""

from __future__ import annotations

import math
from dataclasses import dataclass

from leasehold.link._framing import Kind, LinkProtocolError

# Request ids wrap here: far more than a link's bound on requests in flight.
MAX_REQUEST_ID = (1 << 31) - 1


@dataclass(frozen=True, slots=True)
class Request:
    request_id: int
    shard_id: int
    # Seconds the caller had left when the gateway sent it; None: no deadline.
    remaining_s: float | None
    command: object  # still encoded: shards' codec decodes it


def request(
    request_id: int, shard_id: int, remaining_s: float | None, command: object
) -> tuple[object, ...]:
    return (Kind.REQUEST, request_id, shard_id, remaining_s, command)


def parse_request(message: tuple[object, ...]) -> Request:
    if len(message) != 5:
        raise LinkProtocolError("a request is not an array of 5")
    _, request_id, shard_id, remaining, command = message
    if type(request_id) is not int or not 0 <= request_id <= MAX_REQUEST_ID:
        raise LinkProtocolError("a request's id is not a request id")
    if type(shard_id) is not int or shard_id < 0:
        raise LinkProtocolError("a request's shard is not a shard id")
    if remaining is not None and (type(remaining) is not float or math.isnan(remaining)):
        raise LinkProtocolError("a request's remaining time is not seconds")
    return Request(request_id, shard_id, remaining, command)


def reply(request_id: int, encoded: object, held_s: float) -> tuple[object, ...]:
    """`held_s`: seconds from the request's receipt in the shard process to its reply,
    so that the gateway can tell the time its call spent outside the shard (the link
    carries durations, never one process's clock)."""
    return (Kind.REPLY, request_id, encoded, held_s)


def parse_reply(message: tuple[object, ...]) -> tuple[int, object, float]:
    if len(message) != 4 or type(message[1]) is not int:
        raise LinkProtocolError("a reply is not [REPLY, id, reply, held_s]")
    held = message[3]
    if type(held) is not float or not 0.0 <= held < math.inf:
        raise LinkProtocolError("a reply's held time is not seconds")
    return message[1], message[2], held


def parse_stats_request(message: tuple[object, ...]) -> int:
    if len(message) != 2 or type(message[1]) is not int:
        raise LinkProtocolError("a stats request is not [STATS, id]")
    return message[1]
