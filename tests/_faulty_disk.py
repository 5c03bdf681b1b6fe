"""Run `leasehold` on a disk that fails: `python _faulty_disk.py TRIGGER serve ...`.

While the file TRIGGER exists, every write to a regular file and every fsync fail
with ENOSPC, as on a full disk (a real one cannot be made without mounting a
filesystem); if TRIGGER holds text, only for files whose path contains it.
Patched before leasehold is imported, so the journal's fsync is too.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


def _failing(call: Callable[..., _T], trigger: str) -> Callable[..., _T]:
    def patched(fd: int, *args: object) -> _T:
        if _fails(fd, trigger):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return call(fd, *args)

    return patched


def _fails(fd: int, trigger: str) -> bool:
    if not os.path.exists(trigger) or not stat.S_ISREG(os.fstat(fd).st_mode):
        return False
    with open(trigger, encoding="utf-8") as only:
        wanted = only.read().strip()
    return not wanted or wanted in os.readlink(f"/proc/self/fd/{fd}")


def main() -> int:
    trigger, argv = sys.argv[1], sys.argv[2:]
    os.write = _failing(os.write, trigger)
    os.fsync = _failing(os.fsync, trigger)
    os.fdatasync = _failing(os.fdatasync, trigger)
    from leasehold.cli import main as leasehold_main

    return leasehold_main(argv)


if __name__ == "__main__":
    sys.exit(main())
