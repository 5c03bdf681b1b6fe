"""The supervisor's private runtime directory (the link's sockets, the spec), and the
sweep of those whose supervisor died without removing them.

A supervisor removes its directory when it stops; one killed with SIGKILL cannot (its
children notice and exit: leasehold._tree). Each directory names its supervisor in
SUPERVISOR_PID_FILE, and a start removes the directories of supervisors that are gone.
A directory without that file, not ours, or whose supervisor's pid is alive (or reused:
we cannot tell) is left alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from leasehold._tree import shard_socket
from leasehold.link import check_socket_path

PREFIX = "leasehold-"
SUPERVISOR_PID_FILE = "supervisor.pid"


def make_runtime_dir() -> Path:
    """A private directory for the link's sockets, short enough for any socket name."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    if not os.access(base, os.W_OK):
        base = tempfile.gettempdir()
    sweep_orphans(Path(base))
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    (path / SUPERVISOR_PID_FILE).write_text(f"{os.getpid()}\n", "ascii")
    check_socket_path(shard_socket(path, 999))
    return path


def sweep_orphans(base: Path) -> list[Path]:
    """Remove the runtime dirs in `base` whose supervisor is gone; the ones removed."""
    removed: list[Path] = []
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return removed
    for path in candidates:
        if _orphaned(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _orphaned(path: Path) -> bool:
    try:
        if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
            return False
        text = (path / SUPERVISOR_PID_FILE).read_text("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return False
    if not text.isdigit():
        return False
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False
