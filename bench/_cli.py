"""`leasehold bench`: run a scenario, check its history, report.

    leasehold bench SCENARIO (--spawn [serve flags...] | --target HOST:PORT --feed FILE) [options]
    leasehold bench flow --spawn --durability sync,async,none [options]   (side by side)
    leasehold bench core [--leases N]
    leasehold bench restart [--events N] [--layout journal,snapshot] [--runs R]
    leasehold bench attack {rapid-reset,overload,big-frames} [--runs R]   (issue 15's probes)
    leasehold bench h2load (--spawn [serve flags...] | --target HOST:PORT) [options]   (low CPU)
    leasehold bench feed SCENARIO [options] > feed.json

Exit status: 0 when the run was made and the checker found nothing; 1 when the
checker found a violation; 2 when the run could not be made (bad flags, the
server did not start, slots not free, a client process died...).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import ipaddress
import json
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from leasehold.bench._checker import CheckResult, check_history
from leasehold.bench._compare import comparison, mode_row, parse_modes, print_comparison
from leasehold.bench._feed import build_slots, feed_document, read_feed, write_feed
from leasehold.bench._history import FIELD_NAMES, BenchSlot, Kind, Op, Outcome
from leasehold.bench._loadgen import LOAD_CLIENTS
from leasehold.bench._run import RunError, Runner
from leasehold.bench._scenarios import (
    DEFAULT_MIX,
    ROLES,
    SCENARIOS,
    Options,
    run_scenario,
    slot_groups,
)
from leasehold.bench._server import ServerError, SpawnedServer, serve_command

EXIT_VIOLATION = 1
EXIT_NOT_MADE = 2
# The load generator shares the machine with the server under test; at equal priority
# a woken server waited for a client's time slice (docs/benchmarks.md). Open-loop
# latency counts from the intended send time, so niceness cannot hide a stall.
CLIENT_NICE = 10

# What the checker allows between the clients' clock and the server's, beyond the drift
# measured during the run: the server anchors its clock once, reading two clocks.
BASE_SLACK_NS = 1_000_000
# One churner sends one replacement at a time; more than this would only measure its queue.
MAX_CHURN_RATE = 1_000.0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if args[:1] == ["core"]:
        from leasehold.bench._core_bench import main as core_main

        return core_main(args[1:])
    if args[:1] == ["attack"]:
        from leasehold.bench._attacks import main as attack_main

        return attack_main(args[1:])
    if args[:1] == ["h2load"]:
        from leasehold.bench._h2load import main as h2load_main

        return h2load_main(args[1:])
    if args[:1] == ["restart"]:
        from leasehold.bench._restart import main as restart_main

        return restart_main(args[1:])
    if args[:1] == ["feed"]:
        options, _ = _options(parser, args[1:], allow_extra=False)
        slots = build_slots(slot_groups(options), int(time.time()))
        json.dump(feed_document(slots, int(time.time())), sys.stdout)
        sys.stdout.write("\n")
        return 0
    options, ns = _options(parser, args, allow_extra=True)
    try:
        return _bench(options, ns)
    except RunError as problem:
        print(f"leasehold bench: the run could not be made: {problem}", file=sys.stderr)
        return EXIT_NOT_MADE


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="leasehold bench",
        description="Load-test a Leasehold server over gRPC and check the full history. "
        "`leasehold bench core` times core/ alone; `leasehold bench feed SCENARIO` prints "
        "the feed a --target server must serve; `leasehold bench h2load --help`: load from h2load.",
    )
    p.add_argument("scenario", choices=SCENARIOS)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--target", metavar="HOST:PORT", help="a running server (loopback only)")
    where.add_argument(
        "--spawn",
        action="store_true",
        help="start `leasehold serve` for the run (unknown flags are passed to it)",
    )
    p.add_argument("--feed", type=Path, help="with --target: the feed the server serves")
    p.add_argument("--shards", type=int, help="with --spawn: the server's shard count")
    p.add_argument(
        "--durability",
        metavar="MODE[,MODE...]",
        help="with --spawn: the server's durability (sync, async, none); several modes run "
        "the scenario once per mode, each on a fresh server, and compare them side by side",
    )
    run = p.add_argument_group("the run")
    run.add_argument("--duration", type=float, default=10.0, metavar="S", help="measured phase")
    run.add_argument("--warmup", type=float, default=2.0, metavar="S", help="not measured")
    run.add_argument("--clients", type=int, default=2, help="client processes (default 2)")
    run.add_argument(
        "--client-nice",
        type=int,
        default=CLIENT_NICE,
        metavar="N",
        help=f"client processes run at this nice increment (default {CLIENT_NICE}): on a "
        "machine shared with the server, the server gets a free core first; 0: compete equally",
    )
    run.add_argument(
        "--load-client",
        choices=LOAD_CLIENTS,
        default=LOAD_CLIENTS[0],
        help="the client processes' gRPC client: h2 (default), the low-CPU HTTP/2 client of "
        "bench/_h2call.py, or grpcio (grpc.aio, several times the CPU per call)",
    )
    run.add_argument("--concurrency", type=int, help="closed-loop callers (all clients)")
    run.add_argument("--rate", type=float, help="open loop: arrivals per second instead")
    run.add_argument("--timeout", type=float, default=5.0, metavar="S", help="per call")
    run.add_argument("--max-requests", type=int, default=10_000_000, help="per phase")
    run.add_argument("--ceiling", action="store_true", help="also drive health Check")
    run.add_argument(
        "--ceiling-rounds",
        type=int,
        default=3,
        metavar="N",
        help="with --ceiling: the Check and measured phases alternate in N rounds of "
        "duration/N each (default 3), so both see the machine's speed drift alike",
    )
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--preflight-wait", type=float, metavar="S", help="wait for free slots")
    run.add_argument("--clock-slack-ms", type=float, default=BASE_SLACK_NS / 1e6)
    shape = p.add_argument_group("the workload")
    shape.add_argument("--slots", type=int, help="slots (contention: S)")
    shape.add_argument("--spots", type=int, help="spots per slot (contention: K)")
    shape.add_argument("--lease-ttl", type=float, metavar="S", help="lease lifetime asked for")
    shape.add_argument("--book-share", type=float, default=0.5)
    shape.add_argument("--think", type=float, default=0.2, metavar="S")
    shape.add_argument("--hold", type=float, default=0.5, metavar="S")
    shape.add_argument("--late-share", type=float, default=0.02)
    shape.add_argument("--replay-share", type=float, default=0.02)
    shape.add_argument("--no-half-load", action="store_true")
    shape.add_argument("--leases", type=int, default=100_000, help="expiry-storm: N")
    shape.add_argument("--storm-rate", type=float, default=500.0, help="expiry-storm load /s")
    shape.add_argument("--storm-setup", type=float, metavar="S")
    shape.add_argument("--mix", help="mixed: weights, e.g. check=25,lease=20,book=10")
    shape.add_argument("--max-bookings", type=int, default=2)
    churn = p.add_argument_group("inventory-churn")
    churn.add_argument(
        "--churn-rate",
        type=float,
        default=20.0,
        metavar="N",
        help="window replacements per second during the churn phases (default 20)",
    )
    churn.add_argument(
        "--churn-rounds",
        type=int,
        default=3,
        metavar="N",
        help="steady and churn phases alternate in N rounds of duration/N each (default 3)",
    )
    churn.add_argument(
        "--admin-target", metavar="HOST:PORT", help="with --target: the server's admin API"
    )
    churn.add_argument("--admin-token", help="the admin API's bearer token, if it needs one")
    out = p.add_argument_group("the report")
    out.add_argument("--out", type=Path, help="result directory (default bench-results/...)")
    out.add_argument("--no-charts", action="store_true")
    out.add_argument("--save-history", action="store_true", help="also write history.jsonl")
    return p


def _options(
    parser: argparse.ArgumentParser, args: list[str], *, allow_extra: bool
) -> tuple[Options, argparse.Namespace]:
    ns, extra = parser.parse_known_args(args)
    if extra and not (allow_extra and ns.spawn):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    ns.serve_extra = extra
    ns.durability_modes = []
    if ns.durability is not None:
        try:
            ns.durability_modes = parse_modes(ns.durability)
        except ValueError as problem:
            parser.error(f"--durability: {problem}")
        if not ns.spawn:
            parser.error("--durability is a setting of the server --spawn starts")
    if ns.ceiling_rounds < 1 or ns.churn_rounds < 1:
        parser.error("--ceiling-rounds and --churn-rounds must be at least 1")
    if not 0 < ns.churn_rate <= MAX_CHURN_RATE:
        parser.error(f"--churn-rate must be above 0 and at most {MAX_CHURN_RATE:g}")
    if not 0 <= ns.client_nice <= 19:
        parser.error("--client-nice must be 0 to 19")
    if ns.clients < 1 or (ns.concurrency is not None and ns.concurrency < 1):
        parser.error("--clients and --concurrency must be at least 1")
    if ns.duration <= 0 or ns.timeout <= 0:
        parser.error("--duration and --timeout must be positive")
    mix = dict(DEFAULT_MIX)
    if ns.mix:
        try:
            mix = {k.strip(): float(v) for k, v in (kv.split("=") for kv in ns.mix.split(","))}
        except ValueError:
            parser.error("--mix takes name=weight pairs, e.g. check=25,lease=20")
        unknown = set(mix) - set(DEFAULT_MIX)
        if unknown:
            parser.error(f"--mix: unknown {sorted(unknown)}; known: {sorted(DEFAULT_MIX)}")
    options = Options(
        scenario=ns.scenario,
        duration_s=ns.duration,
        warmup_s=ns.warmup,
        concurrency=ns.concurrency,
        rate=ns.rate,
        ceiling=ns.ceiling,
        ceiling_rounds=ns.ceiling_rounds,
        half_load=not ns.no_half_load,
        slots=ns.slots,
        spots=ns.spots,
        lease_ttl_s=ns.lease_ttl,
        book_share=ns.book_share,
        think_s=ns.think,
        hold_s=ns.hold,
        late_share=ns.late_share,
        replay_share=ns.replay_share,
        leases=ns.leases,
        storm_rate=ns.storm_rate,
        storm_setup_s=ns.storm_setup,
        mix=mix,
        max_bookings=ns.max_bookings,
        max_requests=ns.max_requests,
        churn_rate=ns.churn_rate,
        churn_rounds=ns.churn_rounds,
        admin_target=ns.admin_target,
        admin_token=ns.admin_token,
    )
    return options, ns


def _loopback(target: str) -> bool:
    host = target.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bench(o: Options, ns: argparse.Namespace) -> int:
    if not ns.spawn and not ns.target:
        raise RunError("say where the server is: --spawn, or --target HOST:PORT --feed FILE")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir: Path = ns.out or Path("bench-results") / f"{o.scenario}-{stamp}"
    modes: list[str] = ns.durability_modes
    if len(modes) > 1:
        return _compare_durability(o, ns, modes, out_dir)
    result = _one_run(o, ns, out_dir, durability=modes[0] if modes else None)
    return 0 if result["checker"]["ok"] else EXIT_VIOLATION


def _compare_durability(o: Options, ns: argparse.Namespace, modes: list[str], out: Path) -> int:
    """The scenario once per mode, in turn, each on a fresh server: same slots and load."""
    started = time.time()
    slots = build_slots(slot_groups(o), int(started))
    rows = []
    for mode in modes:
        print(f"\n== durability {mode} ==", file=sys.stderr, flush=True)
        # _one_run has stopped its server (SIGTERM) by the time it returns.
        result = _one_run(o, ns, out / mode, durability=mode, slots=slots)
        rows.append(mode_row(mode, result))
    summary = {
        "scenario": o.scenario,
        "comparison": "durability",
        "started_at": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(),
        "argv": sys.argv,
        "settings": dataclasses.asdict(o),
        **comparison(rows),
    }
    path = out / "result.json"
    path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print_comparison(o.scenario, summary, sys.stdout)
    print(f"result: {path}")
    return 0 if all(row["checker_ok"] for row in rows) else EXIT_VIOLATION


def _one_run(
    o: Options,
    ns: argparse.Namespace,
    out_dir: Path,
    *,
    durability: str | None = None,
    slots: list[BenchSlot] | None = None,
) -> dict[str, Any]:
    """One run of the scenario (spawning its server if asked); returns its result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    drift0 = time.time_ns() - time.monotonic_ns()
    server: SpawnedServer | None = None
    with tempfile.TemporaryDirectory(prefix="leasehold-bench-") as scratch:
        if ns.spawn:
            slots = slots or build_slots(slot_groups(o), int(started))
            feed = write_feed(out_dir / "feed.json", slots, int(started))
            extra = list(ns.serve_extra)
            if o.scenario == "inventory-churn" and not _has_flag(extra, "--admin-port"):
                extra += ["--admin-port", "0"]
            command = serve_command(
                feed, Path(scratch) / "data", ns.shards, extra, durability=durability
            )
            try:
                server = SpawnedServer(command)
            except ServerError as problem:
                raise RunError(str(problem)) from None
            target = server.target
            if o.scenario == "inventory-churn":
                o = dataclasses.replace(o, admin_target=server.admin_target())
        else:
            target = ns.target
            if o.scenario == "inventory-churn" and not o.admin_target:
                raise RunError("inventory-churn with --target needs --admin-target HOST:PORT")
            for where in (target, o.admin_target or target):
                if not _loopback(where):
                    raise RunError(f"{where}: the bench sends load to loopback only")
            if ns.feed is None:
                raise RunError("--target needs --feed: the feed that server serves")
            slots = read_feed(ns.feed, ROLES[o.scenario])
            if not slots:
                raise RunError(f"{ns.feed} has no {'/'.join(ROLES[o.scenario])} slots")
        try:
            return _run(o, ns, slots, target, server, out_dir, started, drift0)
        finally:
            if server is not None:
                server.kill()


