"""The converter of an annotation: the dispatcher and memo, unions, literals, enums, Annotated."""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

import msgspec

from millstream._engine.validation.base import (
    _EMPTY,
    _NONE_TYPE,
    Compile,
    Converter,
    _identity,
    _Invalid,
)
from millstream._engine.validation.classes import (
    _dataclass,
    _namedtuple,
    _pydantic,
    _pydantic_metadata,
    _struct,
    _typeddict,
    _wants_pydantic,
)
from millstream._engine.validation.containers import _BARE_CONTAINERS, _LAZY, _generic
from millstream._engine.validation.messages import _detail, _type_name
from millstream._engine.validation.scalars import (
    _LEAVES,
    _fallback,
    _instance_of,
    _path,
    _to_float,
    _to_int,
    _to_none,
)


def _or_join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _literal(allowed: tuple[Any, ...]) -> Converter:
    expected = _or_join([repr(item) for item in allowed])

    def convert(value: Any) -> Any:
        for item in allowed:
            if value is item:
                return item
        # Equality, as pydantic's lax mode: Literal[1] takes 1.0 and True but not "1".
        for item in allowed:
            if _equal(value, item):
                return item
        raise _Invalid(f"Input should be {expected}")

    return convert


def _exact_check(member: Any) -> Callable[[Any], bool] | None:
    """A test that ``value`` already is exactly of ``member`` (pydantic's strict pass)."""
    if member is _NONE_TYPE or member is None:
        return lambda value: value is None
    if typing.get_origin(member) is typing.Literal:
        allowed = typing.get_args(member)
        return lambda value: any(
            type(value) is type(item) and _equal(value, item) for item in allowed
        )
    if typing.get_origin(member) is None and isinstance(member, type):
        return lambda value: type(value) is member
    return None


def _union(members: tuple[Any, ...], memo: dict[Any, Converter | None]) -> Converter:
    options = [(member, _compile(member, memo) or _identity) for member in members]
    exact = [
        (check, convert)
        for (member, convert) in options
        if (check := _exact_check(member)) is not None
    ]
    expected = " | ".join(_type_name(member) for member in members)

    def convert(value: Any) -> Any:
        # pydantic's smart mode: a member the value already is wins; else the first that fits.
        for check, member_convert in exact:
            if check(value):
                try:
                    return member_convert(value)
                except _Invalid:
                    break
        problems = []
        for member, member_convert in options:
            try:
                return member_convert(value)
            except _Invalid as exc:
                problems.append(f"{_type_name(member)}: {_detail(exc)}")
        raise _Invalid(f"Input matches none of {expected} ({'; '.join(problems)})")

    return convert


def _enum(tp: type[enum.Enum]) -> Converter:
    members = list(tp)
    expected = _or_join([repr(member.value) for member in members] or ["a member"])
    # Int and float enums take their values in lax form ("1" for 1); other enums need the value.
    value_convert = _to_int if issubclass(tp, int) else _to_float if issubclass(tp, float) else None

    def convert(value: Any) -> Any:
        if isinstance(value, tp):
            return value
        try:
            return tp(value)
        except (ValueError, TypeError):
            pass
        if value_convert is not None:
            try:
                return tp(value_convert(value))
            except (_Invalid, ValueError, TypeError):
                pass
        raise _Invalid(f"Input should be {expected}")

    return convert


def _class(tp: type, memo: dict[Any, Converter | None]) -> Converter | None:
    if _wants_pydantic(tp):
        return _pydantic(tp) or _instance_of(tp)
    if issubclass(tp, enum.Enum):
        return _enum(tp)
    if tp in _BARE_CONTAINERS or tp in _LAZY:
        return _generic(tp, tp, (), _inner(memo))
    if issubclass(tp, msgspec.Struct):
        return _struct(tp, _inner(memo))
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, _inner(memo))
    if typing.is_typeddict(tp):
        return _typeddict(tp, _inner(memo))
    if issubclass(tp, tuple) and hasattr(tp, "_fields"):
        return _namedtuple(tp, _inner(memo))
    if issubclass(tp, PurePath):
        return _path(tp)
    return _fallback(tp)


def _annotated(
    tp: Any, args: tuple[Any, ...], memo: dict[Any, Converter | None]
) -> Converter | None:
    base, metadata = args[0], args[1:]
    if any(_pydantic_metadata(item) for item in metadata):
        converter = _pydantic(tp)
        if converter is not None:
            return converter
    inner = _compile(base, memo) or _identity
    if not any(isinstance(item, msgspec.Meta) for item in metadata):
        return inner if inner is not _identity else None

    def convert(value: Any) -> Any:
        out = inner(value)
        try:  # the msgspec.Meta constraints (ge=, max_length=, pattern=, ...) on the result
            msgspec.convert(out, tp)
        except msgspec.ValidationError as exc:
            raise _Invalid(str(exc)) from None
        except TypeError:
            pass  # a base type msgspec cannot check: its constraints cannot apply
        return out

    return convert


_WRAPPERS = frozenset({typing.Required, typing.NotRequired, typing.ClassVar, typing.Final})


def _build(tp: Any, memo: dict[Any, Converter | None]) -> Converter | None:
    if tp is Any or tp is object or tp is _EMPTY or tp is None:
        return _to_none if tp is None else None
    if isinstance(tp, (typing.TypeVar, typing.ForwardRef, str)):
        return None  # unresolved: nothing to check against
    try:
        leaf = _LEAVES.get(tp)
    except TypeError:  # an unhashable annotation (odd metadata): no leaf
        leaf = None
    if leaf is not None:
        return leaf
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _annotated(tp, args, memo)
    if origin in _WRAPPERS:
        return _compile(args[0], memo) if args else None
    if origin is typing.Literal:
        return _literal(args)
    if origin is typing.Union or origin is types.UnionType:
        return _union(args, memo)
    if isinstance(tp, typing.NewType):
        return _compile(tp.__supertype__, memo)
    if origin is not None:
        if _wants_pydantic(tp):
            converter = _pydantic(tp)
            if converter is not None:
                return converter
        return _generic(tp, origin, args, _inner(memo))
    if isinstance(tp, type):
        return _class(tp, memo)
    return _fallback(tp)


def _inner(memo: dict[Any, Converter | None]) -> Compile:
    """How containers and classes compile their inner annotations: into the same ``memo``."""
    return functools.partial(_compile, memo=memo)


def _compile(tp: Any, memo: dict[Any, Converter | None]) -> Converter | None:
    """The converter of an annotation; None when any value passes as it is."""
    try:
        if tp in memo:
            return memo[tp]
    except TypeError:  # unhashable annotation: cannot recurse through it anyway
        return _build(tp, memo)
    # A recursive type (a tree of dataclasses) meets itself while compiling: it gets a forwarder
    # to the converter that exists by the time any value is converted.
    built: list[Converter | None] = []

    def forward(value: Any) -> Any:
        convert = built[0]
        return value if convert is None else convert(value)

    memo[tp] = forward
    converter = _build(tp, memo)
    built.append(converter)
    memo[tp] = converter
    return converter
