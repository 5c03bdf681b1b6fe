"""How `--spawn` builds the `leasehold serve` command line (no server is started here),
and how it tells a server's children apart by role."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leasehold._supervisor import ENTRY_MODULES
from leasehold.bench._server import role_of, serve_command


def flag_values(command: list[str], flag: str) -> list[str]:
    return [command[i + 1] for i, arg in enumerate(command) if arg == flag]


def test_a_spawned_server_takes_any_free_health_port() -> None:
    # The default health port may belong to another server on the machine.
    command = serve_command(Path("feed.json"), Path("data"), 2, [])
    assert flag_values(command, "--health-port") == ["0"]
    assert flag_values(command, "--shards") == ["2"]


def test_a_health_port_asked_for_is_passed_alone() -> None:
    spaced = serve_command(Path("feed.json"), Path("data"), None, ["--health-port", "6000"])
    assert flag_values(spaced, "--health-port") == ["6000"]
    joined = serve_command(Path("feed.json"), Path("data"), None, ["--health-port=6000"])
    assert "--health-port" not in joined
    assert joined[-1] == "--health-port=6000"


def test_a_durability_mode_reaches_the_server() -> None:
    command = serve_command(Path("feed.json"), Path("data"), None, [], durability="async")
    assert flag_values(command, "--durability") == ["async"]
    assert "--durability" not in serve_command(Path("feed.json"), Path("data"), None, [])


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("role", "module"), sorted(ENTRY_MODULES.items()))
def test_a_childs_role_is_read_from_the_entry_module_it_runs(role: str, module: str) -> None:
    # As the supervisor starts a child: its role's entry module, then its arguments. Read
    # once it runs (Popen can return before the kernel has set a new program's arguments).
    code = "import time; print('up', flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code, module, "0"], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"up\n"
        assert role_of(child.pid) == role
    finally:
        child.kill()
        child.communicate(timeout=10)
    assert role_of(os.getpid()) == "other"