def _run(
    o: Options,
    ns: argparse.Namespace,
    slots: list[BenchSlot],
    target: str,
    server: SpawnedServer | None,
    out_dir: Path,
    started: float,
    drift0: int,
) -> dict[str, Any]:
    log = sys.stderr
    where = f"spawned {' '.join(server.command)}" if server else f"target {target}"
    print(f"leasehold bench {o.scenario}: {len(slots)} slots; {where}", file=log)
    run_id = secrets.token_hex(4)
    with Runner(
        target,
        slots,
        clients=ns.clients,
        timeout_s=ns.timeout,
        run_id=run_id,
        seed=ns.seed,
        server_cpu=server.cpu_by_role if server else lambda: None,
        out=log,
        client_nice=ns.client_nice,
        load_client=ns.load_client,
    ) as runner:
        wait = ns.preflight_wait
        if wait is None:
            wait = 0.0 if server else (o.lease_ttl_s or 3.0) + 2.0
        runner.wait_until_free(wait)
        scenario = run_scenario(runner, o)
        if server is not None and o.scenario == "inventory-churn":
            scenario.extra.update(_shard_hold(server))
        final = runner.read_all("final")
        history = [op for phase in scenario.phases for op in phase.ops] + final
        drift = abs(time.time_ns() - time.monotonic_ns() - drift0)
        slack = drift + round(ns.clock_slack_ms * 1e6)
        print(f"checking {len(history)} operations (clock slack {slack / 1e6:.3f} ms)", file=log)
        checked = check_history(history, slots, slack)
        if server is None:
            runner.cancel_all(_still_confirmed(history))
    server_exit = server.stop() if server else None
    result = _result(o, ns, target, slots, scenario, history, checked, slack, started, out_dir)
    result["server"] = {
        "spawned": server is not None,
        "command": server.command if server else None,
        "exit_code": server_exit,
        "durability": _serve_setting(server.command, "--durability") if server else None,
    }
    _write(result, history, scenario, out_dir, ns)
    from leasehold.bench._report import print_table

    print_table(result, sys.stdout)
    if server_exit not in (None, 0):
        print(f"warning: the server exited {server_exit} on SIGTERM", file=log)
    return result


