"""The health port follows --port, so servers with different ports never collide on it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from _server_process import leasehold_executable

from leasehold._serve_cmd import health_port_for
from leasehold.bench._server import SpawnedServer


def test_the_health_port_is_the_grpc_port_plus_one_unless_given() -> None:
    assert health_port_for(50051, None) == 50052
    assert health_port_for(7000, None) == 7001
    assert health_port_for(7000, 9000) == 9000
    assert health_port_for(7000, 0) == 0


def test_any_free_grpc_port_means_any_free_health_port() -> None:
    assert health_port_for(0, None) == 0
    assert health_port_for(65535, None) == 0  # no port above it


def free_pair() -> int:
    """A port P such that P and P + 1 are free right now (both probed on loopback)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
            if port < 65535:
                with socket.socket() as neighbour:
                    try:
                        neighbour.bind(("127.0.0.1", port + 1))
                    except OSError:
                        continue
                    return port
    raise RuntimeError("no two neighbouring free ports")


def serve(data_dir: Path, port: int) -> SpawnedServer:
    # No --health-port: the default rule is what is tested.
    command = [leasehold_executable(), "serve", "--port", str(port), "--data-dir", str(data_dir)]
    return SpawnedServer(command)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_two_servers_on_different_ports_run_side_by_side(tmp_path: Path) -> None:
    first_port = free_pair()
    servers = [serve(tmp_path / "a", first_port)]
    try:
        servers.append(serve(tmp_path / "b", 0))
        assert servers[0].health_url() == f"ws://127.0.0.1:{first_port + 1}/"
        second_url = servers[1].health_url()
        assert second_url is not None
        assert second_url != servers[0].health_url()
        assert all(server.process.poll() is None for server in servers)
    finally:
        codes = [server.stop() for server in servers]
    assert codes == [0, 0]
