"""How `--spawn` builds the `leasehold serve` command line (no server is started here)."""

from __future__ import annotations

from pathlib import Path

from leasehold.bench._server import serve_command


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
