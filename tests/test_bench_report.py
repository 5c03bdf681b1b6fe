"""The report: what throughput counts, and a violation spelt out with its operations."""

from __future__ import annotations

import dataclasses
import io

import pytest

from leasehold.bench._checker import ViolationKind, check_history
from leasehold.bench._history import RESOURCE_EXHAUSTED, BenchSlot, Kind, Op
from leasehold.bench._report import (
    ceiling_figures,
    describe_op,
    phase_summary,
    print_table,
    violation_records,
)
from leasehold.bench._run import PhaseOutcome, merge_rounds
from leasehold.core import SlotKey

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
        "client_nice": 10,
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
    assert "2 grpcio client processes at nice 10)" in text  # no load_client: from before h2
    assert "over_capacity" in text
    assert "#8 lease" in text
    assert "every operation: r/history.jsonl" in text


def phase(name: str, ops: list[Op], *, start_ms: int = 0, end_ms: int = 1000) -> PhaseOutcome:
    return PhaseOutcome(
        name=name,
        scenario="contention",
        mode="closed",
        concurrency=4,
        rate=0.0,
        measured=True,
        start_ns=start_ms * MS,
        end_ns=end_ms * MS,
        ops=ops,
        client_cpu_s=0.1,
        server_cpu_s=None,
        machine_busy=0.5,
        wall_s=1.0,
        held_back=0,
    )


def timed(op_id: int, kind: Kind, send_ms: int, recv_ms: int) -> Op:
    return Op(
        op_id=op_id,
        kind=kind,
        phase="p",
        worker=0,
        slot=0,
        lease_id="L" if kind is Kind.LEASE else "",
        send_ns=send_ms * MS,
        recv_ns=recv_ms * MS,
    )


def test_throughput_counts_answers_inside_the_phase_and_latency_requests_sent_in_it() -> None:
    # Four callers: three answers inside the second, then four requests still in flight
    # at its end (answered after it): they have latencies, but are not throughput.
    ops = [timed(i, Kind.LEASE, 100 * i, 100 * i + 50) for i in range(3)]
    ops += [timed(10 + i, Kind.LEASE, 900, 1200) for i in range(4)]
    summary = phase_summary(phase("measure", ops))
    assert summary["requests"] == 7
    assert summary["per_s"] == 3.0
    assert summary["kinds"]["lease"]["per_s"] == 3.0
    assert summary["kinds"]["lease"]["applied_per_s"] == 3.0
    assert summary["latency_ms"]["max"] == pytest.approx(300.0, rel=1e-3)  # HDR: 3 digits
    assert summary["server_cores"] is None  # a --target server: not ours to measure
    spawned = phase_summary(dataclasses.replace(phase("measure", ops), server_cpu_s=0.9))
    assert spawned["server_cores"] == 0.9  # 0.9 s of server CPU over the 1 s phase
    assert spawned["server_cpu_us_per_call"] == pytest.approx(0.9 / len(ops) * 1e6, abs=0.1)


def test_a_multi_process_servers_cpu_is_split_by_role_and_rounds_add_up() -> None:
    ops = [timed(i, Kind.LEASE, 100 * i, 100 * i + 50) for i in range(4)]
    roles = (("supervisor", 0.004), ("gateway", 0.8), ("shard", 0.2))
    tree = dataclasses.replace(phase("measure", ops), server_cpu_s=1.004, server_cpu_by_role=roles)
    merged = merge_rounds([tree, dataclasses.replace(tree, start_ns=2000 * MS, end_ns=3000 * MS)])
    assert dict(merged[0].server_cpu_by_role) == {"supervisor": 0.008, "gateway": 1.6, "shard": 0.4}
    summary = phase_summary(merged[0])
    assert summary["server_cpu_us_per_call_by_role"] == {
        "supervisor": 1000.0,  # 8 ms over 8 calls
        "gateway": 200_000.0,
        "shard": 50_000.0,
    }
    table = io.StringIO()
    print_table(table_result([summary]), table)
    assert "(gateway workers 200000, shard processes 50000, supervisor 1000)" in table.getvalue()
    # One process: its one role is the whole figure, nothing to split.
    one = dataclasses.replace(tree, server_cpu_by_role=(("supervisor", 1.004),))
    table = io.StringIO()
    print_table(table_result([phase_summary(one)]), table)
    assert "us/call; machine" in table.getvalue()
    assert "supervisor" not in table.getvalue()


def table_result(phases: list[dict[str, object]]) -> dict[str, object]:
    checker = {"ok": True, "operations": 4, "reads_checked": 0, "unknown_outcomes": 0}
    return {
        "scenario": "contention",
        "target": "spawned",
        "clients": 2,
        "phases": phases,
        "checker": checker | {"slack_ms": 5},
        "files": {"json": "r/result.json", "history": ""},
    }


def refused(op_id: int, kind: Kind, send_ms: int, recv_ms: int) -> Op:
    return dataclasses.replace(timed(op_id, kind, send_ms, recv_ms), status=RESOURCE_EXHAUSTED)


