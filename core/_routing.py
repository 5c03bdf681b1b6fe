"""Routing: which shard owns a (merchant_id, service_id), and ids that carry that answer.

A key's *bucket* is a stable 32-bit digest of (merchant_id, service_id); the
owning shard is `bucket % shard_count`. Lease and booking ids embed the bucket,
so a later call that names only an id reaches the owning shard with no global
lookup, and stays routable if the shard count changes.
"""

from __future__ import annotations

import hashlib

BUCKET_HEX_DIGITS = 8
ID_ENTROPY_BYTES = 15  # 120 random bits: unguessable
LEASE_ID_PREFIX = "L1"
BOOKING_ID_PREFIX = "B1"
_ID_LENGTH = 2 + BUCKET_HEX_DIGITS + ID_ENTROPY_BYTES * 2


def routing_bucket(merchant_id: str, service_id: str) -> int:
    """A stable digest of the routing key; never Python's per-process `hash()`."""
    digest = hashlib.blake2b(
        merchant_id.encode() + b"\x00" + service_id.encode(),
        digest_size=4,
        person=b"leasehold-route",
    ).digest()
    return int.from_bytes(digest, "big")


def shard_for_bucket(bucket: int, shard_count: int) -> int:
    return bucket % shard_count


def shard_for_key(merchant_id: str, service_id: str, shard_count: int) -> int:
    return shard_for_bucket(routing_bucket(merchant_id, service_id), shard_count)


def make_id(prefix: str, bucket: int, entropy: bytes) -> str:
    """An id: a kind-and-format prefix, the routing bucket, then the random part, in hex."""
    return id_from_head(id_head(prefix, bucket), entropy)


def id_head(prefix: str, bucket: int) -> str:
    """The fixed start of every id of this kind for this bucket (callers may keep it)."""
    return f"{prefix}{bucket:08x}"


def id_from_head(head: str, entropy: bytes) -> str:
    """`make_id` from a kept `id_head`: the hot path formats the bucket once per slot."""
    if len(entropy) != ID_ENTROPY_BYTES:
        raise ValueError(f"id entropy must be {ID_ENTROPY_BYTES} bytes")
    return head + entropy.hex()


def bucket_of_id(prefix: str, some_id: str) -> int | None:
    """The routing bucket carried by an id of ours, or None if it is not one."""
    if len(some_id) != _ID_LENGTH or not some_id.startswith(prefix):
        return None
    hex_part = some_id[len(prefix) : len(prefix) + BUCKET_HEX_DIGITS]
    token = some_id[len(prefix) + BUCKET_HEX_DIGITS :]
    if not (_is_in(hex_part, _HEX) and _is_in(token, _HEX)):
        return None
    return int(hex_part, 16)


_HEX = frozenset("0123456789abcdef")


def _is_in(text: str, alphabet: frozenset[str]) -> bool:
    return all(ch in alphabet for ch in text)
