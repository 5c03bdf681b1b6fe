"""The domain's value types: frozen for the type checker, plain slots at runtime.

Value types (commands, Person, Lease, Booking, events, Outcome) are declared
`@dataclass(frozen=True, slots=True)`, so mypy --strict (part of the test suite,
hence of CI) rejects any assignment to their fields. CPython enforces the same
at runtime with a Python-level `__setattr__`, and that guard is what made these
types slow to build: the generated `__init__` cannot assign its own fields, so
it writes each through `object.__setattr__`; even written straight through each
slot's descriptor (`Slot.__set__`, this module's first version) a field cost
~30 ns, against ~5 ns for a plain `self.x = x`, which CPython specialises only
when the class has no `__setattr__` of its own. Value types are built on every
request: a CreateBooking in `leasehold bench core` built five of them (command,
Person, Booking, event, Outcome), and the guard was ~1 us of its ~7.5 us.

`statically_frozen` keeps the static guarantee and drops the runtime guard:
`__init__` (same signature) assigns each slot, and the class loses the frozen
`__setattr__` and `__delattr__`. eq, hash (from the fields), repr, match args,
`dataclasses.replace` and pickling stay as dataclass made them. The generated
`__init__` stays reachable as `__init__.__wrapped__` (tests compare them).

With LEASEHOLD_CHECK_FROZEN=1 in the environment when core is first imported,
the classes keep their runtime guard (and `__init__` sets fields through the
slot descriptors): the test suite runs so (tests/conftest.py), and fails on any
mutation mypy cannot see (a setattr by name, a cast).
"""

from __future__ import annotations

import os
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")

CHECK_FROZEN_ENV = "LEASEHOLD_CHECK_FROZEN"
# Read once: a class is decorated when its module is imported.
RUNTIME_CHECKED = os.environ.get(CHECK_FROZEN_ENV) == "1"


def statically_frozen(cls: type[T]) -> type[T]:
    """`cls` (a frozen, slotted dataclass) with the cheaper `__init__` and, unless
    RUNTIME_CHECKED, no runtime guard against assignment (see above)."""
    return with_fast_init(cls, guarded=RUNTIME_CHECKED)


def with_fast_init(cls: type[T], *, guarded: bool) -> type[T]:
    """`statically_frozen` with the runtime guard chosen explicitly.

    Refuses (TypeError) what it does not handle: a class that is not a frozen
    slotted dataclass, or one with `__post_init__`, init=False, keyword-only or
    default-factory fields.
    """
    params = getattr(cls, "__dataclass_params__", None)
    if not (is_dataclass(cls) and params is not None and params.frozen):
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    if "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} has no slots")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has __post_init__")
    init = _init_function(cls, guarded)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__wrapped__ = cls.__init__
    cls.__init__ = init  # type: ignore[method-assign]
    if not guarded:
        # The instance's stores then take the generic (specialised) path: see above.
        del cls.__setattr__
        del cls.__delattr__
    return cls


def _init_function(cls: type[Any], guarded: bool) -> Any:
    """An `__init__` with the dataclass's signature that writes every field."""
    scope: dict[str, Any] = {}
    args: list[str] = []
    body: list[str] = []
    for f in fields(cls):
        if not f.init or f.kw_only or f.default_factory is not MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: only plain fields are handled")
        if f.default is MISSING:
            args.append(f.name)
        else:
            scope[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
        if guarded:
            # Where object.__setattr__ ends up anyway, without its lookups.
            scope[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
            body.append(f"    _set_{f.name}(self, {f.name})")
        else:
            body.append(f"    self.{f.name} = {f.name}")
    source = f"def __init__(self, {', '.join(args)}):\n" + "\n".join(body or ["    pass"])
    exec(source, scope)  # as dataclasses itself builds __init__: from the fields
    return scope["__init__"]
