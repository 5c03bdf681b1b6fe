"""A shard's per-slot accounting, and its leases as the state keeps them.

Internal to ShardState (core/_state.py), which alone changes these.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Final

from leasehold.core._model import ApiVersion, Lease, LeaseState, Person, SlotRef, SlotSpec
from leasehold.core._routing import BOOKING_ID_PREFIX, LEASE_ID_PREFIX, id_head, routing_bucket


class SlotAccount:
    """Mutable per-slot accounting. Invariant: 0 <= holders; a grant or booking only while
    holders < spots (capacity may since have been lowered below the holders: nobody is
    evicted)."""

    __slots__ = (
        "booker_emails",
        "booker_phones",
        "booker_users",
        "booking_id_head",
        "bucket",
        "expiries",
        "expiring_ids",
        "holders",
        "lease_id_head",
        "number",
        "ref",
        "refs",
        "removed",
        "spec",
        "spots",
    )

    def __init__(self, spec: SlotSpec, number: int, refs: dict[ApiVersion, dict[str, str]]) -> None:
        self.spec = spec
        # This slot's place in ShardState._slot_list: kept leases name their slot so.
        self.number = number
        # The lease references of this slot's (merchant, service), per version: one
        # table shared by the service's slots (reference -> lease id). Keyed by plain
        # strings, so a lease's entry builds no key tuple (and the table no GC work).
        self.refs = refs
        self.spots = spec.spots  # (read on every grant: one attribute, not two)
        # The inventory's own SlotRef: leases and bookings share it (and its key) instead
        # of keeping the caller's copy, so later lookups hit dict identity fast paths.
        self.ref = SlotRef(spec.key, spec.availability_tag)
        self.bucket = routing_bucket(spec.key.merchant_id, spec.key.service_id)
        # Every id made here starts so: the bucket is formatted once, not per id.
        self.lease_id_head = id_head(LEASE_ID_PREFIX, self.bucket)
        self.booking_id_head = id_head(BOOKING_ID_PREFIX, self.bucket)
        self.holders = 0
        # Removed from sale by an inventory change: its CONFIRMED bookings stay (orphaned).
        self.removed = False
        # This slot's LIVE leases in expiry order (two parallel lists: expires_ns, id),
        # so that a command settles its own slot's due leases without a sweep of the
        # whole shard. May also list leases no longer LIVE (consumed, or expired by the
        # sweep): those are dropped when their expiry passes and the slot is next
        # settled, which every grant on it does first; so the lists hold at most the
        # leases granted on the slot within one maximum lease lifetime. (Not (expiry,
        # id) tuples: more memory a lease, and slower grants; see docs/performance.md.)
        self.expiries: list[int] = []
        self.expiring_ids: list[str] = []
        # Who holds this slot's CONFIRMED bookings, counted by each identity the
        # same-user rule compares, so the rule is one lookup however many booked:
        # user_id (v2's rule; counted even when empty), email in lower case and
        # telephone (v0's). Invariant: each counts exactly the CONFIRMED bookings
        # (kept so by ShardState._book and _release, with holders).
        self.booker_users: dict[str, int] = {}
        # (None until first needed: only v0 bookings carry these.)
        self.booker_emails: dict[str, int] | None = None
        self.booker_phones: dict[str, int] | None = None

    def note_live(self, expires_ns: int, lease_id: str) -> None:
        expiries = self.expiries
        if not expiries or expiries[-1] <= expires_ns:
            expiries.append(expires_ns)  # the common case: one TTL, leases in grant order
            self.expiring_ids.append(lease_id)
        else:
            at = bisect_right(expiries, expires_ns)
            expiries.insert(at, expires_ns)
            self.expiring_ids.insert(at, lease_id)

    def has_v0_booker_like(self, person: Person) -> bool:
        """The same-user rule of v0 (POLICY): a booking of the same email or telephone.
        (v2's is a lookup of the user_id in booker_users.)"""
        emails = self.booker_emails
        if person.email and emails and person.email.lower() in emails:
            return True
        phones = self.booker_phones
        return bool(person.telephone and phones and person.telephone in phones)

    @property
    def open_spots(self) -> int:
        # (Never negative: capacity lowered below the holders leaves none open.)
        return max(0, self.spots - self.holders)

    @property
    def bookings(self) -> int:
        """Its CONFIRMED bookings (booker_users counts each, empty user_id included)."""
        return sum(self.booker_users.values())

    def respecified(self, spec: SlotSpec) -> None:
        """Take `spec` (same key) as this slot's: capacity, tag and names. The key object
        stays the inventory's own (identity lookups and KnownSlots rely on it)."""
        key = self.spec.key
        self.spec = SlotSpec(
            key,
            spec.spots,
            spec.spots_total,
            spec.availability_tag,
            spec.staff_name,
            spec.room_name,
        )
        self.spots = spec.spots
        if spec.availability_tag != self.ref.availability_tag:
            self.ref = SlotRef(key, spec.availability_tag)

    def canonical(self, ref: SlotRef) -> SlotRef:
        """`ref` (equal key, the caller's tag) built on the inventory's key object."""
        return self.ref_with_tag(ref.availability_tag)

    def ref_with_tag(self, tag: str) -> SlotRef:
        if tag == self.ref.availability_tag:
            return self.ref
        return SlotRef(self.spec.key, tag)


# A lease as the state keeps it: a plain tuple of atoms, so that the cyclic collector
# untracks it at its first collection and never walks it again (Lease objects, or a
# NamedTuple, stay tracked: see docs/performance.md). Its fields, by name:
#     version_code, number, tag, reference, expires_ns = kept
# number: the slot's place in ShardState._slot_list. A Lease is rebuilt on demand.
Kept = tuple[int, int, str, str, int]
# Where Kept holds the field a reader wants alone (kept[KEPT_EXPIRES_NS]): in the bulk
# expiry loops an unpacking of all five costs more than the rest of the step.
KEPT_NUMBER: Final = 1
KEPT_EXPIRES_NS: Final = 4
VERSION_CODE = {ApiVersion.V0: 0, ApiVersion.V2: 2}
VERSION_OF = {code: version for version, code in VERSION_CODE.items()}


def rebuilt(
    slots: Sequence[SlotAccount],
    lease_id: str,
    kept: Kept,
    state: LeaseState = LeaseState.LIVE,
    booking_id: str = "",
) -> Lease:
    """The Lease that `kept` stands for, in `state` (equal to the one granted, if LIVE)."""
    version, number, tag, reference, expires_ns = kept
    ref = slots[number].ref_with_tag(tag)
    return Lease(lease_id, VERSION_OF[version], ref, reference, expires_ns, state, booking_id)


def keep(lease: Lease, slot: SlotAccount) -> Kept:
    """`lease` (on `slot`) as the state keeps it; see Kept."""
    tag = lease.slot.availability_tag
    return (VERSION_CODE[lease.version], slot.number, tag, lease.reference, lease.expires_ns)


def count_down(counts: dict[str, int], key: str) -> None:
    """One fewer of `key` in `counts`, which forgets it at zero."""
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]
