"""`python -m leasehold.bench.watchers` runs end to end (its figures come from bench runs)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def test_watchers_bench_reports_cpu_and_delivered_frames() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "leasehold.bench.watchers", "2", "--interval", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(
        r"2 watchers every 0.5 s: server CPU ([\d.]+)% .* (\d+) frames/s", done.stdout
    )
    assert found, done.stdout
    assert int(found.group(2)) > 0  # frames really arrived while measuring
