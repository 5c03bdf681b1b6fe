"""Each process of the tree imports only what its role runs (issues 18 and 15).

All of them start at once on a machine's few cores, so a module a process never
uses is CPU taken from the shard processes' recovery (issue 18), and memory the
tree holds for as long as it serves (issue 15: a gateway worker that imported the
health stream and trio, a supervisor that imported grpclib and the shard runtime).
Checked in a fresh interpreter, as the supervisor starts them; the supervisor's own
on the real `leasehold serve` path, the tree started and stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from leasehold.bench._server import SpawnedServer

# The shards' runtime: actors, journal, snapshots, recovery (the codec and the figures
# are not: the link and the health stream carry them).
SHARD_RUNTIME = (
    "leasehold.shards._shard",
    "leasehold.shards._supervisor",
    "leasehold.shards._journal",
    "leasehold.shards._durable_sink",
    "leasehold.shards._persistence",
    "leasehold.shards._replay",
    "leasehold.shards._snapshots",
    "leasehold.shards._compaction",
)
# Never in a shard process: gRPC, protobuf, the gateway, the health stream, asyncio
# (its link client's; the shards run on trio), the one-process assembly.
SHARD_NEVER = (
    "asyncio",
    "grpclib",
    "google.protobuf",
    "h2",
    "trio_websocket",
    "prometheus_client",
    "rich",
    "leasehold.gateway",
    "leasehold.health",
    "leasehold.proto",
    "leasehold.link._client",
    "leasehold._app",
    "leasehold._run",
    "leasehold._serve_cmd",
    # Only for leasehold.__version__, which a shard process never reads (~10 ms at start).
    "importlib.metadata",
)
# Never in a gateway worker (grpclib on asyncio, the shards over the link): trio, the
# health stream, the shard processes' and the supervisor's modules.
GATEWAY_NEVER = (
    "trio",
    "trio_websocket",
    "wsproto",
    "prometheus_client",
    "rich",
    "leasehold.health",
    "leasehold.gateway._bridge",
    *SHARD_RUNTIME,
    "leasehold._shard_main",
    "leasehold._shard_process",
    "leasehold._app",
    "leasehold._run",
    "leasehold._serve_cmd",
    "leasehold._tree_run",
    "leasehold._supervisor",
)
# Never in the supervisor (trio: it starts, watches and stops the children and serves
# the health stream): gRPC, protobuf, asyncio, the gateway's services, the shard runtime.
SUPERVISOR_NEVER = (
    "asyncio",
    "grpclib",
    "google.protobuf",
    "h2",
    "rich",
    "leasehold.proto",
    "leasehold.gateway._router",
    "leasehold.gateway._services",
    "leasehold.gateway._bridge",
    "leasehold.gateway._h2guard",
    *SHARD_RUNTIME,
    "leasehold.link._client",
    "leasehold._app",
    "leasehold._run",
    "leasehold._gateway_worker",
    "leasehold._shard_process",
)
# Run as `leasehold` is, writing the modules it imported to $MODULES_OUT at exit.
_SUPERVISOR_CODE = """
import atexit, json, os, sys
out = os.environ["MODULES_OUT"]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from leasehold.cli import main
sys.exit(main())
"""


def _imported_by(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout))


def _found(modules: set[str], never: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in never))


@pytest.mark.timeout(90)
def test_a_shard_process_imports_no_asyncio_grpc_protobuf_gateway_or_health() -> None:
    modules = _imported_by("leasehold._shard_main")
    assert {"trio", "msgpack", "leasehold.shards", "leasehold.link"} <= modules
    assert _found(modules, SHARD_NEVER) == []


@pytest.mark.timeout(90)
def test_a_gateway_worker_imports_no_trio_health_stream_or_shard_runtime() -> None:
    modules = _imported_by("leasehold._gateway_main")
    assert {"asyncio", "uvloop", "grpclib", "leasehold.gateway", "leasehold.link"} <= modules
    assert _found(modules, GATEWAY_NEVER) == []


@pytest.mark.timeout(120)
def test_the_supervisor_serves_the_tree_without_grpc_or_shard_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "modules.json"
    command = [sys.executable, "-c", _SUPERVISOR_CODE, "serve", "--host", "127.0.0.1"]
    command += ["--port", "0", "--health-port", "0", "--data-dir", str(tmp_path / "data")]
    monkeypatch.setenv("MODULES_OUT", str(out))  # the server inherits it
    server = SpawnedServer(command)  # returns once the tree serves
    try:
        assert server.health_url() is not None  # the health stream was started too
        assert server.stop() == 0, "".join(server.output)
    finally:
        server.kill()
        server.stop()
    modules = set(json.loads(out.read_text(encoding="utf-8")))
    assert {"trio", "trio_websocket", "leasehold._supervisor", "leasehold.health"} <= modules
    assert _found(modules, SUPERVISOR_NEVER) == []


@pytest.mark.timeout(90)
def test_the_commands_that_serve_nothing_import_no_server() -> None:
    """The `leasehold` command's own module: each subcommand imports its part when run."""
    modules = _imported_by("leasehold.cli")
    heavy = ("trio", "grpclib", "google.protobuf", "leasehold._serve_cmd", "leasehold._feed_cmd")
    assert _found(modules, heavy) == []
