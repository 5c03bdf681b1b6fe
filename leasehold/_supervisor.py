"""`leasehold serve` with --workers N > 0: a small supervisor over a tree of processes.

It starts the shard processes (they recover their shards side by side), then the
gateway workers, and watches them: a child that dies is started again after a
back-off, and one that dies more than MAX_RESTARTS times within RESTART_WINDOW_S
makes the supervisor stop the tree and exit non-zero, saying why. SIGTERM/SIGINT
drains the tree in order: gateway workers first (their calls under way are
answered), then shard processes (their journals are closed), all within
STOP_BUDGET_S; whatever is left then is killed.

The gRPC port is held by a placeholder socket (bound with SO_REUSEPORT, never
listening), so `--port 0` resolves once and a restarted worker gets the same port.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import trio

from leasehold._figures_reader import WorkerFigures
from leasehold._logging import event
from leasehold._tree import (
    APPLY_CHANGE_ENV,
    HOLD_FD_ENV,
    LIFELINE_FD_ENV,
    LINK_WAIT_ENV,
    READY_FD_ENV,
    TreeSpec,
)

# Each role's own entry module: a child imports only what its role runs.
ENTRY_MODULES = {"shard": "leasehold._shard_main", "gateway": "leasehold._gateway_main"}
# A child that dies this many times within the window makes the supervisor give up.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
# Back-off before a restart: the first, doubling up to the second.
RESTART_DELAYS_S = (0.1, 2.0)
# A child that does not say it serves within this long counts as failed: a shard
# process recovers its shards first (minutes, for a large data dir); a gateway worker
# at the tree's start waits for every shard process's link before it binds the port.
SHARD_START_TIMEOUT_S = 600.0
GATEWAY_START_TIMEOUT_S = SHARD_START_TIMEOUT_S + 60.0
# A gateway worker started again waits this long for its links, then serves (calls for
# a shard process still down are answered UNAVAILABLE).
RESTART_LINK_WAIT_S = 10.0
# SIGTERM/SIGINT to exit: under the 10 s an operator (and the tests) are promised. The
# gateway workers get the first part (their calls drain), the shard processes the rest
# (they answer what is queued and close their journals: well under a second).
STOP_BUDGET_S = 9.0
GATEWAY_STOP_S = 7.0


class TreeFailed(Exception):
    """The tree could not start or keep running; the message is the line to print."""


@dataclass(slots=True)
class Child:
    role: str  # "shard" or "gateway"
    index: int
    process: trio.Process | None = None
    restarts: int = 0
    deaths: list[float] = field(default_factory=list)  # trio times of recent deaths
    # What it said when it last became ready (a shard process: its recovery figures).
    facts: dict[str, object] = field(default_factory=dict)
    # A gateway worker's figures, read from its ready pipe while it lives; else None.
    figures: WorkerFigures | None = None

    @property
    def name(self) -> str:
        return f"{'shard process' if self.role == 'shard' else 'gateway worker'} {self.index}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


def hold_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) the gRPC port with SO_REUSEPORT; the workers bind it beside."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    placeholder = socket.socket(family, socket.SOCK_STREAM)
    try:
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        placeholder.bind((host, port))
    except BaseException:
        placeholder.close()
        raise
    return placeholder


def spec_for(
    args: argparse.Namespace,
    port: int,
    workers: int,
    shard_processes: int,
    admin_port: int | None = None,
) -> TreeSpec:
    serve_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    json.dumps(serve_args)  # every flag's value must cross as JSON: fail here, not in a child
    return TreeSpec(serve_args, workers, shard_processes, port, os.getpid(), admin_port)


class Tree:
    """The children and what the supervisor knows of them."""

    def __init__(
        self, runtime_dir: Path, workers: int, shard_processes: int, lock_fd: int | None = None
    ) -> None:
        self.runtime_dir = runtime_dir
        # The data dir's lock: shard processes inherit it, so that it is free only once
        # every process that may write the data dir has exited.
        self._lock_fd = lock_fd
        self.shards = [Child("shard", i) for i in range(shard_processes)]
        self.gateways = [Child("gateway", i) for i in range(workers)]
        self.stopping = False
        self.failure: str | None = None
        self.stop_requested = trio.Event()
        # The children hold the read end; this process alone the write end (see _tree).
        self._lifeline_read, self._lifeline_write = os.pipe()
        os.set_inheritable(self._lifeline_read, False)
        # Gateway workers started held wait for this pipe's end-of-file (release_held).
        self._hold_read, self._hold_write = os.pipe()
        self._held = True

    def close(self) -> None:
        os.close(self._lifeline_read)
        os.close(self._lifeline_write)
        os.close(self._hold_read)
        self.release_held()

    def release_held(self) -> None:
        """Let the gateway workers started held bind their ports (end-of-file on their pipe)."""
        if self._held:
            self._held = False
            os.close(self._hold_write)

    @property
    def children(self) -> list[Child]:
        return [*self.shards, *self.gateways]

    def give_up(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        self.stop_requested.set()

    async def start(self, child: Child, *, first: bool = True, held: bool = False) -> None:
        """Start one child and wait until it serves; TreeFailed if it dies or stalls first.

        `first`: the tree is starting (gateway workers wait for every link before they
        bind the port, so no call is answered before the serving line). `held`: a gateway
        worker that binds nothing before release_held (it imports meanwhile)."""
        timeout_s = SHARD_START_TIMEOUT_S if child.role == "shard" else GATEWAY_START_TIMEOUT_S
        link_wait_s = SHARD_START_TIMEOUT_S if first else RESTART_LINK_WAIT_S
        read_end, write_end = os.pipe()
        started = trio.current_time()
        try:
            # -P: the working directory is not put on the path (a checkout there would
            # otherwise shadow the installed code in the children only).
            command = [sys.executable, "-P", "-m", ENTRY_MODULES[child.role], str(child.index)]
            child.process = await trio.lowlevel.open_process(
                [*command, str(self.runtime_dir)],
                env={
                    **os.environ,
                    READY_FD_ENV: str(write_end),
                    LIFELINE_FD_ENV: str(self._lifeline_read),
                    LINK_WAIT_ENV: str(link_wait_s),
                    # The admin worker applies a --feed change at the tree's start only.
                    APPLY_CHANGE_ENV: "1" if first and child.role == "gateway" else "0",
                    **({HOLD_FD_ENV: str(self._hold_read)} if held else {}),
                },
                pass_fds=self._fds_for(child, write_end, held),
                # Not in our process group: a terminal's Ctrl-C reaches the supervisor
                # alone, which then stops the children in order.
                process_group=0,
            )
        finally:
            os.close(write_end)
        ready = trio.lowlevel.FdStream(read_end)
        try:
            with trio.move_on_after(timeout_s) as timer:
                said, rest = await _read_line(ready)
            if child.role == "gateway" and said.startswith(b"ready "):
                # Kept open: the worker's figures follow (leasehold._figures_line).
                child.figures = WorkerFigures(ready, rest)
        finally:
            if child.figures is None or child.figures.stream is not ready:
                await trio.aclose_forcefully(ready)
        if timer.cancelled_caught:
            child.process.kill()
            await child.process.wait()
            raise TreeFailed(f"stopped: {child.name} did not start within {timeout_s:g} s")
        if said.startswith(b"failed "):
            await child.process.wait()
            raise TreeFailed(said[len(b"failed ") :].decode(errors="replace").strip())
        if not said.startswith(b"ready "):
            code = await child.process.wait()
            raise TreeFailed(f"stopped: {child.name} exited {_describe_exit(code)} before serving")
        child.facts = _facts(said[len(b"ready ") :])
        seconds = trio.current_time() - started
        event(
            logging.DEBUG,
            "child_ready",
            f"{child.name} (pid {child.pid}) ready {seconds:.2f} s after its start",
            role=child.role,
            index=child.index,
            pid=child.pid,
            seconds=round(seconds, 3),
            said=child.facts,  # a shard process's recovery; CPU for imports and in all
        )

    def _fds_for(self, child: Child, ready_fd: int, held: bool) -> tuple[int, ...]:
        fds: tuple[int, ...] = (ready_fd, self._lifeline_read)
        if held:
            fds += (self._hold_read,)
        if child.role == "shard" and self._lock_fd is not None:
            fds += (self._lock_fd,)
        return fds

    async def watch(self, child: Child) -> None:
        """Restart `child` whenever it dies, until the tree stops or gives up on it."""
        while True:
            code = await self._life(child)
            if self.stopping:
                return
            now = trio.current_time()
            child.deaths = [t for t in child.deaths if now - t < RESTART_WINDOW_S] + [now]
            if len(child.deaths) > MAX_RESTARTS:
                self.give_up(
                    f"stopped: {child.name} died {len(child.deaths)} times within "
                    f"{RESTART_WINDOW_S:g} s (last: {_describe_exit(code)}); giving up"
                )
                return
            delay = min(RESTART_DELAYS_S[0] * 2 ** (len(child.deaths) - 1), RESTART_DELAYS_S[1])
            event(
                logging.WARNING,
                "child_died",
                f"{child.name} (pid {child.pid}) exited {_describe_exit(code)}; "
                f"restarting in {delay:g} s",
                role=child.role,
                index=child.index,
                pid=child.pid,
                exit=code,
            )
            await trio.sleep(delay)
            if self._stopping():
                return
            try:
                await self.start(child, first=False)
            except TreeFailed as problem:
                event(logging.WARNING, "child_restart_failed", str(problem), role=child.role)
                continue  # counted as another death by the next wait
            child.restarts += 1

    async def _life(self, child: Child) -> int:
        """Wait for `child` to exit, reading its figures meanwhile; its exit code."""
        assert child.process is not None
        figures = child.figures
        if figures is None:
            return await child.process.wait()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(figures.read_until_closed)
                code = await child.process.wait()
                nursery.cancel_scope.cancel()
        finally:
            if child.figures is figures:  # a dead worker's figures are not live
                child.figures = None
            await figures.aclose()
        return code

    def _stopping(self) -> bool:
        # A method, not the attribute: mypy narrows the attribute and cannot see that
        # stop() may set it while this task sleeps.
        return self.stopping

    async def stop(self) -> None:
        """Drain: gateway workers, then shard processes; kill what is left at the budget."""
        self.stopping = True
        with trio.move_on_after(STOP_BUDGET_S):
            with trio.move_on_after(GATEWAY_STOP_S):
                await _terminate_all(self.gateways)
            await _terminate_all(self.shards)
        for child in self.children:
            if child.process is not None and child.process.returncode is None:
                child.process.kill()
                await child.process.wait()
            if child.figures is not None:  # never watched (the tree failed as it started)
                await child.figures.aclose()
                child.figures = None


async def _terminate_all(children: list[Child]) -> None:
    async with trio.open_nursery() as nursery:
        for child in children:
            process = child.process
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                nursery.start_soon(process.wait)


async def _read_line(stream: trio.lowlevel.FdStream, limit: int = 4096) -> tuple[bytes, bytes]:
    """One line (or what came before end-of-file), at most `limit` bytes, and what was
    read after it (the start of a gateway worker's figures)."""
    said = b""
    while b"\n" not in said and len(said) < limit:
        chunk = await stream.receive_some(limit - len(said))
        if not chunk:
            break
        said += chunk
    end = said.find(b"\n") + 1 or len(said)
    return said[:end], said[end:]


def _facts(text: bytes) -> dict[str, object]:
    try:
        facts = json.loads(text)
    except ValueError:
        return {}
    return facts if isinstance(facts, dict) else {}


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"on {signal.Signals(-code).name}"
        except ValueError:
            return f"on signal {-code}"
    return f"with code {code}"
