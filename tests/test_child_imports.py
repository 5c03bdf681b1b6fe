"""Each process of the tree imports only what its role runs (issue 18: restart time).

All of them start at once on a machine's few cores, so a module a process never
uses is CPU taken from the shard processes' recovery. Checked in a fresh
interpreter, as the supervisor starts them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Never in a shard process: gRPC, protobuf, the gateway, the health stream, asyncio's
# one-process assembly.
SHARD_NEVER = (
    "grpclib",
    "google.protobuf",
    "h2",
    "trio_websocket",
    "prometheus_client",
    "rich",
    "leasehold.gateway",
    "leasehold.health",
    "leasehold.proto",
    "leasehold._app",
    "leasehold._run",
    "leasehold._serve_cmd",
    # Only for leasehold.__version__, which a shard process never reads (~10 ms at start).
    "importlib.metadata",
)
# Never in a gateway worker: the shard process's own modules. (It still imports the
# health stream and the supervisor's modules, through leasehold._app and _serve_cmd.)
GATEWAY_NEVER = ("leasehold._shard_main", "leasehold._shard_process")


def _imported_by(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout))


def _found(modules: set[str], never: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in never))


@pytest.mark.timeout(90)
def test_a_shard_process_imports_no_grpc_protobuf_gateway_or_health() -> None:
    modules = _imported_by("leasehold._shard_main")
    assert {"trio", "msgpack", "leasehold.shards", "leasehold.link"} <= modules
    assert _found(modules, SHARD_NEVER) == []


@pytest.mark.timeout(90)
def test_a_gateway_worker_imports_no_shard_process_code() -> None:
    modules = _imported_by("leasehold._gateway_main")
    assert {"grpclib", "leasehold.gateway", "leasehold.link"} <= modules
    assert _found(modules, GATEWAY_NEVER) == []
