"""Hand-made bench histories for the checker's tests: a builder and its clock.

Times are in milliseconds of a made-up clock; the slack between client and
server clocks is 1 ms throughout.
"""

from __future__ import annotations

from typing import Any

from leasehold.bench._checker import CheckResult, ViolationKind, check_history
from leasehold.bench._history import BenchSlot, Kind, Op
from leasehold.core import SlotKey

MS = 1_000_000
SLACK = 1 * MS


def slot(spots: int, start_sec: int = 1_000, service: str = "svc") -> BenchSlot:
    return BenchSlot(SlotKey("m1", service, start_sec, 1800), spots)


class History:
    def __init__(self) -> None:
        self.ops: list[Op] = []

    def add(self, kind: Kind, send_ms: float, recv_ms: float, **fields: Any) -> Op:
        op = Op(
            op_id=len(self.ops),
            kind=kind,
            phase=fields.pop("phase", "measure"),
            worker=0,
            send_ns=round(send_ms * MS),
            recv_ns=round(recv_ms * MS),
            **fields,
        )
        self.ops.append(op)
        return op

    def lease(
        self,
        send_ms: float,
        recv_ms: float,
        lease_id: str,
        expiry_ms: float,
        *,
        on: int = 0,
        ref: str = "",
        **fields: Any,
    ) -> Op:
        return self.add(
            Kind.LEASE,
            send_ms,
            recv_ms,
            slot=on,
            reference=ref or f"ref-{lease_id}",
            requested_expiry_ns=round(expiry_ms * MS),
            lease_id=lease_id,
            expiry_ns=round(expiry_ms * MS),
            **fields,
        )

    def refused_lease(self, send_ms: float, recv_ms: float, ref: str, *, on: int = 0) -> Op:
        return self.add(
            Kind.LEASE, send_ms, recv_ms, slot=on, reference=ref, cause="SLOT_UNAVAILABLE"
        )

    def book(
        self,
        send_ms: float,
        recv_ms: float,
        booking_id: str,
        *,
        lease_id: str = "",
        on: int = 0,
        token: str = "",
        **fields: Any,
    ) -> Op:
        return self.add(
            Kind.BOOK,
            send_ms,
            recv_ms,
            slot=on,
            lease_id=lease_id,
            token=token or f"tok-{booking_id}",
            booking_id=booking_id,
            reply_slot=on if booking_id else -1,
            booking_status="CONFIRMED" if booking_id else "",
            **fields,
        )

    def cancel(self, send_ms: float, recv_ms: float, booking_id: str, **fields: Any) -> Op:
        return self.add(
            Kind.CANCEL,
            send_ms,
            recv_ms,
            booking_id=booking_id,
            booking_status="CANCELED",
            **fields,
        )

    def change(
        self,
        send_ms: float,
        recv_ms: float,
        capacity: int,
        *,
        on: int = 0,
        removed: bool = False,
        **fields: Any,
    ) -> Op:
        """One slot's part of an admin ReplaceServiceAvailability (removed: capacity 0)."""
        return self.add(
            Kind.INVENTORY,
            send_ms,
            recv_ms,
            slot=on,
            count=0 if removed else capacity,
            removed=removed,
            **fields,
        )

    def remove(self, send_ms: float, recv_ms: float, *, on: int = 0, **fields: Any) -> Op:
        return self.change(send_ms, recv_ms, 0, on=on, removed=True, **fields)

    def read(self, send_ms: float, recv_ms: float, count: int, *, on: int = 0, **f: Any) -> Op:
        return self.add(Kind.CHECK, send_ms, recv_ms, slot=on, count=count, **f)

    def check(self, *slots: BenchSlot) -> CheckResult:
        return check_history(self.ops, slots, SLACK)


def kinds(result: CheckResult) -> list[ViolationKind]:
    return [v.kind for v in result.violations]
