"""One table from a command to the ShardState method that runs it."""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from leasehold import core
from leasehold.core import Outcome, ShardState

# Looked up by the command's exact type: one dict probe per request instead of a chain
# of isinstance checks. A test checks that every member of core.Command has a row.
_METHODS: Mapping[type[core.Command], Callable[[ShardState, Any, int], Outcome[Any]]] = {
    core.CheckAvailability: ShardState.check_availability,
    core.BatchAvailability: ShardState.batch_availability,
    core.CreateLease: ShardState.create_lease,
    core.CreateBooking: ShardState.create_booking,
    core.CancelBooking: ShardState.cancel_booking,
    core.RescheduleBooking: ShardState.reschedule_booking,
    core.GetBooking: ShardState.get_booking,
    core.ListBookings: ShardState.list_bookings,
    core.ChangeInventory: ShardState.change_inventory,
    core.ListInventory: ShardState.list_inventory,
}


def execute(state: ShardState, command: core.Command, now_ns: int) -> Outcome[Any]:
    return _METHODS[type(command)](state, command, now_ns)


def handled_commands() -> frozenset[type[core.Command]]:
    return frozenset(_METHODS)


@cache
def result_type(command_type: type[core.Command]) -> Any:
    """What a command's Outcome carries (from its method's annotation): the link decodes
    replies by it, so a new command's results cross without a codec change."""
    (result,) = typing.get_args(typing.get_type_hints(_METHODS[command_type])["return"])
    return result