def test_the_ceiling_fraction_compares_calls_served_per_second() -> None:
    health = [timed(i, Kind.HEALTH, 10 * i, 10 * i + 5) for i in range(10)]
    health += [timed(50 + i, Kind.HEALTH, 990, 1500) for i in range(100)]  # in flight at end
    leases = [timed(200 + i, Kind.LEASE, 20 * i, 20 * i + 5) for i in range(8)]
    # Refusals answer fast: counted apart, not as calls served.
    health += [refused(100 + i, Kind.HEALTH, 10 * i, 10 * i + 1) for i in range(30)]
    leases += [refused(300 + i, Kind.LEASE, 20 * i, 20 * i + 1) for i in range(5)]
    figures = ceiling_figures([phase("ceiling", health), phase("measure", leases)])
    assert figures is not None
    assert figures["health_check_per_s"] == 10.0
    assert figures["create_lease_per_s"] == 8.0
    assert figures["create_lease_fraction_of_ceiling"] == 0.8
    assert figures["health_check_turned_away"] == 30
    assert figures["measure_turned_away"] == 5


def test_rounds_of_a_phase_count_together_over_their_own_windows() -> None:
    # Two ceiling rounds (1 s each: 10 then 30 Checks) around a measure round; answers
    # that land between a phase's rounds belong to neither.
    first = [timed(i, Kind.HEALTH, 10 * i, 10 * i + 5) for i in range(10)]
    second = [timed(100 + i, Kind.HEALTH, 2000 + 30 * i, 2000 + 30 * i + 5) for i in range(30)]
    late = [timed(200, Kind.HEALTH, 990, 1500)]  # sent in round 1, answered in the gap
    leases = [timed(300 + i, Kind.LEASE, 1000 + 50 * i, 1000 + 50 * i + 5) for i in range(16)]
    rounds = [
        phase("ceiling", first + late, start_ms=0, end_ms=1000),
        phase("measure", leases, start_ms=1000, end_ms=2000),
        phase("ceiling", second, start_ms=2000, end_ms=3000),
    ]
    merged = merge_rounds(rounds)
    assert [p.name for p in merged] == ["ceiling", "measure"]
    ceiling = merged[0]
    assert ceiling.seconds == 2.0
    assert ceiling.spans == ((0, 1000 * MS), (2000 * MS, 3000 * MS))
    assert len(ceiling.answered()) == 40
    figures = ceiling_figures(rounds)
    assert figures is not None
    assert figures["health_check_per_s"] == 20.0
    assert figures["create_lease_fraction_of_ceiling"] == 0.8
    assert figures["rounds"] == 2
    summary = phase_summary(ceiling)
    assert summary["rounds"] == 2
    assert summary["per_s"] == 20.0


@pytest.mark.parametrize(
    ("intended_ms", "send_ms", "latency_ms"),
    [
        (0, 10, 2),  # closed loop: from the send
        (10, 10, 2),  # open loop, on time
        (7, 10, 5),  # sent late: from when it was meant to go, so a stall shows
        (11, 10, 2),  # sent early (the loadgen wakes ahead): from the send, never less
    ],
)
def test_latency_counts_from_the_earlier_of_intended_and_sent(
    intended_ms: int, send_ms: int, latency_ms: int
) -> None:
    op = dataclasses.replace(lease(1, "L1", send_ms), intended_ns=intended_ms * MS)
    assert op.latency_ns == latency_ms * MS


def test_an_open_loop_phase_reports_how_late_its_clients_sent() -> None:
    # Sent 0, 3 and 9 ms after their intended times (one early: 0); a follow-up request
    # of an arrival has no intended time and is left out.
    sends = [(100, 100), (200, 203), (300, 309), (400, 399)]
    ops = [
        dataclasses.replace(timed(i, Kind.LEASE, send, send + 2), intended_ns=intended * MS)
        for i, (intended, send) in enumerate(sends)
    ]
    ops.append(timed(9, Kind.BOOK, 500, 502))
    open_loop = dataclasses.replace(phase("half-load", ops), mode="open", rate=4.0)
    lag = phase_summary(open_loop)["client_send_lag_ms"]
    assert lag["max"] == pytest.approx(9.0, rel=1e-3)
    assert lag["p50"] == pytest.approx(0.0, abs=0.01)
    assert phase_summary(phase("measure", ops))["client_send_lag_ms"] == {}  # closed loop
    result = {"scenario": "contention", "target": "127.0.0.1:1", "clients": 1}
    result |= {"client_nice": 10, "phases": [phase_summary(open_loop)], "extra": {}}
    result |= {"load_client": "h2"}
    checker = {"ok": True, "operations": 5, "reads_checked": 0, "unknown_outcomes": 0}
    result |= {"checker": checker | {"slack_ms": 1.0}, "files": {"json": "r/result.json"}}
    out = io.StringIO()
    print_table(result, out)
    assert "sent late by p50 0.00 / p99 9.01 ms" in out.getvalue()  # HDR: 3 digits
    assert "1 h2 client processes at nice 10)" in out.getvalue()
