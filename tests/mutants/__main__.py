"""Run the planted bugs: `python -m tests.mutants [NAME...]` from the repository root.

Each mutant runs in its own copy of the tree (the files git knows, as they are in the
working tree now, so uncommitted work counts), with that copy first on PYTHONPATH so
that it, not the installed tree, is what the tests import. One at a time: the machine
is shared.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import MUTANTS, ROOT, Mutant, apply_mutant

DEFAULT_LIMIT_S = 600.0
_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)")


@dataclass(frozen=True)
class Verdict:
    mutant: str
    outcome: str  # caught | survived | timeout | rotted
    by: str  # the first failing test, or what happened
    seconds: float


def copy_tree(destination: Path) -> None:
    """The files git tracks or would track (not ignored), as they are now; symlinks kept."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def run_tests(tree: Path, tests: Sequence[str], limit_s: float) -> tuple[int | None, str]:
    """pytest -x on `tests` in `tree`; (exit code or None on timeout, its output)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider"]
    command.append("--hypothesis-profile=mutants")  # (tests/conftest.py: no shrinking)
    # Its own session, so that a timeout ends its whole process group and nothing else.
    process = subprocess.Popen(
        [*command, *tests],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, output
    return process.returncode, output


def first_failure(output: str) -> str:
    for line in output.splitlines():
        found = _FAILED.match(line)
        if found:
            return found.group(1)
    lines = output.strip().splitlines()
    return lines[-1] if lines else "(no output)"


def judge(mutant: Mutant, limit_s: float, tests: Sequence[str] = ()) -> Verdict:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as scratch:
        tree = Path(scratch)
        copy_tree(tree)
        try:
            apply_mutant(tree, mutant)
        except Exception as rotted:
            return Verdict(mutant.name, "rotted", str(rotted), 0.0)
        code, output = run_tests(tree, tests or mutant.tests, limit_s)
    seconds = time.monotonic() - started
    if code is None:
        return Verdict(mutant.name, "timeout", f"no verdict within {limit_s:.0f} s", seconds)
    if code == 0:
        return Verdict(mutant.name, "survived", "", seconds)
    return Verdict(mutant.name, "caught", first_failure(output), seconds)


def baseline(mutants: Iterable[Mutant], limit_s: float, tests: Sequence[str] = ()) -> None:
    """The unpatched copy must pass every chosen test, or a 'caught' would mean nothing."""
    tests = tests or sorted({test for mutant in mutants for test in mutant.tests})
    with tempfile.TemporaryDirectory(prefix="mutant-baseline-") as scratch:
        copy_tree(Path(scratch))
        code, output = run_tests(Path(scratch), tests, limit_s)
    if code != 0:
        sys.exit(f"the unpatched tree fails its tests ({first_failure(output)}): fix that first")


def table(verdicts: Sequence[Verdict]) -> str:
    width = max(len(v.mutant) for v in verdicts)
    rows = [f"{'mutant':<{width}}  {'result':<8}  {'s':>5}  caught by"]
    for v in verdicts:
        by = v.by if v.outcome != "survived" else ""
        rows.append(f"{v.mutant:<{width}}  {v.outcome:<8}  {v.seconds:>5.0f}  {by}")
    caught = sum(v.outcome == "caught" for v in verdicts)
    rows.append(f"{caught} of {len(verdicts)} caught")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__)
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--limit", type=float, default=DEFAULT_LIMIT_S, help="seconds per run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unpatched run")
    parser.add_argument(
        "--test",
        action="append",
        default=[],
        dest="tests",
        help="run this test file (repeatable) instead of each mutant's own tests",
    )
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTANTS}
    if args.list:
        for m in MUTANTS:
            print(f"{m.name}: {m.path}: {m.why}")
        return 0
    unknown = [name for name in args.names if name not in by_name]
    if unknown:
        parser.error(f"no such mutant: {', '.join(unknown)} (see --list)")
    chosen = [by_name[name] for name in args.names] or list(MUTANTS)
    if not args.no_baseline:
        baseline(chosen, args.limit, args.tests)
    verdicts = []
    for mutant in chosen:
        verdicts.append(judge(mutant, args.limit, args.tests))
        print(f"{mutant.name}: {verdicts[-1].outcome} {verdicts[-1].by}", flush=True)
    print(table(verdicts))
    return 0 if all(v.outcome == "caught" for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
