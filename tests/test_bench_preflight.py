"""The bench's preflight: a read the server turned away is asked again, a busy slot is not."""

from __future__ import annotations

import pytest

from leasehold.bench._history import OK, RESOURCE_EXHAUSTED, BenchSlot, Kind, Op
from leasehold.bench._run import RunError, Runner
from leasehold.core import SlotKey

SLOT = BenchSlot(SlotKey("m", "s", 1_800_000_000, 1800, "", "", 0), spots=2)


def read(status: int, count: int) -> Op:
    return Op(
        op_id=0, kind=Kind.CHECK, phase="preflight", worker=0, slot=0, status=status, count=count
    )


def runner_reading(monkeypatch: pytest.MonkeyPatch, answers: list[Op]) -> tuple[Runner, list[Op]]:
    runner = Runner("127.0.0.1:9", [SLOT], clients=1, timeout_s=1.0, run_id="t", seed=1)
    left = list(answers)
    monkeypatch.setattr(runner, "read_all", lambda phase: [left.pop(0)])
    return runner, left


@pytest.mark.timeout(30)
def test_reads_turned_away_are_asked_again_even_without_a_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner, left = runner_reading(
        monkeypatch, [read(RESOURCE_EXHAUSTED, -1), read(RESOURCE_EXHAUSTED, -1), read(OK, 2)]
    )
    runner.wait_until_free(0.0)
    assert left == []


@pytest.mark.timeout(30)
def test_a_slot_answered_busy_fails_the_preflight_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    runner, left = runner_reading(monkeypatch, [read(OK, 1), read(OK, 2)])
    with pytest.raises(RunError, match="1 of 2 open"):
        runner.wait_until_free(0.0)
    assert len(left) == 1
