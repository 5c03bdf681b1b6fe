"""Commands, replies and shard figures <-> msgpack values: the journal codec's other half.

`_codec.py` writes events to disk by hand (its layout is pinned by golden bytes);
this module carries what crosses a process boundary but is never stored: the
commands a gateway sends a shard, the shard's replies and its statistics. It is
driven by the types themselves, so any command added to `core.Command` (with its
row in `_dispatch`) and any refusal added under `core.BookingError` cross the
link with no change here.

    value     = a dataclass as an array of its init fields, in order; a tuple as an
                array; a dict as an array of [key, value] pairs; an enum by value
    command   = [command type name, field, ...]
    reply     = ["v", value] | ["e", refusal type name, message, field] | ["f", fault value]

Decoding is checked against the type hints of the expected class, field by field,
so whatever it returns is well formed and anything else raises CorruptRecord.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar, cast

from leasehold import core
from leasehold.shards._codec import CorruptRecord, _describe
from leasehold.shards._dispatch import result_type
from leasehold.shards._messages import Reply, ShardFault

Decoder = Callable[[object], Any]
T = TypeVar("T")

_VALUE, _REFUSAL, _FAULT = "v", "e", "f"
_SCALARS = (str, int, float, bool, type(None), bytes)
_FAULTS = {fault.value: fault for fault in ShardFault}


def encode_value(value: object) -> object:
    """A msgpack-ready form of a value of the types above (structural, no type names)."""
    kind: Any = type(value)
    if kind in _SCALARS:
        return value
    if kind is tuple or kind is list:
        return [encode_value(item) for item in cast(tuple[object, ...], value)]
    if kind is dict:
        items = cast(dict[object, object], value).items()
        return [(encode_value(k), encode_value(v)) for k, v in items]
    if isinstance(value, enum.Enum):
        return value.value
    return _encoder(kind)(value)


def encode_command(command: core.Command) -> object:
    kind: Any = type(command)
    return (kind.__name__, *_encoder(kind)(command))


def decode_command(value: object) -> core.Command:
    """A command of `core.Command`'s types; CorruptRecord for anything else."""
    if type(value) is not tuple or not value:
        raise CorruptRecord(f"command is {_describe(value)}, not a non-empty array")
    kind: Any = _command_types().get(value[0]) if type(value[0]) is str else None
    if kind is None:
        raise CorruptRecord(f"unknown command {value[0]!r}")
    return cast(core.Command, _decoder(kind)(value[1:]))


def encode_reply(reply: Reply) -> object:
    if isinstance(reply, ShardFault):
        return (_FAULT, reply.value)
    if isinstance(reply, core.BookingError):
        return (_REFUSAL, type(reply).__name__, reply.message, reply.field)
    return (_VALUE, encode_value(reply))


def decode_reply(command_type: type[core.Command], value: object) -> Reply:
    """The reply to a command of `command_type`; CorruptRecord if it is not one."""
    if type(value) is not tuple or not value:
        raise CorruptRecord(f"reply is {_describe(value)}, not a non-empty array")
    tag = value[0]
    if tag == _VALUE and len(value) == 2:
        decoder: Decoder = _decoder(result_type(cast(Any, command_type)))
        return cast(Reply, decoder(value[1]))
    if tag == _FAULT and len(value) == 2 and type(value[1]) is str and value[1] in _FAULTS:
        return _FAULTS[value[1]]
    if tag == _REFUSAL and len(value) == 4:
        _, name, message, field = value
        refusal = _refusal_types().get(name) if type(name) is str else None
        if refusal is not None and type(message) is str and type(field) is str:
            return refusal(message, field=field)
    raise CorruptRecord(f"reply is not a value, refusal or fault: {_describe(value)}")


def decode_value(kind: type[T], value: object) -> T:
    """A value of the dataclass `kind` (ShardStats, say); CorruptRecord if it is not one."""
    decoder: Decoder = _decoder(cast(Any, kind))
    return cast(T, decoder(value))


def warm_up() -> None:
    """Build every command's and result's decoder now, not on a first (timed) call."""
    kind: Any
    for kind in _command_types().values():
        _decoder(kind)
        _decoder(result_type(kind))
    _refusal_types()


@cache
def _command_types() -> dict[str, type[Any]]:
    return {kind.__name__: kind for kind in typing.get_args(core.Command)}


@cache
def _refusal_types() -> dict[str, type[core.BookingError]]:
    found: dict[str, type[core.BookingError]] = {}
    pending = [core.BookingError]
    while pending:
        kind = pending.pop()
        found[kind.__name__] = kind
        pending.extend(kind.__subclasses__())
    return found


@cache
def _init_fields(kind: Any) -> tuple[str, ...]:
    if not dataclasses.is_dataclass(kind):
        raise TypeError(f"{kind.__name__} cannot cross the link")
    return tuple(f.name for f in dataclasses.fields(kind) if f.init)


