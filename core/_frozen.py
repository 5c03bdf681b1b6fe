"""A cheaper constructor for frozen, slotted dataclasses (the domain's value types).

A frozen dataclass's generated `__init__` cannot assign its fields (its own
`__setattr__` refuses), so it writes each one with `object.__setattr__(self,
name, value)`: a global and an attribute lookup, a call through the generic
setattr and a search of the type for the name, per field. Value types are
built on every request (a command, a Lease or Booking, its event, the
Outcome): that was ~15% of a CreateBooking in `leasehold bench core`.

`faster_init` replaces that `__init__` with one of the same signature that
writes each field straight through its slot's descriptor, which is where
`object.__setattr__` ends up anyway: about 40% cheaper for 5-7 fields. The
class stays exactly as frozen (assignment and deletion still raise
FrozenInstanceError), and everything else dataclass made (eq, repr, hash,
match args, `dataclasses.replace`, pickling) is untouched. The original
`__init__` stays reachable as `__init__.__wrapped__` (tests compare the
signatures).
"""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def faster_init(cls: type[T]) -> type[T]:
    """Give the frozen, slotted dataclass `cls` the cheaper `__init__` (see above).

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
    scope: dict[str, Any] = {}
    args: list[str] = []
    body: list[str] = []
    for f in fields(cls):
        if not f.init or f.kw_only or f.default_factory is not MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: only plain fields are handled")
        scope[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is MISSING:
            args.append(f.name)
        else:
            scope[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(args)}):\n" + "\n".join(body or ["    pass"])
    exec(source, scope)  # as dataclasses itself builds __init__: from the fields
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__wrapped__ = cls.__init__
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
