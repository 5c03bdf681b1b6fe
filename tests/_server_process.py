"""Starting `leasehold serve` as a user would, on loopback, for end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

READY = re.compile(r"leasehold: serving .* on (?P<host>[\d.]+):(?P<port>\d+) ")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def leasehold_executable() -> str:
    """The console script installed beside this interpreter (the README's install)."""
    script = Path(sys.executable).with_name("leasehold")
    if not script.exists():
        raise RuntimeError(f"{script} is missing: install the project with pip install -e .")
    return str(script)


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    port: int
    output: list[str]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=STOP_TIMEOUT_S)


def write_feed(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@contextlib.contextmanager
def running_server(data_dir: Path, *args: str) -> Iterator[ServerProcess]:
    """Start the server on a free loopback port; on exit, SIGTERM it and insist on exit 0."""
    command = [
        leasehold_executable(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        # A free port for the health stream unless the test picks one: tests must not
        # depend on 50052 being free (another server, another test run).
        *([] if "--health-port" in args else ["--health-port", "0"]),
        *args,
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:  # closes the pipe on exit
        lines: queue.Queue[str | None] = queue.Queue()
        output: list[str] = []
        pump = threading.Thread(target=_pump, args=(process, lines, output), daemon=True)
        pump.start()
        try:
            server = ServerProcess(process, _wait_for_port(lines, output), output)
            yield server
            code = server.stop()
            assert code == 0, f"server exited {code}:\n" + "".join(output)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
            pump.join(timeout=STOP_TIMEOUT_S)


def _pump(process: subprocess.Popen[str], lines: queue.Queue[str | None], out: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        out.append(line)
        lines.put(line)
    lines.put(None)


def _wait_for_port(lines: queue.Queue[str | None], output: list[str]) -> int:
    while True:
        try:
            line = lines.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            raise RuntimeError("server did not start in time:\n" + "".join(output)) from None
        if line is None:
            raise RuntimeError("server exited before serving:\n" + "".join(output))
        match = READY.search(line)
        if match:
            return int(match.group("port"))
