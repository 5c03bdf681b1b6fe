"""Routing: golden buckets (stable across processes and releases), shard choice, id parsing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _core_helpers import CUT_A, YOGA, book, book_v2, grant, lease_v0, lease_v2, new_state

from leasehold.core import (
    BOOKING_ID_PREFIX,
    LEASE_ID_PREFIX,
    bucket_of_id,
    routing_bucket,
    shard_for_bucket,
    shard_for_key,
)

# Computed once with blake2b(person=b"leasehold-route", digest_size=4) and frozen here:
# changing any of them re-routes every stored lease and booking id to another shard.
GOLDEN = [
    pytest.param("m1", "haircut", 0x93BDD9C6, id="m1-haircut"),
    pytest.param("", "", 0x7711CADB, id="empty"),
    pytest.param("merchant-ü", "svc", 0xE55D083F, id="non-ascii"),
    pytest.param("m1", "cut", 0x8A7DCE92, id="m1-cut"),
    pytest.param("m2", "yoga", 0xC1C60236, id="m2-yoga"),
]


@pytest.mark.parametrize(("merchant_id", "service_id", "bucket"), GOLDEN)
def test_routing_bucket_golden_values(merchant_id: str, service_id: str, bucket: int) -> None:
    assert routing_bucket(merchant_id, service_id) == bucket


def test_routing_bucket_is_the_same_in_another_process() -> None:
    # Python's hash() is salted per process; the bucket must not be.
    code = "from leasehold.core import routing_bucket; print(routing_bucket('m1', 'haircut'))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert int(out.stdout) == 0x93BDD9C6


def test_routing_bucket_separates_merchant_from_service() -> None:
    assert routing_bucket("m1", "haircut") != routing_bucket("m1h", "aircut")
    assert routing_bucket("ab", "") != routing_bucket("", "ab")


def test_routing_bucket_is_32_bits() -> None:
    for i in range(200):
        assert 0 <= routing_bucket(f"m{i}", "svc") < 2**32


@pytest.mark.parametrize("shard_count", [1, 2, 3, 7, 64, 1000])
def test_shard_for_key_is_in_range_and_stable(shard_count: int) -> None:
    for i in range(100):
        merchant_id = f"merchant-{i}"
        shard = shard_for_key(merchant_id, "svc", shard_count)
        assert 0 <= shard < shard_count
        assert shard == shard_for_key(merchant_id, "svc", shard_count)
        assert shard == shard_for_bucket(routing_bucket(merchant_id, "svc"), shard_count)


def test_shard_for_key_golden_values() -> None:
    assert [shard_for_key("m1", "haircut", n) for n in (1, 3, 7, 64)] == [0, 1, 2, 6]
    assert [shard_for_key("merchant-ü", "svc", n) for n in (1, 3, 7, 64)] == [0, 0, 6, 63]


def test_shard_for_key_spreads_keys_over_shards() -> None:
    used = {shard_for_key(f"merchant-{i}", "svc", 8) for i in range(200)}
    assert used == set(range(8))


# ----- ids ------------------------------------------------------------------------------


def test_bucket_of_our_lease_and_booking_ids() -> None:
    state = new_state()
    cut = grant(state, lease_v2(CUT_A))
    yoga = grant(state, lease_v0(YOGA))
    booking = book(state, book_v2(YOGA))
    assert bucket_of_id(LEASE_ID_PREFIX, cut.lease_id) == routing_bucket("m1", "cut")
    assert bucket_of_id(LEASE_ID_PREFIX, yoga.lease_id) == routing_bucket("m2", "yoga")
    assert bucket_of_id(BOOKING_ID_PREFIX, booking.booking_id) == routing_bucket("m2", "yoga")
    # A lease id is no booking id, and the other way round.
    assert bucket_of_id(BOOKING_ID_PREFIX, cut.lease_id) is None
    assert bucket_of_id(LEASE_ID_PREFIX, booking.booking_id) is None


def test_ids_have_the_documented_shape() -> None:
    lease = grant(new_state(), lease_v2(CUT_A))
    assert len(lease.lease_id) == 40
    assert lease.lease_id[:2] == "L1"
    assert lease.lease_id[2:10] == f"{routing_bucket('m1', 'cut'):08x}"
    assert set(lease.lease_id[2:]) <= set("0123456789abcdef")


GOOD = "L1" + "93bdd9c6" + "0123456789abcdef0123456789abcd"  # prefix, bucket, 15 bytes


def _with(index: int, char: str) -> str:
    return GOOD[:index] + char + GOOD[index + 1 :]


def test_good_id_parses() -> None:
    assert len(GOOD) == 40
    assert bucket_of_id(LEASE_ID_PREFIX, GOOD) == 0x93BDD9C6
    assert bucket_of_id(LEASE_ID_PREFIX, "L1" + "0" * 38) == 0
    assert bucket_of_id(LEASE_ID_PREFIX, "L1" + "f" * 38) == 0xFFFFFFFF


@pytest.mark.parametrize(
    "some_id",
    [
        pytest.param("", id="empty"),
        pytest.param("B1" + GOOD[2:], id="booking-prefix"),
        pytest.param("L2" + GOOD[2:], id="other-version"),
        pytest.param("l1" + GOOD[2:], id="lowercase-prefix"),
        pytest.param(GOOD[:-1], id="one-short"),
        pytest.param(GOOD + "0", id="one-long"),
        pytest.param(GOOD[:10], id="bucket-only"),
        pytest.param(_with(4, "D"), id="uppercase-in-bucket"),
        pytest.param(_with(20, "A"), id="uppercase-in-token"),
        pytest.param(_with(3, "g"), id="non-hex-in-bucket"),
        pytest.param(_with(30, "z"), id="non-hex-in-token"),
        pytest.param(_with(2, " "), id="leading-space-in-bucket"),
        pytest.param(_with(9, " "), id="trailing-space-in-bucket"),
        pytest.param(_with(39, "\n"), id="newline"),
        pytest.param(_with(15, "\t"), id="tab"),
        pytest.param(_with(5, "_"), id="underscore-in-bucket"),
        pytest.param(_with(25, "_"), id="underscore-in-token"),
        pytest.param(_with(2, "+"), id="plus-sign"),
        pytest.param(_with(2, "-"), id="minus-sign"),
        pytest.param("L1" + "0x" + GOOD[4:], id="0x-prefix"),
        pytest.param(_with(4, "\u0663"), id="arabic-indic-digit"),
        pytest.param(_with(4, "\uff11"), id="fullwidth-digit"),
        pytest.param(" " + GOOD[:-1], id="leading-space"),
    ],
)
def test_bucket_of_malformed_id_is_none(some_id: str) -> None:
    assert bucket_of_id(LEASE_ID_PREFIX, some_id) is None
