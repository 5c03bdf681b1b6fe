"""What the callers of each scenario do, in the client processes.

Each behaviour is built from a phase's plain `params` (they cross a process
boundary) and the run's slot table. Callers never keep going past the phase's
end: a caller holding a booking when the phase ends cancels it at once (and
that cancel is recorded like any other call), so the next phase starts from
free slots.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from leasehold.bench._churn import churn
from leasehold.bench._history import RESOURCE_EXHAUSTED, Op, Outcome
from leasehold.bench._loadgen import NANOS, Behaviour, Ctx, PhaseSpec
from leasehold.core import SlotKey

# How long a storm setup caller waits before asking again for a lease the server shed.
SHED_RETRY_S = 0.05
SLOT_UNAVAILABLE = "SLOT_UNAVAILABLE"  # the BookingFailure cause of a full slot


def behaviour_for(spec: PhaseSpec, keys: list[SlotKey]) -> Behaviour:
    kinds: dict[str, type[_Base]] = {
        "health": Health,
        "flow": Flow,
        "contention": Contention,
        "storm-setup": StormSetup,
        "storm-load": StormLoad,
        "mixed": Mixed,
        "inventory-churn": Churn,
    }
    return kinds[spec.scenario](spec.params, keys)


class _Base:
    def __init__(self, params: dict[str, Any], keys: list[SlotKey]) -> None:
        self.params = params
        self.keys = keys
        self.slots: list[int] = list(params.get("slots", []))

    async def caller(self, ctx: Ctx, index: int) -> None:
        while ctx.running():
            await self.arrival(ctx, index, 0)

    async def arrival(self, ctx: Ctx, index: int, intended_ns: int) -> None:
        raise NotImplementedError

    async def alongside(self, ctx: Ctx) -> None:
        return None


async def _pause(ctx: Ctx, seconds: float) -> None:
    """Sleep, but no later than the end of the phase."""
    left = (ctx.spec.end_ns - time.time_ns()) / NANOS
    await asyncio.sleep(max(0.0, min(seconds, left)))


def _applied(op: Op) -> bool:
    return op.outcome is Outcome.APPLIED


class Health(_Base):
    """The ceiling: the server's health Check, no work behind it."""

    async def arrival(self, ctx: Ctx, index: int, intended_ns: int) -> None:
        await ctx.call(ctx.client.health(intended_ns))


class Flow(_Base):
    """The booking funnel on uncontended slots: CheckAvailability, CreateLease, CreateBooking."""

    async def arrival(self, ctx: Ctx, index: int, intended_ns: int) -> None:
        client = ctx.client
        slot = ctx.rng.choice(self.slots)
        await ctx.call(client.check(slot, intended_ns))
        expiry = time.time_ns() + round(self.params["lease_ttl_s"] * NANOS)
        lease = await ctx.call(client.lease(slot, ctx.name("r"), expiry))
        if _applied(lease):
            user = ctx.name("u")
            await ctx.call(
                client.book(slot, lease_id=lease.lease_id, token=ctx.name("t"), user=user)
            )


class Contention(_Base):
    """Callers race for few slots: lease, then book (after thinking) or leave it to expire.

    A booked spot is held for a while, then cancelled, so the race goes on. A share of
    granted leases and of bookings is asked for twice (an idempotent replay), and a
    share of bookers think past the lease's lifetime (their booking must be refused
    LEASE_EXPIRED).
    """

    async def arrival(self, ctx: Ctx, index: int, intended_ns: int) -> None:
        p, client, rng = self.params, ctx.client, ctx.rng
        slot = rng.choice(self.slots)
        reference = ctx.name("r")
        expiry = max(intended_ns, time.time_ns()) + round(p["lease_ttl_s"] * NANOS)
        lease = await ctx.call(client.lease(slot, reference, expiry, intended=intended_ns))
        if not _applied(lease):
            return  # refused: race again
        if rng.random() < p["replay_share"]:
            # The identical request again: the server must answer with the same lease.
            await ctx.call(client.lease(slot, reference, expiry))
        if rng.random() >= p["book_share"]:
            return  # left to expire
        late = rng.random() < p["late_share"]
        think = p["lease_ttl_s"] + 0.2 if late else rng.uniform(0, 2 * p["think_s"])
        await _pause(ctx, think)
        if not ctx.running():
            return
        token, user = ctx.name("t"), ctx.name("u")
        booking = await ctx.call(client.book(slot, lease_id=lease.lease_id, token=token, user=user))
        if rng.random() < p["replay_share"]:
            await ctx.call(client.book(slot, lease_id=lease.lease_id, token=token, user=user))
        if _applied(booking):
            await _pause(ctx, rng.uniform(0, 2 * p["hold_s"]))
            await ctx.call(client.cancel(booking.booking_id, slot))