def _shard_hold(server: SpawnedServer) -> dict[str, Any]:
    """The server's own figure for an update: ChangeInventory service time, from /metrics."""
    from leasehold.bench._churn import hold_figures, scrape_metrics

    url = server.health_url()
    if url is None:
        return {}
    try:
        return hold_figures(scrape_metrics(url))
    except OSError as problem:
        print(f"warning: no /metrics from {url}: {problem}", file=sys.stderr)
        return {}


def _has_flag(args: Sequence[str], flag: str) -> bool:
    return any(arg.split("=", 1)[0] == flag for arg in args)


def _serve_setting(command: Sequence[str], flag: str) -> str | None:
    """The value a serve command line gives `flag` (the last one wins, as in argparse)."""
    value = None
    for i, arg in enumerate(command):
        if arg == flag and i + 1 < len(command):
            value = command[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def _still_confirmed(history: list[Op]) -> list[tuple[str, int, str]]:
    booked: dict[str, tuple[str, int, str]] = {}
    for op in history:
        if op.kind is Kind.BOOK and op.outcome is Outcome.APPLIED:
            booked[op.booking_id] = (op.booking_id, op.reply_slot, op.version)
    for op in history:
        if op.kind is Kind.CANCEL and op.outcome is Outcome.APPLIED:
            booked.pop(op.booking_id, None)
    return list(booked.values())


def _result(
    o: Options,
    ns: argparse.Namespace,
    target: str,
    slots: list[BenchSlot],
    scenario: Any,
    history: list[Op],
    checked: CheckResult,
    slack_ns: int,
    started: float,
    out_dir: Path,
) -> dict[str, Any]:
    from leasehold.bench._report import ceiling_figures, phase_summary, timeline, violation_records
    from leasehold.bench._run import merge_rounds

    return {
        "scenario": o.scenario,
        "started_at": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(),
        "argv": sys.argv,
        "target": target,
        "clients": ns.clients,
        "client_nice": ns.client_nice,
        "load_client": ns.load_client,
        "settings": dataclasses.asdict(o),
        "slots": len(slots),
        "spots": sum(s.spots for s in slots),
        # A phase run in rounds (--ceiling-rounds) is one entry, over all its rounds; the
        # timeline keeps each round at its own time.
        "phases": [phase_summary(p) for p in merge_rounds(scenario.phases)],
        "ceiling": ceiling_figures(scenario.phases),
        "extra": scenario.extra,
        "timeline": timeline(scenario.phases),
        "checker": {
            "ok": checked.ok,
            "violations": violation_records(checked.violations, history, slots),
            "suppressed": checked.suppressed,
            "operations": checked.operations,
            "unknown_outcomes": checked.unknown_outcomes,
            "entities": checked.entities,
            "reads_checked": checked.reads_checked,
            "slack_ms": round(slack_ns / 1e6, 3),
            "max_certain_holders": max(checked.max_certain_holders.values(), default=0),
        },
        "files": {"json": str(out_dir / "result.json"), "charts": [], "history": None},
    }


def _write(
    result: dict[str, Any],
    history: list[Op],
    scenario: Any,
    out_dir: Path,
    ns: argparse.Namespace,
) -> None:
    # A violation's operations are listed by id: the history lets one follow them.
    if ns.save_history or not result["checker"]["ok"]:
        path = out_dir / "history.jsonl"
        with path.open("w", encoding="utf-8") as f:
            f.write(json.dumps(FIELD_NAMES) + "\n")
            for op in history:
                f.write(json.dumps(op.row()) + "\n")
        result["files"]["history"] = str(path)
    if not ns.no_charts:
        from leasehold.bench._report import write_charts

        charts = write_charts(
            scenario.phases, result["timeline"], out_dir, f"leasehold bench {ns.scenario}"
        )
        result["files"]["charts"] = [str(p) for p in charts]
    (out_dir / "result.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
