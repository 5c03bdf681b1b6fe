"""`leasehold bench h2load`: the gRPC body it sends, h2load's output it reads, one tiny real run.

The outputs in tests/h2load_output/ are h2load 1.52's own, captured against
`leasehold serve` (a 2000-request CreateLease replay run with the first 50 rows
of its --log-file, a 2 s Health/Check run, 10 calls of a method the server does
not have, 10 calls to a closed port).
h2load comes from PATH, or tests/install_h2load.sh installs it (CI runs as
root); if neither works the end-to-end tests fail and say why: they never skip.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _installed import found_or_installed
from _server_process import leasehold_executable, running_server

from leasehold.bench._feed import SlotGroup, build_slots, write_feed
from leasehold.bench._h2load import main
from leasehold.bench._h2load_parse import (
    H2loadOutputError,
    LatencyHistogram,
    grpc_frame,
    parse_log,
    parse_summary,
)
from leasehold.bench._h2load_run import (
    CREATE_LEASE,
    Call,
    Load,
    bodies_problem,
    h2load_command,
    health_call,
    http_problem,
    lease_call,
    one_run,
    wait_with_limit,
)
from leasehold.bench._server import SpawnedServer, serve_command
from leasehold.core import SlotKey
from leasehold.proto.v2 import booking_pb2 as pb2

OUTPUT = Path(__file__).with_name("h2load_output")
INSTALL_SCRIPT = Path(__file__).with_name("install_h2load.sh")
INSTALL_TIMEOUT_S = 300
KEY = SlotKey("m-1", "svc", 4_102_444_800, 1800)
# One call in flight: the server's admission refuses calls that queued over 20 ms while
# a queue stands, which a busy test machine can cause with a few calls in flight; these
# tests check that every call is answered OK, so they queue none.
TINY = Load(1, 1, 1, None, 200, 5.0, 10, 60.0)
UNQUEUED_FLAGS = ["-c", "1", "-m", "1", "--warmup", "0"]


def _output(name: str) -> str:
    return (OUTPUT / name).read_text(encoding="utf-8")


# ---- the gRPC frame ----


def test_a_frame_is_a_zero_flag_a_big_endian_length_and_the_message() -> None:
    assert grpc_frame(b"") == b"\x00\x00\x00\x00\x00"
    assert grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert grpc_frame(b"x" * 300)[:5] == b"\x00\x00\x00\x01\x2c"


def test_the_create_lease_frame_decodes_back_to_the_request() -> None:
    call = lease_call(KEY, "ref-1")
    frame = grpc_frame(call.message)
    assert int.from_bytes(frame[1:5], "big") == len(frame) - 5
    request = pb2.CreateLeaseRequest.FromString(frame[5:])
    assert request.lease.user_reference == "ref-1"
    assert request.lease.slot.merchant_id == KEY.merchant_id
    assert request.lease.slot.start_time.seconds == KEY.start_sec
    assert request.lease.slot.duration.seconds == KEY.duration_sec
    assert not request.lease.HasField("lease_expiration_time")  # the server's default TTL


def test_a_message_over_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="over"):
        grpc_frame(b"\x00" * (4 * 1024 * 1024 + 1))


# ---- h2load's output ----


def test_a_request_count_run_is_read() -> None:
    s = parse_summary(_output("create_lease_n2000.txt"))
    assert (s.total, s.started, s.done, s.succeeded) == (2000, 2000, 2000, 2000)
    assert (s.failed, s.errored, s.timeout, s.status_2xx, s.status_other) == (0, 0, 0, 2000, 0)
    assert s.requests_per_s == 2157.63
    assert s.data_bytes == 222000
    assert s.latency_min_s == pytest.approx(2.05e-3)
    assert s.latency_max_s == pytest.approx(32.86e-3)
    assert s.latency_mean_s == pytest.approx(13.54e-3)
    assert s.latency_sd_s == pytest.approx(7.10e-3)
    # 2000 answers of one 111-byte framed CreateLeaseResponse each.
    assert s.bodies_match(111)
    assert not s.bodies_match(110)
    assert s.answers_without_message(110) is None  # 222000 bytes are not 2000 x 110
    fewer = _output("create_lease_n2000.txt").replace(
        "(222000) data", f"({222000 - 18 * 111}) data"
    )
    assert parse_summary(fewer).answers_without_message(111) == 18
    assert http_problem(s) is None


def test_a_timed_run_counts_the_calls_done_not_those_cut_off() -> None:
    s = parse_summary(_output("health_d2s.txt"))
    assert (s.started, s.done, s.status_2xx) == (9776, 9648, 9648)  # -c 8 -m 16: 128 cut off
    assert s.bodies_match(7)  # Check's reply: 5-byte prefix + status SERVING (2 bytes)
    assert s.latency_min_s == pytest.approx(4.42e-3)
    assert http_problem(s) is None


def test_http_200_with_no_message_is_seen_through_the_body_bytes() -> None:
    # grpc-status UNIMPLEMENTED, trailers-only: h2load counts 10 successes.
    s = parse_summary(_output("unimplemented_n10.txt"))
    assert (s.succeeded, s.status_2xx, s.data_bytes) == (10, 10, 0)
    assert http_problem(s) is None
    assert not s.bodies_match(7)
    assert s.answers_without_message(7) == 10
    assert s.latency_min_s == pytest.approx(247e-6)


def test_a_closed_port_is_a_problem_named_by_count() -> None:
    s = parse_summary(_output("refused_n10.txt"))
    assert (s.done, s.failed, s.errored) == (0, 10, 10)
    assert s.bodies_match(7)  # nothing received is "consistent": http_problem must catch it
    assert http_problem(s) == "no HTTP 200 answer"


def test_http_problem_names_what_h2load_counted() -> None:
    ok = parse_summary(_output("create_lease_n2000.txt"))
    text = _output("create_lease_n2000.txt").replace("0 failed, 0 errored", "3 failed, 3 errored")
    assert http_problem(parse_summary(text)) == "h2load counted {'failed': 3, 'errored': 3}"
    assert http_problem(ok) is None


def test_bodies_problem_says_how_many_answers_were_errors() -> None:
    ok = parse_summary(_output("create_lease_n2000.txt"))
    fewer = _output("create_lease_n2000.txt").replace(
        "(222000) data", f"({222000 - 18 * 111}) data"
    )
    assert bodies_problem(ok, 111) is None
    said = "18 of 2000 answers carried no message (gRPC errors)"
    assert bodies_problem(parse_summary(fewer), 111) == said
    assert bodies_problem(ok, 110) == "222000 DATA bytes are not 2000 replies of 110"
    assert bodies_problem(ok, -1) == "not checked: the sample had no reply to compare with"
    unimplemented = parse_summary(_output("unimplemented_n10.txt"))
    assert bodies_problem(unimplemented, 7) == "all 10 answers carried no message (gRPC errors)"


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("finished in", "finished in ... req/s"),
        ("requests:", "requests: ..."),
        ("status codes:", "status codes: ..."),
        ("traffic:", "traffic: ... data"),
        ("time for request:", "time for request: ..."),
    ],
)
def test_output_missing_a_line_is_refused_naming_it(line: str, named: str) -> None:
    text = "\n".join(
        row for row in _output("create_lease_n2000.txt").splitlines() if not row.startswith(line)
    )
    with pytest.raises(H2loadOutputError, match=re.escape(named)):
        parse_summary(text)


def test_the_log_gives_percentiles_within_one_percent() -> None:
    rows = _output("create_lease_n2000.log").splitlines()
    exact = sorted(int(row.split("\t")[2]) for row in rows)
    figures = parse_log(rows)
    assert (figures.answered_200, figures.not_200) == (50, 0)
    p50 = exact[len(exact) // 2 - 1]  # the 25th of 50
    assert p50 * 1e-6 <= figures.p50_s <= p50 * 1.01e-6
    assert figures.p99_s == exact[-1] * 1e-6  # the 50th of 50: the maximum, exactly


def test_failed_streams_are_counted_and_kept_out_of_the_latencies() -> None:
    figures = parse_log(["1\t200\t1000", "2\t-1\t90000000", "3\t503\t5", "4\t200\t3000"])
    assert (figures.answered_200, figures.not_200) == (2, 2)
    assert figures.p99_s == pytest.approx(3000e-6)


def test_a_log_row_that_is_not_three_fields_is_refused() -> None:
    with pytest.raises(H2loadOutputError, match="line 2"):
        parse_log(["1\t200\t10", "garbage"])


def test_the_histogram_is_bounded_and_accurate() -> None:
    histogram = LatencyHistogram()
    values = list(range(1, 100_001))
    for v in values:
        histogram.add(v)
    for pct in (50, 99):
        true = values[int(len(values) * pct / 100) - 1] * 1e-6
        assert true <= histogram.percentile(pct) <= true * 1.01
    assert len(histogram._counts) < 1200  # 1 us to 100 ms at 1 % per bucket
    assert LatencyHistogram().percentile(99) == 0.0


# ---- the command and its flags ----


def test_the_command_sends_grpc_headers_at_nice_10() -> None:
    load = Load(2, 4, 1, None, 200, 5.0, 10, 60.0)
    command = h2load_command("127.0.0.1:5", CREATE_LEASE, Path("b"), Path("l"), load)
    assert command[:4] == ["nice", "-n", "10", "h2load"]
    joined = " ".join(command)
    assert "-c 2 -m 4 -t 1 -n 200" in joined
    assert "-H content-type: application/grpc -H te: trailers -H grpc-timeout: 5000m" in joined
    assert command[-1] == f"http://127.0.0.1:5{CREATE_LEASE}"
    timed = Load(2, 4, 1, 2.5, None, 0.1, 10, 60.0)
    assert "-D 2500ms" in " ".join(h2load_command("h:1", CREATE_LEASE, Path(), Path(), timed))
    assert "grpc-timeout: 100m" in " ".join(h2load_command("h:1", "/", Path(), Path(), timed))


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--target", "10.0.0.1:5"], "loopback only"),
        (["--target", "127.0.0.2:5", "--calls", "health", "--metrics", "h:1"], "loopback only"),
        (["--target", "127.0.0.1:5", "-c", "1", "-t", "2"], "-t must not exceed -c"),
        (["--target", "127.0.0.1:5", "-c", "0"], "-c must be 1 to 10000"),
        (["--target", "127.0.0.1:5", "--calls", "lease"], "create-lease and/or health"),
        (["--target", "127.0.0.1:5", "-D", "999"], "at most 240 s"),
        (["--target", "127.0.0.1:5", "--calls", "create-lease"], "needs --feed"),
        (["--target", "127.0.0.1:5", "--shards", "3"], "unrecognized arguments: --shards"),
    ],
)
def test_a_run_that_cannot_be_made_says_why(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert said in capsys.readouterr().err


@pytest.mark.timeout(30)
def test_a_process_past_its_time_limit_is_killed_and_its_cpu_still_read() -> None:
    spin = "import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass\n"
    spinning = subprocess.Popen([sys.executable, "-c", spin + "time.sleep(30)"])
    started = time.monotonic()
    code, cpu_s = wait_with_limit(spinning, 3.0)
    assert code == -9
    assert time.monotonic() - started < 10
    assert cpu_s >= 0.2  # its own rusage: the 0.2 s it spun, and its start-up


# ---- one tiny real run ----


@pytest.fixture(scope="module")
def h2load() -> str:
    return found_or_installed("h2load", INSTALL_SCRIPT, INSTALL_TIMEOUT_S)


@pytest.fixture
def server(tmp_path: Path, h2load: str) -> Iterator[tuple[SpawnedServer, SlotKey]]:
    now = int(time.time())
    slots = build_slots([SlotGroup("h2load", 1, 100, merchants=1)], now)
    feed = write_feed(tmp_path / "feed.json", slots, now)
    spawned = SpawnedServer(serve_command(feed, tmp_path / "data", None, []))
    try:
        yield spawned, slots[0].key
    finally:
        spawned.stop()


def _metrics_at(server: SpawnedServer) -> str:
    url = server.health_url()
    assert url is not None
    return url.split("/")[2]


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_200_replays_are_answered_ok_and_counted(
    server: tuple[SpawnedServer, SlotKey], tmp_path: Path
) -> None:
    spawned, key = server
    call = lease_call(key, "h2load-test")
    figures = one_run(
        spawned.target, call, TINY, tmp_path, _metrics_at(spawned), spawned.cpu_seconds
    )
    s = figures.summary
    assert (s.done, s.status_2xx, figures.log.answered_200) == (200, 200, 200)
    assert figures.checks.ok, figures.checks
    # The shards answered CreateLease OK exactly 200 times besides the samples.
    assert figures.checks.shard_answers == "ok"
    assert figures.server_cpu_s is not None
    assert figures.server_cpu_s > 0
    assert figures.h2load_cpu_s > 0
    # h2load prints its maximum to 10 us.
    assert 0 < figures.log.p50_s <= figures.log.p99_s <= s.latency_max_s + 1e-5


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_a_grpc_error_behind_http_200_fails_the_checks(
    server: tuple[SpawnedServer, SlotKey], tmp_path: Path
) -> None:
    spawned, _ = server
    missing = Call("health", "/grpc.health.v1.Health/Nope", b"", health_call().reply_problem)
    figures = one_run(spawned.target, missing, TINY, tmp_path, None, spawned.cpu_seconds)
    assert figures.summary.status_2xx == 200
    assert figures.checks.http is None
    assert figures.checks.samples is not None
    assert "UNIMPLEMENTED" in figures.checks.samples
    assert figures.checks.bodies == "all 200 answers carried no message (gRPC errors)"
    assert figures.ok_per_s() is None  # no sample reply: its length is unknown
    assert not figures.checks.ok


RUN_LINE = re.compile(
    r"^run 1 (?P<call>create-lease|health): (?P<rps>[\d.]+) req/s \((?P<ok>[\d.]+) OK/s\), "
    r"(?P<done>\d+) done, 0 failed, "
    r"latency p50 [\d.]+ p99 [\d.]+ max [\d.]+ ms; "
    r"server CPU (?P<cpu>\d+ us/call \([\d.]+ cores\)|n/a \(not spawned\)); "
    r"h2load CPU [\d.]+ us/call \([\d.]+ cores\); checks: http ok, samples ok, bodies ok, "
    r"shard answers (?P<shard>ok|not read)$"
)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_the_cli_runs_both_calls_against_a_spawned_server(h2load: str) -> None:
    command = [sys.executable, "-m", "leasehold.cli", "bench", "h2load", "--spawn"]
    command += ["-n", "200", *UNQUEUED_FLAGS, "--runs", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    found = [m for m in map(RUN_LINE.match, lines) if m]
    assert [(m["call"], m["done"], m["shard"]) for m in found] == [
        ("create-lease", "200", "ok"),
        ("health", "200", "not read"),
    ]
    assert all(float(m["ok"]) == float(m["rps"]) > 0 for m in found)
    assert all(int(m["cpu"].split()[0]) > 0 for m in found)
    assert any(line.startswith("median of 2 create-lease: req/s ") for line in lines)
    assert any(line.startswith("median of 2 health: req/s ") for line in lines)


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_metrics_that_cannot_be_read_stop_the_run(
    server: tuple[SpawnedServer, SlotKey], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spawned, _ = server
    feed = tmp_path / "feed.json"  # the server fixture's
    argv = ["--target", spawned.target, "--feed", str(feed), "--metrics", "127.0.0.1:9"]
    assert main([*argv, "-n", "10", "--warmup", "0"]) == 2
    assert "metrics at 127.0.0.1:9: " in capsys.readouterr().err


# ---- the commands of docs/benchmarks.md ----

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
# Appended to each documented run (the last flag wins): a tiny unqueued run.
TINY_FLAGS = ["-n", "100", *UNQUEUED_FLAGS]


def _doc_lines() -> list[list[str]]:
    """The h2load section's command lines, split as bash would, comments dropped."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("## `leasehold bench h2load`", 1)[1].split("```sh\n", 1)[1].split("```")[0]
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [[leasehold_executable(), *line[1:]] for line in lines if line]


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_the_documented_commands_run(h2load: str, tmp_path: Path) -> None:
    spawn, feed, serve, target = _doc_lines()
    assert "--spawn" in spawn
    assert serve[1:3] == ["serve", "--feed"]
    assert feed[-2:] == [">", "flow.json"]
    done = subprocess.run([*spawn, *TINY_FLAGS], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    made = subprocess.run(feed[:-2], capture_output=True, text=True, timeout=60, check=True)
    (tmp_path / "flow.json").write_text(made.stdout, encoding="utf-8")
    # The documented server, on free ports: the test replaces the default ones.
    with running_server(tmp_path / "data", "--feed", str(tmp_path / "flow.json")) as server:
        metrics_at = _metrics_at(server)
        ports = {"127.0.0.1:50051": server.target, "127.0.0.1:50052": metrics_at}
        command = [ports.get(arg, arg) for arg in target] + TINY_FLAGS
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [m for m in map(RUN_LINE.match, done.stdout.splitlines()) if m]
    assert [(m["call"], m["done"], m["shard"]) for m in lines] == [
        ("create-lease", "100", "ok"),
        ("health", "100", "not read"),
    ]
