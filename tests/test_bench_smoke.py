"""The bench harness itself, end to end with tiny numbers, so it cannot rot.

Each scenario runs for a second or two against a server the bench spawns, and
the test looks only at the shape of the result and the checker's verdict: the
real figures come from bench runs, never from timed assertions here.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _server_process import leasehold_executable

from leasehold.bench._run import Runner

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TINY = {
    "contention": ["--concurrency", "20", "--slots", "2", "--ceiling"],
    # --mailbox is a serve flag: --spawn passes flags it does not know to the server.
    "flow": ["--concurrency", "8", "--slots", "16", "--spots", "1000", "--mailbox", "512"],
    "mixed": ["--concurrency", "8", "--slots", "16", "--spots", "2", "--rate", "150", "--ceiling"],
    # No --storm-setup: the run sizes its setup window from a short calibration phase.
    "expiry-storm": ["--leases", "300", "--spots", "50", "--storm-rate", "100"],
    # Window replacements through the admin API (--spawn adds --admin-port 0).
    "inventory-churn": ["--rate", "150", "--churn-rate", "40", "--churn-rounds", "2"],
}


def run_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [leasehold_executable(), "bench", *args],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("scenario", list(TINY))
def test_a_tiny_run_is_made_and_checked(tmp_path: Path, scenario: str) -> None:
    out = tmp_path / "result"
    done = run_bench(
        tmp_path,
        scenario,
        "--spawn",
        "--shards",
        "2",
        "--duration",
        "1.5",
        "--warmup",
        "0.5",
        "--out",
        str(out),
        "--no-charts",
        *TINY[scenario],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((out / "result.json").read_text())
    assert {"scenario", "phases", "checker", "timeline", "server", "settings"} <= set(result)
    assert result["scenario"] == scenario
    assert result["load_client"] == "h2"  # the default
    assert result["checker"]["ok"], result["checker"]["violations"]
    assert result["checker"]["operations"] > 0
    assert result["checker"]["reads_checked"] >= result["slots"]  # the final read, at least
    assert result["server"] == {
        "spawned": True,
        "command": result["server"]["command"],
        "exit_code": 0,
        "durability": None,  # the server's default
    }
    measured = [p for p in result["phases"] if p["measured"] and p["requests"]]
    assert measured
    for phase in measured:
        assert {"p50", "p90", "p99", "p99.9", "max"} <= set(phase["latency_ms"])
        assert phase["client_cpu_s"] > 0
        # The default tree's CPU, by role: the roles add up to the whole figure.
        by_role = phase["server_cpu_us_per_call_by_role"]
        assert {"supervisor", "gateway", "shard"} <= set(by_role)
        assert sum(by_role.values()) == pytest.approx(phase["server_cpu_us_per_call"], abs=1)
        assert by_role["gateway"] > 0
    assert "checker: OK" in done.stdout
    if scenario == "contention":
        names = [p["name"] for p in result["phases"]]
        assert names == ["warmup", "ceiling", "measure", "half-load"]
        assert result["ceiling"]["create_lease_fraction_of_ceiling"] > 0
        assert result["ceiling"]["rounds"] == 3  # interleaved with the measured phase
        by_name = {p["name"]: p for p in result["phases"]}
        # Three rounds of 0.5 s counted each, after their settling: --duration in all.
        assert by_name["ceiling"]["seconds"] == pytest.approx(1.5, abs=0.01)
        assert by_name["measure"]["seconds"] == pytest.approx(1.5, abs=0.01)
        assert by_name["half-load"]["mode"] == "open"
        # Ran --warmup + --duration, counted after the warm-up: --duration.
        assert by_name["half-load"]["seconds"] == pytest.approx(1.5, abs=0.01)
    if scenario == "inventory-churn":
        check_churn(result)
    if scenario == "mixed":  # open loop (--rate), but the ceiling is closed loop
        modes = {p["name"]: p["mode"] for p in result["phases"]}
        assert modes == {"warmup": "open", "ceiling": "closed", "measure": "open"}


def test_the_grpcio_load_client_runs_and_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "result"
    done = run_bench(
        tmp_path,
        "contention",
        "--spawn",
        "--shards",
        "2",
        "--duration",
        "1.5",
        "--warmup",
        "0.5",
        "--out",
        str(out),
        "--no-charts",
        "--load-client",
        "grpcio",
        "--concurrency",
        "20",
        "--slots",
        "2",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["load_client"] == "grpcio"
    assert result["checker"]["ok"], result["checker"]["violations"]
    assert result["checker"]["operations"] > 0


def check_churn(result: dict[str, Any]) -> None:
    by_name = {p["name"]: p for p in result["phases"]}
    assert list(by_name) == ["warmup", "steady", "churn"]
    assert "inventory" in by_name["churn"]["kinds"]  # the admin calls, a record per slot
    assert "inventory" not in by_name["steady"]["kinds"]
    extra = result["extra"]
    assert extra["churn_calls"].get("applied", 0) > 0, extra
    assert extra["churn_slot_changes"] >= extra["churn_calls"]["applied"]
    assert extra["lease_steady_requests"] > 0
    assert extra["lease_churn_requests"] > 0
    assert extra["lease_p99_churn_over_steady"] > 0
    assert extra["update_p50_ms"] > 0
    # The server's own cost of each window applied (its /metrics).
    assert extra["change_service_count"] >= extra["churn_calls"]["applied"]
    assert extra["change_service_mean_ms"] > 0


def test_durability_modes_run_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "result"
    done = run_bench(
        tmp_path,
        "flow",
        "--spawn",
        "--durability",
        "sync,none",
        "--shards",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0.3",
        "--out",
        str(out),
        "--no-charts",
        *TINY["flow"],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "result.json").read_text())
    assert summary["comparison"] == "durability"
    assert [m["durability"] for m in summary["modes"]] == ["sync", "none"]
    for mode in summary["modes"]:
        assert mode["checker_ok"]
        assert mode["server_exit_code"] == 0  # each server was stopped with SIGTERM
        assert mode["flows_per_s"] > 0
        run = json.loads((out / mode["durability"] / "result.json").read_text())
        assert run["server"]["durability"] == mode["durability"]
    assert summary["modes"][1]["fraction_of_none"] == 1.0
    assert "durability side by side" in done.stdout


def test_the_core_micro_benchmarks_run(tmp_path: Path) -> None:
    out = tmp_path / "core.json"
    done = run_bench(tmp_path, "core", "--ops", "2000", "--leases", "2000", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert {
        "grant_per_s",
        "consume_per_s",
        "expire_per_s",
        "mixed_lease_ops_per_s",
        "expire_all_s",
        "bytes_per_live_lease",
    } <= set(figures)


def test_a_run_that_cannot_be_made_says_so(tmp_path: Path) -> None:
    done = run_bench(tmp_path, "contention", "--target", "10.1.2.3:50051", "--feed", "f.json")
    assert done.returncode == 2
    assert "loopback only" in done.stderr


def test_client_processes_run_below_the_server() -> None:
    # --client-nice: on a shared machine the load generator yields a core to the server.
    def niceness(pid: int) -> int:
        return os.getpriority(os.PRIO_PROCESS, pid)

    # No server at this target: the worker gives up on it after timeout_s, and exits.
    with Runner("127.0.0.1:9", [], clients=1, timeout_s=5, run_id="t", seed=1, client_nice=7):
        worker = next(p for p in multiprocessing.active_children() if p.name == "bench-client-0")
        assert worker.pid is not None
        deadline = time.monotonic() + 30
        while niceness(worker.pid) != niceness(0) + 7 and time.monotonic() < deadline:
            time.sleep(0.05)  # it sets its own niceness once started
        assert niceness(worker.pid) == niceness(0) + 7
