"""Id entropy for the shards: the OS's CSPRNG, read in blocks instead of once per id.

Every lease and booking id carries ID_ENTROPY_BYTES random bytes. Drawn with
`secrets.token_bytes` each one is a `getrandom` syscall and two Python calls; a
slice of a block read ahead is a fraction of that (docs/performance.md). The
bytes are the same `os.urandom` output `secrets` uses.

Not thread-safe (a generator): one source per thread; the shards all run on
trio's one thread. A forked child drops the rest of its parent's block, so the
two never hand out the same ids.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from functools import partial

from leasehold.core import ID_ENTROPY_BYTES

# 4096 ids (60 KiB) per read: the syscall's cost vanishes, the memory does not matter.
IDS_PER_READ = 4096

_fork_epoch = 0


def _after_fork_in_child() -> None:
    global _fork_epoch
    _fork_epoch += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


def buffered_entropy(
    size: int = ID_ENTROPY_BYTES, ids_per_read: int = IDS_PER_READ
) -> Callable[[], bytes]:
    """A source of `size` fresh random bytes per call, for ShardState's `entropy`."""
    if size <= 0 or ids_per_read <= 0:
        raise ValueError("size and ids_per_read must be positive")
    # (next on a generator is a C call: cheaper than a method or a closure per id.)
    return partial(next, _slices(size, ids_per_read))


def _slices(size: int, ids_per_read: int) -> Iterator[bytes]:
    while True:
        epoch = _fork_epoch
        block = os.urandom(size * ids_per_read)
        for at in range(0, len(block), size):
            if _fork_epoch != epoch:
                break  # forked since this block was read: the parent hands out the rest
            yield block[at : at + size]
