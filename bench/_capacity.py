"""What capacity a slot can have had at each instant, learnt from the admin calls of a run.

An inventory change (an `INVENTORY` record: one per slot a ReplaceServiceAvailability
listed or removed) was applied by the server at one instant of its clock within
[send - slack, recv + slack] when its answer was OK; at any instant from send - slack
on, or never, when it had any other answer (a change goes in steps, shard by shard,
and a step may fail after others applied: Op.outcome). Before that window the old
capacity holds, after it the new one, within it either.

A change's value is *possible* at instant t when it may have been applied by t
(earliest <= t) and no applied change certainly came after it and before t (one
whose earliest is after this one's latest, and whose latest is before t). The
start capacity is possible until the first applied change's latest instant. So the
set of values possible over a time window is known exactly from the windows, with no
guess about the order of overlapping changes; the checker asks for its maximum (a
grant is an over-grant only if it exceeds every capacity the slot may have had) and
its minimum (for the reads).

A removed slot has capacity 0: it grants nothing.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from leasehold.bench._history import BenchSlot, Kind, Op, Outcome

INF = 2**62  # later than any wall-clock ns we will meet
NEG_INF = -INF


@dataclass(frozen=True, slots=True)
class Change:
    """One slot's part of one admin call, on the server's clock."""

    op_id: int
    capacity: int  # after the change; 0 when removed
    removed: bool
    earliest_ns: int
    latest_ns: int  # INF when the outcome is unknown
    applied: bool  # the answer proves it was applied


@dataclass(frozen=True, slots=True)
class _Reign:
    """When a value may have been the slot's capacity: [start, end], both inclusive."""

    start: int
    end: int
    capacity: int
    op_id: int  # -1: the start capacity


class CapacityTimeline:
    """The capacities one slot may have had, over the run."""

    def __init__(self, initial: int, changes: Iterable[Change]) -> None:
        self.initial = initial
        self.changes = sorted(changes, key=lambda c: (c.earliest_ns, c.op_id))
        applied = [c for c in self.changes if c.applied]
        earliest = [c.earliest_ns for c in applied]  # sorted: self.changes is
        # suffix_latest[i]: the least latest_ns of the applied changes from i on.
        suffix_latest = [INF] * (len(applied) + 1)
        for i in range(len(applied) - 1, -1, -1):
            suffix_latest[i] = min(applied[i].latest_ns, suffix_latest[i + 1])
        reigns = [_Reign(NEG_INF, suffix_latest[0], initial, -1)]
        for change in self.changes:
            later = bisect.bisect_right(earliest, change.latest_ns)
            end = suffix_latest[later] if change.latest_ns < INF else INF
            reigns.append(_Reign(change.earliest_ns, end, change.capacity, change.op_id))
        self._reigns = sorted(reigns, key=lambda r: r.start)
        self._starts = [r.start for r in self._reigns]
        self.varies = any(r.capacity != initial for r in self._reigns)
        self.least_ever = min(r.capacity for r in self._reigns)

    def _overlapping(self, lo: int, hi: int) -> list[_Reign]:
        upto = bisect.bisect_right(self._starts, hi)
        return [r for r in self._reigns[:upto] if r.end >= lo]

    def most(self, lo: int, hi: int) -> int:
        """The largest capacity the slot may have had at some instant of [lo, hi]."""
        return max(r.capacity for r in self._overlapping(lo, hi))

    def least(self, lo: int, hi: int) -> int:
        """The smallest capacity the slot may have had at some instant of [lo, hi]."""
        return min(r.capacity for r in self._overlapping(lo, hi))

    def changes_in(self, lo: int, hi: int) -> tuple[int, ...]:
        """The op ids of the changes whose value may have held in [lo, hi] (for reports)."""
        return tuple(r.op_id for r in self._overlapping(lo, hi) if r.op_id >= 0)

    def removals(self) -> list[Change]:
        """Changes that removed the slot (applied or of unknown outcome)."""
        return [c for c in self.changes if c.removed]


def timelines(
    history: Iterable[Op], slots: list[BenchSlot] | tuple[BenchSlot, ...], slack_ns: int
) -> list[CapacityTimeline]:
    """One timeline per slot of the table, from the history's INVENTORY records."""
    per_slot: dict[int, list[Change]] = defaultdict(list)
    for op in history:
        if op.kind is not Kind.INVENTORY:
            continue
        applied = op.outcome is Outcome.APPLIED
        per_slot[op.slot].append(
            Change(
                op_id=op.op_id,
                capacity=0 if op.removed else op.count,
                removed=op.removed,
                earliest_ns=op.send_ns - slack_ns,
                latest_ns=op.recv_ns + slack_ns if applied else INF,
                applied=applied,
            )
        )
    return [CapacityTimeline(s.spots, per_slot.get(i, [])) for i, s in enumerate(slots)]
