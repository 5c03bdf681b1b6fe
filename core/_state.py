"""The slot, lease and booking lifecycle of one shard: the only module that owns it.

Rules and invariants
- A slot's *holders* are its LIVE leases plus its CONFIRMED bookings.
  Invariant: no grant or booking while holders >= spots (refused with
  SlotUnavailable), so holders <= spots unless an inventory change lowered the
  spots below the holders (nobody is evicted; spec section 8).
- The inventory changes only by InventoryChanged events (core/_inventory.py): a
  removed slot leaves sale but keeps its account (its CONFIRMED bookings stay,
  orphaned; its live leases are released, as expired); a slot listed again gets
  that account back. Slot accounts are never dropped: leases and bookings name
  them by number.
- A lease is LIVE from its grant until `expires_ns` (exclusive), then EXPIRED;
  or it is CONSUMED by exactly one booking, which takes over its spot (no
  second spot). At and after `expires_ns` a lease counts as expired even if no
  timer has fired: a command first expires what is due at `now` on the slot it
  reads (_slot: O(1) when nothing is); `expire_due` sweeps the rest, in
  chunks if asked, so a storm of expiries never has to be taken in one go.
- Decide, then apply: a command validates everything against the state and
  builds events without changing anything (but for settling its slot: that is
  time passing, and stands whatever the answer); a refused command raises a
  BookingError and leaves the state untouched. The decision (a Decision value)
  is all that passes from deciding to applying. Only `apply` changes state, and
  replaying the same events into a fresh state rebuilds it exactly.
- Memory is bounded: expired leases are remembered (for LEASE_EXPIRED answers)
  for `expired_retention_ns` and at most `max_remembered_expired` of them;
  v2 idempotency tokens are remembered up to `max_tokens`, oldest forgotten first
  (TokenMemory). Bookings, and the user index over them, are kept for good.

Time: `now_ns` is wall-clock nanoseconds since the epoch, passed in by the caller.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Generic, NoReturn, TypeVar, assert_never

from leasehold.core import _commands as cmd
from leasehold.core._deadlines import Deadlines
from leasehold.core._errors import (
    BookingAlreadyCancelled,
    BookingError,
    InvalidArgument,
    LeaseExpired,
    NotFound,
    ReferenceConflict,
    SlotAlreadyBookedByUser,
    SlotUnavailable,
)
from leasehold.core._events import (
    BookingCancelled,
    BookingCreated,
    BookingRescheduled,
    Event,
    ExpiredLeasesForgotten,
    LeaseGranted,
)
from leasehold.core._events import (
    LeaseExpired as LeaseExpiredEvent,
)
from leasehold.core._frozen import value_type
from leasehold.core._inventory import (
    MAX_STEP_SLOTS,
    ChangeInventory,
    InventoryChanged,
    InventoryFigures,
    InventoryReport,
    ListInventory,
    SlotIndex,
    SlotState,
    Window,
    split_at,
    start_of,
)
from leasehold.core._model import (
    NANOS_PER_SECOND,
    ApiVersion,
    Booking,
    BookingStatus,
    Lease,
    LeaseState,
    SlotKey,
    SlotRef,
    SlotSpec,
)
from leasehold.core._routing import (
    LEASE_ID_PREFIX,
    bucket_of_id,
    id_from_head,
    routing_bucket,
)
from leasehold.core._scope import Scope
from leasehold.core._slots import (
    KEPT_EXPIRES_NS,
    KEPT_NUMBER,
    VERSION_CODE,
    VERSION_OF,
    Kept,
    SlotAccount,
    count_down,
    keep,
    rebuilt,
)
from leasehold.core._snapshot import FrozenState, StateSnapshot
from leasehold.core._tokens import TokenMemory
from leasehold.core._user_index import UserIndex

R = TypeVar("R")
C = TypeVar("C")

_DAY_NS = 24 * 3600 * NANOS_PER_SECOND
_SAME_USER = "this user already has a confirmed booking on this slot"


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    default_ttl_ns: int = 5 * 60 * NANOS_PER_SECOND
    max_ttl_ns: int = 15 * 60 * NANOS_PER_SECOND
    expired_retention_ns: int = _DAY_NS
    max_remembered_expired: int = 2_000_000
    max_tokens: int = 1_000_000

    def __post_init__(self) -> None:
        if not 0 < self.default_ttl_ns <= self.max_ttl_ns:
            raise ValueError("lease TTLs must satisfy 0 < default <= max")


@value_type
class Outcome(Generic[R]):
    """What a command did: the events it applied (journal them first) and its answer."""

    events: tuple[Event, ...]
    result: R | BookingError


# What a command decided: its answer, the events that carry it out, and the inventory slot
# those events name, if one (so that applying them need not look it up again).
Decision = tuple[R, tuple[Event, ...], SlotAccount | None]


@dataclass(frozen=True, slots=True)
class Counters:
    live_leases: int
    confirmed_bookings: int
    leases_granted: int
    leases_expired: int
    bookings_created: int


class ShardState:
    """All slots, leases and bookings of one shard. Not thread-safe: one owner."""

    def __init__(
        self,
        slots: Iterable[SlotSpec],
        *,
        entropy: Callable[[], bytes],
        settings: LeaseSettings | None = None,
    ) -> None:
        self.settings = settings or LeaseSettings()
        self._entropy = entropy
        # Lease references are scoped by (merchant, service) and version: one table each.
        # Invariant: a table for every service that ever had a slot here.
        self._refs: dict[tuple[str, str], dict[ApiVersion, dict[str, str]]] = {}
        # The bookable slots. Removed ones move to _removed (and come back if re-added).
        self._slots: dict[SlotKey, SlotAccount] = {}
        self._removed: dict[SlotKey, SlotAccount] = {}
        self._index = SlotIndex()  # Invariant: indexes exactly the slots of _slots
        # The same slots by id() of the inventory's own key objects (alive as long as this
        # state, so no other live object has their id): a lookup of one of them (as the
        # gateway's decoder and canonical refs hand us) skips SlotKey.__hash__, a Python call.
        # Invariant: maps id(k) to _slots[k] for every key k of _slots, and nothing else.
        self._slot_by_key_id: dict[int, SlotAccount] = {}
        # Every slot account by number; only appended to (inventory changes add slots).
        self._slot_list: list[SlotAccount] = []
        for spec in slots:
            self._add_slot(spec)
        # Whether an inventory change (or a restore of one) made the inventory differ from
        # the one this state was built on: snapshots then carry it.
        self._inventory_changed = False
        self._orphaned = 0  # Invariant: the CONFIRMED bookings on slots of _removed
        # Invariant: every remembered lease is in exactly one of these, by its state, kept
        # as granted (see Kept: no per-lease object with a state, which costs memory and
        # bulk expiry). Values never change: a transition moves the lease on.
        self._live: dict[str, Kept] = {}
        # EXPIRED leases, remembered for LEASE_EXPIRED answers.
        self._lapsed: dict[str, Kept] = {}
        # CONSUMED leases, each with the booking that took over its spot.
        self._consumed: dict[str, tuple[Kept, str]] = {}
        # Invariant: every LIVE lease is listed at its expiry (in _deadlines and its slot's
        # lists), or is in _unlisted, which any reader of those lists empties first.
        self._deadlines = Deadlines()
        # Leases granted by replay_granted, not listed yet, each with its Kept (see
        # _list_unlisted).
        self._unlisted: list[tuple[str, Kept]] = []
        # Invariant: the keys of _lapsed, in expiry order, oldest first (the forgetting order).
        self._expired: deque[str] = deque()
        # Kept as objects, GC-tracked (a try at keeping them as tuples did not pay: see
        # docs/performance.md, "Core").
        self._bookings: dict[str, Booking] = {}
        # Invariant: indexes every booking of _bookings that has a user_id.
        self._by_user = UserIndex()
        self._tokens = TokenMemory(self.settings.max_tokens)
        # Leases the current command's _settle expired (see _run); empty between commands.
        self._settled: list[str] = []
        self._live_leases = 0  # Invariant: == len(_live)
        self._confirmed = 0  # Invariant: the CONFIRMED bookings in _bookings
        self._granted_total = 0
        self._expired_total = 0
        self._booked_total = 0

    # ----- queries -------------------------------------------------------------------

    def counters(self) -> Counters:
        return Counters(
            live_leases=self._live_leases,
            confirmed_bookings=self._confirmed,
            leases_granted=self._granted_total,
            leases_expired=self._expired_total,
            bookings_created=self._booked_total,
        )

    def next_deadline_ns(self) -> int | None:
        """When the earliest LIVE lease expires (or a little earlier: never later)."""
        if self._unlisted:
            self._list_unlisted()
        return self._deadlines.next_ns()

    def slot_specs(self) -> Iterable[SlotSpec]:
        """The bookable slots."""
        return (s.spec for s in self._slots.values())

    def inventory_figures(self) -> InventoryFigures:
        return InventoryFigures(len(self._slots), len(self._removed), self._orphaned)

    def open_spots(self, key: SlotKey) -> int | None:
        slot = self._slot(key)
        return None if slot is None else slot.open_spots

    def lease(self, lease_id: str) -> Lease | None:
        kept = self._live.get(lease_id)
        if kept is not None:
            return rebuilt(self._slot_list, lease_id, kept)
        kept = self._lapsed.get(lease_id)
        if kept is not None:
            return rebuilt(self._slot_list, lease_id, kept, LeaseState.EXPIRED)
        consumed = self._consumed.get(lease_id)
        if consumed is None:
            return None
        kept, booking_id = consumed
        return rebuilt(self._slot_list, lease_id, kept, LeaseState.CONSUMED, booking_id)

    def booking(self, booking_id: str) -> Booking | None:
        return self._bookings.get(booking_id)

    # ----- snapshots ---------------------------------------------------------------

    def snapshot(self) -> StateSnapshot:
        return self.freeze().materialize()

    def freeze(self) -> FrozenState:
        """This state now, copied cheaply; `.materialize()` it anywhere, later."""
        return FrozenState(
            list(self._slot_list),
            dict(self._live),
            dict(self._lapsed),
            dict(self._consumed),
            tuple(self._expired),
            list(self._bookings.values()),
            self._tokens.items(),
            (self._granted_total, self._expired_total, self._booked_total),
            self._frozen_inventory(),
        )

    def _frozen_inventory(self) -> tuple[tuple[SlotSpec, bool], ...] | None:
        """Every slot account's spec and whether it is removed; None: as built (unchanged)."""
        if not self._inventory_changed:
            return None
        return tuple([(slot.spec, slot.removed) for slot in self._slot_list])

    def canonical_ref(self, ref: SlotRef) -> SlotRef:
        """`ref` on the inventory's own key object (as the state would keep it), if known.

        Decoders that hand the state refs built this way spare it a copy per lease.
        """
        slot = self._slot(ref.key)
        return ref if slot is None else slot.canonical(ref)

    def restore(self, snapshot: StateSnapshot) -> None:
        """Load a snapshot into this fresh state (built from the inventory it was taken on).

        Raises ValueError if the state is not fresh, or if the snapshot does not fit the
        inventory (a slot it names is gone, or holds more than its spots).
        """
        if self._live or self._lapsed or self._consumed or self._bookings or self._tokens:
            raise ValueError("restore needs a fresh ShardState")
        if snapshot.inventory is not None:
            self._restore_inventory(snapshot.inventory)
        self._restore_leases(snapshot.leases)
        self._list_restored_expiries()
        self._expired.extend(snapshot.expired_order)
        self._restore_bookings(snapshot.bookings)
        tokens = snapshot.tokens
        self._tokens.remember_all(zip(map(_TOKEN_KEY, tokens), map(_RESPONSE, tokens), strict=True))
        self._granted_total, self._expired_total, self._booked_total = snapshot.totals

    def _restore_bookings(self, bookings: Sequence[Booking]) -> None:
        by_key_id = self._slot_by_key_id.get
        confirmed = BookingStatus.CONFIRMED
        for stored in bookings:
            # (By key identity first, as _placed: snapshot decoders hand over the
            # inventory's own keys. A restart restores 100,000s of these.)
            slot = by_key_id(id(stored.slot.key))
            booking = stored
            if slot is None:
                booking, slot = self._placed(stored)
            if booking.status is confirmed:
                slot.holders += 1  # (restored: capacity may since have been lowered)
                self._book(booking, slot, "", new=False)  # (indexes it by user too)
            else:
                self._bookings[booking.booking_id] = booking
                self._by_user.add(booking.person.user_id, booking.booking_id)

    def _list_restored_expiries(self) -> None:
        """Each slot's expiry lists from its restored LIVE leases, sorted once: a snapshot
        lists leases in grant order, and inserting those of mixed lifetimes one by one
        would move O(n) entries each (O(n^2) for a slot of many spots)."""
        by_slot: dict[int, list[tuple[int, str]]] = {}
        for lease_id, (_, number, _, _, expires_ns) in self._live.items():
            by_slot.setdefault(number, []).append((expires_ns, lease_id))
        for number, entries in by_slot.items():
            entries.sort(key=itemgetter(0))  # (stable: equal expiries stay in grant order)
            slot = self._slot_list[number]
            slot.expiries = [expires_ns for expires_ns, _ in entries]
            slot.expiring_ids = [lease_id for _, lease_id in entries]

    def _restore_leases(self, leases: Sequence[Lease]) -> None:
        """Each lease kept (as keep() would) in the table of its state; its reference and,
        if LIVE, its spot and deadline taken. One loop, the fields read once: a restart
        restores 100,000s of these."""
        by_key_id, account = self._slot_by_key_id.get, self._account
        live, lapsed, consumed = self._live, self._lapsed, self._consumed
        codes, expired = VERSION_CODE, LeaseState.EXPIRED
        for lease in leases:
            lease_id, ref, version, reference, state = (
                lease.lease_id,
                lease.slot,
                lease.version,
                lease.reference,
                lease.state,
            )
            slot = by_key_id(id(ref.key)) or account(ref.key)
            kept = (codes[version], slot.number, ref.availability_tag, reference, lease.expires_ns)
            slot.refs[version][reference] = lease_id
            if state is expired:
                lapsed[lease_id] = kept
            elif state is LeaseState.CONSUMED:
                consumed[lease_id] = (kept, lease.booking_id)
            else:
                if slot.removed:
                    raise ValueError(
                        f"the snapshot holds live lease {lease_id!r} on a removed slot"
                    )
                slot.holders += 1  # (restored: capacity may since have been lowered)
                live[lease_id] = kept
                self._deadlines.add(lease.expires_ns, lease_id)
                self._live_leases += 1
        # A lease twice leaves fewer entries than leases (in one table) or is in two.
        if (
            len(live) + len(lapsed) + len(consumed) != len(leases)
            or not live.keys().isdisjoint(lapsed.keys())
            or not live.keys().isdisjoint(consumed.keys())
            or not lapsed.keys().isdisjoint(consumed.keys())
        ):
            raise ValueError(f"the snapshot holds lease {_first_repeated(leases)!r} twice")

    # ----- time ----------------------------------------------------------------------

    def expire_due(self, now_ns: int, limit: int | None = None) -> tuple[Event, ...]:
        """Sweep: expire the leases due at `now_ns` (all, or about `limit` of them), and
        forget expired leases past retention.

        With a limit, the rest stays due: call again while next_deadline_ns() <= now_ns
        (the shard's timer does, yielding between calls, so 100k leases due at one instant
        do not stall every shard). Commands need no sweep first: each settles the slot it
        reads (see _slot).
        """
        events: list[Event] = []
        if self._unlisted:
            self._list_unlisted()
        next_ns = self._deadlines.next_ns()
        if next_ns is not None and next_ns <= now_ns:
            due = self._deadlines.pop_due(now_ns, self._live_expiry, limit)
            if due:  # (the entries due may all have been stale)
                self._apply_expired(due)
                events = [LeaseExpiredEvent(lease_id) for lease_id in due]
        forgotten = self._forget_due(now_ns)
        return (*events, *forgotten) if forgotten else tuple(events)

    def expiry_scope(self, events: Sequence[Event]) -> Scope | None:
        """The one (merchant, service) of every lease these `expire_due` events expired,
        or None: leases of several, or other events too (see core.commit_scope)."""
        lapsed, slots = self._lapsed, self._slot_list
        scope: Scope | None = None
        for event in events:
            kept = lapsed.get(event.lease_id) if isinstance(event, LeaseExpiredEvent) else None
            if kept is None:
                return None  # (forgetting, or an expiry already forgotten: whole shard)
            key = slots[kept[KEPT_NUMBER]].spec.key
            if scope is None:
                scope = (key.merchant_id, key.service_id)
            elif key.merchant_id != scope[0] or key.service_id != scope[1]:
                return None
        return scope

    def _forget_due(self, now_ns: int) -> tuple[Event, ...]:
        """Forget the oldest expired leases past the cap or retention: O(1) when none are."""
        expired, lapsed, settings = self._expired, self._lapsed, self.settings
        count = max(0, len(expired) - settings.max_remembered_expired)
        horizon = now_ns - settings.expired_retention_ns
        for lease_id in itertools.islice(expired, count, None):
            if lapsed[lease_id][KEPT_EXPIRES_NS] > horizon:
                break
            count += 1
        if not count:
            return ()
        forgotten = ExpiredLeasesForgotten(count)
        self.apply(forgotten)
        return (forgotten,)

    def _settle(self, slot: SlotAccount, now_ns: int) -> None:
        """Expire `slot`'s leases due at `now_ns` (some are: see _slot), before a command
        reads its holders.

        This is time passing, not the command: it stands if the command is refused, and
        its events lead the command's (_run collects them from _settled). Work: the
        slot's due leases (at most its spots, plus entries of leases consumed or swept
        since the slot was last settled).
        """
        expiries = slot.expiries
        cut = bisect_right(expiries, now_ns)
        ids = slot.expiring_ids
        live = self._live
        due = [lease_id for lease_id in ids[:cut] if lease_id in live]
        del expiries[:cut]
        del ids[:cut]
        if due:
            self._apply_expired(due)
            self._settled.extend(due)

    # ----- commands ------------------------------------------------------------------

    def check_availability(self, c: cmd.CheckAvailability, now_ns: int) -> Outcome[int]:
        return self._run(now_ns, self._decide_check, c)

    def batch_availability(
        self, c: cmd.BatchAvailability, now_ns: int
    ) -> Outcome[tuple[int | None, ...]]:
        return self._run(now_ns, self._decide_batch, c)

    def create_lease(self, c: cmd.CreateLease, now_ns: int) -> Outcome[Lease]:
        return self._run(now_ns, self._decide_lease, c)

    def create_booking(self, c: cmd.CreateBooking, now_ns: int) -> Outcome[Booking]:
        if c.version is ApiVersion.V2:
            return self._run(now_ns, self._decide_booking_v2, c)
        return self._run(now_ns, self._decide_booking_v0, c)

    def cancel_booking(self, c: cmd.CancelBooking, now_ns: int) -> Outcome[Booking]:
        return self._run(now_ns, self._decide_cancel, c)

    def reschedule_booking(self, c: cmd.RescheduleBooking, now_ns: int) -> Outcome[Booking]:
        return self._run(now_ns, self._decide_reschedule, c)

    def get_booking(self, c: cmd.GetBooking, now_ns: int) -> Outcome[Booking]:
        return self._run(now_ns, self._decide_get, c)

    def list_bookings(self, c: cmd.ListBookings, now_ns: int) -> Outcome[tuple[Booking, ...]]:
        return self._run(now_ns, self._upcoming_bookings, c)

    def change_inventory(self, c: ChangeInventory, now_ns: int) -> Outcome[InventoryReport]:
        return self._run(now_ns, self._decide_inventory, c)

    def list_inventory(self, c: ListInventory, now_ns: int) -> Outcome[tuple[SlotState, ...]]:
        return self._run(now_ns, self._inventory_listing, c)

    def _run(self, now_ns: int, decide: Callable[[C, int], Decision[R]], c: C) -> Outcome[R]:
        """Forget what is past retention, decide, then apply what was decided: a refusal
        applies nothing of its own. Deciding settles the slots the command reads (_slot):
        those expiries lead the command's events, refused or not.

        (`decide` is a bound method taking the command: no closure per command.)
        """
        if self._unlisted:  # (after a recovery: once)
            self._list_unlisted()
        # (Most commands find nothing remembered, so nothing to forget.)
        forgotten = self._forget_due(now_ns) if self._expired else ()
        answer: R | BookingError
        try:
            answer, events, slot = decide(c, now_ns)
        except BookingError as refusal:
            # A refusal is an answer, not a failure: its traceback goes. Kept, its frames
            # (and through f_back the shard's, which holds the refusal as its result) make
            # a reference cycle per refusal that only the cyclic GC frees.
            answer, events = refusal.with_traceback(None), ()
        else:
            for event in events:
                self._apply(event, slot)
        settled = self._settled
        if settled:
            self._settled = []
            return Outcome((*forgotten, *map(LeaseExpiredEvent, settled), *events), answer)
        return Outcome(forgotten + events if forgotten else events, answer)

    # ----- deciding (reads state; changes none, but for settling a slot) -------------

    def _decide_check(self, c: cmd.CheckAvailability, now_ns: int) -> Decision[int]:
        slot = self._slot(c.slot, now_ns) or self._unknown_slot(c.slot)
        return slot.open_spots, (), None

    def _decide_batch(
        self, c: cmd.BatchAvailability, now_ns: int
    ) -> Decision[tuple[int | None, ...]]:
        return tuple(self._open_spots_at(k, now_ns) for k in c.slots), (), None

    def _open_spots_at(self, key: SlotKey, now_ns: int) -> int | None:
        slot = self._slot(key, now_ns)
        return None if slot is None else slot.open_spots

    def _decide_get(self, c: cmd.GetBooking, now_ns: int) -> Decision[Booking]:
        return self._require_booking(c.booking_id), (), None

    def _decide_lease(self, c: cmd.CreateLease, now_ns: int) -> Decision[Lease]:
        if not c.reference:
            raise InvalidArgument("a lease reference is required", field="reference")
        key = c.slot.key
        slot = self._slot(key, now_ns) or self._unknown_slot(key)
        existing_id = slot.refs[c.version].get(c.reference)
        if existing_id is not None:
            existing = self._kept_of(existing_id)
            assert existing is not None, "a reference outlived its lease"
            if existing[KEPT_NUMBER] != slot.number:
                raise ReferenceConflict(
                    f"reference {c.reference!r} already holds a lease on another slot",
                    field="reference",
                )
            # Idempotent replay: the same lease as granted (whatever its state), no
            # second spot.
            return rebuilt(self._slot_list, existing_id, existing), (), None
        expires_ns = self._lease_expiry(c.requested_expiry_ns, now_ns)
        if slot.holders >= slot.spots:
            raise SlotUnavailable("no open spot left on this slot", field="slot")
        lease_id = id_from_head(slot.lease_id_head, self._entropy())
        ref = slot.ref_with_tag(c.slot.availability_tag)
        lease = Lease(lease_id, c.version, ref, c.reference, expires_ns)
        return lease, (LeaseGranted(lease),), slot

    def _lease_expiry(self, requested_ns: int | None, now_ns: int) -> int:
        if requested_ns is None:
            return now_ns + self.settings.default_ttl_ns
        if requested_ns <= now_ns:
            raise InvalidArgument(
                "the requested lease expiration time is not in the future",
                field="lease_expiration_time",
            )
        return min(requested_ns, now_ns + self.settings.max_ttl_ns)

    # ----- inventory changes (core/_inventory.py) ---------------------------------------

    def _decide_inventory(self, c: ChangeInventory, now_ns: int) -> Decision[InventoryReport]:
        """The window's part before the cut (all of it without max_slots): listed slots are
        added, changed or kept; the others inside it are removed, their due leases expired
        first (time passing) and their live ones released. Work: the slots of the part
        (and of its last start), found by bisection and the index."""
        window = c.window
        if window.slots and window.slots[-1].key.start_sec >= window.end_sec:
            raise InvalidArgument("the window lists a slot outside it", field="availability")
        listed = window.listed()
        budget = c.max_slots
        existing: list[SlotAccount] = []
        more = False
        for slot in self._index.covered(window):
            start = slot.spec.key.start_sec
            if budget and len(existing) >= budget and start != existing[-1].spec.key.start_sec:
                more = True  # whole starts only: every existing slot before the cut is seen
                break
            existing.append(slot)
        cut = split_at(
            [s.key.start_sec for s in listed[:budget]] if budget else [],
            [s.spec.key.start_sec for s in existing],
            budget,
            len(listed),
            more,
        )
        end = window.end_sec if cut < 0 else cut
        mine = listed[: bisect_left(listed, end, key=start_of)] if cut >= 0 else listed
        upserts, report = self._listed_changes(mine, window)
        listed_keys = {s.key for s in mine}
        removed = [
            s for s in existing if s.spec.key.start_sec < end and s.spec.key not in listed_keys
        ]
        released: list[str] = []
        kept_booked = 0
        for slot in removed:
            self._slot(slot.spec.key, now_ns)  # (settles: due leases expire, not released)
            released.extend(i for i in slot.expiring_ids if i in self._live)
            kept_booked += slot.bookings > 0
        if len(upserts) + len(removed) > MAX_STEP_SLOTS:
            raise InvalidArgument(
                f"one step would change {len(upserts) + len(removed)} slots, over "
                f"{MAX_STEP_SLOTS}: give max_slots",
                field="availability",
            )
        report = replace(
            report,
            removed=len(removed),
            kept_booked=kept_booked,
            leases_released=len(released),
            cut_sec=end,
            applied=not c.dry_run,
        )
        if c.dry_run or not (upserts or removed):
            return report, (), None
        event = InventoryChanged(
            tuple(upserts), tuple(s.spec.key for s in removed), tuple(released)
        )
        return report, (event,), None

    def _listed_changes(
        self, listed: Sequence[SlotSpec], window: Window
    ) -> tuple[list[SlotSpec], InventoryReport]:
        """The listed slots that add or change a slot, and the counts of each kind."""
        upserts: list[SlotSpec] = []
        added = changed = unchanged = 0
        seen: set[SlotKey] = set()
        previous = window.start_sec
        for spec in listed:
            key = spec.key
            if key in seen or not window.covers(key) or key.start_sec < previous:
                reason = "lists a slot twice" if key in seen else "lists a slot outside it"
                if key.start_sec < previous:
                    reason = "lists slots out of start order"
                raise InvalidArgument(f"the window {reason}: {key}", field="availability")
            seen.add(key)
            previous = key.start_sec
            slot = self._slots.get(key)
            if slot is None:
                added += 1
            elif slot.spec == spec:
                unchanged += 1
                continue
            else:
                changed += 1
            upserts.append(spec)
        return upserts, InventoryReport(added=added, changed=changed, unchanged=unchanged)

    def _inventory_listing(self, c: ListInventory, now_ns: int) -> Decision[tuple[SlotState, ...]]:
        """The slots (removed ones too) of a merchant's service(s) starting in a range, in
        (service, start, key) order, at most `limit` (+1 to say there are more)."""
        found: list[SlotState] = []
        services = (
            [(c.merchant_id, c.service_id)]
            if c.service_id
            else [s for s in self._refs if s[0] == c.merchant_id]
        )
        for merchant_id, service_id in sorted(services):
            accounts = [
                slot
                for slot in (
                    *self._index.of_service(merchant_id, service_id),
                    *self._removed.values(),
                )
                if slot.spec.key.merchant_id == merchant_id
                and slot.spec.key.service_id == service_id
                and c.start_from <= slot.spec.key.start_sec < c.start_to
            ]
            accounts.sort(key=lambda slot: slot.spec.key.as_tuple())
            for slot in accounts:
                if len(found) > c.limit:
                    return tuple(found), (), None
                if not slot.removed:
                    self._slot(slot.spec.key, now_ns)  # (settles its due leases)
                bookings = slot.bookings
                found.append(SlotState(slot.spec, slot.holders - bookings, bookings, slot.removed))
        return tuple(found), (), None

    def _decide_booking_v2(self, c: cmd.CreateBooking, now_ns: int) -> Decision[Booking]:
        requested = c.slot
        if requested is None:
            raise InvalidArgument("the slot is required", field="slot")
        key = requested.key
        token = c.idempotency_token
        if not token:
            raise InvalidArgument("an idempotency token is required", field="idempotency_token")
        replay = self._tokens.response((key.merchant_id, key.service_id, token))
        if replay is not None:
            return replay, (), None  # the identical response; nothing created
        person = c.person
        if not person.user_id:
            raise InvalidArgument("user_id is required", field="user_id")
        slot = self._slot(key, now_ns) or self._missing_slot(key)
        lease_id = c.lease_id
        if lease_id:
            self._usable_lease(lease_id, now_ns, slot)
        if person.user_id in slot.booker_users:  # the same-user rule (v2)
            raise SlotAlreadyBookedByUser(_SAME_USER, field="user")
        if not lease_id and slot.holders >= slot.spots:
            raise SlotUnavailable("no open spot left on this slot", field="slot")
        booking_id = id_from_head(slot.booking_id_head, self._entropy())
        ref = slot.ref_with_tag(requested.availability_tag)
        booking = Booking(booking_id, ref, person, BookingStatus.CONFIRMED, lease_id)
        return booking, (BookingCreated(booking, token),), slot

    def _decide_booking_v0(self, c: cmd.CreateBooking, now_ns: int) -> Decision[Booking]:
        lease_id = c.lease_id
        if not lease_id:
            raise InvalidArgument("a lease reference is required", field="lease_ref")
        consumed = self._consumed.get(lease_id)
        if consumed is not None:
            _, booking_id = consumed
            return self._bookings[booking_id], (), None  # v0 replay returns that booking
        _, number, tag, _, _ = self._usable_lease(lease_id, now_ns, None)
        slot = self._slot_list[number]
        if slot.has_v0_booker_like(c.person):
            raise SlotAlreadyBookedByUser(_SAME_USER, field="user")
        booking_id = id_from_head(slot.booking_id_head, self._entropy())
        ref = slot.ref_with_tag(tag)
        booking = Booking(booking_id, ref, c.person, BookingStatus.CONFIRMED, lease_id)
        return booking, (BookingCreated(booking),), slot

    def _usable_lease(self, lease_id: str, now_ns: int, slot: SlotAccount | None) -> Kept:
        """The LIVE lease `lease_id` (of `slot`, if given) that may back a booking now."""
        kept = self._live.get(lease_id, _NO_LEASE)
        _, number, _, _, expires_ns = kept
        if now_ns < expires_ns and (slot is None or number == slot.number):
            return kept
        raise self._lease_refusal(lease_id, slot)

    def _lease_refusal(self, lease_id: str, slot: SlotAccount | None) -> BookingError:
        """Why the lease `lease_id` cannot back a booking on `slot` (see _usable_lease)."""
        kept = self._kept_of(lease_id)
        if kept is None:
            if slot is not None and _names_other_key(lease_id, slot.spec.key):
                # Our ids carry their slot's routing bucket: this one cannot be for this slot.
                return InvalidArgument("the lease is for another merchant or service", field="slot")
            return NotFound(f"lease {lease_id!r} is unknown", field="lease_ref")
        if slot is not None and kept[KEPT_NUMBER] != slot.number:
            return InvalidArgument("the slot differs from the leased slot", field="slot")
        if lease_id in self._consumed:
            return NotFound(f"lease {lease_id!r} was already used by a booking", field="lease_ref")
        if self._slot_list[kept[KEPT_NUMBER]].removed:
            return SlotUnavailable("the slot was removed from the inventory", field="slot")
        return LeaseExpired(f"lease {lease_id!r} has expired", field="lease_ref")

    def _decide_cancel(self, c: cmd.CancelBooking, now_ns: int) -> Decision[Booking]:
        booking = self._require_booking(c.booking_id)
        if booking.status is BookingStatus.CANCELED:
            return booking, (), None  # cancelling twice is idempotent
        event = BookingCancelled(booking.booking_id)
        return replace(booking, status=BookingStatus.CANCELED), (event,), None

    def _decide_reschedule(self, c: cmd.RescheduleBooking, now_ns: int) -> Decision[Booking]:
        booking = self._require_booking(c.booking_id)
        old = booking.slot.key
        new_key = replace(
            old,
            start_sec=old.start_sec if c.new_start_sec is None else c.new_start_sec,
            duration_sec=old.duration_sec if c.new_duration_sec is None else c.new_duration_sec,
        )
        if booking.status is BookingStatus.CANCELED:
            raise BookingAlreadyCancelled("the booking was cancelled", field="status")
        if new_key == old:
            return booking, (), None  # (its own slot: no need to settle it)
        target = self._slot(new_key, now_ns) or self._missing_slot(new_key)
        if target.holders >= target.spots:
            raise SlotUnavailable("no open spot left on the new slot", field="slot")
        new_slot = SlotRef(new_key, target.spec.availability_tag)
        event = BookingRescheduled(booking.booking_id, new_slot)
        return replace(booking, slot=new_slot), (event,), None

    def _upcoming_bookings(self, c: cmd.ListBookings, now_ns: int) -> Decision[tuple[Booking, ...]]:
        user_id = c.user_id
        if not user_id:
            raise InvalidArgument("user_id is required", field="user_id")
        now_sec = now_ns // NANOS_PER_SECOND
        found = (self._bookings[b] for b in self._by_user.booking_ids(user_id))
        upcoming = [
            b for b in found if b.status is BookingStatus.CONFIRMED and b.slot.key.end_sec > now_sec
        ]
        upcoming.sort(key=lambda b: (b.slot.key.start_sec, b.booking_id))
        return tuple(upcoming), (), None

    def _slot(self, key: SlotKey, now_ns: int | None = None) -> SlotAccount | None:
        """The inventory slot of `key`, or None. By identity first (the inventory's own key
        objects, as decoders and canonical refs hand them over): that skips SlotKey.__hash__.

        With `now_ns` (a command reading the slot), its leases due by then expire first
        (_settle): a lease counts as expired from its instant on, swept or not.
        """
        slot = self._slot_by_key_id.get(id(key)) or self._slots.get(key)
        if now_ns is not None and slot is not None:
            expiries = slot.expiries
            if expiries and expiries[0] <= now_ns:
                self._settle(slot, now_ns)
        return slot

    def _unknown_slot(self, key: SlotKey) -> NoReturn:
        """The refusal for a key that names no inventory slot."""
        if (key.merchant_id, key.service_id) not in self._refs:
            raise InvalidArgument(
                f"unknown merchant_id/service_id {key.merchant_id!r}/{key.service_id!r}",
                field="merchant_id",
            )
        raise InvalidArgument(
            "no inventory slot has this start, duration and resources", field="slot"
        )

    def _missing_slot(self, key: SlotKey) -> NoReturn:
        """The refusal for booking on a key that names no bookable slot."""
        if key in self._removed:
            raise SlotUnavailable("the slot was removed from the inventory", field="slot")
        self._unknown_slot(key)

    def _require_booking(self, booking_id: str) -> Booking:
        if not booking_id:
            raise InvalidArgument("booking_id is required", field="booking_id")
        booking = self._bookings.get(booking_id)
        if booking is None:
            raise NotFound(f"booking {booking_id!r} is unknown", field="booking_id")
        return booking

    # ----- applying (the only code that changes state) -------------------------------

    def apply(self, event: Event) -> None:
        """Apply one event (of a command's outcome, or read back from the journal)."""
        if self._unlisted:
            self._list_unlisted()
        self._apply(event, None)

    def apply_granted(self, lease: Lease) -> None:
        """`apply(LeaseGranted(lease))` without building the event."""
        if self._unlisted:
            self._list_unlisted()
        self._apply_granted(lease, None)

    def replay_granted(
        self,
        lease_id: str,
        version: ApiVersion,
        ref: SlotRef,
        reference: str,
        expires_ns: int,
        list_later: bool = False,
    ) -> None:
        """`apply_granted` of this lease (LIVE), without a Lease object: a journal's replay
        applies one per grant record (shards._replay).

        `list_later`: its expiry is listed when next needed (_list_unlisted), not now: most
        grants a recovery replays are consumed by a later record, and then they are never
        listed (apply_granted lists them, stale entries from their consumption on).
        """
        key = ref.key
        slot = self._slot_by_key_id.get(id(key)) or self._slot(key) or _not_in_inventory(key)
        live = self._live
        if lease_id in live or lease_id in self._lapsed or lease_id in self._consumed:
            raise ValueError(f"event grants lease {lease_id!r} twice")
        self._take(slot)  # (raises before any change, as the check above)
        kept = (VERSION_CODE[version], slot.number, ref.availability_tag, reference, expires_ns)
        live[lease_id] = kept
        slot.refs[version][reference] = lease_id
        if list_later:
            self._unlisted.append((lease_id, kept))
        else:
            if self._unlisted:  # (the grant order: those first)
                self._list_unlisted()
            self._deadlines.add(expires_ns, lease_id)
            slot.note_live(expires_ns, lease_id)
        self._live_leases += 1
        self._granted_total += 1

    def _list_unlisted(self) -> None:
        """List the expiries of replay_granted's leases that are still LIVE, in grant order
        (the order apply_granted lists them in); the others would be stale entries."""
        unlisted, self._unlisted = self._unlisted, []
        live, slots, deadline = self._live, self._slot_list, self._deadlines.add
        for lease_id, kept in unlisted:
            if live.get(lease_id) is kept:  # (the very grant: not one consumed, or expired)
                expires_ns = kept[KEPT_EXPIRES_NS]
                deadline(expires_ns, lease_id)
                slots[kept[KEPT_NUMBER]].note_live(expires_ns, lease_id)

    def apply_booked(self, booking: Booking, idempotency_token: str) -> None:
        """`apply(BookingCreated(booking, idempotency_token))` without building the event."""
        self._book(booking, None, idempotency_token)

    def _apply(self, event: Event, slot: SlotAccount | None) -> None:
        """`apply`, with the slot a command's decision named (see Decision), if any."""
        # The commonest kinds first: each test is a call.
        if isinstance(event, LeaseGranted):
            self._apply_granted(event.lease, slot)
        elif isinstance(event, BookingCreated):
            self._book(event.booking, slot, event.idempotency_token)
        elif isinstance(event, LeaseExpiredEvent):
            self._apply_expired((event.lease_id,))
        elif isinstance(event, BookingCancelled):
            self._apply_cancelled(event.booking_id)
        elif isinstance(event, ExpiredLeasesForgotten):
            self._apply_forgotten(event.count)
        elif isinstance(event, BookingRescheduled):
            self._apply_rescheduled(event.booking_id, event.new_slot)
        elif isinstance(event, InventoryChanged):
            self._apply_inventory(event)
        else:
            assert_never(event)

    def _apply_inventory(self, event: InventoryChanged) -> None:
        """Release, remove, then add or change (checked first: a bad event changes nothing)."""
        removing = [self._slots.get(key) for key in event.removals]
        if None in removing:
            raise ValueError("event removes a slot that is not bookable")
        numbers = {slot.number for slot in removing if slot is not None}
        for lease_id in event.released:
            kept = self._live.get(lease_id)
            if kept is None or kept[KEPT_NUMBER] not in numbers:
                raise ValueError(f"event releases lease {lease_id!r}: not live on a removed slot")
        self._apply_expired(event.released)
        for slot in removing:
            assert slot is not None
            if any(lease_id in self._live for lease_id in slot.expiring_ids):
                raise ValueError(f"event removes slot {slot.spec.key} with live leases left")
            self._remove_slot(slot)
        for spec in event.upserts:
            self._upsert_slot(spec)
        self._inventory_changed = True

    def _remove_slot(self, slot: SlotAccount) -> None:
        key = slot.spec.key
        del self._slots[key]
        del self._slot_by_key_id[id(key)]
        self._index.discard(slot)
        self._removed[key] = slot
        slot.removed = True
        slot.expiries.clear()
        slot.expiring_ids.clear()
        self._orphaned += slot.bookings

    def _upsert_slot(self, spec: SlotSpec) -> None:
        slot = self._slots.get(spec.key)
        if slot is not None:
            slot.respecified(spec)
            return
        slot = self._removed.pop(spec.key, None)
        if slot is None:
            self._add_slot(spec)
            return
        slot.respecified(spec)
        slot.removed = False
        self._orphaned -= slot.bookings
        self._list(slot)

    def _add_slot(self, spec: SlotSpec) -> None:
        service = (spec.key.merchant_id, spec.key.service_id)
        refs = self._refs.get(service)
        if refs is None:
            refs = self._refs[service] = {v: {} for v in ApiVersion}
        slot = SlotAccount(spec, len(self._slot_list), refs)
        self._slot_list.append(slot)
        self._list(slot)

    def _list(self, slot: SlotAccount) -> None:
        """Put `slot` on sale: findable by key, by key identity and by window."""
        key = slot.spec.key
        self._slots[key] = slot
        self._slot_by_key_id[id(key)] = slot
        self._index.add(slot)

    def _restore_inventory(self, inventory: Sequence[tuple[SlotSpec, bool]]) -> None:
        """(Fresh state) the inventory a snapshot holds, in place of the one built from.
        Equal keys keep the built inventory's key objects (identity lookups)."""
        built = self._slots
        self._slots, self._slot_by_key_id, self._slot_list = {}, {}, []
        self._index = SlotIndex()
        for spec, removed in inventory:
            old = built.get(spec.key)
            if old is not None:
                spec = replace(spec, key=old.spec.key)
            self._add_slot(spec)
            if removed:
                self._remove_slot(self._slot_list[-1])
        self._inventory_changed = True

    def _apply_granted(self, lease: Lease, slot: SlotAccount | None) -> None:
        # (Fields read once, the slot by identity first: a restart replays this per grant.)
        lease_id, expires_ns = lease.lease_id, lease.expires_ns
        if slot is None:
            key = lease.slot.key
            slot = self._slot_by_key_id.get(id(key)) or self._slot(key) or _not_in_inventory(key)
        if lease_id in self._live or lease_id in self._lapsed or lease_id in self._consumed:
            raise ValueError(f"event grants lease {lease_id!r} twice")
        self._take(slot)  # (raises before any change, as the check above)
        self._live[lease_id] = keep(lease, slot)
        slot.refs[lease.version][lease.reference] = lease_id
        self._deadlines.add(expires_ns, lease_id)
        slot.note_live(expires_ns, lease_id)
        self._live_leases += 1
        self._granted_total += 1

    def _apply_expired(self, lease_ids: Sequence[str]) -> None:
        """Expire these leases: one LeaseExpired event each (a storm applies thousands)."""
        live, lapsed, slots = self._live, self._lapsed, self._slot_list
        for lease_id in lease_ids:
            kept = live.pop(lease_id, None)
            if kept is None:
                raise ValueError(f"event expires lease {lease_id!r} that is not live")
            lapsed[lease_id] = kept
            slots[kept[KEPT_NUMBER]].holders -= 1
        self._expired.extend(lease_ids)
        self._live_leases -= len(lease_ids)
        self._expired_total += len(lease_ids)

    def _apply_forgotten(self, count: int) -> None:
        for _ in range(count):
            version, number, _, reference, _ = self._lapsed.pop(self._expired.popleft())
            del self._slot_list[number].refs[VERSION_OF[version]][reference]

    def _apply_cancelled(self, booking_id: str) -> None:
        booking, slot = self._placed(self._bookings[booking_id])
        self._release(booking, slot)
        self._bookings[booking_id] = replace(booking, status=BookingStatus.CANCELED)

    def _apply_rescheduled(self, booking_id: str, new_slot: SlotRef) -> None:
        booking, old = self._placed(self._bookings[booking_id])
        moved, target = self._placed(replace(booking, slot=new_slot))
        self._take(target)  # first: a full target raises before anything moves
        self._release(booking, old)
        self._book(moved, target, "", new=False)

    def _placed(self, stored: Booking) -> tuple[Booking, SlotAccount]:
        """`stored` (from the journal, a snapshot or the table) on its inventory slot's own
        key objects, with that slot (removed or not)."""
        key = stored.slot.key
        slot = self._slot_by_key_id.get(id(key))
        if slot is not None:  # (on the inventory's own key already: the common case)
            return stored, slot
        slot = self._account(key)
        if key is not slot.spec.key:
            stored = replace(stored, slot=slot.canonical(stored.slot))
        return stored, slot

    def _account(self, key: SlotKey) -> SlotAccount:
        """The slot account of `key`, bookable or removed; ValueError if there is none."""
        return self._slot(key) or self._removed.get(key) or _not_in_inventory(key)

    @staticmethod
    def _take(slot: SlotAccount) -> None:
        if slot.holders >= slot.spots or slot.removed:
            raise ValueError(f"event would overbook slot {slot.spec.key}")
        slot.holders += 1

    def _book(
        self, booking: Booking, slot: SlotAccount | None, token: str, new: bool = True
    ) -> None:
        """`booking` (CONFIRMED) holds a spot of `slot` (None: its own, looked up): stored,
        counted, its person counted among the slot's bookers and indexed by user, its
        idempotency token (if any) remembered.

        A new booking (BookingCreated) takes its spot here, its LIVE lease's or a free
        one, and counts as created; a restored or moved one (not new) has its spot.
        """
        if slot is None:
            # By key identity first (decoders hand over the inventory's own key objects):
            # then the booking is on them already. Else _placed makes it so.
            slot = self._slot_by_key_id.get(id(booking.slot.key))
            if slot is None:
                booking, slot = self._placed(booking)
        booking_id = booking.booking_id
        if new:
            lease_id = booking.lease_id
            if not lease_id:
                self._take(slot)
            elif self._live.get(lease_id, _NO_LEASE)[KEPT_NUMBER] == slot.number:
                # The booking takes over the lease's spot: holders are unchanged.
                self._consumed[lease_id] = (self._live.pop(lease_id), booking_id)
                self._live_leases -= 1
            else:
                raise ValueError(f"event books lease {lease_id!r} that is not usable")
            self._booked_total += 1
        person = booking.person
        user_id, email, telephone = person.user_id, person.email, person.telephone
        self._bookings[booking_id] = booking
        self._confirmed += 1
        if slot.removed:
            self._orphaned += 1
        self._by_user.add(user_id, booking_id)
        users = slot.booker_users
        users[user_id] = users.get(user_id, 0) + 1
        if email:
            emails = slot.booker_emails
            if emails is None:
                emails = slot.booker_emails = {}
            email = email.lower()
            emails[email] = emails.get(email, 0) + 1
        if telephone:
            phones = slot.booker_phones
            if phones is None:
                phones = slot.booker_phones = {}
            phones[telephone] = phones.get(telephone, 0) + 1
        if token:
            key = slot.spec.key
            self._tokens.remember((key.merchant_id, key.service_id, token), booking)

    def _release(self, booking: Booking, slot: SlotAccount) -> None:
        """`booking` gives up its spot of `slot` (the caller stores what it becomes): the
        inverse of _take and _book."""
        slot.holders -= 1
        self._confirmed -= 1
        if slot.removed:
            self._orphaned -= 1
        person = booking.person
        count_down(slot.booker_users, person.user_id)
        if person.email:
            assert slot.booker_emails is not None
            count_down(slot.booker_emails, person.email.lower())
        if person.telephone:
            assert slot.booker_phones is not None
            count_down(slot.booker_phones, person.telephone)

    # ----- housekeeping helpers ------------------------------------------------------

    def _kept_of(self, lease_id: str) -> Kept | None:
        """The lease `lease_id` as kept, whatever its state, or None if unknown."""
        kept = self._live.get(lease_id) or self._lapsed.get(lease_id)
        if kept is None:
            consumed = self._consumed.get(lease_id)
            if consumed is not None:
                kept, _ = consumed
        return kept

    def _live_expiry(self, lease_id: str) -> int | None:
        kept = self._live.get(lease_id)
        return None if kept is None else kept[KEPT_EXPIRES_NS]


# A snapshot's token (merchant_id, service_id, token, response) as TokenMemory keeps it.
_TOKEN_KEY = itemgetter(0, 1, 2)
_RESPONSE = itemgetter(3)

# What _live.get answers for a lease it does not hold: on no slot, expired at any time.
_NO_LEASE: Kept = (0, -1, "", "", -(1 << 63))


def _not_in_inventory(key: SlotKey) -> NoReturn:
    raise ValueError(f"stored state names slot {key} that is not in the inventory")


def _first_repeated(leases: Sequence[Lease]) -> str:
    seen: set[str] = set()
    for lease in leases:
        if lease.lease_id in seen:
            return lease.lease_id
        seen.add(lease.lease_id)
    raise AssertionError("no lease id repeats")


def _names_other_key(lease_id: str, key: SlotKey) -> bool:
    bucket = bucket_of_id(LEASE_ID_PREFIX, lease_id)
    return bucket is not None and bucket != routing_bucket(key.merchant_id, key.service_id)
