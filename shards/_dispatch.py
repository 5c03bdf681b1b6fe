"""One table from a command to the ShardState method that runs it."""

from __future__ import annotations

from typing import Any, assert_never

import core
from core import Outcome, ShardState


def execute(state: ShardState, command: core.Command, now_ns: int) -> Outcome[Any]:
    if isinstance(command, core.CheckAvailability):
        return state.check_availability(command, now_ns)
    if isinstance(command, core.BatchAvailability):
        return state.batch_availability(command, now_ns)
    if isinstance(command, core.CreateLease):
        return state.create_lease(command, now_ns)
    if isinstance(command, core.CreateBooking):
        return state.create_booking(command, now_ns)
    if isinstance(command, core.CancelBooking):
        return state.cancel_booking(command, now_ns)
    if isinstance(command, core.RescheduleBooking):
        return state.reschedule_booking(command, now_ns)
    if isinstance(command, core.GetBooking):
        return state.get_booking(command, now_ns)
    if isinstance(command, core.ListBookings):
        return state.list_bookings(command, now_ns)
    assert_never(command)
