"""The checker against simulated servers: a faithful one is never flagged, broken ones are.

A tiny model of one slot under section 8's rules (serialised, like a shard) applies
random leases, bookings, cancels, reads and inventory changes at random instants;
each request's client send and receive times bracket its instant by a random delay,
as on a real network. The faithful model must pass every seed (no false alarm from
any interleaving); each broken model (a grant that ignores a lowered capacity, a
grant on a removed slot, a removal that does not release its leases) must be caught
on some seed. Pure and seeded: no I/O, no clock.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
from _bench_history import History, slot

from leasehold.bench._checker import CheckResult


class Bug(enum.Enum):
    NONE = "none"
    IGNORES_LOWERING = "ignores_lowering"  # grants up to the highest capacity it has had
    GRANTS_WHEN_REMOVED = "grants_when_removed"
    KEEPS_LEASES_ON_REMOVAL = "keeps_leases_on_removal"


@dataclass
class Server:
    """One slot, serialised: holders are live leases plus CONFIRMED bookings."""

    capacity: int
    bug: Bug
    removed: bool = False
    highest: int = 0
    leases: dict[str, int] = field(default_factory=dict)  # live lease -> expiry (ms)
    bookings: set[str] = field(default_factory=set)

    expiries: dict[str, int] = field(default_factory=dict)  # every lease granted

    def settle(self, now: int) -> None:
        self.leases = {lid: exp for lid, exp in self.leases.items() if exp > now}

    def expired(self, lease_id: str, now: int) -> bool:
        return self.expiries[lease_id] <= now

    def holders(self) -> int:
        return len(self.leases) + len(self.bookings)

    def may_grant(self) -> bool:
        if self.removed:
            return self.bug is Bug.GRANTS_WHEN_REMOVED and self.holders() < self.capacity
        limit = self.highest if self.bug is Bug.IGNORES_LOWERING else self.capacity
        return self.holders() < limit

    def change(self, capacity: int | None) -> None:
        if capacity is None:
            self.removed = True
            if self.bug is not Bug.KEEPS_LEASES_ON_REMOVAL:
                self.leases.clear()
            return
        self.removed = False
        self.capacity = capacity
        self.highest = max(self.highest, capacity)


def build(seed: int, bug: Bug) -> History:
    rng = random.Random(seed)
    server = Server(capacity=2, bug=bug, highest=2)
    h = History()
    held: list[str] = []  # leases granted and not yet booked (by the clients' knowledge)
    booked: list[str] = []
    now = 0
    for n in range(400):
        now += rng.randint(1, 8)
        send, recv = now - rng.randint(0, 6), now + rng.randint(0, 6)
        server.settle(now)
        roll = rng.random()
        if roll < 0.12:
            new = None if rng.random() < 0.3 else rng.randint(0, 4)
            server.change(new)
            h.change(send, recv, new or 0, removed=new is None)
        elif roll < 0.55:
            lid = f"L{n}"
            expiry = now + rng.randint(5, 60)
            if server.may_grant():
                server.leases[lid] = server.expiries[lid] = expiry
                h.lease(send, recv, lid, expiry_ms=expiry)
                held.append(lid)
            else:
                h.refused_lease(send, recv, f"ref-{lid}")
        elif roll < 0.75 and held:
            lid = held.pop(rng.randrange(len(held)))
            if lid in server.leases and not server.removed:
                del server.leases[lid]
                server.bookings.add(f"B{lid}")
                h.book(send, recv, f"B{lid}", lease_id=lid)
                booked.append(f"B{lid}")
            else:
                cause = "LEASE_EXPIRED" if server.expired(lid, now) else "SLOT_UNAVAILABLE"
                h.book(send, recv, "", lease_id=lid, cause=cause)
        elif roll < 0.85 and booked:
            bid = booked.pop(rng.randrange(len(booked)))
            server.bookings.discard(bid)
            h.cancel(send, recv, bid)
        elif not server.removed:
            h.read(send, recv, max(0, server.capacity - server.holders()))
    return h


def simulate(seed: int, bug: Bug) -> CheckResult:
    return build(seed, bug).check(slot(2))


SEEDS = range(60)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_faithful_server_is_never_flagged(seed: int) -> None:
    result = simulate(seed, Bug.NONE)
    assert result.ok, [v.message for v in result.violations]


@pytest.mark.parametrize("bug", [b for b in Bug if b is not Bug.NONE])
def test_each_broken_server_is_caught(bug: Bug) -> None:
    caught = [seed for seed in SEEDS if not simulate(seed, bug).ok]
    assert caught, f"{bug.value}: no seed of {len(SEEDS)} caught it"


def test_the_simulation_exercises_what_it_claims() -> None:
    seen: Counter[str] = Counter()
    for seed in range(5):
        for op in build(seed, Bug.NONE).ops:
            seen[f"{op.kind.value} {op.outcome.value}{' removed' if op.removed else ''}"] += 1
    for what in (
        "inventory applied",
        "inventory applied removed",
        "lease applied",
        "lease refused",
        "book applied",
        "book refused",
        "cancel applied",
        "check applied",
    ):
        assert seen[what] > 0, (what, seen)