class Churn(Contention):
    """Contention on the churn slots while process 0's churner replaces their windows.

    A share of arrivals (`read_share`) first reads their slot's availability, so the
    checker also sees what a reader gets while capacities move.
    """

    async def arrival(self, ctx: Ctx, index: int, intended_ns: int) -> None:
        if ctx.rng.random() < self.params.get("read_share", 0.0):
            await ctx.call(ctx.client.check(ctx.rng.choice(self.slots), intended_ns))
            intended_ns = 0  # the lease below goes when the read is answered
        await super().arrival(ctx, index, intended_ns)

    async def alongside(self, ctx: Ctx) -> None:
        await churn(ctx, self.params, self.keys)


class StormSetup(_Base):
    """Grant `per_worker` leases over the storm slots, all expiring at `expiry_ns`.

    The worker's callers run side by side: each claims a lease of the count and a slot
    before it asks, so they never ask for more than the count, nor crowd one slot.
    """

    def __init__(self, params: dict[str, Any], keys: list[SlotKey]) -> None:
        super().__init__(params, keys)
        self.left = int(params["per_worker"])
        self.next = int(params.get("offset", 0))

    async def caller(self, ctx: Ctx, index: int) -> None:
        while ctx.running() and self.left > 0:
            self.left -= 1
            await self._grant(ctx, self._claim_slot())

    def _claim_slot(self) -> int:
        slot = self.slots[self.next % len(self.slots)]
        self.next += 1
        return slot

    async def _grant(self, ctx: Ctx, slot: int) -> None:
        """Ask for one lease until it is granted or answered otherwise for good."""
        expiry = int(self.params["expiry_ns"])
        while ctx.running():
            op = await ctx.call(ctx.client.lease(slot, ctx.name("s"), expiry))
            if op.status == RESOURCE_EXHAUSTED:
                # Shed or refused while the server was behind: nothing was applied, so
                # the same lease is asked for again after a pause, not counted as made.
                await _pause(ctx, SHED_RETRY_S)
            elif op.cause == SLOT_UNAVAILABLE:
                slot = self._claim_slot()  # that slot is full: the next one
            else:
                return  # granted, or an answer asking again would not change

    async def arrival(self, ctx: Ctx, index: int, intended_ns: int) -> None:
        raise NotImplementedError("storm setup is closed-loop")


class StormLoad(_Base):
    """Load on other slots while the storm's leases expire, and pollers that watch them go.

    Arrivals alternate CheckAvailability and short CreateLeases on the background
    slots. From the storm instant on, pollers read the storm slots (this worker's
    share) over and over until each shows all its spots free again.
    """

    async def caller(self, ctx: Ctx, index: int) -> None:
        n = index
        while ctx.running():
            await self.arrival(ctx, n, 0)
            n += ctx.spec.concurrency

    async def arrival(self, ctx: Ctx, index: int, intended_ns: int) -> None:
        slot = self.slots[index % len(self.slots)]
        if index % 2 and not self.params.get("leases_only"):
            await ctx.call(ctx.client.check(slot, intended_ns))
        else:
            # Closed loop has no intended time (0): the lease lives from now, not from 1970.
            start = max(intended_ns, time.time_ns())
            expiry = start + round(self.params["lease_ttl_s"] * NANOS)
            await ctx.call(ctx.client.lease(slot, ctx.name("b"), expiry, intended=intended_ns))

    async def alongside(self, ctx: Ctx) -> None:
        storm: list[int] = list(self.params.get("storm_slots", []))
        mine = storm[ctx.spec.worker :: ctx.spec.workers]
        if not mine:
            return
        instant = int(self.params["expiry_ns"])
        pollers = int(self.params["pollers"])
        groups = [mine[i::pollers] for i in range(pollers)]
        await asyncio.sleep(max(0.0, (instant - time.time_ns()) / NANOS))
        async with asyncio.TaskGroup() as tg:
            for group in groups:
                if group:
                    tg.create_task(self._poll(ctx, group, instant))

    async def _poll(self, ctx: Ctx, slots: list[int], instant: int) -> None:
        pending = list(slots)
        first = True
        while pending and ctx.running():
            still = []
            for slot in pending:
                op = await ctx.call(ctx.client.check(slot, instant if first else 0))
                if op.count != self.params["spots"][str(slot)]:
                    still.append(slot)
            pending, first = still, False


