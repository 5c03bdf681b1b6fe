"""Figures from a run: HDR latency histograms, a table, the JSON result, and PNG charts.

Only measured phases have figures: warm-up, and the cancels callers send after
the end, are in the history (the checker needs them) but not in the numbers.
Latency is that of the requests whose (intended) send time falls inside the
phase: from the intended send time in open loop, from the send time in closed
loop, recorded in HDR histograms (1 us .. 60 s, 3 significant digits).
Throughput (`per_s`) counts the answers received inside the phase, so the
requests still in flight when it ends do not inflate it.
"""

from __future__ import annotations

import importlib
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from leasehold.bench._checker import Violation
from leasehold.bench._history import BenchSlot, Kind, Op, Outcome
from leasehold.bench._loadgen import NANOS
from leasehold.bench._run import PhaseOutcome, merge_rounds

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
# Operations spelt out per violation (all their ids are listed, and in history.jsonl).
MAX_DESCRIBED_OPS = 12
_LOWEST_US, _HIGHEST_US, _DIGITS = 1, 60_000_000, 3


def op_label(op: Op) -> str:
    return f"{op.kind.value}/v0" if op.version == "v0" else op.kind.value


def histogram(latencies_ns: Iterable[int]) -> Any:
    h = HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)
    for ns in latencies_ns:
        h.record_value(min(max(ns // 1_000, _LOWEST_US), _HIGHEST_US))
    return h


def latency_summary(h: Any) -> dict[str, float]:
    if h.get_total_count() == 0:
        return {}
    out = {f"p{p:g}": h.get_value_at_percentile(p) / 1_000 for p in PERCENTILES}
    out["max"] = h.get_max_value() / 1_000
    out["mean"] = round(h.get_mean_value() / 1_000, 3)
    return out


def send_lag(ops: Iterable[Op]) -> dict[str, float]:
    """Open loop: how late the clients sent (intended time to send). It is inside every
    latency figure, and it is the clients' own wait (their loop, their CPU), not the
    server's; an early send counts as 0."""
    return latency_summary(
        histogram(max(op.send_ns - op.intended_ns, 0) for op in ops if op.intended_ns)
    )


def counted(phase: PhaseOutcome) -> list[Op]:
    """The phase's requests that count in its figures."""
    return [op for op in phase.ops if phase.within(op.intended_ns or op.send_ns)]


def phase_summary(phase: PhaseOutcome) -> dict[str, Any]:
    ops = counted(phase)
    seconds = phase.seconds
    kinds: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        kinds[op_label(op)].append(op)
    answered: Counter[str] = Counter()
    applied: Counter[str] = Counter()
    for op in phase.answered():
        answered[op_label(op)] += 1
        applied[op_label(op)] += op.outcome is Outcome.APPLIED
    per_kind = {}
    for label, mine in sorted(kinds.items()):
        answers: Counter[str] = Counter()
        for op in mine:
            if op.outcome is Outcome.APPLIED:
                answers["ok"] += 1
            elif op.cause:
                answers[op.cause] += 1
            else:
                answers[f"status {op.status}"] += 1
        per_kind[label] = {
            "requests": len(mine),
            "per_s": round(answered[label] / seconds, 1),
            "applied_per_s": round(applied[label] / seconds, 1),
            "answers": dict(answers.most_common()),
            "unknown": sum(1 for op in mine if op.outcome is Outcome.UNKNOWN),
            "latency_ms": latency_summary(histogram(op.latency_ns for op in mine)),
        }
    calls = len(phase.ops)
    summary: dict[str, Any] = {
        "name": phase.name,
        "scenario": phase.scenario,
        "mode": phase.mode,
        "concurrency": phase.concurrency if phase.mode == "closed" else None,
        "rate_per_s": round(phase.rate, 1) if phase.mode == "open" else None,
        "measured": phase.measured,
        "seconds": round(seconds, 3),
        "requests": len(ops),
        "per_s": round(answered.total() / seconds, 1),
        "latency_ms": latency_summary(histogram(op.latency_ns for op in ops)),
        "kinds": per_kind,
        "client_cpu_s": round(phase.client_cpu_s, 3),
        "client_cpu_us_per_call": round(phase.client_cpu_s / calls * 1e6, 1) if calls else None,
        "client_cores": round(phase.client_cpu_s / phase.wall_s, 2) if phase.wall_s else None,
        # The server's main work is one thread: near 1.0 it is saturated, whatever the
        # machine's busy share says.
        "server_cores": (
            round(phase.server_cpu_s / phase.wall_s, 2)
            if phase.server_cpu_s is not None and phase.wall_s
            else None
        ),
        "server_cpu_s": None if phase.server_cpu_s is None else round(phase.server_cpu_s, 3),
        "server_cpu_us_per_call": (
            round(phase.server_cpu_s / calls * 1e6, 1)
            if phase.server_cpu_s is not None and calls
            else None
        ),
        "server_cpu_us_per_call_by_role": (
            {role: round(seconds / calls * 1e6, 1) for role, seconds in phase.server_cpu_by_role}
            if calls
            else {}
        ),
        "machine_busy": round(phase.machine_busy, 3),
        "client_send_lag_ms": send_lag(ops) if phase.mode == "open" else {},
        "open_loop_held_back": phase.held_back,
        "rounds": len(phase.spans),
    }
    return summary


def timeline(phases: Sequence[PhaseOutcome]) -> dict[str, Any]:
    """Per second of each phase: answers received in it, and the p99 of their latency.

    Seconds are counted from each phase's own start (placed on the run's clock by
    `t`, seconds since the first phase started); a phase's last, partial second is
    scaled to a rate over its own length.
    """
    if not phases:
        return {"t0_ns": 0, "seconds": []}
    t0 = phases[0].start_ns
    rows = []
    for phase in phases:
        buckets: dict[int, list[int]] = defaultdict(list)
        # Every answer in the phase's time, counted or not: the timeline shows what
        # happened each second (a round's settling included).
        for op in phase.ops:
            if phase.start_ns <= op.recv_ns < phase.end_ns:
                buckets[(op.recv_ns - phase.start_ns) // NANOS].append(op.latency_ns)
        for second in sorted(buckets):
            values = sorted(buckets[second])
            width = min(1.0, (phase.end_ns - phase.start_ns) / NANOS - second)
            if width < 0.2:
                continue  # too short a sliver to be a rate
            rows.append(
                {
                    "t": round((phase.start_ns - t0) / NANOS + second, 3),
                    "phase": phase.name,
                    "per_s": round(len(values) / width, 1),
                    "p99_ms": values[min(len(values) - 1, int(0.99 * len(values)))] / 1e6,
                }
            )
    return {"t0_ns": t0, "seconds": rows}


def ceiling_figures(phases: Sequence[PhaseOutcome]) -> dict[str, Any] | None:
    """CreateLease (and all requests) per second as a fraction of health Checks per second,
    each counting the calls served: refusals (TURNED_AWAY) are counted apart.

    Phases that ran in rounds count over all of them (merge_rounds).
    """
    by_name = {p.name: p for p in merge_rounds(phases)}
    ceiling, measure = by_name.get("ceiling"), by_name.get("measure")
    if ceiling is None or measure is None:
        return None
    health = sum(1 for op in ceiling.served() if op.kind is Kind.HEALTH) / ceiling.seconds
    leases = sum(1 for op in measure.served() if op.kind is Kind.LEASE) / measure.seconds
    everything = len(measure.served()) / measure.seconds
    return {
        "health_check_per_s": round(health, 1),
        "create_lease_per_s": round(leases, 1),
        "all_requests_per_s": round(everything, 1),
        # Turned away (RESOURCE_EXHAUSTED and the like): not in the rates above.
        "health_check_turned_away": len(ceiling.answered()) - len(ceiling.served()),
        "measure_turned_away": len(measure.answered()) - len(measure.served()),
        "create_lease_fraction_of_ceiling": round(leases / health, 3) if health else None,
        "all_requests_fraction_of_ceiling": round(everything / health, 3) if health else None,
        "rounds": len(ceiling.spans),
    }


# ----- violations -----------------------------------------------------------------------


def violation_records(
    violations: Sequence[Violation], history: Sequence[Op], slots: Sequence[BenchSlot]
) -> list[dict[str, Any]]:
    """The checker's violations for result.json, each with its operations spelt out."""
    by_id = {op.op_id: op for op in history}
    return [
        {
            "kind": v.kind.value,
            "message": v.message,
            "operations": list(v.op_ids),
            "slot": slots[v.slot].label() if v.slot >= 0 else None,
            "at_ns": v.at_ns,
            "described": [
                describe_op(by_id[op_id], slots)
                for op_id in v.op_ids[:MAX_DESCRIBED_OPS]
                if op_id in by_id
            ],
        }
        for v in violations
    ]


def describe_op(op: Op, slots: Sequence[BenchSlot]) -> str:
    """One readable line: what was asked, of which slot, when, and what came back."""
    parts = [f"#{op.op_id} {op_label(op)}", f"phase {op.phase}", f"client {op.worker}"]
    if op.slot >= 0:
        parts.append(f"slot {slots[op.slot].label()}")
    if op.target_slot >= 0:
        parts.append(f"to {slots[op.target_slot].label()}")
    for name in ("reference", "lease_id", "token", "booking_id"):
        value = getattr(op, name)
        if value:
            parts.append(f"{name} {value}")
    if op.outcome is Outcome.APPLIED:
        answer = "ok"
    else:
        answer = op.cause or f"status {op.status} ({op.outcome.value})"
    parts.append(f"answer {answer}")
    if op.removed:
        parts.append("removed")
    elif op.count >= 0:
        parts.append(f"{'capacity' if op.kind is Kind.INVENTORY else 'count'} {op.count}")
    if op.expiry_ns:
        parts.append(f"expires_ns {op.expiry_ns}")
    parts.append(f"sent_ns {op.send_ns} answered after {(op.recv_ns - op.send_ns) / 1e6:.3f} ms")
    return ", ".join(parts)


# ----- the terminal table ---------------------------------------------------------------


def _server_cpu(us_per_call: float | None, cores: float | None) -> str:
    if us_per_call is None:
        return "? us/call"
    if cores is None:
        return f"{us_per_call} us/call"
    return f"{cores} cores, {us_per_call} us/call"


# How the table names a multi-process server's roles (bench._server.cpu_by_role).
_ROLE_NAMES = {"gateway": "gateway workers", "shard": "shard processes"}


def _by_role(us_by_role: dict[str, float]) -> str:
    """ " (gateway workers 404, shard processes 73, supervisor 1)": where a tree's CPU went;
    empty for a one-process server (its one role is the whole figure)."""
    if len(us_by_role) < 2:
        return ""
    order = [*_ROLE_NAMES, *sorted(set(us_by_role) - set(_ROLE_NAMES))]
    parts = [f"{_ROLE_NAMES.get(r, r)} {us_by_role[r]:.0f}" for r in order if r in us_by_role]
    return f" ({', '.join(parts)})"


def print_table(result: dict[str, Any], out: TextIO) -> None:
    w = out.write
    w(f"\nleasehold bench {result['scenario']}  ({result['target']}")
    nice = result.get("client_nice", 0)
    client = result.get("load_client", "grpcio")  # results from before the h2 client: grpcio
    w(f", {result['clients']} {client} client processes{f' at nice {nice}' if nice else ''})\n")
    head = f"{'phase':<10} {'requests':<14} {'n':>8} {'per s':>9} "
    head += " ".join(f"{'p' + format(p, 'g'):>8}" for p in PERCENTILES)
    head += f" {'max':>8}  answers\n"
    w(head)
    w("-" * (len(head) + 10) + "\n")
    for phase in result["phases"]:
        if not phase["measured"]:
            w(f"{phase['name']:<10} (not measured: {phase['requests']} requests)\n")
            continue
        for label, k in phase["kinds"].items():
            lat = k["latency_ms"]
            cells = " ".join(f"{lat.get('p' + format(p, 'g'), 0):8.2f}" for p in PERCENTILES)
            answers = ", ".join(f"{a} {n}" for a, n in list(k["answers"].items())[:4])
            w(
                f"{phase['name']:<10} {label:<14} {k['requests']:>8} {k['per_s']:>9.1f} "
                f"{cells} {lat.get('max', 0):8.2f}  {answers}\n"
            )
        cpu = phase["client_cpu_us_per_call"]
        server = phase["server_cpu_us_per_call"]
        mode = (
            f"closed, {phase['concurrency']} callers"
            if phase["mode"] == "closed"
            else f"open, {phase['rate_per_s']}/s"
        )
        if phase.get("rounds", 1) > 1:
            mode += f", {phase['rounds']} rounds"
        lag = phase.get("client_send_lag_ms")
        if lag:
            mode += f", sent late by p50 {lag['p50']:.2f} / p99 {lag['p99']:.2f} ms"
        w(
            f"{'':<10} ({mode}; client CPU {phase['client_cores']} cores, {cpu} us/call; "
            f"server CPU {_server_cpu(server, phase.get('server_cores'))}"
            f"{_by_role(phase.get('server_cpu_us_per_call_by_role', {}))}; "
            f"machine {phase['machine_busy']:.0%} busy)\n"
        )
    ceiling = result.get("ceiling")
    if ceiling:
        w(
            f"\nceiling: health Check {ceiling['health_check_per_s']:.0f}/s; CreateLease "
            f"{ceiling['create_lease_per_s']:.0f}/s = "
            f"{ceiling['create_lease_fraction_of_ceiling']:.0%} of it "
            f"(all requests {ceiling['all_requests_fraction_of_ceiling']:.0%}); served "
            f"calls only, turned away: {ceiling['health_check_turned_away']} Checks, "
            f"{ceiling['measure_turned_away']} measured requests\n"
        )
    for key, value in result.get("extra", {}).items():
        w(f"{key}: {value}\n")
    checker = result["checker"]
    if checker["ok"]:
        w(
            f"\nchecker: OK ({checker['operations']} operations, {checker['reads_checked']} "
            f"availability answers, {checker['unknown_outcomes']} unknown outcomes, "
            f"slack {checker['slack_ms']} ms)\n"
        )
    else:
        w(f"\nchecker: {len(checker['violations'])} VIOLATIONS\n")
        for v in checker["violations"]:
            w(f"  {v['kind']}: {v['message']}\n    operations: {v['operations']}\n")
            for line in v["described"]:
                w(f"      {line}\n")
        suppressed = checker["suppressed"]
        if suppressed:
            w(f"  and more not listed: {suppressed}\n")
        if result["files"]["history"]:
            w(f"  every operation: {result['files']['history']}\n")
    w(f"result: {result['files']['json']}\n")


# ----- charts ---------------------------------------------------------------------------


def write_charts(
    phases: Sequence[PhaseOutcome], series: dict[str, Any], out_dir: Path, title: str
) -> list[Path]:
    # Imported here, untyped on purpose: charts are optional (`--no-charts`), and the
    # checks run where only the `test` extra (no matplotlib) is installed.
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")
    plain = importlib.import_module("matplotlib.ticker").ScalarFormatter

    paths = []
    fig, ax = plt.subplots(figsize=(9, 5))
    ticks = [50.0, 90.0, 99.0, 99.9, 99.99]
    for phase in phases:
        if not phase.measured:
            continue
        by_label: dict[str, list[int]] = defaultdict(list)
        for op in counted(phase):
            by_label[op_label(op)].append(op.latency_ns)
        for label, values in sorted(by_label.items(), key=lambda kv: -len(kv[1]))[:4]:
            if len(values) < 20:
                continue
            h = histogram(values)
            xs, ys = [], []
            for p in _percentile_grid(len(values)):
                xs.append(1 / (1 - p / 100))
                ys.append(max(h.get_value_at_percentile(p) / 1_000, 1e-3))
            ax.plot(xs, ys, label=f"{phase.name}: {label}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([1 / (1 - t / 100) for t in ticks], [f"p{t:g}" for t in ticks])
    ax.yaxis.set_major_formatter(plain())
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{title}: latency distribution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path = out_dir / "latency.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    rows = series["seconds"]
    for name in dict.fromkeys(r["phase"] for r in rows):
        mine = [r for r in rows if r["phase"] == name]
        ts = [r["t"] for r in mine]
        top.plot(ts, [r["per_s"] for r in mine], marker=".", label=name)
        bottom.plot(ts, [r["p99_ms"] for r in mine], marker=".", label=name)
    top.set_ylabel("requests / s")
    bottom.set_ylabel("p99 (ms)")
    bottom.set_yscale("log")
    bottom.yaxis.set_major_formatter(plain())
    bottom.set_xlabel("seconds since the first phase started")
    top.set_title(f"{title}: throughput and p99 over time")
    for axis in (top, bottom):
        axis.grid(True, alpha=0.3)
    top.legend(fontsize=8)
    path = out_dir / "timeline.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)
    return paths


def _percentile_grid(count: int) -> list[float]:
    """Percentiles from 0 up to what `count` samples can support (1 in count)."""
    top = max(1.0, math.log10(count))
    steps = 100
    return [100 * (1 - 10 ** (-top * i / steps)) for i in range(steps + 1)]
