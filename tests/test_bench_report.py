"""A violation fails loudly: the report spells out the operations that prove it."""

from __future__ import annotations

import io

from bench._checker import ViolationKind, check_history
from bench._history import BenchSlot, Kind, Op
from bench._report import describe_op, print_table, violation_records
from core import SlotKey

MS = 1_000_000
SLOT = BenchSlot(SlotKey("m1", "race", 1_000, 1800), 1)


def lease(op_id: int, lease_id: str, send_ms: int) -> Op:
    return Op(
        op_id=op_id,
        kind=Kind.LEASE,
        phase="measure",
        worker=1,
        slot=0,
        reference=f"ref-{lease_id}",
        requested_expiry_ns=900 * MS,
        lease_id=lease_id,
        expiry_ns=900 * MS,
        send_ns=send_ms * MS,
        recv_ns=(send_ms + 2) * MS,
    )


def over_granted() -> list[Op]:
    """Two leases granted on a slot of one spot, both live at once."""
    return [lease(7, "L1", 0), lease(8, "L2", 10)]


def test_each_offending_operation_is_spelt_out() -> None:
    history = over_granted()
    checked = check_history(history, [SLOT], MS)
    records = violation_records(checked.violations, history, [SLOT])
    over = [r for r in records if r["kind"] == ViolationKind.OVER_CAPACITY.value]
    assert over
    assert set(over[0]["operations"]) == {7, 8}
    described = " / ".join(over[0]["described"])
    assert "#7 lease" in described
    assert "#8 lease" in described
    assert "lease_id L2" in described
    assert "slot m1/race@1000+1800" in described


def test_a_description_names_what_was_asked_and_answered() -> None:
    refused = Op(
        op_id=3,
        kind=Kind.BOOK,
        phase="measure",
        worker=0,
        slot=0,
        lease_id="L9",
        cause="LEASE_EXPIRED",
        send_ns=5 * MS,
        recv_ns=6 * MS + 500_000,
    )
    line = describe_op(refused, [SLOT])
    assert line.startswith("#3 book, phase measure, client 0, slot m1/race@1000+1800")
    assert "lease_id L9" in line
    assert "answer LEASE_EXPIRED" in line
    assert "answered after 1.500 ms" in line


def test_the_table_lists_violations_with_their_operations() -> None:
    history = over_granted()
    checked = check_history(history, [SLOT], MS)
    result = {
        "scenario": "contention",
        "target": "127.0.0.1:1",
        "clients": 2,
        "phases": [],
        "extra": {},
        "checker": {
            "ok": checked.ok,
            "violations": violation_records(checked.violations, history, [SLOT]),
            "suppressed": {},
        },
        "files": {"json": "r/result.json", "history": "r/history.jsonl"},
    }
    out = io.StringIO()
    print_table(result, out)
    text = out.getvalue()
    assert "VIOLATIONS" in text
    assert "over_capacity" in text
    assert "#8 lease" in text
    assert "every operation: r/history.jsonl" in text