@dataclass(frozen=True, slots=True)
class _Held:
    lease_id: str
    slot: int
    expiry_ns: int
    version: str
    reference: str


@dataclass
class _Caller:
    """A mixed-scenario caller's own leases and bookings."""

    user: str
    leases: list[_Held] = field(default_factory=list)
    # (booking_id, slot, version)
    bookings: list[tuple[str, int, str]] = field(default_factory=list)


class Mixed(_Base):
    """A weighted blend of every RPC the server offers, v2 and v0.

    Each caller keeps the leases and bookings it made and acts on them (book its
    lease, cancel, reschedule, get, list); it keeps at most `max_bookings`, cancelling
    its oldest first, so slots do not fill up for good.
    """

    OPS = (
        "check",
        "batch",
        "lease",
        "lease_v0",
        "book",
        "book_direct",
        "book_v0",
        "cancel",
        "cancel_v0",
        "reschedule",
        "get",
        "list",
    )

    def __init__(self, params: dict[str, Any], keys: list[SlotKey]) -> None:
        super().__init__(params, keys)
        weights: dict[str, float] = params["mix"]
        self.names = [n for n in self.OPS if weights.get(n, 0) > 0]
        self.weights = [weights[n] for n in self.names]
        self.siblings: dict[tuple[str, str], list[int]] = {}
        for slot in self.slots:
            key = keys[slot]
            self.siblings.setdefault((key.merchant_id, key.service_id), []).append(slot)
        self.callers: dict[int, _Caller] = {}

    async def caller(self, ctx: Ctx, index: int) -> None:
        me = self.callers.setdefault(index, _Caller(ctx.name("u")))
        while ctx.running():
            await self._one(ctx, me, 0)

    async def arrival(self, ctx: Ctx, index: int, intended_ns: int) -> None:
        me = self.callers.setdefault(index % 256, _Caller(ctx.name("u")))
        await self._one(ctx, me, intended_ns)

    async def _one(self, ctx: Ctx, me: _Caller, intended: int) -> None:
        name = ctx.rng.choices(self.names, self.weights)[0]
        await getattr(self, "_" + name)(ctx, me, intended)
        if ctx.rng.random() < self.params["replay_share"] and me.leases:
            held = me.leases[-1]
            # A replay of the caller's last lease request: same reference, same slot.
            await ctx.call(
                ctx.client.lease(held.slot, held.reference, held.expiry_ns, version=held.version)
            )

    def _expiry(self, intended: int) -> int:
        return max(intended, time.time_ns()) + int(self.params["lease_ttl_s"] * NANOS)

    async def _check(self, ctx: Ctx, me: _Caller, intended: int) -> None:
        await ctx.call(ctx.client.check(ctx.rng.choice(self.slots), intended))

    async def _batch(self, ctx: Ctx, me: _Caller, intended: int) -> None:
        group = ctx.rng.choice(list(self.siblings.values()))
        chosen = ctx.rng.sample(group, min(3, len(group)))
        for op in await ctx.client.batch(chosen, intended):
            ctx.record(op)

    async def _lease(self, ctx: Ctx, me: _Caller, intended: int, version: str = "v2") -> None:
        slot = ctx.rng.choice(self.slots)
        reference = ctx.name("r")
        op = await ctx.call(
            ctx.client.lease(
                slot, reference, self._expiry(intended), version=version, intended=intended
            )
        )
        if _applied(op):
            me.leases.append(_Held(op.lease_id, slot, op.requested_expiry_ns, version, reference))
            del me.leases[:-4]

    async def _lease_v0(self, ctx: Ctx, me: _Caller, intended: int) -> None:
        await self._lease(ctx, me, intended, "v0")

    def _live_lease(self, me: _Caller) -> _Held | None:
        soon = time.time_ns() + NANOS // 10
        me.leases[:] = [lease for lease in me.leases if lease.expiry_ns > soon]
        return me.leases.pop() if me.leases else None

    async def _book(self, ctx: Ctx, me: _Caller, intended: int, direct: bool = False) -> None:
        await self._make_room(ctx, me)
        lease = None if direct else self._live_lease(me)
        slot = ctx.rng.choice(self.slots) if lease is None else lease.slot
        op = await ctx.call(
            ctx.client.book(
                slot,
                lease_id="" if lease is None else lease.lease_id,
                token=ctx.name("t"),
                user=me.user,
                intended=intended,
            )
        )
        if _applied(op):
            me.bookings.append((op.booking_id, op.reply_slot if op.reply_slot >= 0 else slot, "v2"))

    async def _book_direct(self, ctx: Ctx, me: _Caller, intended: int) -> None:
        await self._book(ctx, me, intended, direct=True)

    async def _book_v0(self, ctx: Ctx, me: _Caller, intended: int) -> None:
        await self._make_room(ctx, me)
        lease = self._live_lease(me)
        if lease is None:
            await self._lease(ctx, me, intended, "v0")
            lease = self._live_lease(me)
            if lease is None:
                return
            intended = 0
        op = await ctx.call(
            ctx.client.book(
                lease.slot, lease_id=lease.lease_id, user=me.user, version="v0", intended=intended
            )
        )
        if _applied(op):
            me.bookings.append((op.booking_id, lease.slot, "v0"))

    async def _make_room(self, ctx: Ctx, me: _Caller) -> None:
        while len(me.bookings) >= self.params["max_bookings"]:
            booking_id, slot, version = me.bookings.pop(0)
            await ctx.call(ctx.client.cancel(booking_id, slot, version=version))

    async def _cancel(self, ctx: Ctx, me: _Caller, intended: int, version: str = "v2") -> None:
        if not me.bookings:
            await self._check(ctx, me, intended)
            return
        booking_id, slot, _ = me.bookings.pop(0)
        await ctx.call(ctx.client.cancel(booking_id, slot, version=version, intended=intended))

    async def _cancel_v0(self, ctx: Ctx, me: _Caller, intended: int) -> None:
        await self._cancel(ctx, me, intended, "v0")

    async def _reschedule(self, ctx: Ctx, me: _Caller, intended: int) -> None:
        if not me.bookings:
            await self._check(ctx, me, intended)
            return
        index = ctx.rng.randrange(len(me.bookings))
        booking_id, slot, version = me.bookings[index]
        key = self.keys[slot]
        others = [s for s in self.siblings[(key.merchant_id, key.service_id)] if s != slot]
        if not others:
            return
        target = ctx.rng.choice(others)
        op = await ctx.call(ctx.client.reschedule(booking_id, slot, target, intended))
        if _applied(op) and op.reply_slot >= 0:
            me.bookings[index] = (booking_id, op.reply_slot, version)

    async def _get(self, ctx: Ctx, me: _Caller, intended: int) -> None:
        if not me.bookings:
            await ctx.call(ctx.client.list(me.user, intended))
            return
        await ctx.call(ctx.client.get(ctx.rng.choice(me.bookings)[0], intended))

    async def _list(self, ctx: Ctx, me: _Caller, intended: int) -> None:
        await ctx.call(ctx.client.list(me.user, intended))
