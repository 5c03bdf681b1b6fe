"""TLS and mutual TLS on the gRPC port, with certificates made at run time (trustme)."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import trustme
from _api import slot_v2
from _server_process import ServerProcess, leasehold_executable, running_server, write_feed

from leasehold.bench._attacks import closed_by_peer
from leasehold.core import SlotKey
from leasehold.proto.v2 import booking_pb2 as pb2
from leasehold.proto.v2 import booking_pb2_grpc as grpc2

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

START = 4_102_444_800
KEY = SlotKey("m1", "svc", START, 1800)
CALL_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(tmp_path: Path, ca: trustme.CA) -> dict[str, Path]:
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    paths = {
        "feed": tmp_path / "feed.json",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
        "ca": tmp_path / "ca.pem",
    }
    entry = {
        "merchant_id": "m1",
        "service_id": "svc",
        "start_sec": START,
        "duration_sec": 1800,
        "spots_total": 3,
        "spots_open": 3,
    }
    write_feed(paths["feed"], {"service_availability": [{"availability": [entry]}]})
    server_cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server_cert.private_key_pem.write_to_path(str(paths["key"]))
    ca.cert_pem.write_to_path(str(paths["ca"]))
    return paths


@contextlib.contextmanager
def tls_server(tmp_path: Path, files: dict[str, Path], *extra: str) -> Iterator[ServerProcess]:
    args = [
        "--feed",
        str(files["feed"]),
        "--tls-cert",
        str(files["cert"]),
        "--tls-key",
        str(files["key"]),
        *extra,
    ]
    with running_server(tmp_path / "data", *args) as server:
        yield server


def check(channel: grpc.Channel) -> grpc.StatusCode:
    stub = grpc2.BookingServiceStub(channel)
    try:
        reply = stub.CheckAvailability(
            pb2.CheckAvailabilityRequest(slot=slot_v2(KEY)), timeout=CALL_TIMEOUT_S
        )
    except grpc.RpcError as error:
        return error.code()
    assert reply.count_available == 3
    return grpc.StatusCode.OK


def secure(target: str, ca: trustme.CA, client: trustme.LeafCert | None = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert_pem.bytes(),
        private_key=None if client is None else client.private_key_pem.bytes(),
        certificate_chain=None if client is None else client.cert_chain_pems[0].bytes(),
    )
    return grpc.secure_channel(target, credentials)


def test_tls_server_refuses_plain_clients_and_serves_tls_clients(
    tmp_path: Path, files: dict[str, Path], ca: trustme.CA
) -> None:
    with tls_server(tmp_path, files) as server:
        with grpc.insecure_channel(server.target) as plain:
            assert check(plain) is grpc.StatusCode.UNAVAILABLE
        with secure(server.target, ca) as channel:
            assert check(channel) is grpc.StatusCode.OK


def test_mutual_tls_needs_a_client_certificate_from_the_configured_ca(
    tmp_path: Path, files: dict[str, Path], ca: trustme.CA
) -> None:
    other_ca = trustme.CA()
    with tls_server(tmp_path, files, "--tls-client-ca", str(files["ca"])) as server:
        with secure(server.target, ca) as no_cert:
            assert check(no_cert) is grpc.StatusCode.UNAVAILABLE
        with secure(server.target, ca, other_ca.issue_cert("client.example")) as wrong_ca:
            assert check(wrong_ca) is grpc.StatusCode.UNAVAILABLE
        with secure(server.target, ca, ca.issue_cert("client.example")) as right:
            assert check(right) is grpc.StatusCode.OK


def test_mutual_tls_pins_the_client_subject_name(
    tmp_path: Path, files: dict[str, Path], ca: trustme.CA
) -> None:
    pinned = ["--tls-client-ca", str(files["ca"]), "--tls-client-name", "booking.example"]
    with tls_server(tmp_path, files, *pinned) as server:
        with secure(server.target, ca, ca.issue_cert("intruder.example")) as wrong_name:
            assert check(wrong_name) is grpc.StatusCode.UNAUTHENTICATED
        with secure(server.target, ca, ca.issue_cert("booking.example")) as right_name:
            assert check(right_name) is grpc.StatusCode.OK


def test_connections_in_their_tls_handshake_count_against_the_cap(
    tmp_path: Path, files: dict[str, Path], ca: trustme.CA
) -> None:
    limits = ["--max-connections", "2", "--handshake-timeout", "3"]
    with tls_server(tmp_path, files, *limits) as server:
        # Silent connections first, on a server nothing else has reached: a connection
        # the server has just closed holds its place until the server notices.
        with contextlib.ExitStack() as open_sockets:  # closed here too if an assert fails
            silent = SilentClients(server.port, open_sockets)
            assert refused_while_full(server.target, ca, silent, timeout_s=5)
            for sock in silent.held:  # closed by the server at its handshake timeout
                assert sock.recv(1024) == b""
            assert time.monotonic() - silent.newest < 8
        # Failed handshakes (plaintext HTTP/2 to a TLS port) give their places back.
        for _ in range(4):
            with grpc.insecure_channel(server.target) as plain:
                assert check(plain) is grpc.StatusCode.UNAVAILABLE
        assert both_served_at_once(server.target, ca, timeout_s=5)
        assert not any("Traceback" in line for line in server.output), "".join(server.output)


class SilentClients:
    """Two connections that never start their TLS handshake, the whole cap of 2.

    Each gateway worker accepts on its own: a client that reached a worker before a
    silent socket queued at a slower one can take the place first, and the silent
    socket is then refused at the cap. `replace_refused` opens another in its place.
    """

    def __init__(self, port: int, stack: contextlib.ExitStack) -> None:
        self._port = port
        self._stack = stack
        self.newest = 0.0
        self.held = [self._open(), self._open()]

    def _open(self) -> socket.socket:
        self.newest = time.monotonic()
        return self._stack.enter_context(socket.create_connection(("127.0.0.1", self._port), 10))

    def replace_refused(self) -> None:
        self.held = [self._open() if closed_by_peer(s) else s for s in self.held]


def refused_while_full(
    target: str, ca: trustme.CA, silent: SilentClients, timeout_s: float
) -> bool:
    """Whether a new TLS connection is refused, while `silent` hold the cap, within
    `timeout_s`."""

    def refused() -> bool:
        with secure(target, ca) as over_the_cap:
            return check(over_the_cap) is grpc.StatusCode.UNAVAILABLE

    return _within(timeout_s, refused, between=silent.replace_refused)


def both_served_at_once(target: str, ca: trustme.CA, timeout_s: float) -> bool:
    """Whether two TLS connections are held and served side by side (the whole cap of 2)
    within `timeout_s`: the places of connections just closed come back once the
    server has seen them close."""

    def both_served() -> bool:
        with secure(target, ca) as first, secure(target, ca) as second:
            return check(first) is grpc.StatusCode.OK and check(second) is grpc.StatusCode.OK

    return _within(timeout_s, both_served)


def _within(
    timeout_s: float, attempt: Callable[[], bool], between: Callable[[], None] = lambda: None
) -> bool:
    """Whether `attempt()` is True once in `timeout_s`, tried again 50 ms apart (after
    `between()`)."""
    give_up = time.monotonic() + timeout_s
    while not attempt():
        if time.monotonic() >= give_up:
            return False
        between()
        time.sleep(0.05)
    return True


def test_unreadable_tls_files_are_one_clear_line(tmp_path: Path, files: dict[str, Path]) -> None:
    result = subprocess.run(
        [
            leasehold_executable(),
            "serve",
            "--feed",
            str(files["feed"]),
            "--port",
            "0",
            "--tls-cert",
            str(tmp_path / "missing.pem"),
            "--tls-key",
            str(files["key"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("leasehold: error: cannot use the TLS files:")


def test_the_health_stream_is_wss_with_the_same_client_certificate_rule(
    tmp_path: Path, files: dict[str, Path], ca: trustme.CA
) -> None:
    pinned = ["--tls-client-ca", str(files["ca"]), "--tls-client-name", "watcher.example"]
    client = ca.issue_cert("watcher.example")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "watcher.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "watcher.key"))
    with tls_server(tmp_path, files, *pinned) as server:
        url = server.health_url()
        assert url is not None
        assert url.startswith("wss://127.0.0.1:")
        watch = [leasehold_executable(), "watch", url, "--interval", "0.1", "--ca"]
        watch += [str(files["ca"]), "--cert", str(tmp_path / "watcher.pem")]
        watch += ["--key", str(tmp_path / "watcher.key")]
        printed = _watch_until(watch, "seq 2")
        assert "connected, every 0.1 s" in printed


def _watch_until(command: list[str], marker: str) -> str:
    """Run `leasehold watch` until it prints `marker`, then Ctrl-C it; insist on exit 0."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            if marker in line:
                found.set()
        found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert found.wait(30), "".join(seen)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0, "".join(seen)
    finally:
        process.kill()
        process.wait()
        reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
    output = "".join(seen)
    assert marker in output, output
    return output
