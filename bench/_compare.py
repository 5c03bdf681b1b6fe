"""One scenario, one fresh server per durability mode, side by side.

`leasehold bench flow --spawn --durability sync,async,none` runs the scenario
once per mode, in the order given, each against its own freshly spawned server
on its own empty data dir, with the same slots, seed and load; each server is
stopped (SIGTERM) before the next starts. This module turns the runs' results
into the comparison: pure functions of their result dicts.

The headline is the CreateLease -> CreateBooking flow throughput: bookings
confirmed per second in the measured phase (in `flow` each one is a whole
funnel: a check, a lease and the booking of it). Each mode's ratio is to `none`
(memory only, nothing written), when `none` is among the modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

MODES = ("sync", "async", "none")
BASELINE = "none"


def parse_modes(text: str) -> list[str]:
    """`sync,async,none` -> the modes in order; ValueError names what is wrong."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if not modes or unknown:
        raise ValueError(f"durability modes are {', '.join(MODES)}; got {text!r}")
    if len(set(modes)) != len(modes):
        raise ValueError(f"each durability mode once: {text!r}")
    return modes


def _measured(result: dict[str, Any]) -> dict[str, Any] | None:
    phases = [p for p in result["phases"] if p["name"] == "measure"]
    return phases[0] if phases else None


def _latency(phase: dict[str, Any], kind: str) -> dict[str, float | None]:
    latency = phase["kinds"].get(kind, {}).get("latency_ms", {})
    return {"p50_ms": latency.get("p50"), "p99_ms": latency.get("p99")}


def mode_row(mode: str, result: dict[str, Any]) -> dict[str, Any]:
    """One mode's figures from its run's result."""
    phase = _measured(result)
    row: dict[str, Any] = {
        "durability": mode,
        "checker_ok": result["checker"]["ok"],
        "server_exit_code": result["server"]["exit_code"],
        "result": result["files"]["json"],
    }
    if phase is None:
        return row | {"flows_per_s": None, "requests_per_s": None}
    return row | {
        "flows_per_s": phase["kinds"].get("book", {}).get("applied_per_s", 0.0),
        "requests_per_s": phase["per_s"],
        "lease": _latency(phase, "lease"),
        "book": _latency(phase, "book"),
        "server_cpu_us_per_call": phase["server_cpu_us_per_call"],
        "machine_busy": phase["machine_busy"],
    }


def comparison(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The rows with each one's flow throughput as a fraction of `none`'s."""
    baseline = next((r for r in rows if r["durability"] == BASELINE), None)
    base = baseline["flows_per_s"] if baseline else None
    out = []
    for row in rows:
        flows = row["flows_per_s"]
        ratio = round(flows / base, 3) if base and flows is not None else None
        out.append(row | {"fraction_of_none": ratio})
    return {"baseline": BASELINE if base else None, "modes": out}


def print_comparison(scenario: str, summary: dict[str, Any], out: TextIO) -> None:
    w = out.write
    w(f"\nleasehold bench {scenario}: durability side by side (one fresh server each)\n")
    head = (
        f"{'durability':<11} {'flows/s':>9} {'requests/s':>11} {'lease p50':>10} "
        f"{'lease p99':>10} {'book p50':>9} {'book p99':>9} {'of none':>8}  checker\n"
    )
    w(head)
    w("-" * len(head) + "\n")
    for row in summary["modes"]:
        lease, book = row.get("lease", {}), row.get("book", {})
        cells = [
            _cell(row["flows_per_s"], 9, ".1f"),
            _cell(row["requests_per_s"], 11, ".1f"),
            _cell(lease.get("p50_ms"), 10, ".2f"),
            _cell(lease.get("p99_ms"), 10, ".2f"),
            _cell(book.get("p50_ms"), 9, ".2f"),
            _cell(book.get("p99_ms"), 9, ".2f"),
            _cell(row["fraction_of_none"], 8, ".0%"),
        ]
        verdict = "OK" if row["checker_ok"] else "VIOLATIONS"
        w(f"{row['durability']:<11} {' '.join(cells)}  {verdict}\n")
    w("(flows/s: bookings confirmed per second; latency in ms; each run's own report is above)\n")


def _cell(value: float | None, width: int, spec: str) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"
