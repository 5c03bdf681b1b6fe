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


def parse_reply(message: tuple[object, ...]) -> tuple[int, object]:
    if len(message) != 3 or type(message[1]) is not int:
        raise LinkProtocolError("a reply is not [REPLY, id, reply]")
    return message[1], message[2]


def parse_stats_request(message: tuple[object, ...]) -> int:
    if len(message) != 2 or type(message[1]) is not int:
        raise LinkProtocolError("a stats request is not [STATS, id]")
    return message[1]
