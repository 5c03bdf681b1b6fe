"""A trio test that times out fails alone: the trio tests after it still run (_trio_timeout.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TINY_SUITE = """
import pytest
import trio


@pytest.mark.timeout(1)
async def test_a_hang_in_real_time() -> None:
    await trio.sleep(3600)


@pytest.mark.timeout(1)
async def test_a_hang_on_an_autojump_clock(autojump_clock: object) -> None:
    await trio.Event().wait()  # nothing ever sets it, and no deadline to jump to


@pytest.mark.timeout(1)
async def test_virtual_time_does_not_count(autojump_clock: object) -> None:
    await trio.sleep(3600)
    assert trio.current_time() >= 3600


async def test_the_next_trio_test_runs() -> None:
    await trio.sleep(0.01)


def test_trio_run_still_works() -> None:
    assert trio.run(trio.sleep, 0) is None
"""


CANCELLED = "Timeout (>1.0s): the test was cancelled from within trio"


@pytest.mark.timeout(60)
def test_a_timed_out_trio_test_does_not_poison_the_next(tmp_path: Path) -> None:
    (tmp_path / "test_tiny.py").write_text(textwrap.dedent(TINY_SUITE))
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["_trio_timeout"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    # (wide, so that pytest prints each failure's summary line in full)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "COLUMNS": "400"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf", "test_tiny.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    summary = done.stdout.strip().splitlines()
    assert summary[-1].startswith("2 failed, 3 passed in "), done.stdout + done.stderr
    failed = sorted(line for line in summary if line.startswith("FAILED "))
    hung = ["test_a_hang_in_real_time", "test_a_hang_on_an_autojump_clock"]
    assert len(failed) == len(hung), done.stdout
    for line, name in zip(failed, hung, strict=True):
        assert line.startswith(f"FAILED test_tiny.py::{name} - {CANCELLED}"), line
    assert "run() from inside a run()" not in done.stdout
