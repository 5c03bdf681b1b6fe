"""The domain's value types: frozen for the type checker, plain slotted classes at runtime.

`@value_type` makes a class a slotted dataclass. mypy sees it frozen
(`dataclass_transform(frozen_default=True)`) and rejects any assignment to a
field; mypy --strict runs in CI. At runtime the class has no `__setattr__` of
its own, so the `self.x = x` stores of its generated `__init__` take CPython's
specialised path: value types are built on every request, and the frozen
guard's `object.__setattr__` per field was most of their cost (figures in
docs/performance.md, "Core").

With LEASEHOLD_CHECK_FROZEN=1 in the environment when core is first imported,
the classes are frozen dataclasses instead: the test suite runs so
(tests/conftest.py), and fails on any mutation mypy cannot see (a setattr by
name, a cast). Either way a class compares, hashes, prints, matches,
`dataclasses.replace`s and pickles alike: both are dataclasses of the same
fields, hashed from them.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

T = TypeVar("T")

CHECK_FROZEN_ENV = "LEASEHOLD_CHECK_FROZEN"
# Read once: a class is decorated when its module is imported.
RUNTIME_CHECKED = os.environ.get(CHECK_FROZEN_ENV) == "1"

# Every class made here, for tests to find them (weak: a class may go).
_made: weakref.WeakSet[type] = weakref.WeakSet()


@dataclass_transform(frozen_default=True)
def value_type(cls: type[T]) -> type[T]:
    """`cls` as a value type: see the module's docstring."""
    return make_value_type(cls, guarded=RUNTIME_CHECKED)


def make_value_type(cls: type[T], *, guarded: bool) -> type[T]:
    """`value_type` with the runtime guard chosen explicitly."""
    # unsafe_hash: the __hash__ a frozen dataclass gets (from the compared fields), which
    # a mutable one would otherwise set to None.
    made = dataclass(frozen=guarded, slots=True, unsafe_hash=True)(cls)
    _made.add(made)
    return made


def is_value_type(cls: type) -> bool:
    return cls in _made
