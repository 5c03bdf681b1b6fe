"""The supervisor's runtime dir: it names its supervisor, and a start removes the dirs
of supervisors that died without removing them (SIGKILL), and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leasehold._runtime_dir import SUPERVISOR_PID_FILE, make_runtime_dir, sweep_orphans


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                           capture_output=True, text=True)  # fmt: skip
    return int(child.stdout)


def runtime_dir(base: Path, name: str, pid_text: str | None) -> Path:
    path = base / name
    path.mkdir()
    (path / "shard-0.sock").write_text("")  # stands for what a tree leaves
    if pid_text is not None:
        (path / SUPERVISOR_PID_FILE).write_text(pid_text)
    return path


@pytest.mark.timeout(30)
def test_a_start_removes_only_the_dirs_of_supervisors_that_are_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    orphan = runtime_dir(tmp_path, "leasehold-dead", f"{dead_pid()}\n")
    alive = runtime_dir(tmp_path, "leasehold-alive", f"{os.getpid()}\n")
    unnamed = runtime_dir(tmp_path, "leasehold-old", None)  # made before the pid file
    garbled = runtime_dir(tmp_path, "leasehold-garbled", "not a pid")
    other = runtime_dir(tmp_path, "other-dead", f"{dead_pid()}\n")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))

    made = make_runtime_dir()

    assert not orphan.exists()
    assert all(p.exists() for p in (alive, unnamed, garbled, other))
    assert made.parent == tmp_path
    assert made.name.startswith("leasehold-")
    assert (made / SUPERVISOR_PID_FILE).read_text() == f"{os.getpid()}\n"
    assert sweep_orphans(tmp_path) == []  # the new one names a live supervisor


def test_a_base_that_cannot_be_listed_sweeps_nothing(tmp_path: Path) -> None:
    assert sweep_orphans(tmp_path / "missing") == []