@cache
def _decoder(hint: Any) -> Decoder:
    """A checking decoder for values of `hint` (a type or a type expression)."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return _union(typing.get_args(hint))
    if origin is tuple:
        return _tuple(typing.get_args(hint))
    if origin is dict:
        key, item = typing.get_args(hint)
        return _dict(_decoder(key), _decoder(item))
    if hint is type(None) or hint is None:
        return _exact(type(None))
    if hint is float:
        return _float
    if hint in (str, int, bool, bytes):
        return _exact(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass(hint)
    raise TypeError(f"no link decoder for {hint!r}")


def _exact(kind: type) -> Decoder:
    def decode(value: object) -> object:
        if type(value) is not kind:  # exact: msgpack's booleans are not integers here
            raise CorruptRecord(f"{_describe(value)} is not a {kind.__name__}")
        return value

    return decode


def _float(value: object) -> float:
    if type(value) not in (float, int):
        raise CorruptRecord(f"{_describe(value)} is not a number")
    return float(cast(float, value))


def _union(options: tuple[Any, ...]) -> Decoder:
    if len(options) == 2 and type(None) in options:
        (inner,) = (o for o in options if o is not type(None))
        some = _decoder(inner)
        return lambda value: None if value is None else some(value)
    decoders = [_decoder(o) for o in options]

    def decode(value: object) -> object:
        for option in decoders:
            try:
                return option(value)
            except CorruptRecord:
                continue
        raise CorruptRecord(f"{_describe(value)} is none of {options}")

    return decode


def _tuple(args: tuple[Any, ...]) -> Decoder:
    if len(args) == 2 and args[1] is Ellipsis:
        item = _decoder(args[0])

        def decode_many(value: object) -> tuple[object, ...]:
            return tuple(item(v) for v in _array(value, None))

        return decode_many
    items = [_decoder(a) for a in args]

    def decode_fixed(value: object) -> tuple[object, ...]:
        return tuple(d(v) for d, v in zip(items, _array(value, len(items)), strict=True))

    return decode_fixed


def _dict(key: Decoder, item: Decoder) -> Decoder:
    def decode(value: object) -> dict[object, object]:
        pairs = (_array(pair, 2) for pair in _array(value, None))
        return {key(k): item(v) for k, v in pairs}

    return decode


def _enum(kind: type[enum.Enum]) -> Decoder:
    members = {member.value: member for member in kind}

    def decode(value: object) -> enum.Enum:
        member = members.get(value) if type(value) in (str, int) else None
        if member is None:
            raise CorruptRecord(f"{_describe(value)} is not a {kind.__name__}")
        return member

    return decode


def _dataclass(kind: type) -> Decoder:
    """A decoder for `kind`, generated (as dataclasses generates __init__): one type check
    per field inline, no call per scalar field. Crossing the link costs per call."""
    hints = typing.get_type_hints(kind)
    names = _init_fields(kind)
    scope: dict[str, object] = {"kind": kind, "bad": _bad, "array": _array}
    lines = [
        f"    parts = array(value, {len(names)})",
        f"    ({', '.join(f'a{i}' for i in range(len(names)))},) = parts",
    ]
    for i, name in enumerate(names):
        lines.extend(_check_field(f"a{i}", f"{kind.__name__}.{name}", hints[name], scope))
    lines.append(f"    return kind({', '.join(f'a{i}' for i in range(len(names)))})")
    source = "def decode(value):\n" + "\n".join(lines)
    exec(source, scope)  # generated from type hints: no input reaches the source
    generated = cast(Decoder, scope["decode"])

    def decode(value: object) -> object:
        try:
            return generated(value)
        except CorruptRecord as problem:
            raise CorruptRecord(f"{kind.__name__}: {problem}") from None
        except (ValueError, TypeError) as problem:  # a type's own check (__post_init__)
            raise CorruptRecord(f"{kind.__name__}: {problem}") from None

    return decode


def _check_field(var: str, what: str, hint: Any, scope: dict[str, object]) -> list[str]:
    """Source lines that check (and convert) the field in `var` against `hint`."""
    optional = False
    args = typing.get_args(hint)
    union = typing.get_origin(hint) in (types.UnionType, typing.Union)
    if union and len(args) == 2 and type(None) in args:
        optional = True
        (hint,) = (a for a in args if a is not type(None))
    guard = f"{var} is not None and " if optional else ""
    label = f"{what!r}, {getattr(hint, '__name__', str(hint))!r}"
    if hint in (str, int, bool, bytes):
        return [f"    if {guard}type({var}) is not {hint.__name__}: bad({label}, {var})"]
    if hint is float:
        return [
            f"    if {guard}type({var}) is not float:",
            f"        if type({var}) is not int: bad({label}, {var})",
            f"        {var} = float({var})",
        ]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        members = f"m_{var}"
        scope[members] = {member.value: member for member in hint}
        return [
            f"    if {guard}True:",
            f"        {var}_was = {var}",
            f"        {var} = {members}.get({var}) if type({var}) in (str, int) else None",
            f"        if {var} is None: bad({label}, {var}_was)",
        ]
    decoder = f"d_{var}"
    scope[decoder] = _decoder(hint)
    return [f"    if {guard}True: {var} = {decoder}({var})"]


def _bad(what: str, expected: str, value: object) -> None:
    raise CorruptRecord(f"{what} is {_describe(value)}, not a {expected}")


@cache
def _encoder(kind: Any) -> Callable[[Any], tuple[object, ...]]:
    """An encoder for the dataclass `kind`, generated: scalar fields are read as they are."""
    hints = typing.get_type_hints(kind)
    scope: dict[str, object] = {"encode_value": encode_value}
    parts = []
    for name in _init_fields(kind):
        hint = hints[name]
        args = typing.get_args(hint)
        if hint in _SCALARS or (
            typing.get_origin(hint) in (types.UnionType, typing.Union)
            and all(a in _SCALARS for a in args)
        ):
            parts.append(f"v.{name}")
        elif isinstance(hint, type) and issubclass(hint, enum.Enum):
            parts.append(f"v.{name}.value")
        else:
            parts.append(f"encode_value(v.{name})")
    source = f"def encode(v):\n    return ({', '.join(parts)},)"
    exec(source, scope)  # generated from type hints: no input reaches the source
    return cast(Callable[[Any], tuple[object, ...]], scope["encode"])


def _array(value: object, length: int | None) -> tuple[object, ...]:
    if type(value) is not tuple or (length is not None and len(value) != length):
        wanted = "an array" if length is None else f"an array of {length}"
        raise CorruptRecord(f"{_describe(value)} is not {wanted}")
    return value
