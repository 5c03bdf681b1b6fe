"""The slot, lease and booking lifecycle of one shard: the only module that owns it.

Rules and invariants
- A slot's *holders* are its LIVE leases plus its CONFIRMED bookings.
  Invariant: 0 <= holders <= spots for every slot, always; a grant or a booking
  that would break it is refused with SlotUnavailable.
- A lease is LIVE from its grant until `expires_ns` (exclusive), then EXPIRED;
  or it is CONSUMED by exactly one booking, which takes over its spot (no
  second spot). At and after `expires_ns` a lease counts as expired even if no
  timer has fired: a command first expires what is due at `now` on the slot it
  reads (_settle: O(1) when nothing is); `expire_due` sweeps the rest, in
  chunks if asked, so a storm of expiries never has to be taken in one go.
- Decide, then apply: a command validates everything against the state and
  builds events without changing anything (but for settling its slot: that is
  time passing, and stands whatever the answer); a refused command raises a
  BookingError and leaves the state untouched. Only `apply` changes state, and
  replaying the same events into a fresh state rebuilds it exactly.
- Memory is bounded: expired leases are remembered (for LEASE_EXPIRED answers)
  for `expired_retention_ns` and at most `max_remembered_expired` of them;
  v2 idempotency tokens are remembered up to `max_tokens`, oldest forgotten first.

Time: `now_ns` is wall-clock nanoseconds since the epoch, passed in by the caller.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Generic, TypeVar, assert_never

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
from leasehold.core._model import (
    NANOS_PER_SECOND,
    ApiVersion,
    Booking,
    BookingStatus,
    Lease,
    LeaseState,
    Person,
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
from leasehold.core._slots import VERSION_OF, Kept, SlotAccount, keep, rebuilt
from leasehold.core._snapshot import FrozenState, StateSnapshot, TokenKey

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


@dataclass(frozen=True, slots=True)
class Counters:
    live_leases: int
    confirmed_bookings: int
    leases_granted: int
    leases_expired: int
    bookings_created: int


# The booking a v2 CreateBooking just decided, with its slot and token key: _apply_booked
# applies that very object next (identity, not equality: an event from the journal takes
# the general path) without looking the slot up again by its SlotKey (a Python-level
# hash) or building the token key again. A private cache, not state: whatever is in it,
# apply changes the state exactly as without it.
_Decided = tuple[Booking, SlotAccount, TokenKey]


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
        services: dict[tuple[str, str], dict[ApiVersion, dict[str, str]]] = {}
        self._slots: dict[SlotKey, SlotAccount] = {}
        # The same slots by id() of the inventory's own key objects (alive as long as this
        # state, so no other live object has their id): a lookup of one of them (as the
        # gateway's decoder and canonical refs hand us) skips SlotKey.__hash__, a Python call.
        self._slot_by_key_id: dict[int, SlotAccount] = {}
        self._slot_list: list[SlotAccount] = []  # Invariant: never changes after this
        for spec in slots:
            refs = services.setdefault(
                (spec.key.merchant_id, spec.key.service_id), {v: {} for v in ApiVersion}
            )
            slot = SlotAccount(spec, len(self._slot_list), refs)
            self._slots[spec.key] = slot
            self._slot_by_key_id[id(spec.key)] = slot
            self._slot_list.append(slot)
        self._services = set(services)
        # Every remembered lease is in exactly one of these, by its state, kept as granted
        # (see Kept; no per-lease wrapper with a state: that was 56 bytes a lease, and a
        # wrapper made per expiry cost bulk expiry a quarter of its speed). Values never
        # change: a transition moves the lease on.
        self._live: dict[str, Kept] = {}
        # EXPIRED leases, remembered for LEASE_EXPIRED answers.
        self._lapsed: dict[str, Kept] = {}
        # CONSUMED leases, each with the booking that took over its spot.
        self._consumed: dict[str, tuple[Kept, str]] = {}
        # Invariant: every LIVE lease is listed at its expiry.
        self._deadlines = Deadlines()
        # Expired leases in expiry order, oldest first, for bounded remembering.
        self._expired: deque[str] = deque()
        # Each booking's Booking and Person stay GC-tracked: the collector's passes over
        # them were ~8% of bench core's consume window (stop 13: ~50 of ~640 ms, young
        # and middle generations). Bookings kept as tuples of atoms, rebuilt on demand as
        # leases are (Kept), would save most of that; a scratch try at stop 11 cut the
        # GC time but not the wall time, so they stay objects.
        self._bookings: dict[str, Booking] = {}
        # user_id -> the id of the user's one booking here, or a set once there are more
        # (most users book once per shard: a set each was 200 bytes and a GC object).
        self._by_user: dict[str, str | set[str]] = {}
        # The oldest token is forgotten first past max_tokens, in the order of
        # _token_order (the dict's own insertion order too). Not found by
        # `next(iter(...))`: deleting a dict's first key leaves a hole that the next
        # such call walks past (29 us per booking at 100k tokens, growing); and not an
        # OrderedDict, whose linked nodes made storing a token ~0.4 us of a ~6.5 us
        # booking in bench core.
        self._tokens: dict[TokenKey, Booking] = {}
        self._token_order: deque[TokenKey] = deque()
        self._decided: _Decided | None = None
        # Leases the current command's _settle expired (see _run).
        self._settled: list[str] = []
        self._live_leases = 0
        self._confirmed = 0
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
        return self._deadlines.next_ns()

    def slot_specs(self) -> Iterable[SlotSpec]:
        return (s.spec for s in self._slots.values())

    def open_spots(self, key: SlotKey) -> int | None:
        slot = self._slots.get(key)
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
            self._slot_list,
            dict(self._live),
            dict(self._lapsed),
            dict(self._consumed),
            tuple(self._expired),
            list(self._bookings.values()),
            list(self._tokens.items()),
            (self._granted_total, self._expired_total, self._booked_total),
        )

    def canonical_ref(self, ref: SlotRef) -> SlotRef:
        """`ref` on the inventory's own key object (as the state would keep it), if known.

        Decoders that hand the state refs built this way spare it a copy per lease.
        """
        slot = self._slots.get(ref.key)
        return ref if slot is None else slot.canonical(ref)

    def restore(self, snapshot: StateSnapshot) -> None:
        """Load a snapshot into this fresh state (built from the inventory it was taken on).

        Raises ValueError if the state is not fresh, or if the snapshot does not fit the
        inventory (a slot it names is gone, or holds more than its spots).
        """
        if self._live or self._lapsed or self._consumed or self._bookings or self._tokens:
            raise ValueError("restore needs a fresh ShardState")
        for lease in snapshot.leases:
            self._restore_lease(lease)
        self._list_restored_expiries()
        self._expired.extend(snapshot.expired_order)
        for stored in snapshot.bookings:
            slot = self._known_slot(stored.slot.key)
            booking = self._canonical_booking(stored, slot)
            if booking.status is BookingStatus.CONFIRMED:
                self._take(slot)
                self._add_confirmed(booking, slot)
            else:
                self._bookings[booking.booking_id] = booking
            self._index_by_user(booking)
        for merchant_id, service_id, token, booking in snapshot.tokens:
            self._remember_token((merchant_id, service_id, token), booking)
        self._granted_total, self._expired_total, self._booked_total = snapshot.totals

    def _list_restored_expiries(self) -> None:
        """Each slot's expiry lists from its restored LIVE leases, sorted once: a snapshot
        lists leases in grant order, and inserting those of mixed lifetimes one by one
        would move O(n) entries each (O(n^2) for a slot of many spots)."""
        by_slot: dict[int, list[tuple[int, str]]] = {}
        for lease_id, kept in self._live.items():
            by_slot.setdefault(kept[1], []).append((kept[4], lease_id))  # (expires_ns, id)
        for number, entries in by_slot.items():
            entries.sort(key=itemgetter(0))  # (stable: equal expiries stay in grant order)
            slot = self._slot_list[number]
            slot.expiries = [expires_ns for expires_ns, _ in entries]
            slot.expiring_ids = [lease_id for _, lease_id in entries]

    def _restore_lease(self, lease: Lease) -> None:
        slot = self._known_slot(lease.slot.key)
        if self._is_known_lease(lease.lease_id):
            raise ValueError(f"the snapshot holds lease {lease.lease_id!r} twice")
        kept = keep(lease, slot)
        slot.refs[lease.version][lease.reference] = lease.lease_id
        if lease.state is LeaseState.LIVE:
            self._take(slot)
            self._live[lease.lease_id] = kept
            self._deadlines.add(lease.expires_ns, lease.lease_id)
            self._live_leases += 1
        elif lease.state is LeaseState.EXPIRED:
            self._lapsed[lease.lease_id] = kept
        else:
            self._consumed[lease.lease_id] = (kept, lease.booking_id)

    # ----- time ----------------------------------------------------------------------

    def expire_due(self, now_ns: int, limit: int | None = None) -> tuple[Event, ...]:
        """Sweep: expire the leases due at `now_ns` (all, or about `limit` of them), and
        forget expired leases past retention.

        With a limit, the rest stays due: call again while next_deadline_ns() <= now_ns
        (the shard's timer does, yielding between calls, so 100k leases due at one instant
        do not stall every shard). Commands need no sweep first: each settles the slot it
        reads (see _settle).
        """
        events: list[Event] = []
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
            key = slots[kept[1]].spec.key
            if scope is None:
                scope = (key.merchant_id, key.service_id)
            elif key.merchant_id != scope[0] or key.service_id != scope[1]:
                return None
        return scope

    def _forget_due(self, now_ns: int) -> tuple[Event, ...]:
        """Forget expired leases past retention or the cap: O(1) when there are none."""
        if not self._may_forget(now_ns):
            return ()
        forget = self._count_forgettable(now_ns)
        if not forget:
            return ()
        forgotten = ExpiredLeasesForgotten(forget)
        self.apply(forgotten)
        return (forgotten,)

    def _settle(self, slot: SlotAccount, now_ns: int) -> None:
        """Expire `slot`'s leases due at `now_ns`, before a command reads its holders.

        This is time passing, not the command: it stands if the command is refused, and
        its events lead the command's (_run collects them from _settled). Work: the
        slot's due leases (at most its spots, plus entries of leases consumed or swept
        since the slot was last settled); O(1) when nothing of the slot is due.
        """
        expiries = slot.expiries
        if not expiries or expiries[0] > now_ns:
            return
        cut = bisect_right(expiries, now_ns)
        ids = slot.expiring_ids
        live = self._live
        due = [lease_id for lease_id in ids[:cut] if lease_id in live]
        del expiries[:cut]
        del ids[:cut]
        if due:
            self._apply_expired(due)
            self._settled.extend(due)

    def _settled_events(self, before: tuple[Event, ...]) -> tuple[Event, ...]:
        """`before`, then an expiry event for each lease the command's _settle expired."""
        settled = self._settled
        if not settled:
            return before
        self._settled = []
        return (*before, *map(LeaseExpiredEvent, settled))

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

    def _run(
        self, now_ns: int, decide: Callable[[C, int], tuple[R, tuple[Event, ...]]], c: C
    ) -> Outcome[R]:
        """Forget what is past retention, decide, then apply: a refusal applies nothing of
        its own. Deciding settles the slots the command reads (_settle): a lease counts as
        expired from its instant on, whether or not the shard's sweep has reached it.

        (`decide` is a bound method taking the command: a closure per command cost
        ~0.1 us of a ~6 us grant.)
        """
        # (Both conditions written out ahead of their calls: most commands need neither.)
        forgotten = self._forget_due(now_ns) if self._expired else ()
        try:
            result, events = decide(c, now_ns)
        except BookingError as refusal:
            # A refusal is an answer, not a failure: its traceback goes. Kept, its frames
            # (and through f_back the shard's, which holds the refusal as its result) made
            # a reference cycle per refusal that only the cyclic GC frees: ~20 objects
            # each, 4-9 ms young collections every ~270 ms in the contention bench.
            return Outcome(self._settled_events(forgotten), refusal.with_traceback(None))
        for event in events:
            self.apply(event)
        before = self._settled_events(forgotten) if self._settled else forgotten
        return Outcome(before + events if before else events, result)

    # ----- deciding (reads state; changes none, but for settling a slot) -------------

    def _decide_check(self, c: cmd.CheckAvailability, now_ns: int) -> tuple[int, tuple[()]]:
        slot = self._require_slot(c.slot)
        self._settle(slot, now_ns)
        return slot.open_spots, ()

    def _decide_batch(
        self, c: cmd.BatchAvailability, now_ns: int
    ) -> tuple[tuple[int | None, ...], tuple[()]]:
        return tuple(self._open_spots_at(k, now_ns) for k in c.slots), ()

    def _open_spots_at(self, key: SlotKey, now_ns: int) -> int | None:
        slot = self._find_slot(key)
        if slot is None:
            return None
        self._settle(slot, now_ns)
        return slot.open_spots

    def _decide_get(self, c: cmd.GetBooking, now_ns: int) -> tuple[Booking, tuple[()]]:
        return self._require_booking(c.booking_id), ()

    def _decide_lease(self, c: cmd.CreateLease, now_ns: int) -> tuple[Lease, tuple[Event, ...]]:
        if not c.reference:
            raise InvalidArgument("a lease reference is required", field="reference")
        slot = self._find_slot(c.slot.key) or self._require_slot(c.slot.key)
        self._settle(slot, now_ns)
        existing_id = slot.refs[c.version].get(c.reference)
        if existing_id is not None:
            existing = self._kept_of(existing_id)
            assert existing is not None, "a reference outlived its lease"
            if existing[1] != slot.number:
                raise ReferenceConflict(
                    f"reference {c.reference!r} already holds a lease on another slot",
                    field="reference",
                )
            # Idempotent replay: the same lease as granted (whatever its state), no
            # second spot.
            return rebuilt(self._slot_list, existing_id, existing), ()
        expires_ns = self._lease_expiry(c.requested_expiry_ns, now_ns)
        if slot.holders >= slot.spots:
            raise SlotUnavailable("no open spot left on this slot", field="slot")
        lease_id = id_from_head(slot.lease_id_head, self._entropy())
        lease = Lease(lease_id, c.version, slot.canonical(c.slot), c.reference, expires_ns)
        return lease, (LeaseGranted(lease),)

    def _lease_expiry(self, requested_ns: int | None, now_ns: int) -> int:
        if requested_ns is None:
            return now_ns + self.settings.default_ttl_ns
        if requested_ns <= now_ns:
            raise InvalidArgument(
                "the requested lease expiration time is not in the future",
                field="lease_expiration_time",
            )
        return min(requested_ns, now_ns + self.settings.max_ttl_ns)

    def _decide_booking_v2(
        self, c: cmd.CreateBooking, now_ns: int
    ) -> tuple[Booking, tuple[Event, ...]]:
        requested = c.slot
        if requested is None:
            raise InvalidArgument("the slot is required", field="slot")
        key = requested.key
        token = c.idempotency_token
        if not token:
            raise InvalidArgument("an idempotency token is required", field="idempotency_token")
        token_key = (key.merchant_id, key.service_id, token)
        replay = self._tokens.get(token_key)
        if replay is not None:
            return replay, ()  # the identical response; nothing created
        person = c.person
        if not person.user_id:
            raise InvalidArgument("user_id is required", field="user_id")
        # (_find_slot and _settle's nothing-due test, written out: two calls a booking.)
        slot = self._slot_by_key_id.get(id(key)) or self._require_slot(key)
        expiries = slot.expiries
        if expiries and expiries[0] <= now_ns:
            self._settle(slot, now_ns)
        lease_id = c.lease_id
        if lease_id:
            # The common case written out (a LIVE lease of this slot, not yet due); any
            # other goes through _usable_lease for its refusal.
            kept = self._live.get(lease_id)
            if kept is None or kept[1] != slot.number or kept[4] <= now_ns:
                self._usable_lease(lease_id, now_ns, key)
        users = slot.booker_users  # the same-user rule, v2 (SlotAccount.has_booker_like)
        if users is not None and person.user_id in users:
            raise SlotAlreadyBookedByUser(_SAME_USER, field="user")
        if not lease_id and slot.holders >= slot.spots:
            raise SlotUnavailable("no open spot left on this slot", field="slot")
        booking_id = id_from_head(slot.booking_id_head, self._entropy())
        ref = slot.ref  # (slot.canonical, written out)
        if requested.availability_tag != ref.availability_tag:
            ref = SlotRef(ref.key, requested.availability_tag)
        booking = Booking(booking_id, ref, person, BookingStatus.CONFIRMED, lease_id)
        # What _apply_booked would look up again for this booking (see _Decided).
        self._decided = (booking, slot, token_key)
        return booking, (BookingCreated(booking, token),)

    def _decide_booking_v0(
        self, c: cmd.CreateBooking, now_ns: int
    ) -> tuple[Booking, tuple[Event, ...]]:
        if not c.lease_id:
            raise InvalidArgument("a lease reference is required", field="lease_ref")
        consumed = self._consumed.get(c.lease_id)
        if consumed is not None:
            return self._bookings[consumed[1]], ()  # v0 replay returns that booking
        _, number, tag, _, _ = self._usable_lease(c.lease_id, now_ns, None)
        slot = self._slot_list[number]
        self._refuse_same_user(slot, c.person, ApiVersion.V0)
        booking = self._new_booking(slot, slot.ref_with_tag(tag), c.person, c.lease_id)
        return booking, (BookingCreated(booking),)

    def _usable_lease(self, lease_id: str, now_ns: int, request_key: SlotKey | None) -> Kept:
        """The LIVE lease `lease_id`, or the refusal that says why it cannot back a booking."""
        kept = self._live.get(lease_id)
        live = kept is not None
        if kept is None:
            kept = self._kept_of(lease_id)
        if kept is None:
            if request_key is not None and _names_other_key(lease_id, request_key):
                # Our ids carry their slot's routing bucket: this one cannot be for this slot.
                raise InvalidArgument("the lease is for another merchant or service", field="slot")
            raise NotFound(f"lease {lease_id!r} is unknown", field="lease_ref")
        if request_key is not None:
            leased = self._slot_list[kept[1]].spec.key
            if leased is not request_key and leased != request_key:
                raise InvalidArgument("the slot differs from the leased slot", field="slot")
        if not live and lease_id in self._consumed:
            raise NotFound(f"lease {lease_id!r} was already used by a booking", field="lease_ref")
        if not live or kept[4] <= now_ns:  # (kept[4]: expires_ns)
            raise LeaseExpired(f"lease {lease_id!r} has expired", field="lease_ref")
        return kept

    def _refuse_same_user(self, slot: SlotAccount, person: Person, version: ApiVersion) -> None:
        if slot.has_booker_like(person, version):
            raise SlotAlreadyBookedByUser(_SAME_USER, field="user")

    def _new_booking(
        self, slot: SlotAccount, ref: SlotRef, person: Person, lease_id: str
    ) -> Booking:
        booking_id = id_from_head(slot.booking_id_head, self._entropy())
        return Booking(booking_id, ref, person, BookingStatus.CONFIRMED, lease_id)

    def _decide_cancel(
        self, c: cmd.CancelBooking, now_ns: int
    ) -> tuple[Booking, tuple[Event, ...]]:
        booking = self._require_booking(c.booking_id)
        if booking.status is BookingStatus.CANCELED:
            return booking, ()  # cancelling twice is idempotent
        event = BookingCancelled(booking.booking_id)
        return replace(booking, status=BookingStatus.CANCELED), (event,)

    def _decide_reschedule(
        self, c: cmd.RescheduleBooking, now_ns: int
    ) -> tuple[Booking, tuple[Event, ...]]:
        booking = self._require_booking(c.booking_id)
        old = booking.slot.key
        new_key = replace(
            old,
            start_sec=old.start_sec if c.new_start_sec is None else c.new_start_sec,
            duration_sec=old.duration_sec if c.new_duration_sec is None else c.new_duration_sec,
        )
        if booking.status is BookingStatus.CANCELED:
            raise BookingAlreadyCancelled("the booking was cancelled", field="status")
        target = self._require_slot(new_key)
        if new_key == old:
            return booking, ()
        self._settle(target, now_ns)
        if target.open_spots <= 0:
            raise SlotUnavailable("no open spot left on the new slot", field="slot")
        new_slot = SlotRef(new_key, target.spec.availability_tag)
        event = BookingRescheduled(booking.booking_id, new_slot)
        return replace(booking, slot=new_slot), (event,)

    def _upcoming_bookings(
        self, c: cmd.ListBookings, now_ns: int
    ) -> tuple[tuple[Booking, ...], tuple[()]]:
        user_id = c.user_id
        if not user_id:
            raise InvalidArgument("user_id is required", field="user_id")
        now_sec = now_ns // NANOS_PER_SECOND
        indexed = self._by_user.get(user_id, ())
        found = (self._bookings[b] for b in ((indexed,) if isinstance(indexed, str) else indexed))
        upcoming = [
            b for b in found if b.status is BookingStatus.CONFIRMED and b.slot.key.end_sec > now_sec
        ]
        upcoming.sort(key=lambda b: (b.slot.key.start_sec, b.booking_id))
        return tuple(upcoming), ()

    def _require_slot(self, key: SlotKey) -> SlotAccount:
        slot = self._slots.get(key)
        if slot is not None:
            return slot
        if (key.merchant_id, key.service_id) not in self._services:
            raise InvalidArgument(
                f"unknown merchant_id/service_id {key.merchant_id!r}/{key.service_id!r}",
                field="merchant_id",
            )
        raise InvalidArgument(
            "no inventory slot has this start, duration and resources", field="slot"
        )

    def _require_booking(self, booking_id: str) -> Booking:
        if not booking_id:
            raise InvalidArgument("booking_id is required", field="booking_id")
        booking = self._bookings.get(booking_id)
        if booking is None:
            raise NotFound(f"booking {booking_id!r} is unknown", field="booking_id")
        return booking

    # ----- applying (the only code that changes state) -------------------------------

    def apply(self, event: Event) -> None:
        # The commonest kinds first: each test is a call.
        if isinstance(event, LeaseGranted):
            self._apply_granted(event.lease)
        elif isinstance(event, BookingCreated):
            self._apply_booked(event.booking, event.idempotency_token)
        elif isinstance(event, LeaseExpiredEvent):
            self._apply_expired((event.lease_id,))
        elif isinstance(event, BookingCancelled):
            self._apply_cancelled(event.booking_id)
        elif isinstance(event, ExpiredLeasesForgotten):
            self._apply_forgotten(event.count)
        elif isinstance(event, BookingRescheduled):
            self._apply_rescheduled(event.booking_id, event.new_slot)
        else:
            assert_never(event)

    def _apply_granted(self, lease: Lease) -> None:
        slot = self._known_slot(lease.slot.key)
        if self._is_known_lease(lease.lease_id):
            raise ValueError(f"event grants lease {lease.lease_id!r} twice")
        self._take(slot)  # (raises before any change, as the check above)
        self._live[lease.lease_id] = keep(lease, slot)
        slot.refs[lease.version][lease.reference] = lease.lease_id
        self._deadlines.add(lease.expires_ns, lease.lease_id)
        slot.note_live(lease.expires_ns, lease.lease_id)
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
            slots[kept[1]].holders -= 1
        self._expired.extend(lease_ids)
        self._live_leases -= len(lease_ids)
        self._expired_total += len(lease_ids)

    def _apply_forgotten(self, count: int) -> None:
        for _ in range(count):
            version, number, _, reference, _ = self._lapsed.pop(self._expired.popleft())
            del self._slot_list[number].refs[VERSION_OF[version]][reference]

    def _apply_booked(self, created: Booking, token: str) -> None:
        decided = self._decided
        if decided is not None and decided[0] is created:
            # The booking _decide_booking_v2 just made: its slot and token key are known.
            self._decided = None
            booking, slot, token_key = decided
        else:
            booking, slot, token_key = self._placed(created, token)
        lease_id = booking.lease_id
        booking_id = booking.booking_id
        if lease_id:
            live = self._live
            kept = live.get(lease_id)
            if kept is None or kept[1] != slot.number:
                raise ValueError(f"event books lease {lease_id!r} that is not usable")
            # The booking takes over the lease's spot: holders are unchanged.
            del live[lease_id]
            self._consumed[lease_id] = (kept, booking_id)
            self._live_leases -= 1
        else:
            self._take(slot)
        self._bookings[booking_id] = booking  # (_add_confirmed, written out)
        person = booking.person
        users = slot.booker_users
        if users is None or person.email or person.telephone:
            slot.add_booker(person)
        else:  # (the v2 common case of add_booker, written out)
            users[person.user_id] = users.get(person.user_id, 0) + 1
        self._confirmed += 1
        user_id = person.user_id
        if user_id:  # (_index_by_user, written out)
            indexed = self._by_user.setdefault(user_id, booking_id)
            if indexed is not booking_id:
                self._index_another(user_id, indexed, booking_id)
        if token:
            self._remember_token(token_key, booking)
        self._booked_total += 1

    def _placed(self, created: Booking, token: str) -> _Decided:
        """`created` (from the journal, or v0) on its inventory slot's own key objects,
        with that slot and its token key: what _Decided caches for a v2 booking."""
        # (A hot path too, for recovery: _canonical_booking written out.)
        slot = self._find_slot(created.slot.key) or self._known_slot(created.slot.key)
        key = slot.spec.key
        booking = (
            created
            if created.slot.key is key
            else replace(created, slot=slot.canonical(created.slot))
        )
        return booking, slot, (key.merchant_id, key.service_id, token)

    def _remember_token(self, key: TokenKey, response: Booking) -> None:
        tokens = self._tokens
        known = len(tokens)
        tokens[key] = response
        if len(tokens) != known:  # (a new key; a stored history never repeats one)
            order = self._token_order
            order.append(key)
            if known >= self.settings.max_tokens:
                del tokens[order.popleft()]

    def _apply_cancelled(self, booking_id: str) -> None:
        booking = self._bookings[booking_id]
        slot = self._slots[booking.slot.key]
        slot.holders -= 1
        slot.remove_booker(booking.person)
        self._bookings[booking_id] = replace(booking, status=BookingStatus.CANCELED)
        self._confirmed -= 1

    def _apply_rescheduled(self, booking_id: str, new_slot: SlotRef) -> None:
        booking = self._bookings[booking_id]
        target = self._known_slot(new_slot.key)
        new_slot = target.canonical(new_slot)
        self._take(target)  # first: a full target raises before anything moves
        old = self._slots[booking.slot.key]
        old.holders -= 1
        old.remove_booker(booking.person)
        self._confirmed -= 1
        self._add_confirmed(replace(booking, slot=new_slot), target)

    @staticmethod
    def _canonical_booking(booking: Booking, slot: SlotAccount) -> Booking:
        if booking.slot.key is slot.spec.key:
            return booking
        return replace(booking, slot=slot.canonical(booking.slot))

    def _find_slot(self, key: SlotKey) -> SlotAccount | None:
        """The slot of `key`; by identity first (the inventory's own key objects, as
        decoders and canonical refs hand them over), which skips SlotKey.__hash__."""
        return self._slot_by_key_id.get(id(key)) or self._slots.get(key)

    def _known_slot(self, key: SlotKey) -> SlotAccount:
        slot = self._slots.get(key)
        if slot is None:
            raise ValueError(f"stored state names slot {key} that is not in the inventory")
        return slot

    @staticmethod
    def _take(slot: SlotAccount) -> None:
        if slot.holders >= slot.spots:
            raise ValueError(f"event would overbook slot {slot.spec.key}")
        slot.holders += 1

    def _add_confirmed(self, booking: Booking, slot: SlotAccount) -> None:
        self._bookings[booking.booking_id] = booking
        slot.add_booker(booking.person)
        self._confirmed += 1

    def _index_by_user(self, booking: Booking) -> None:
        """For ListBookings. v0 bookings carry no user_id: nothing to list them by."""
        user_id = booking.person.user_id
        if not user_id:
            return
        booking_id = booking.booking_id
        # One probe for a user's first booking here (the common case): ids are unique,
        # so getting this very id back means it went in.
        indexed = self._by_user.setdefault(user_id, booking_id)
        if indexed is not booking_id:
            self._index_another(user_id, indexed, booking_id)

    def _index_another(self, user_id: str, indexed: str | set[str], booking_id: str) -> None:
        if isinstance(indexed, str):
            self._by_user[user_id] = {indexed, booking_id}
        else:
            indexed.add(booking_id)

    # ----- housekeeping helpers ------------------------------------------------------

    def _kept_of(self, lease_id: str) -> Kept | None:
        """The lease `lease_id` as kept, whatever its state, or None if unknown."""
        kept = self._live.get(lease_id) or self._lapsed.get(lease_id)
        if kept is None and lease_id in self._consumed:
            kept = self._consumed[lease_id][0]
        return kept

    def _is_known_lease(self, lease_id: str) -> bool:
        return lease_id in self._live or lease_id in self._lapsed or lease_id in self._consumed

    def _live_expiry(self, lease_id: str) -> int | None:
        kept = self._live.get(lease_id)
        return None if kept is None else kept[4]  # (expires_ns)

    def _may_forget(self, now_ns: int) -> bool:
        """Whether _count_forgettable may find anything: O(1), from the oldest remembered."""
        expired = self._expired
        if not expired:
            return False
        if len(expired) > self.settings.max_remembered_expired:
            return True
        oldest = self._lapsed[expired[0]][4]  # (expires_ns)
        return oldest <= now_ns - self.settings.expired_retention_ns

    def _count_forgettable(self, now_ns: int) -> int:
        if not self._expired:
            return 0
        over_cap = max(0, len(self._expired) - self.settings.max_remembered_expired)
        horizon = now_ns - self.settings.expired_retention_ns
        count = over_cap
        for lease_id in itertools.islice(self._expired, over_cap, None):
            if self._lapsed[lease_id][4] > horizon:  # (expires_ns)
                break
            count += 1
        return count


def _names_other_key(lease_id: str, key: SlotKey) -> bool:
    bucket = bucket_of_id(LEASE_ID_PREFIX, lease_id)
    return bucket is not None and bucket != routing_bucket(key.merchant_id, key.service_id)
