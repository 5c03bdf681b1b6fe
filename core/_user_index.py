"""A shard's bookings by user, for ListBookings."""

from __future__ import annotations

from collections.abc import Iterable


class UserIndex:
    """user_id -> the ids of the user's bookings here (every status; never forgets one)."""

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        # A user's one booking id, or a set once there are more: most users book once per
        # shard, and a set each is a GC-tracked object several times a string's size.
        # Invariant: a set here holds at least two ids.
        self._ids: dict[str, str | set[str]] = {}

    def add(self, user_id: str, booking_id: str) -> None:
        """Index `booking_id` (new: ids are unique) under `user_id`; v0 has none: no-op."""
        if not user_id:
            return
        # One probe for a user's first booking (the common case): getting this very id
        # back means it went in.
        indexed = self._ids.setdefault(user_id, booking_id)
        if indexed is booking_id:
            return
        if isinstance(indexed, str):
            self._ids[user_id] = {indexed, booking_id}
        else:
            indexed.add(booking_id)

    def booking_ids(self, user_id: str) -> Iterable[str]:
        indexed = self._ids.get(user_id, ())
        return (indexed,) if isinstance(indexed, str) else indexed
