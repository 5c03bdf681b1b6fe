"""The deadline heap alone: every live lease is popped exactly at its instant, never before."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leasehold.core._deadlines import Deadlines

MS = 1_000_000


def _drain_stepwise(
    deadlines: Deadlines,
    expiry: dict[str, int],
    live: set[str],
    instants: list[int],
    limit: int | None = None,
) -> None:
    for now in instants:
        due = _pop_all_due(deadlines, now, lambda i: expiry[i] if i in live else None, limit)
        assert sorted(due) == sorted(i for i in live if expiry[i] <= now)
        live.difference_update(due)
        next_ns = deadlines.next_ns()
        if live:
            assert next_ns is not None
            assert next_ns <= min(expiry[i] for i in live)
        else:
            assert next_ns is None or next_ns > now


def _pop_all_due(
    deadlines: Deadlines, now: int, live_expiry: Callable[[str], int | None], limit: int | None
) -> list[str]:
    """pop_due at `now`; with a limit, chunk after chunk while next_ns() says more is due."""
    if limit is None:
        return deadlines.pop_due(now, live_expiry)
    due: list[str] = []
    calls = 0
    while (next_ns := deadlines.next_ns()) is not None and next_ns <= now:
        chunk = deadlines.pop_due(now, live_expiry, limit)
        assert len(chunk) <= limit
        due += chunk
        calls += 1
        assert calls < 10_000, "chunks that never finish"
    return due


def test_a_bucket_split_many_times_expires_each_lease_at_its_nanosecond() -> None:
    deadlines = Deadlines()
    rng = random.Random(7)
    base = 5 * MS
    expiry = {f"l{n}": base + rng.randrange(MS) for n in range(200)}
    for lease_id, at in expiry.items():  # out of order within one bucket
        deadlines.add(at, lease_id)
    live = set(expiry)
    _drain_stepwise(deadlines, expiry, live, [*sorted(set(expiry.values())), base + MS])
    assert not live
    assert deadlines.next_ns() is None


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "consume", "pop"]),
            st.integers(0, 3 * MS),
        ),
        max_size=80,
    ),
    st.sampled_from([None, 1, 3]),
)
def test_adds_consumptions_and_pops_interleaved_keep_pops_exact(
    steps: list[tuple[str, int]], limit: int | None
) -> None:
    """With a limit too: chunks of at most `limit` add up to exactly what is due."""
    deadlines = Deadlines()
    expiry: dict[str, int] = {}
    live: set[str] = set()
    now = 0
    for n, (kind, value) in enumerate(steps):
        if kind == "add":
            lease_id = f"l{n}"
            expiry[lease_id] = now + 1 + value % (MS // 2)  # often into a bucket already split
            live.add(lease_id)
            deadlines.add(expiry[lease_id], lease_id)
        elif kind == "consume" and live:
            live.discard(sorted(live)[value % len(live)])  # stale in its bucket from now on
        else:
            now += value % (MS // 4)
            _drain_stepwise(deadlines, expiry, live, [now], limit)


def test_an_earlier_lease_added_to_a_split_bucket_still_expires_at_its_instant() -> None:
    deadlines = Deadlines()
    base = 9 * MS
    expiry = {"a": base + 100, "b": base + 900}
    for lease_id, at in expiry.items():
        deadlines.add(at, lease_id)
    live = set(expiry)
    _drain_stepwise(deadlines, expiry, live, [base + 200])  # splits the bucket
    expiry["c"] = base + 500  # earlier than "b", into the bucket already split
    live.add("c")
    deadlines.add(expiry["c"], "c")
    _drain_stepwise(deadlines, expiry, live, [base + 499, base + 500, base + 899, base + 900])
    assert not live


@pytest.mark.parametrize("late_ns", [0, 2 * MS], ids=["at-the-instant", "buckets-later"])
def test_a_storm_due_at_one_instant_comes_in_chunks_of_the_limit(late_ns: int) -> None:
    deadlines = Deadlines()
    at = 7 * MS + 123
    for n in range(1000):
        deadlines.add(at, f"l{n}")
    now = at + late_ns
    chunks = []
    while (next_ns := deadlines.next_ns()) is not None and next_ns <= now:
        chunks.append(deadlines.pop_due(now, lambda i: at, limit=300))
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
    assert [i for c in chunks for i in c] == [f"l{n}" for n in range(1000)]
    assert deadlines.next_ns() is None


def test_a_bucket_filled_out_of_order_is_still_taken_in_chunks() -> None:
    deadlines = Deadlines()
    base = 11 * MS
    expiry = {f"l{n}": base + 999 - n for n in range(10)}  # each earlier than the last
    for lease_id, at in expiry.items():
        deadlines.add(at, lease_id)
    now = base + 999  # inside the bucket: all due
    chunks = []
    while (next_ns := deadlines.next_ns()) is not None and next_ns <= now:
        chunks.append(deadlines.pop_due(now, expiry.get, limit=4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert [i for c in chunks for i in c] == [f"l{n}" for n in reversed(range(10))]
