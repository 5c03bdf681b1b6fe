"""`--spawn`: start `leasehold serve` on a free loopback port for the run, stop it after.

The server prints `leasehold: serving ... on HOST:PORT` once it listens; SIGTERM
stops it cleanly. The end-to-end tests start their servers with this too
(tests/_server_process.py). Serve flags the bench does not know
(`--durability`, ...) are passed through verbatim.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

READY = re.compile(r"leasehold: serving .* on (?P<host>[\d.]+):(?P<port>\d+) ")
HEALTH_URL = re.compile(r"health stream on (\S+)")
ADMIN_AT = re.compile(r"admin service on (?P<host>[\d.]+):(?P<port>\d+)")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class ServerError(Exception):
    """The server could not be started (the message carries its output)."""


def serve_command(
    feed: Path,
    data_dir: Path,
    shards: int | None,
    extra: Sequence[str],
    *,
    durability: str | None = None,
) -> list[str]:
    script = Path(sys.executable).with_name("leasehold")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "leasehold.cli"]
    command = [*base, "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--feed", str(feed), "--data-dir", str(data_dir)]
    if shards is not None:
        command += ["--shards", str(shards)]
    if durability is not None:
        command += ["--durability", durability]
    if not any(arg.split("=", 1)[0] == "--health-port" for arg in extra):
        # The health stream's default port (50052) may belong to another server on this
        # machine; a bench server must never fail to start for want of it.
        command += ["--health-port", "0"]
    return [*command, *extra]


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 onwards)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children_of(parent: int) -> list[int]:
    """Live processes whose parent is `parent` (a multi-process server's children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


SUPERVISOR = "supervisor"
# A child's role, from the entry module on its command line (`python -P -m MODULE ...`,
# the supervisor's ENTRY_MODULES; tests/test_bench_server.py keeps the two alike).
ENTRY_ROLES = {"leasehold._gateway_main": "gateway", "leasehold._shard_main": "shard"}
ROLES = tuple(ENTRY_ROLES.values())


def role_of(pid: int) -> str:
    """The role of a server's child process (ROLES), or "other"."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "other"
    for arg in args:
        role = ENTRY_ROLES.get(arg.decode(errors="replace"))
        if role is not None:
            return role
    return "other"


class SpawnedServer:
    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.output: list[str] = []
        self._ready = threading.Event()
        self.port = 0
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        if not self._ready.wait(START_TIMEOUT_S) or not self.port:
            self.kill()
            raise ServerError("the server did not start:\n" + "".join(self.output[-40:]))

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            match = READY.search(line)
            if match and not self.port:
                self.port = int(match.group("port"))
                self._ready.set()
        self._ready.set()  # it exited: stop waiting

    def health_url(self) -> str | None:
        """The health stream's URL the server printed (before its serving line), if any."""
        for line in self.output:
            found = HEALTH_URL.search(line)
            if found:
                return found.group(1)
        return None

    def admin_target(self) -> str | None:
        """The admin API's HOST:PORT the server printed (before its serving line), if any."""
        for line in self.output:
            found = ADMIN_AT.search(line)
            if found:
                return f"{found.group('host')}:{found.group('port')}"
        return None

    def cpu_seconds(self) -> float | None:
        """User + system CPU the server has used so far (Linux /proc): its whole process
        tree (a multi-process server's supervisor and children), children that exited and
        were waited for included."""
        roles = self.cpu_by_role()
        return None if roles is None else sum(roles.values())

    def cpu_by_role(self) -> dict[str, float] | None:
        """cpu_seconds() by role: "supervisor" (the process started, with the children it
        has reaped: a child restarted in between moves its CPU there), and each live
        child's role by its command line (role_of)."""
        own = _proc_stat(self.process.pid)
        if own is None:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        # utime, stime, cutime, cstime (fields 14-17): cutime/cstime cover reaped children.
        roles = {SUPERVISOR: sum(int(own[i]) for i in (11, 12, 13, 14)) / tick}
        for pid in children_of(self.process.pid):
            fields = _proc_stat(pid)
            if fields is not None:
                role = role_of(pid)
                roles[role] = roles.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        return roles

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal (SIGTERM), then wait; returns the exit code (a kill after the timeout: -9)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -9
        self._pump.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)
