"""Starting `leasehold serve` as a user would, on loopback, for end-to-end tests.

The process handling is the bench's (`bench._server.SpawnedServer`): one way to
start a server, wait for its serving line and stop it, shipped and tested once.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from leasehold.bench._server import SpawnedServer

# What the tests hold: the process, its port and target, its output so far, stop(signum).
ServerProcess = SpawnedServer


def leasehold_executable() -> str:
    """The console script installed beside this interpreter (the README's install)."""
    script = Path(sys.executable).with_name("leasehold")
    if not script.exists():
        raise RuntimeError(f"{script} is missing: install the project with pip install -e .")
    return str(script)


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
    server = SpawnedServer(command)  # raises ServerError, with the output, if it never serves
    try:
        yield server
        code = server.stop()
        assert code == 0, f"server exited {code}:\n" + "".join(server.output)
    finally:
        server.kill()
        server.stop()  # reaps it and closes the pipe


# A text log line: an ISO 8601 UTC timestamp in ms and the level, then the message.
LOG_PREFIX = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING) +")


def messages(output: list[str]) -> list[str]:
    """The log's messages, each line checked to carry a timestamp and a level first."""
    lines = "".join(output).splitlines()
    assert all(LOG_PREFIX.match(line) for line in lines), lines
    return [LOG_PREFIX.sub("", line, count=1) for line in lines]
