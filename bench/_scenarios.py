"""The scenarios: their slots, and the phases each runs (the callers are in _behaviours).

- flow: the booking funnel (CheckAvailability, CreateLease, CreateBooking) on
  uncontended slots (many slots, more spots than the run can take).
- contention: C callers race for S slots of K spots; leases live `--lease-ttl`,
  a share of lease holders book (after thinking; a few think too long), the rest
  leave their lease to expire; bookings are held a while, then cancelled. Then,
  unless `--no-half-load`, the same workload open-loop at half the measured
  CreateLease rate, for the latency at half load (its first `--warmup` seconds
  not counted).
- expiry-storm: N leases over the storm slots, all expiring at one instant;
  open-loop load on other slots goes on before and after it, and pollers watch
  the storm slots from the instant on.
- mixed: a weighted blend of every RPC, v2 and v0 (`--mix check=25,lease=20,...`).
- inventory-churn: the contention load (open loop, `--rate`) on a few merchants'
  runs of slots, in rounds that alternate `steady` (no change) and `churn` (the
  admin API replaces windows of the same slots at `--churn-rate` per second: see
  _churn). The checker learns each capacity from the admin calls; the figures
  compare CreateLease latency in the two phases and give each update's latency.

`--ceiling` adds a phase of the health Check at the scenario's concurrency: what
the same gRPC stack does with no work behind the call. It alternates with the
measured phase in `--ceiling-rounds` rounds, so that both see the same drift of
the machine's speed (see `_measure`).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from leasehold.bench._feed import SlotGroup
from leasehold.bench._history import BenchSlot, Kind, Op
from leasehold.bench._loadgen import NANOS
from leasehold.bench._run import PhaseOutcome, RunError, Runner, merge_rounds

SCENARIOS = ("flow", "contention", "expiry-storm", "mixed", "inventory-churn")
ROLES = {
    "flow": ("flow",),
    "contention": ("race",),
    "expiry-storm": ("storm", "background"),
    "mixed": ("mixed",),
    "inventory-churn": ("churn",),
}
DEFAULT_MIX = {
    "check": 25.0,
    "batch": 5.0,
    "lease": 20.0,
    "lease_v0": 5.0,
    "book": 12.0,
    "book_direct": 3.0,
    "book_v0": 5.0,
    "cancel": 8.0,
    "cancel_v0": 2.0,
    "reschedule": 5.0,
    "get": 5.0,
    "list": 5.0,
}


# Not counted at the start of each --ceiling round (see _measure).
ROUND_SETTLE_S = 0.5
# inventory-churn: the open-loop arrival rate when --rate is not given.
CHURN_LOAD_PER_S = 300.0
# ... and the share of arrivals that read their slot first (CheckAvailability).
CHURN_READ_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class Options:
    """A scenario's settings (the CLI fills them; defaults are each scenario's own)."""

    scenario: str
    duration_s: float = 10.0
    warmup_s: float = 2.0
    concurrency: int | None = None
    rate: float | None = None
    ceiling: bool = False
    ceiling_rounds: int = 3
    half_load: bool = True
    slots: int | None = None
    spots: int | None = None
    lease_ttl_s: float | None = None
    book_share: float = 0.5
    think_s: float = 0.2
    hold_s: float = 0.5
    late_share: float = 0.02
    replay_share: float = 0.02
    leases: int = 100_000
    storm_rate: float = 500.0
    storm_setup_s: float | None = None
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    max_bookings: int = 2
    max_requests: int = 10_000_000
    churn_rate: float = 20.0
    churn_rounds: int = 3
    # The admin API's HOST:PORT (the CLI fills it from --spawn or --admin-target).
    admin_target: str | None = None
    admin_token: str | None = None


def default_concurrency(o: Options) -> int:
    return o.concurrency or {"contention": 1000, "expiry-storm": 256}.get(o.scenario, 64)


def slot_groups(o: Options) -> list[SlotGroup]:
    if o.scenario == "flow":
        return [SlotGroup("flow", o.slots or 1024, o.spots or 10_000, merchants=64)]
    if o.scenario == "contention":
        count = o.slots or 10
        return [SlotGroup("race", count, o.spots or 1, merchants=count)]
    if o.scenario == "expiry-storm":
        spots = o.spots or 1_000
        storm = o.slots or max(1, math.ceil(o.leases / spots))
        return [
            SlotGroup("storm", storm, spots, merchants=16),
            SlotGroup("background", 32, 1_000_000, merchants=16),
        ]
    if o.scenario == "mixed":
        return [SlotGroup("mixed", o.slots or 96, o.spots or 4, merchants=16)]
    if o.scenario == "inventory-churn":
        return [SlotGroup("churn", o.slots or 16, o.spots or 2, merchants=4)]
    raise ValueError(f"unknown scenario {o.scenario!r}")


@dataclass
class ScenarioRun:
    phases: list[PhaseOutcome] = field(default_factory=list)
    # Scenario-specific figures (the storm's lateness, the half-load rate...).
    extra: dict[str, Any] = field(default_factory=dict)


def run_scenario(runner: Runner, o: Options) -> ScenarioRun:
    plans = {
        "flow": _flow,
        "contention": _contention,
        "expiry-storm": _expiry_storm,
        "mixed": _mixed,
        "inventory-churn": _inventory_churn,
    }
    run = ScenarioRun()
    plans[o.scenario](runner, o, run)
    return run


def _indexes(slots: list[BenchSlot], role: str) -> list[int]:
    return [i for i, s in enumerate(slots) if s.key.service_id == role]


def _load(
    runner: Runner,
    o: Options,
    run: ScenarioRun,
    name: str,
    behaviour: str,
    params: dict[str, Any],
    *,
    duration_s: float,
    measured: bool = True,
    rate: float | None = None,
) -> PhaseOutcome:
    """A phase open-loop at `rate` if given (or --rate), else closed-loop at the concurrency."""
    rate = rate if rate is not None else o.rate
    phase = runner.phase(
        name,
        behaviour,
        mode="open" if rate else "closed",
        concurrency=default_concurrency(o),
        rate=rate or 0.0,
        duration_s=duration_s,
        params=params,
        measured=measured,
        max_requests=o.max_requests,
    )
    run.phases.append(phase)
    return phase


def _ceiling(runner: Runner, o: Options, run: ScenarioRun, duration_s: float) -> PhaseOutcome:
    # Closed loop even under --rate: the ceiling is what the stack can do at this
    # concurrency, not the offered rate echoed back.
    return _load(runner, o, run, "ceiling", "health", {}, duration_s=duration_s, rate=0.0)


def _measure(
    runner: Runner, o: Options, run: ScenarioRun, behaviour: str, params: dict[str, Any]
) -> PhaseOutcome:
    """The measured phase; with --ceiling, it and the ceiling in alternating rounds.

    The machine's speed drifts within a session (docs/benchmarks.md), so one ceiling
    phase followed by one measured phase would compare two different machines.
    Rounds of each, interleaved, see the same drift; the figures sum the rounds
    (merge_rounds). Each round's first ROUND_SETTLE_S, slow while its callers all
    start at once, is not counted. Returns the measured phase over all its rounds.
    """
    if not o.ceiling:
        return _load(runner, o, run, "measure", behaviour, params, duration_s=o.duration_s)
    length = o.duration_s / o.ceiling_rounds + ROUND_SETTLE_S
    rounds = []
    for _ in range(o.ceiling_rounds):
        _settle(run, _ceiling(runner, o, run, length))
        measure = _load(runner, o, run, "measure", behaviour, params, duration_s=length)
        rounds.append(_settle(run, measure))
    return merge_rounds(rounds)[0]


def _settle(
    run: ScenarioRun, phase: PhaseOutcome, settle_s: float = ROUND_SETTLE_S
) -> PhaseOutcome:
    """`phase` (the run's latest) counted only from `settle_s` after its start."""
    settled = replace(phase, windows=((phase.start_ns + round(settle_s * NANOS), phase.end_ns),))
    assert run.phases[-1] is phase
    run.phases[-1] = settled
    return settled


def _flow(runner: Runner, o: Options, run: ScenarioRun) -> None:
    params = {"slots": _indexes(runner.slots, "flow"), "lease_ttl_s": o.lease_ttl_s or 60.0}
    if o.warmup_s > 0:
        _load(runner, o, run, "warmup", "flow", params, duration_s=o.warmup_s, measured=False)
    _measure(runner, o, run, "flow", params)


def _race_params(o: Options, slots: list[int]) -> dict[str, Any]:
    """The contention workload's settings: the contention and inventory-churn runs share it."""
    return {
        "slots": slots,
        "lease_ttl_s": o.lease_ttl_s or 2.0,
        "book_share": o.book_share,
        "think_s": o.think_s,
        "hold_s": o.hold_s,
        "late_share": o.late_share,
        "replay_share": o.replay_share,
    }


def _contention(runner: Runner, o: Options, run: ScenarioRun) -> None:
    params = _race_params(o, _indexes(runner.slots, "race"))
    if o.warmup_s > 0:
        _load(runner, o, run, "warmup", "contention", params, duration_s=o.warmup_s, measured=False)
    measure = _measure(runner, o, run, "contention", params)
    if not o.half_load or o.rate:
        return
    # Served ones only: a shedding server's fast refusals are no measure of its pace.
    leases = [op for op in measure.served() if op.kind is Kind.LEASE]
    per_second = len(leases) / measure.seconds
    # Each arrival is one attempt: one CreateLease (replays of granted ones are rare).
    rate = 0.5 * per_second
    run.extra["half_load_arrivals_per_s"] = round(rate, 1)
    run.extra["half_load_of_lease_per_s"] = round(per_second, 1)
    if rate > 0:
        # One open-loop phase, counted from --warmup seconds after its start: a warm-up
        # must run the same load with no pause. Between phases the slots drain free, so a
        # separate warm-up left the first wave of grants in the first measured second.
        duration_s = o.warmup_s + o.duration_s
        half = _load(
            runner, o, run, "half-load", "contention", params, duration_s=duration_s, rate=rate
        )
        _settle(run, half, o.warmup_s)


def _mixed(runner: Runner, o: Options, run: ScenarioRun) -> None:
    params = {
        "slots": _indexes(runner.slots, "mixed"),
        "lease_ttl_s": o.lease_ttl_s or 3.0,
        "mix": o.mix,
        "replay_share": o.replay_share,
        "max_bookings": o.max_bookings,
    }
    if o.warmup_s > 0:
        _load(runner, o, run, "warmup", "mixed", params, duration_s=o.warmup_s, measured=False)
    _measure(runner, o, run, "mixed", params)


def _inventory_churn(runner: Runner, o: Options, run: ScenarioRun) -> None:
    if not o.admin_target:
        raise RunError("inventory-churn needs the admin API: --spawn, or --admin-target")
    slots = _indexes(runner.slots, "churn")
    params = {
        **_race_params(o, slots),
        "spots": {str(i): runner.slots[i].spots for i in slots},
        # Capacities walk over 1..2K-1 around the start capacity K, so the churn phase
        # offers about as many spots as the steady one (a fair comparison of latency).
        "max_spots": 2 * max(runner.slots[i].spots for i in slots) - 1,
        "admin_target": o.admin_target,
        "admin_token": o.admin_token,
        "churn_rate": 0.0,
        "read_share": CHURN_READ_SHARE,
    }
    churning = {**params, "churn_rate": o.churn_rate}
    rate = o.rate or CHURN_LOAD_PER_S
    if o.warmup_s > 0:
        duration, behaviour = o.warmup_s, "inventory-churn"
        _load(
            runner,
            o,
            run,
            "warmup",
            behaviour,
            params,
            duration_s=duration,
            rate=rate,
            measured=False,
        )
    length = o.duration_s / o.churn_rounds + ROUND_SETTLE_S
    steady: list[PhaseOutcome] = []
    churn: list[PhaseOutcome] = []
    for _ in range(o.churn_rounds):
        for name, p, rounds in (("steady", params, steady), ("churn", churning, churn)):
            phase = _load(runner, o, run, name, "inventory-churn", p, duration_s=length, rate=rate)
            rounds.append(_settle(run, phase))
    run.extra.update(churn_figures(merge_rounds(steady)[0], merge_rounds(churn)[0]))


def churn_figures(steady: PhaseOutcome, churn: PhaseOutcome) -> dict[str, Any]:
    """CreateLease latency without and with churn, and what each update cost."""
    figures: dict[str, Any] = {}
    for label, phase in (("steady", steady), ("churn", churn)):
        latencies = sorted(
            op.latency_ns
            for op in phase.ops
            if op.kind is Kind.LEASE and phase.within(op.intended_ns or op.send_ns)
        )
        figures[f"lease_{label}_requests"] = len(latencies)
        figures[f"lease_{label}_granted"] = sum(
            1 for op in phase.answered() if op.kind is Kind.LEASE and op.lease_id
        )
        for q in (0.5, 0.99):
            value = _pct(latencies, q) / 1e6 if latencies else None
            figures[f"lease_{label}_p{round(q * 100)}_ms"] = value and round(value, 3)
    p99s = (figures["lease_steady_p99_ms"], figures["lease_churn_p99_ms"])
    figures["lease_p99_churn_over_steady"] = (
        round(p99s[1] / p99s[0], 2) if p99s[0] and p99s[1] else None
    )
    calls: dict[tuple[int, int], Op] = {}
    for op in churn.ops:
        if op.kind is Kind.INVENTORY:
            calls.setdefault((op.worker, op.send_ns), op)
    answers = Counter(call.outcome.value for call in calls.values())
    during = [c for c in calls.values() if churn.within(c.send_ns)]
    latencies = sorted(c.recv_ns - c.send_ns for c in calls.values())
    figures["churn_calls"] = dict(answers)
    figures["churn_changes_per_s"] = round(len(during) / churn.seconds, 1) if churn.seconds else 0
    figures["churn_slot_changes"] = sum(1 for op in churn.ops if op.kind is Kind.INVENTORY)
    for q in (0.5, 0.99, 1.0):
        value = _pct(latencies, q) / 1e6 if latencies else None
        figures[f"update_p{round(q * 100)}_ms"] = value and round(value, 3)
    return figures


def _expiry_storm(runner: Runner, o: Options, run: ScenarioRun) -> None:
    storm = _indexes(runner.slots, "storm")
    background = _indexes(runner.slots, "background")
    capacity = sum(runner.slots[i].spots for i in storm)
    if capacity < o.leases:
        raise RunError(f"the storm slots hold {capacity} spots, fewer than {o.leases} leases")
    if o.ceiling:
        _ceiling(runner, o, run, o.duration_s)
    # All leases expire at one instant, fixed before the first is asked for: far enough
    # ahead for the setup to finish at 3/4 of the grant rate measured just before it.
    setup_s = o.storm_setup_s
    if setup_s is None:
        calibrate = runner.phase(
            "calibrate",
            "storm-load",
            concurrency=default_concurrency(o),
            duration_s=2.0,
            params={"slots": background, "lease_ttl_s": 1.0, "leases_only": True},
            measured=False,
        )
        run.phases.append(calibrate)
        rate = sum(1 for op in calibrate.ops if op.lease_id) / calibrate.seconds
        run.extra["storm_calibrated_grants_per_s"] = round(rate, 1)
        if rate == 0:
            # Sizing the setup from no grants at all would plan a window of hours.
            raise RunError(f"calibration granted no lease: {_answers(calibrate)}")
        setup_s = max(5.0, o.leases / max(0.75 * rate, 1.0) + 3.0)
    instant = time.time_ns() + round((setup_s + 1.0) * NANOS)
    workers = runner.clients
    setup = runner.phase(
        "setup",
        "storm-setup",
        concurrency=default_concurrency(o),
        duration_s=setup_s,
        params={"slots": storm, "expiry_ns": instant},
        per_worker=lambda w: {
            "per_worker": o.leases // workers + (1 if w < o.leases % workers else 0),
            "offset": w * (len(storm) // max(workers, 1)),
        },
        measured=False,
    )
    run.phases.append(setup)
    granted = sum(1 for op in setup.ops if op.kind is Kind.LEASE and op.lease_id)
    run.extra["storm_leases_granted"] = granted
    run.extra["storm_instant_ns"] = instant
    if granted < o.leases:
        raise RunError(
            f"the storm setup granted {granted} of {o.leases} leases in {setup_s:.0f} s "
            f"({_answers(setup)})"
        )
    after = max(o.duration_s, 1.0)
    load = runner.phase(
        "storm",
        "storm-load",
        mode="open",
        rate=o.storm_rate,
        duration_s=(instant - time.time_ns()) / NANOS + after,
        params={
            "slots": background,
            "storm_slots": storm,
            "expiry_ns": instant,
            "lease_ttl_s": o.lease_ttl_s or 1.0,
            "pollers": 8,
            "spots": {str(i): runner.slots[i].spots for i in storm},
        },
        max_requests=o.max_requests,
    )
    run.phases.append(load)
    run.extra.update(storm_figures(load, storm, runner.slots, instant))


def storm_figures(
    phase: PhaseOutcome, storm: list[int], slots: list[BenchSlot], instant: int
) -> dict[str, Any]:
    """When each storm slot was first seen free again, and the latency of the others' load."""
    first_free: dict[int, int] = {}
    last_held: dict[int, int] = {}
    storm_set = set(storm)
    for op in sorted(phase.ops, key=lambda op: op.recv_ns):
        if op.kind is not Kind.CHECK or op.slot not in storm_set or op.count < 0:
            continue
        if op.count == slots[op.slot].spots:
            first_free.setdefault(op.slot, op.recv_ns)
        elif op.send_ns >= instant:
            last_held[op.slot] = op.send_ns
    seen = sorted((t - instant) / 1e6 for t in first_free.values())
    figures: dict[str, Any] = {
        "storm_slots": len(storm),
        "storm_slots_seen_free": len(first_free),
        "all_free_seen_by_ms": round(seen[-1], 3) if len(seen) == len(storm) else None,
        "median_slot_free_seen_by_ms": round(seen[len(seen) // 2], 3) if seen else None,
        # A read sent after the instant that still saw a held spot: the checker flags it.
        "reads_after_instant_seeing_leases": len(last_held),
    }
    windows = {
        "before": (instant - 5 * NANOS, instant),
        "during": (instant, instant + NANOS),
        "after": (instant + NANOS, phase.end_ns),
    }
    background = [op for op in phase.ops if op.slot not in storm_set]
    for label, (lo, hi) in windows.items():
        latencies = sorted(
            op.latency_ns for op in background if lo <= (op.intended_ns or op.send_ns) < hi
        )
        if latencies:
            figures[f"background_{label}_p99_ms"] = round(_pct(latencies, 0.99) / 1e6, 3)
            figures[f"background_{label}_max_ms"] = round(latencies[-1] / 1e6, 3)
            figures[f"background_{label}_requests"] = len(latencies)
    return figures


def _answers(phase: PhaseOutcome) -> str:
    """The answers a phase got, most common first (e.g. `INVALID_ARGUMENT 512`)."""
    seen = Counter(op.cause or f"status {op.status}" for op in phase.ops)
    return ", ".join(f"{answer} {n}" for answer, n in seen.most_common(4)) or "no requests"


def _pct(sorted_values: list[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]
