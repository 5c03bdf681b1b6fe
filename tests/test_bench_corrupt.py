"""The corruption probe (bench/corrupt.py) runs, and finds no start that silently changed state."""

from __future__ import annotations

import pytest

from leasehold.bench import corrupt

pytestmark = pytest.mark.timeout(120)


def test_the_probe_finds_every_damaged_start_refused_or_unchanged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert corrupt.main(["--flips", "6", "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "24 damaged starts (6 bit flips, seed 3)" in printed
    assert "bit flip: refused 6," in printed
    assert "SILENT 0, crashed 0" in printed
