"""The planted bugs of tests/mutants stay plantable: every patch still finds its target.

The suite does not run the mutants (`python -m tests.mutants` does, docs/testing.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mutants import MUTANTS, ROOT, Mutant, MutantRotted, apply_mutant, patched


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_every_patch_finds_its_target_exactly_once(mutant: Mutant) -> None:
    original = (ROOT / mutant.path).read_text(encoding="utf-8")
    assert patched(original, mutant) != original
    for test in mutant.tests:
        assert (ROOT / test.split("::")[0]).is_file(), test


def test_mutant_names_are_unique() -> None:
    names = [m.name for m in MUTANTS]
    assert len(set(names)) == len(names)


def test_a_missing_or_repeated_target_fails_loudly(tmp_path: Path) -> None:
    mutant = Mutant("m", "f.py", (("x = 1\n", "x = 2\n"),), (), "")
    (tmp_path / "f.py").write_text("x = 1\ny = 1\n")
    apply_mutant(tmp_path, mutant)
    assert (tmp_path / "f.py").read_text() == "x = 2\ny = 1\n"
    with pytest.raises(MutantRotted, match=r"edit 1's target text is in f\.py 0 times"):
        apply_mutant(tmp_path, mutant)
    with pytest.raises(MutantRotted, match=r"edit 1's target text is in f\.py 2 times"):
        patched("x = 1\nx = 1\n", mutant)
