"""The checker: proves from a run's recorded history that the server kept its promises.

It is a pure function of the history (every request and reply, with client send
and receive times), the slot table (capacity of each slot at the start of the
run, when it had no holders) and a clock slack. It proves, or refutes with the
offending operations:

1. capacity: no grant was made while a slot's holders (live leases, i.e. granted
   and not yet expired nor consumed, plus CONFIRMED bookings) filled its capacity.
   The capacity is the feed's, changed by the run's admin calls if any (_capacity):
   a lowered capacity evicts nobody, a removed slot has none and releases its
   leases (not its bookings); with no change this is "never more holders than spots";
2. availability: every availability answer (CheckAvailability, a
   BatchAvailabilityLookup entry, and the final read after the run, when
   nothing is in flight) equals spots minus the holders at that moment;
3. leases: every booking consumed a lease that was granted, on its slot, and
   live when the booking was made; no lease backs two bookings; no lease is
   refused as expired before its expiry;
4. replays: every idempotent replay (the same lease reference, the same v2
   idempotency token, a v0 booking of the same lease) got the original answer.

Why it is sound (it reports only what the history proves)
- Time. The server decides on its own clock (wall-clock ns, anchored at its
  start). A request was applied at one instant t of that clock with
  send - slack <= t <= recv + slack, where `slack` bounds how far the client's
  clock may be from the server's (the bench measures it). Expiry times in
  replies are the server's own and need no slack: a lease is live over
  [grant, expires_ns), exactly (core expires lazily, at its instant).
- Outcomes. OK with no failure cause: applied. A failure cause, or a status
  that the spec defines as "nothing changed" (INVALID_ARGUMENT, NOT_FOUND,
  ALREADY_EXISTS, RESOURCE_EXHAUSTED, FAILED_PRECONDITION): not applied.
  Anything else (a deadline, a lost connection): *unknown*; it may have been
  applied, possibly granting a lease whose id we never learnt.
- Holders. Each spot-holding chain (a lease, then possibly the booking that
  consumed it, then that booking's reschedules, until expiry or cancel) is one
  *entity*. For each slot every entity gets two interval sets on the server's
  clock: where it is CERTAINLY a holder and where it POSSIBLY is.
  * certain: from the latest instant it can have started (recv + slack of the
    first answer that shows it) to the earliest instant it can have ended
    (the lease's expiry; send - slack of the cancel or reschedule that ended
    it). A lease consumed by a booking holds until min(expiry, the booking's
    end): before the booking instant the lease is live, after it the booking
    holds the spot. A lease whose booking's outcome is unknown still holds
    until its expiry either way.
  * possible: from the earliest instant it can have started (send - slack) to
    the latest it can have ended (the expiry; recv + slack of what ended it;
    infinity if an unknown outcome may have kept it alive). Leases granted by
    unknown-outcome requests are possible holders until their requested
    expiry (a granted expiry is never later than the one asked for).
  Intervals are half-open, [start, end), and merged per entity, so an entity is
  counted once however many pieces it has.
- Check 1 sweeps each slot's certain intervals: if K entities are certainly
  holders at one instant, the last of them was granted while the other K - 1
  held, at an instant no earlier than the latest of their earliest starts; K above
  every capacity the slot may have had since then proves an over-grant, whatever
  the unknowns were (see _Grants). With a fixed capacity: more than `spots`
  certain holders. Nothing uncertain is counted, so no false alarm; a real
  overbooking that lasts longer than a round trip is seen. A lease is certain
  only until the earliest instant of a removal of its slot that may follow its
  grant; a booking of a lease that a removal certainly released is flagged.
- Check 2 brackets each read: at its instant t in W = [send - slack, recv + slack]
  the true holder count H(t) satisfies C <= H(t) <= P, where C counts entities
  certainly holding over all of W and P those possibly holding somewhere in W.
  So the answer must lie in [low - P, high - C], low and high the least and
  largest capacity the slot may have had in W (a lowered capacity below its
  holders reads 0 open). C is computed from sorted
  endpoints as #(start <= W.lo) - #(end <= W.hi), which undercounts only by
  intervals lying strictly inside W (a lower bound keeps it sound). With
  nothing in flight and no unknowns, C == P and the final read must be exact.
- Check 3 flags a booking only when its earliest possible instant is at or after
  the lease's expiry, or its latest possible instant before the lease's earliest
  possible grant; two distinct booking ids from one lease need no timing.
- Check 4 compares answers that each claim success for the same idempotency key
  (they must be identical, whatever the order), and flags a refusal only for a
  replay sent after the original's success was received (a shed,
  RESOURCE_EXHAUSTED, is allowed: it is answered before the key is looked at).

Assumptions (the bench guarantees them): the slots had no holders at the start
and nobody else uses them during the run; operations on one booking are sent
one after another (if they overlap, the checker stops being certain about that
booking's later life instead of guessing an order); the server remembers
lease references and tokens for the whole run (it keeps them for a day).
"""

