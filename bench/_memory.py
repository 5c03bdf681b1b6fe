"""The memory of a server's process tree, from /proc: summed RSS and summed PSS.

RSS counts a page once in every process that maps it, so a tree of five Python
processes sharing the interpreter, the libraries and the pages they inherited
counts those several times over. PSS (proportional set size) divides each page
by the processes mapping it: the tree's PSS sum is what the machine would get
back if the tree exited, and the figure the 200 MB overload target is judged on
(docs/performance.md, "Overload"). Both are printed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from leasehold.bench._server import children_of, role_of


@dataclass(frozen=True, slots=True)
class TreeMemory:
    rss_mb: float  # summed over the tree's processes
    pss_mb: float
    # PSS summed over the children of each role (bench._server.ROLES; "other": the rest,
    # supervisor or the one process of --workers 0).
    pss_by_role_mb: dict[str, float] = field(default_factory=dict)

    def max(self, other: TreeMemory) -> TreeMemory:
        roles = self.pss_by_role_mb.keys() | other.pss_by_role_mb.keys()
        by_role = {
            r: max(self.pss_by_role_mb.get(r, 0.0), other.pss_by_role_mb.get(r, 0.0)) for r in roles
        }
        return TreeMemory(max(self.rss_mb, other.rss_mb), max(self.pss_mb, other.pss_mb), by_role)


def tree_memory(pid: int) -> TreeMemory:
    """`pid` and its children (a multi-process server's supervisor and its workers)."""
    rss = pss = 0.0
    by_role: dict[str, float] = {}
    for process in [pid, *children_of(pid)]:
        own_rss, own_pss = _own_memory_mb(process)
        rss, pss = rss + own_rss, pss + own_pss
        role = role_of(process)
        by_role[role] = by_role.get(role, 0.0) + own_pss
    return TreeMemory(rss, pss, by_role)


def _own_memory_mb(pid: int) -> tuple[float, float]:
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0.0, 0.0  # exited between listing and reading
    fields = {}
    for line in lines[1:]:
        name, _, rest = line.partition(":")
        fields[name] = rest.split()[0] if rest.split() else "0"
    return int(fields.get("Rss", 0)) / 1024, int(fields.get("Pss", 0)) / 1024


class MemorySampler:
    """The tree's memory every 100 ms, in a thread; `peak` (each figure's own) since start."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.before = tree_memory(pid)
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = self.peak.max(tree_memory(self._pid))

    def stop(self) -> TreeMemory:
        self._stop.set()
        self._thread.join()
        return tree_memory(self._pid)
