"""What the supervisor and its children share: the runtime dir, the spec, dying together.

The supervisor writes `spec.json` into a private runtime dir (mode 0700) and
starts each child as `python -m leasehold._ROLE_main INDEX RUNTIME_DIR`; the
child reads the supervisor's own parsed `serve` flags from the spec, so both use
every setting the same way.

Dying together: every child holds the read end of a "lifeline" pipe whose only
write end the supervisor keeps. When the supervisor dies (even by kill -9) the
kernel closes that end, the child's watcher thread reads end-of-file and the
child kills itself, so no orphan keeps the gRPC port or writes the data dir.
(Not prctl(PR_SET_PDEATHSIG): it fires when the *thread* that forked the child
exits, and trio spawns children from worker threads that come and go.)
"""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

SPEC_FILE = "spec.json"
FEED_FILE = "feed.json"
# A --feed to apply over the stored state (as a whole-feed change), when there is one.
CHANGE_FILE = "change.json"
READY_FD_ENV = "LEASEHOLD_READY_FD"
LIFELINE_FD_ENV = "LEASEHOLD_LIFELINE_FD"
# How long a gateway worker waits for its links before it binds the port (seconds).
LINK_WAIT_ENV = "LEASEHOLD_LINK_WAIT_S"
# Set for the admin worker's first start only: it applies CHANGE_FILE before serving.
APPLY_CHANGE_ENV = "LEASEHOLD_APPLY_CHANGE"
# A gateway worker given this pipe (the other workers, while the admin worker applies a
# --feed change) starts and imports, then binds no port before the pipe's end-of-file.
HOLD_FD_ENV = "LEASEHOLD_HOLD_FD"


@dataclass(frozen=True, slots=True)
class TreeSpec:
    # The supervisor's parsed `serve` flags (JSON: paths as strings), read by each child.
    serve_args: dict[str, object]
    workers: int
    shard_processes: int
    port: int  # the gRPC port, resolved (the flags may say 0)
    supervisor_pid: int
    # The admin port, resolved (the flags may say 0); None: no admin service.
    admin_port: int | None = None


def write_spec(
    runtime_dir: Path, spec: TreeSpec, feed_text: str, change_text: str | None = None
) -> None:
    (runtime_dir / FEED_FILE).write_text(feed_text, encoding="utf-8")
    if change_text is not None:
        (runtime_dir / CHANGE_FILE).write_text(change_text, encoding="utf-8")
    (runtime_dir / SPEC_FILE).write_text(json.dumps(asdict(spec)), encoding="utf-8")


def read_spec(runtime_dir: Path) -> tuple[TreeSpec, str]:
    raw = json.loads((runtime_dir / SPEC_FILE).read_text(encoding="utf-8"))
    feed_text = (runtime_dir / FEED_FILE).read_text(encoding="utf-8")
    return TreeSpec(**raw), feed_text


def read_change(runtime_dir: Path) -> str | None:
    """The --feed to apply over the stored state, None when there is none."""
    path = runtime_dir / CHANGE_FILE
    return path.read_text(encoding="utf-8") if path.exists() else None


def served_file(runtime_dir: Path, index: int) -> Path:
    """What shard process `index` serves (slots, merchants, an example): for the
    supervisor's start-up lines, which must count the live inventory, not the feed."""
    return runtime_dir / f"served-{index}.json"


def connections_file(runtime_dir: Path) -> Path:
    """The gateway workers' open connection counts (leasehold._shared_connections)."""
    return runtime_dir / "connections.bin"


def shard_socket(runtime_dir: Path, index: int) -> Path:
    return runtime_dir / f"shard-{index}.sock"


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process once the supervisor is gone (its lifeline reads end-of-file)."""
    if os.getppid() != parent_pid:  # already gone
        os._exit(1)
    fd = os.environ.pop(LIFELINE_FD_ENV, None)
    if fd is not None:
        threading.Thread(target=_watch_lifeline, args=(int(fd),), daemon=True).start()


def _watch_lifeline(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 64):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    os.kill(os.getpid(), signal.SIGKILL)


def take_hold_fd() -> int | None:
    """The pipe to wait on before serving (see HOLD_FD_ENV), None when there is none."""
    fd = os.environ.pop(HOLD_FD_ENV, None)
    return None if fd is None else int(fd)


def say_ready(facts: dict[str, object] | None = None, *, keep_open: bool = False) -> int | None:
    """Tell the supervisor this child serves: one line on the pipe it gave, "ready" and
    what the supervisor reports for it (a shard process's recovery) as JSON. With
    `keep_open` (a gateway worker: its figures follow, leasehold._figures_line) the
    pipe's fd is returned open; otherwise it is closed and None returned."""
    fd = _write_line(b"ready " + json.dumps(facts or {}).encode())
    if fd is not None and not keep_open:
        os.close(fd)
        return None
    return fd


def say_failed(line: str) -> bool:
    """Tell the supervisor why this child cannot serve (the line it prints); False if the
    child said it was ready already (the pipe is closed then)."""
    fd = _write_line(b"failed " + line.replace("\n", " ").encode())
    if fd is None:
        return False
    os.close(fd)
    return True


def _write_line(text: bytes) -> int | None:
    """The pipe's fd (open) once `text` is written on it; None if there is no pipe, or the
    supervisor is gone (the lifeline ends this process)."""
    fd_text = os.environ.pop(READY_FD_ENV, None)
    if fd_text is None:
        return None
    fd = int(fd_text)
    try:
        os.write(fd, text + b"\n")
    except OSError:
        os.close(fd)
        return None
    return fd