from __future__ import annotations

import bisect
import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from leasehold.bench._capacity import CapacityTimeline, timelines
from leasehold.bench._history import OK, RESOURCE_EXHAUSTED, BenchSlot, Kind, Op, Outcome

INF = 2**62  # "never ends": later than any wall-clock ns we will meet
MAX_REPORTED_PER_KIND = 20


class ViolationKind(enum.Enum):
    OVER_CAPACITY = "over_capacity"
    AVAILABILITY_MISMATCH = "availability_mismatch"
    BOOKING_WITHOUT_LIVE_LEASE = "booking_without_live_lease"
    LEASE_CONSUMED_TWICE = "lease_consumed_twice"
    LEASE_EXPIRED_EARLY = "lease_expired_early"
    BOOKING_OF_RELEASED_LEASE = "booking_of_released_lease"
    REPLAY_MISMATCH = "replay_mismatch"


@dataclass(frozen=True, slots=True)
class Violation:
    kind: ViolationKind
    message: str
    # The operations that prove it (op ids into the history).
    op_ids: tuple[int, ...]
    slot: int = -1
    # The server-clock instant it concerns, when there is one.
    at_ns: int = 0


@dataclass(frozen=True, slots=True)
class CheckResult:
    violations: tuple[Violation, ...]
    # Violations found beyond those listed, per kind (the list is capped per kind).
    suppressed: dict[str, int]
    operations: int
    unknown_outcomes: int
    entities: int
    reads_checked: int
    max_certain_holders: dict[int, int]

    @property
    def ok(self) -> bool:
        return not self.violations


Interval = tuple[int, int]


@dataclass
class _Entity:
    """One spot-holding chain; its certain and possible intervals per slot."""

    ops: list[int]
    certain: dict[int, list[Interval]] = field(default_factory=lambda: defaultdict(list))
    possible: dict[int, list[Interval]] = field(default_factory=lambda: defaultdict(list))

    def hold(self, slot: int, certain: Interval | None, possible: Interval) -> None:
        if certain is not None and certain[0] < certain[1]:
            self.certain[slot].append(certain)
        if possible[0] < possible[1]:
            self.possible[slot].append(possible)


@dataclass
class _Lease:
    lease_id: str
    slot: int
    expiry_ns: int
    # Latest instant the grant can have happened; earliest it can have happened.
    granted_by_ns: int
    granted_from_ns: int
    ops: list[int]


@dataclass
class _Booking:
    booking_id: str
    slot: int
    lease_id: str
    created_by_ns: int
    created_from_ns: int
    ops: list[int]


class _Reporter:
    def __init__(self) -> None:
        self.found: list[Violation] = []
        self.suppressed: dict[str, int] = defaultdict(int)
        self._per_kind: dict[ViolationKind, int] = defaultdict(int)

    def add(self, violation: Violation) -> None:
        if self._per_kind[violation.kind] >= MAX_REPORTED_PER_KIND:
            self.suppressed[violation.kind.value] += 1
            return
        self._per_kind[violation.kind] += 1
        self.found.append(violation)


