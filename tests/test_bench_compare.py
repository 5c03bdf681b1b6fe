"""The durability comparison's arithmetic and table, on hand-made run results.

The real runs (one spawned server per mode) are exercised by the bench smoke test.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from leasehold.bench._cli import main
from leasehold.bench._compare import comparison, mode_row, parse_modes, print_comparison


def run_result(booked: int, seconds: float = 2.0, *, ok: bool = True) -> dict[str, Any]:
    """The parts of a run's result.json the comparison reads."""
    return {
        "phases": [
            {"name": "warmup", "kinds": {}, "seconds": 1.0, "per_s": 999.0},
            {
                "name": "measure",
                "seconds": seconds,
                "per_s": 3 * booked / seconds,
                "kinds": {
                    "lease": {"latency_ms": {"p50": 1.5, "p99": 4.0}},
                    "book": {
                        "applied_per_s": booked / seconds,
                        "latency_ms": {"p50": 2.5, "p99": 9.0},
                    },
                },
                "server_cpu_us_per_call": 800.0,
                "machine_busy": 0.9,
            },
        ],
        "checker": {"ok": ok},
        "server": {"exit_code": 0},
        "files": {"json": "out/result.json"},
    }


def test_modes_are_read_in_the_order_given() -> None:
    assert parse_modes("none, sync") == ["none", "sync"]
    assert parse_modes("async") == ["async"]


@pytest.mark.parametrize("text", ["", "sync,fast", "sync,sync", ","])
def test_unknown_repeated_or_missing_modes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="durability mode"):
        parse_modes(text)


def test_a_row_takes_confirmed_bookings_per_second_of_the_measured_phase() -> None:
    row = mode_row("sync", run_result(booked=700, seconds=2.0))
    assert row["flows_per_s"] == 350.0
    assert row["requests_per_s"] == 1050.0
    assert row["lease"] == {"p50_ms": 1.5, "p99_ms": 4.0}
    assert row["book"] == {"p50_ms": 2.5, "p99_ms": 9.0}
    assert row["checker_ok"] is True


def test_each_mode_is_a_fraction_of_none() -> None:
    rows = [
        mode_row("sync", run_result(booked=700)),
        mode_row("async", run_result(booked=900)),
        mode_row("none", run_result(booked=1000)),
    ]
    summary = comparison(rows)
    assert summary["baseline"] == "none"
    assert [m["fraction_of_none"] for m in summary["modes"]] == [0.7, 0.9, 1.0]


def test_without_none_there_is_no_fraction() -> None:
    summary = comparison([mode_row("sync", run_result(700)), mode_row("async", run_result(900))])
    assert summary["baseline"] is None
    assert [m["fraction_of_none"] for m in summary["modes"]] == [None, None]


def test_the_table_has_a_line_per_mode_and_flags_a_violation() -> None:
    rows = [
        mode_row("sync", run_result(booked=700, ok=False)),
        mode_row("none", run_result(booked=1000)),
    ]
    out = io.StringIO()
    print_comparison("flow", comparison(rows), out)
    lines = {line.split()[0]: line for line in out.getvalue().splitlines() if line}
    assert "350.0" in lines["sync"]
    assert "70%" in lines["sync"]
    assert lines["sync"].endswith("VIOLATIONS")
    assert lines["none"].endswith("OK")


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["flow", "--durability", "sync,none", "--target", "127.0.0.1:1"], "--spawn starts"),
        (["flow", "--spawn", "--durability", "sync,fsync"], "durability modes are"),
    ],
)
def test_the_cli_refuses_durability_it_cannot_honour(
    args: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err
