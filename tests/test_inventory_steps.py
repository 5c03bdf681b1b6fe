"""A big change's steps carry only their own slots (core.step_window), and applying
them one after another leaves the inventory the whole change asks for."""

from __future__ import annotations

from dataclasses import replace

import pytest
from _core_helpers import ok

from leasehold.core import (
    ChangeInventory,
    ShardState,
    SlotKey,
    SlotSpec,
    Window,
    step_window,
    whole_inventory,
)


def slot(start: int, staff: str = "a", spots: int = 1) -> SlotSpec:
    return SlotSpec(SlotKey("m", "s", start, 10, staff_id=staff), spots, spots)


def every_start(starts: range, staffs: str = "ab", spots: int = 1) -> list[SlotSpec]:
    return [slot(start, staff, spots) for start in starts for staff in staffs]


@pytest.mark.parametrize("step_slots", [1, 2, 3, 5, 250])
def test_a_step_lists_whole_starts_and_every_slot_before_its_end(step_slots: int) -> None:
    listing = whole_inventory(every_start(range(1000, 1100, 10)))  # 10 starts of 2 slots
    window = listing
    while True:
        step = step_window(window, step_slots)
        assert window.start_sec == step.start_sec < step.end_sec <= window.end_sec
        before_end = [s for s in window.listed() if s.key.start_sec < step.end_sec]
        assert list(step.slots) == before_end  # nothing left out, nothing past its end
        # Whole starts: at least one, and no more slots than the budget unless one start
        # alone holds more.
        assert len(step.slots) <= max(step_slots, 2)
        if step.end_sec == window.end_sec:
            break
        window = window.from_cut(step.end_sec)


def test_a_step_of_a_start_bigger_than_the_budget_takes_that_whole_start() -> None:
    listing = whole_inventory([*every_start(range(1000, 1001), "abcd"), slot(2000)])
    step = step_window(listing, 2)
    assert (step.end_sec, len(step.slots)) == (2000, 4)
    last = step_window(listing.from_cut(2000), 2)
    assert (last.end_sec, last.slots) == (listing.end_sec, (slot(2000),))


def test_a_step_keeps_the_windows_restrictions() -> None:
    listed = tuple(every_start(range(1000, 1050, 10), "a"))
    window = Window(900, 5000, "m", "s", 10, ("a", "", 0), listed)
    step = step_window(window, 2)
    assert step == replace(window, end_sec=1020, slots=listed[:2])


@pytest.mark.parametrize("step_slots", [1, 3, 7])
def test_steps_applied_in_turn_give_what_the_whole_change_gives(step_slots: int) -> None:
    old = every_start(range(1000, 1200, 10))  # 20 starts
    # Some kept, some with more spots, some removed, some new.
    new = [
        *[replace(s, spots=2, spots_total=2) for s in old[:10]],
        *old[10:20],
        *every_start(range(3000, 3050, 10), "c"),
    ]
    at_once = ShardState(old, entropy=lambda: b"\0" * 15)
    at_once.change_inventory(ChangeInventory(whole_inventory(new)), 0)
    stepped = ShardState(old, entropy=lambda: b"\0" * 15)
    window, steps = whole_inventory(new), 0
    while True:
        step = step_window(window, step_slots)
        cut = ok(stepped.change_inventory(ChangeInventory(step, step_slots), 0)).cut_sec
        steps += 1
        if cut >= window.end_sec:
            break
        window = window.from_cut(cut)
    assert steps > 3
    assert set(stepped.slot_specs()) == set(at_once.slot_specs()) == set(new)