def check_history(history: Sequence[Op], slots: Sequence[BenchSlot], slack_ns: int) -> CheckResult:
    """Check a finished run's history; see the module docstring for what and why."""
    if slack_ns < 0:
        raise ValueError("slack_ns must not be negative")
    report = _Reporter()
    capacity = timelines(history, tuple(slots), slack_ns)
    checker = _Checker(history, slots, slack_ns, report, capacity)
    entities = checker.entities()
    max_holders = {}
    reads = 0
    for slot in range(len(slots)):
        certain, possible = _per_slot_intervals(entities, slot)
        grants = _Grants(slot, slots[slot], capacity[slot], entities, report)
        max_holders[slot] = grants.check(certain)
        reads += checker.check_reads(slot, certain, possible, entities)
    return CheckResult(
        violations=tuple(report.found),
        suppressed=dict(report.suppressed),
        operations=len(history),
        unknown_outcomes=sum(1 for op in history if op.outcome is Outcome.UNKNOWN),
        entities=len(entities),
        reads_checked=reads,
        max_certain_holders=max_holders,
    )


class _Checker:
    def __init__(
        self,
        history: Sequence[Op],
        slots: Sequence[BenchSlot],
        slack_ns: int,
        report: _Reporter,
        capacity: Sequence[CapacityTimeline],
    ) -> None:
        self.slots = slots
        self.capacity = capacity
        self.slack = slack_ns
        self.report = report
        self.by_kind: dict[Kind, list[Op]] = defaultdict(list)
        self.changes: dict[str, list[Op]] = defaultdict(list)
        self.reads: dict[int, list[Op]] = defaultdict(list)
        for op in sorted(history, key=lambda op: (op.send_ns, op.op_id)):
            self.by_kind[op.kind].append(op)
            if op.kind in (Kind.CANCEL, Kind.RESCHEDULE):
                self.changes[op.booking_id].append(op)
            elif (
                op.kind in (Kind.CHECK, Kind.BATCH)
                and op.outcome is Outcome.APPLIED
                and op.count >= 0
            ):
                self.reads[op.slot].append(op)
        self.leases: dict[str, _Lease] = {}

    def earliest(self, op: Op) -> int:
        """The earliest server instant at which `op` can have been applied."""
        return op.send_ns - self.slack

    def latest(self, op: Op) -> int:
        """The latest server instant at which `op` can have been applied."""
        return op.recv_ns + self.slack

    # ----- building entities ------------------------------------------------------------

    def entities(self) -> list[_Entity]:
        entities: list[_Entity] = []
        self._collect_leases(entities)
        bookings, lease_maybe_booked = self._collect_bookings(entities)
        consumers: dict[str, list[_Booking]] = defaultdict(list)
        direct: list[_Booking] = []
        for booking in bookings:
            if booking.lease_id:
                consumers[booking.lease_id].append(booking)
            else:
                direct.append(booking)
        segments = {b.booking_id: self._segments(b) for b in bookings}
        for booking in direct:
            entity = _Entity(list(booking.ops))
            for slot, cert, poss in segments[booking.booking_id]:
                entity.hold(slot, cert, poss)
            entities.append(entity)
        for lease in self.leases.values():
            entities.extend(
                self._lease_entities(
                    lease, consumers.get(lease.lease_id, []), segments, lease_maybe_booked
                )
            )
        return entities

    def _collect_leases(self, entities: list[_Entity]) -> None:
        groups: dict[tuple[str, str, str, str], list[Op]] = defaultdict(list)
        for op in self.by_kind[Kind.LEASE]:
            merchant, service = self.slots[op.slot].service
            groups[(op.version, merchant, service, op.reference)].append(op)
        for ops in groups.values():
            applied = [op for op in ops if op.outcome is Outcome.APPLIED]
            unknown = [op for op in ops if op.outcome is Outcome.UNKNOWN]
            if not applied:
                if unknown:
                    entities.append(self._unknown_lease(unknown))
                continue
            self._check_lease_replays(ops, applied)
            first = min(applied, key=lambda op: op.recv_ns)
            candidates = applied + unknown
            lease = _Lease(
                lease_id=first.lease_id,
                slot=first.slot,
                expiry_ns=first.expiry_ns,
                granted_by_ns=self.latest(first),
                granted_from_ns=min(self.earliest(op) for op in candidates),
                ops=[op.op_id for op in applied],
            )
            self.leases.setdefault(lease.lease_id, lease)

    def _unknown_lease(self, unknown: list[Op]) -> _Entity:
        """A lease that may have been granted (id unknown): a possible holder until expiry."""
        expiry = max(op.requested_expiry_ns or INF for op in unknown)
        entity = _Entity([op.op_id for op in unknown])
        for slot in {op.slot for op in unknown}:
            entity.hold(slot, None, (min(self.earliest(op) for op in unknown), expiry))
        return entity

    def _check_lease_replays(self, ops: list[Op], applied: list[Op]) -> None:
        answers = {(op.lease_id, op.expiry_ns) for op in applied}
        if len(answers) > 1:
            self.report.add(
                Violation(
                    ViolationKind.REPLAY_MISMATCH,
                    f"one lease reference got {len(answers)} different leases: "
                    + ", ".join(f"{lid} (expires {exp})" for lid, exp in sorted(answers)),
                    tuple(op.op_id for op in applied),
                    slot=applied[0].slot,
                )
            )
        original = min(applied, key=lambda op: op.recv_ns)
        for op in ops:
            if (
                op.outcome is Outcome.REFUSED
                and op.status != RESOURCE_EXHAUSTED
                and op.slot == original.slot
                and op.send_ns > original.recv_ns
                and not self._removed_between(op.slot, self.earliest(original), self.latest(op))
            ):
                self.report.add(
                    Violation(
                        ViolationKind.REPLAY_MISMATCH,
                        f"a replay of lease reference {op.reference!r} was refused "
                        f"(status {op.status}, cause {op.cause or '-'}) after the reference "
                        f"was granted lease {original.lease_id}",
                        (original.op_id, op.op_id),
                        slot=op.slot,
                    )
                )

    def _collect_bookings(self, entities: list[_Entity]) -> tuple[list[_Booking], set[str]]:
        """Confirmed bookings, and the ids of leases that an unknown-outcome booking names."""
        groups: dict[tuple[str, ...], list[Op]] = defaultdict(list)
        for index, op in enumerate(self.by_kind[Kind.BOOK]):
            if op.version == "v0":
                groups[("v0", op.lease_id)].append(op)
            elif op.token:
                merchant, service = self.slots[op.slot].service
                groups[("v2", merchant, service, op.token)].append(op)
            else:
                groups[("untokened", str(index))].append(op)
        bookings: dict[str, _Booking] = {}
        maybe_booked: set[str] = set()
        for ops in groups.values():
            applied = [op for op in ops if op.outcome is Outcome.APPLIED]
            unknown = [op for op in ops if op.outcome is Outcome.UNKNOWN]
            if not applied:
                if unknown:
                    self._unknown_booking(unknown, entities, maybe_booked)
                self._check_early_expiry(ops)
                continue
            self._check_booking_replays(ops, applied)
            if unknown:
                maybe_booked.update(op.lease_id for op in unknown if op.lease_id)
            earliest_any = min(self.earliest(op) for op in applied + unknown)
            for booking_id in dict.fromkeys(op.booking_id for op in applied):
                mine = [op for op in applied if op.booking_id == booking_id]
                first = min(mine, key=lambda op: op.recv_ns)
                bookings.setdefault(
                    booking_id,
                    _Booking(
                        booking_id=booking_id,
                        slot=first.reply_slot if first.reply_slot >= 0 else first.slot,
                        lease_id=first.lease_id,
                        created_by_ns=self.latest(first),
                        created_from_ns=earliest_any,
                        ops=[op.op_id for op in mine],
                    ),
                )
            self._check_early_expiry(ops)
        result = list(bookings.values())
        self._check_lease_use(result)
        return result, maybe_booked

    def _unknown_booking(self, unknown: list[Op], entities: list[_Entity], maybe: set[str]) -> None:
        """A booking that may exist: it may hold its lease's spot (or a new one) for good."""
        for op in unknown:
            if op.lease_id:
                maybe.add(op.lease_id)
            else:
                entity = _Entity([op.op_id])
                entity.hold(op.slot, None, (self.earliest(op), INF))
                entities.append(entity)

    def _check_booking_replays(self, ops: list[Op], applied: list[Op]) -> None:
        ids = {op.booking_id for op in applied}
        if len(ids) > 1:
            self.report.add(
                Violation(
                    ViolationKind.REPLAY_MISMATCH,
                    f"one idempotency key got {len(ids)} different bookings: {sorted(ids)}",
                    tuple(op.op_id for op in applied),
                    slot=applied[0].slot,
                )
            )
        original = min(applied, key=lambda op: op.recv_ns)
        for op in ops:
            if (
                op.outcome is Outcome.REFUSED
                and op.status != RESOURCE_EXHAUSTED
                and op.send_ns > original.recv_ns
                and not self._removed_between(op.slot, self.earliest(original), self.latest(op))
            ):
                self.report.add(
                    Violation(
                        ViolationKind.REPLAY_MISMATCH,
                        f"a replay was refused (status {op.status}, cause {op.cause or '-'}) "
                        f"after the same request had created booking {original.booking_id}",
                        (original.op_id, op.op_id),
                        slot=op.slot,
                    )
                )

    def _check_early_expiry(self, ops: list[Op]) -> None:
        for op in ops:
            if op.cause != "LEASE_EXPIRED" or op.status != OK:
                continue
            lease = self.leases.get(op.lease_id)
            if lease is None:
                continue
            alive = min(lease.expiry_ns, self._released_by(lease))  # a removal ends it too
            if lease.granted_by_ns <= self.earliest(op) and self.latest(op) < alive:
                self.report.add(
                    Violation(
                        ViolationKind.LEASE_EXPIRED_EARLY,
                        f"lease {lease.lease_id} was refused as expired, but it expires at "
                        f"{lease.expiry_ns}, after the booking's latest instant "
                        f"{self.latest(op)}",
                        (*lease.ops, op.op_id),
                        slot=lease.slot,
                        at_ns=self.latest(op),
                    )
                )

    def _check_lease_use(self, bookings: list[_Booking]) -> None:
        by_lease: dict[str, list[_Booking]] = defaultdict(list)
        for booking in bookings:
            if not booking.lease_id:
                continue
            by_lease[booking.lease_id].append(booking)
            lease = self.leases.get(booking.lease_id)
            problem = self._lease_problem(booking, lease)
            if problem:
                kind, why = problem
                self.report.add(
                    Violation(
                        kind,
                        f"booking {booking.booking_id} {why}",
                        tuple((lease.ops if lease else []) + booking.ops),
                        slot=booking.slot,
                        at_ns=booking.created_from_ns,
                    )
                )
        for lease_id, users in by_lease.items():
            if len(users) > 1:
                self.report.add(
                    Violation(
                        ViolationKind.LEASE_CONSUMED_TWICE,
                        f"lease {lease_id} backs {len(users)} bookings: "
                        + ", ".join(b.booking_id for b in users),
                        tuple(op for b in users for op in b.ops),
                        slot=users[0].slot,
                    )
                )

    def _removed_between(self, slot: int, lo: int, hi: int) -> bool:
        """Whether a removal of `slot` may have been applied within [lo, hi].

        While a slot is removed a replay of a request on it is refused as for an
        unknown slot (spec section 8), so such a refusal proves nothing.
        """
        return any(
            r.latest_ns >= lo and r.earliest_ns <= hi for r in self.capacity[slot].removals()
        )

    def _released_by(self, lease: _Lease) -> int:
        """The earliest instant a removal of its slot may have released the lease, or INF.

        Only removals that may have come after the grant count: a removal certainly
        before it (and a re-add) leaves a later lease alone.
        """
        return min(
            (
                removal.earliest_ns
                for removal in self.capacity[lease.slot].removals()
                if removal.latest_ns >= lease.granted_from_ns
            ),
            default=INF,
        )

    def _lease_problem(
        self, booking: _Booking, lease: _Lease | None
    ) -> tuple[ViolationKind, str] | None:
        why = self._dead_lease(booking, lease)
        if why:
            return ViolationKind.BOOKING_WITHOUT_LIVE_LEASE, why
        assert lease is not None  # _dead_lease says why when there is none
        for removal in self.capacity[lease.slot].removals():
            if (
                removal.applied
                and removal.earliest_ns > lease.granted_by_ns
                and removal.latest_ns < booking.created_from_ns
            ):
                return ViolationKind.BOOKING_OF_RELEASED_LEASE, (
                    f"was made after the slot's removal (op {removal.op_id}) released its "
                    f"lease {lease.lease_id}"
                )
        return None

    def _dead_lease(self, booking: _Booking, lease: _Lease | None) -> str:
        if lease is None:
            return f"consumed lease {booking.lease_id}, which no reply in the history granted"
        if lease.slot != booking.slot:
            return f"is on slot {booking.slot} but its lease {lease.lease_id} is on {lease.slot}"
        if booking.created_from_ns >= lease.expiry_ns:
            return (
                f"was made at or after {booking.created_from_ns}, but its lease "
                f"{lease.lease_id} expired at {lease.expiry_ns}"
            )
        if booking.created_by_ns < lease.granted_from_ns:
            return f"was made before its lease {lease.lease_id} can have been granted"
        return ""

    def _segments(self, booking: _Booking) -> list[tuple[int, Interval | None, Interval]]:
        """(slot, certain, possible) pieces of a booking's life, from cancels and reschedules."""
        changes = self.changes.get(booking.booking_id, [])  # in send order
        out: list[tuple[int, Interval | None, Interval]] = []
        slot = booking.slot
        cert_from = booking.created_by_ns
        poss_from = booking.created_from_ns
        previous_recv = booking.created_by_ns - self.slack
        for index, op in enumerate(changes):
            overlaps_next = index + 1 < len(changes) and changes[index + 1].send_ns < op.recv_ns
            uncertain = op.outcome is Outcome.UNKNOWN or op.send_ns < previous_recv or overlaps_next
            previous_recv = max(previous_recv, op.recv_ns)
            if uncertain:
                # From here on the order or the effect is unknown: certain until this op
                # was sent; possibly alive anywhere it may have gone, for good.
                out.append((slot, (cert_from, self.earliest(op)), (poss_from, INF)))
                for later in changes[index:]:
                    if later.kind is Kind.RESCHEDULE and later.outcome is not Outcome.REFUSED:
                        target = later.reply_slot if later.reply_slot >= 0 else later.target_slot
                        out.append((target, None, (self.earliest(later), INF)))
                return out
            if op.outcome is Outcome.REFUSED:
                continue
            if op.kind is Kind.CANCEL:
                out.append((slot, (cert_from, self.earliest(op)), (poss_from, self.latest(op))))
                return out  # later changes of a cancelled booking change nothing
            new_slot = op.reply_slot if op.reply_slot >= 0 else op.target_slot
            if new_slot != slot:
                out.append((slot, (cert_from, self.earliest(op)), (poss_from, self.latest(op))))
                slot, cert_from, poss_from = new_slot, self.latest(op), self.earliest(op)
        out.append((slot, (cert_from, INF), (poss_from, INF)))
        return out

    def _lease_entities(
        self,
        lease: _Lease,
        consumers: list[_Booking],
        segments: dict[str, list[tuple[int, Interval | None, Interval]]],
        maybe_booked: set[str],
    ) -> list[_Entity]:
        entity = _Entity(list(lease.ops))
        out = [entity]
        possible_end = INF if lease.lease_id in maybe_booked else lease.expiry_ns
        certain_end = lease.expiry_ns
        consumers = sorted(consumers, key=lambda b: b.created_by_ns)
        if consumers:
            first = consumers[0]
            entity.ops.extend(first.ops)
            pieces = segments[first.booking_id]
            # Until the booking's first piece ends, the lease or the booking holds the spot.
            first_slot, first_piece, _ = pieces[0]
            if first_slot == lease.slot and first_piece is not None:
                certain_end = min(certain_end, first_piece[1])
            else:  # booked onto another slot (a reported violation): the lease left at once
                certain_end = min(certain_end, first.created_from_ns)
            for slot, cert, poss in pieces:
                entity.hold(slot, cert, poss)
            for extra in consumers[1:]:  # a server bug (reported): count it as its own holder
                other = _Entity(list(extra.ops))
                for slot, cert, poss in segments[extra.booking_id]:
                    other.hold(slot, cert, poss)
                out.append(other)
        else:
            certain_end = min(certain_end, self._released_by(lease))
        entity.hold(
            lease.slot,
            (lease.granted_by_ns, certain_end),
            (lease.granted_from_ns, possible_end),
        )
        return out

    # ----- reads ------------------------------------------------------------------------

    def check_reads(
        self,
        slot: int,
        certain: list[tuple[int, int, int]],
        possible: list[tuple[int, int, int]],
        entities: list[_Entity],
    ) -> int:
        reads = self.reads.get(slot, [])
        if not reads:
            return 0
        timeline = self.capacity[slot]
        c_starts = sorted(s for s, _, _ in certain)
        c_ends = sorted(e for _, e, _ in certain)
        p_starts = sorted(s for s, _, _ in possible)
        p_ends = sorted(e for _, e, _ in possible)
        for op in reads:
            lo, hi = self.earliest(op), self.latest(op)
            surely = bisect.bisect_right(c_starts, lo) - bisect.bisect_right(c_ends, hi)
            maybe = bisect.bisect_right(p_starts, hi) - bisect.bisect_right(p_ends, lo)
            top, bottom = timeline.most(lo, hi), timeline.least(lo, hi)
            most, least = top - max(surely, 0), max(bottom - maybe, 0)
            if timeline.varies:
                most = max(most, 0)  # holders above a lowered capacity are legal
            if op.kind is Kind.CHECK:
                wrong = not least <= op.count <= most
                said = f"count_available {op.count}"
            else:
                wrong = (op.count == 1 and most < 1) or (op.count == 0 and least > 0)
                said = "available" if op.count else "not available"
            if wrong:
                self._report_read(op, said, least, most, certain, possible, entities)
        return len(reads)

    def _report_read(
        self,
        op: Op,
        said: str,
        least: int,
        most: int,
        certain: list[tuple[int, int, int]],
        possible: list[tuple[int, int, int]],
        entities: list[_Entity],
    ) -> None:
        lo, hi = self.earliest(op), self.latest(op)
        sure = [i for s, e, i in certain if s <= lo and e > hi]
        maybe = [i for s, e, i in possible if s <= hi and e > lo]
        witnesses = sure if op.count > most else maybe
        ops = tuple(sorted({o for i in witnesses for o in entities[i].ops}))
        phase = " (the final read)" if op.phase == "final" else ""
        timeline = self.capacity[op.slot]
        top, bottom = timeline.most(lo, hi), timeline.least(lo, hi)
        spots = str(top) if top == bottom else f"{bottom}..{top}"
        self.report.add(
            Violation(
                ViolationKind.AVAILABILITY_MISMATCH,
                f"slot {self.slots[op.slot].label()} answered {said}{phase}, but the history "
                f"allows only {least}..{most} open spots of {spots} "
                f"({len(sure)} certain holders, {len(maybe)} possible)",
                (op.op_id, *ops, *timeline.changes_in(lo, hi)),
                slot=op.slot,
                at_ns=op.send_ns,
            )
        )


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _per_slot_intervals(
    entities: list[_Entity], slot: int
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """(start, end, entity index) of every entity's merged intervals on `slot`."""
    certain: list[tuple[int, int, int]] = []
    possible: list[tuple[int, int, int]] = []
    for index, entity in enumerate(entities):
        if slot in entity.certain:
            certain.extend((s, e, index) for s, e in _merge(entity.certain[slot]))
        if slot in entity.possible:
            possible.extend((s, e, index) for s, e in _merge(entity.possible[slot]))
    return certain, possible


class _Grants:
    """Check 1 on one slot: no grant was made while the holders filled its capacity.

    Sweeps the certain intervals. When one starts at t, the K certain holders at t
    were granted at instants g_1 <= ... <= g_K <= t, and each holds from its grant
    through t; so at g_K the K - 1 others held, and the grant needed K - 1 < capacity
    at g_K. Every g lies after its holder's earliest possible start, so g_K lies in
    [max of those starts, t], and K above the largest capacity the slot may have had
    anywhere in that window proves an over-grant. (With a capacity that never changes
    this is: more certain holders than spots.) Checking the full set at each start is
    enough: any subset that ends with the same start has a wider window and fewer
    holders.
    """

    def __init__(
        self,
        slot: int,
        info: BenchSlot,
        timeline: CapacityTimeline,
        entities: list[_Entity],
        report: _Reporter,
    ) -> None:
        self.slot = slot
        self.info = info
        self.timeline = timeline
        self.entities = entities
        self.report = report

    def check(self, certain: list[tuple[int, int, int]]) -> int:
        """Report each over-grant; return the peak of certain holders."""
        events: list[tuple[int, int, int, int]] = []  # (instant, +1/-1, entity, origin)
        for start, end, index in certain:
            origin = self._origin(index, start)
            events.append((start, 1, index, origin))
            events.append((end, -1, index, origin))
        events.sort(key=lambda e: (e[0], e[1]))  # at one instant, ends before starts
        live: dict[int, int] = {}  # entity -> the origin of its live interval
        peak = 0
        for instant, delta, index, origin in events:
            if delta < 0:
                live.pop(index, None)
                continue
            live[index] = origin
            peak = max(peak, len(live))
            most = self._most(len(live), live, instant)
            if len(live) > most:  # each over-grant is its own violation
                self._report(len(live), most, live, instant)
        return peak

    def _origin(self, index: int, start: int) -> int:
        """The earliest instant the hold that is certain from `start` can have begun."""
        pieces = _merge(self.entities[index].possible.get(self.slot, []))
        at = bisect.bisect_right(pieces, (start, INF)) - 1
        return pieces[at][0] if at >= 0 and pieces[at][1] >= start else -INF

    def _most(self, holders: int, live: dict[int, int], instant: int) -> int:
        if holders <= self.timeline.least_ever:
            return holders  # no capacity the slot ever had is lower: nothing to prove
        return self.timeline.most(max(live.values()), instant)

    def _report(self, holders: int, most: int, live: dict[int, int], instant: int) -> None:
        ops = {o for i in live for o in self.entities[i].ops}
        changes = self.timeline.changes_in(max(live.values()), instant)
        capacity = f"{most} spots" if not self.timeline.varies else f"at most {most} spots then"
        self.report.add(
            Violation(
                ViolationKind.OVER_CAPACITY,
                f"slot {self.info.label()} had {holders} certain holders at {instant} "
                f"but {capacity}: the last of them was granted while the others filled it",
                tuple(sorted(ops | set(changes))),
                slot=self.slot,
                at_ns=instant,
            )
        )
