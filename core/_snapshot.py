"""A ShardState's contents as plain values (snapshots), and its cheap frozen copy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from leasehold.core._model import Booking, Lease, LeaseState, SlotSpec
from leasehold.core._slots import Kept, SlotAccount, rebuilt
from leasehold.core._tokens import TokenKey


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """Everything a ShardState remembers, as plain values; the rest is derived on restore."""

    # Every remembered lease, with its lifecycle state (views: state and booking_id set).
    leases: tuple[Lease, ...]
    # Ids of remembered expired leases, oldest first (the forgetting order).
    expired_order: tuple[str, ...]
    bookings: tuple[Booking, ...]
    # (merchant_id, service_id, token, the original response), oldest first.
    tokens: tuple[tuple[str, str, str, Booking], ...]
    # Lifetime totals: leases granted, leases expired, bookings created.
    totals: tuple[int, int, int]
    # Every slot account's spec and whether it is removed from sale, when inventory
    # changes made it differ from the inventory the state was built on; None: as built.
    inventory: tuple[tuple[SlotSpec, bool], ...] | None = None


class FrozenState:
    """A ShardState's contents at one instant, as cheap copies of its tables.

    Made in milliseconds on the shard's thread (C-level copies of dicts whose
    values never change in place); `materialize`, the per-object work, may then
    run in a worker thread while the shard goes on.
    """

    __slots__ = (
        "_bookings",
        "_consumed",
        "_expired",
        "_inventory",
        "_lapsed",
        "_live",
        "_slots",
        "_tokens",
        "_totals",
    )

    def __init__(
        self,
        slots: Sequence[SlotAccount],
        live: dict[str, Kept],
        lapsed: dict[str, Kept],
        consumed: dict[str, tuple[Kept, str]],
        expired: tuple[str, ...],
        bookings: list[Booking],
        tokens: list[tuple[TokenKey, Booking]],
        totals: tuple[int, int, int],
        inventory: tuple[tuple[SlotSpec, bool], ...] | None = None,
    ) -> None:
        # (Only the number and ref of their accounts are read, which an inventory change
        # leaves alone for what a kept lease needs: its key and tag. A copy: it grows.)
        self._slots = slots
        self._live = live
        self._lapsed = lapsed
        self._consumed = consumed
        self._expired = expired
        self._bookings = bookings
        self._tokens = tokens
        self._totals = totals
        self._inventory = inventory

    def materialize(self) -> StateSnapshot:
        return StateSnapshot(
            leases=(
                *(rebuilt(self._slots, i, kept) for i, kept in self._live.items()),
                *(
                    rebuilt(self._slots, i, kept, LeaseState.EXPIRED)
                    for i, kept in self._lapsed.items()
                ),
                *(
                    rebuilt(self._slots, i, kept, LeaseState.CONSUMED, booking_id)
                    for i, (kept, booking_id) in self._consumed.items()
                ),
            ),
            expired_order=self._expired,
            bookings=tuple(self._bookings),
            tokens=tuple((m, s, t, b) for (m, s, t), b in self._tokens),
            totals=self._totals,
            inventory=self._inventory,
        )
