"""The shards' id entropy: fresh CSPRNG bytes, read ahead in blocks, never repeated."""

from __future__ import annotations

import os

import pytest

from leasehold.core._routing import ID_ENTROPY_BYTES
from leasehold.shards import _entropy
from leasehold.shards._entropy import buffered_entropy


def test_each_draw_is_fifteen_fresh_bytes_across_block_reads() -> None:
    draw = buffered_entropy(ids_per_read=8)
    drawn = [draw() for _ in range(100)]  # 13 block reads
    assert all(isinstance(b, bytes) and len(b) == ID_ENTROPY_BYTES for b in drawn)
    assert len(set(drawn)) == len(drawn)


def test_blocks_come_from_os_urandom(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []

    def counting_urandom(n: int) -> bytes:
        reads.append(n)
        return os.getrandom(n)

    monkeypatch.setattr(os, "urandom", counting_urandom)
    draw = buffered_entropy(size=4, ids_per_read=3)
    for _ in range(7):
        draw()
    assert reads == [12, 12, 12]


def test_a_forked_child_does_not_reuse_its_parents_block(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = iter([b"A1A2A3A4", b"B1B2B3B4"])
    monkeypatch.setattr(os, "urandom", lambda n: next(blocks))
    draw = buffered_entropy(size=2, ids_per_read=4)
    assert draw() == b"A1"
    _entropy._after_fork_in_child()  # what os.register_at_fork runs in a child
    assert draw() == b"B1"  # not A2: the parent hands that one out
    assert draw() == b"B2"


def test_rejects_sizes_that_cannot_make_ids() -> None:
    with pytest.raises(ValueError, match="positive"):
        buffered_entropy(size=0)
