"""Container converters: lists, sets, tuples, sequences, mappings and the other generic aliases."""

from __future__ import annotations

import collections
import collections.abc as cabc
import dataclasses
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from millstream._engine.validation.base import Compile, Converter, _identity, _Invalid
from millstream._engine.validation.scalars import _fallback, _msgspec_leaf

# What pydantic's lax mode takes for a list, tuple or set: never a str, bytes or mapping.
_ITEMS_INPUTS = (
    list,
    tuple,
    set,
    frozenset,
    collections.deque,
    cabc.KeysView,
    cabc.ValuesView,
    cabc.Iterator,
)


def _items(value: Any, kind: str) -> Iterable[Any]:
    if isinstance(value, _ITEMS_INPUTS):
        return typing.cast(Iterable[Any], value)
    raise _Invalid(f"Input should be a valid {kind}")


def _each(convert: Converter, items: Iterable[Any]) -> list[Any]:
    if convert is _identity:
        return list(items)
    out = []
    for index, item in enumerate(items):
        try:
            out.append(convert(item))
        except _Invalid as exc:
            exc.loc.append(f"[{index}]")
            raise
    return out


def _list_of(item: Converter, build: Callable[[list[Any]], Any], kind: str) -> Converter:
    return lambda value: build(_each(item, _items(value, kind)))


def _set_of(item: Converter, build: Callable[[list[Any]], Any]) -> Converter:
    def convert(value: Any) -> Any:
        items = _each(item, _items(value, "set"))
        try:
            return build(items)
        except TypeError:
            raise _Invalid("Set items should be hashable") from None

    return convert


def _sequence_of(item: Converter) -> Converter:
    def convert(value: Any) -> Any:
        if isinstance(value, str):
            raise _Invalid("'str' instances are not allowed as a Sequence value")
        if isinstance(value, (list, tuple, collections.deque)):
            return type(value)(_each(item, value))
        if isinstance(value, cabc.Sequence):
            return _each(item, value)
        raise _Invalid("Input should be a valid sequence")

    return convert


def _tuple_of(args: tuple[Any, ...], inner: Compile) -> Converter:
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        item = (inner(args[0]) or _identity) if args else _identity
        return lambda value: tuple(_each(item, _items(value, "tuple")))
    if args == ((),):  # typing.Tuple[()]
        args = ()
    positions = [inner(arg) or _identity for arg in args]

    def convert(value: Any) -> Any:
        items = list(_items(value, "tuple"))
        if len(items) != len(positions):
            raise _Invalid(f"Tuple should have {len(positions)} items, not {len(items)}")
        out = []
        for index, (position, item) in enumerate(zip(positions, items, strict=True)):
            try:
                out.append(position(item))
            except _Invalid as exc:
                exc.loc.append(f"[{index}]")
                raise
        return tuple(out)

    return convert


def _mapping_of(key: Converter, item: Converter, origin: Any) -> Converter:
    def convert(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _Invalid("Input should be a valid dictionary")
        out = {}
        for name, entry in value.items():
            try:
                converted_name = key(name)
            except _Invalid as exc:
                exc.loc.append(f"[{name!r}] (key)")
                raise
            try:
                out[converted_name] = item(entry)
            except _Invalid as exc:
                exc.loc.append(f"[{name!r}]")
                raise
        if origin is dict or not isinstance(origin, type):
            return out
        # OrderedDict, Counter, defaultdict: keep the kind (and a defaultdict's factory).
        if isinstance(value, origin):
            kept = typing.cast(Any, value).copy()
            kept.clear()
            kept.update(out)
            return kept
        try:
            return origin(out)
        except TypeError:
            return out

    return convert


def _subclass_of(bound: Any) -> Converter | None:
    if not isinstance(bound, type):
        return None

    def convert(value: Any) -> Any:
        if isinstance(value, type) and issubclass(value, bound):
            return value
        raise _Invalid(f"Input should be a subclass of {bound.__name__}")

    return convert


def _callable(value: Any) -> Any:
    if callable(value):
        return value
    raise _Invalid("Input should be callable")


# Lazy iterables are passed as they are: consuming one to validate it would empty it.
_LAZY = frozenset(
    {
        cabc.Iterable,
        cabc.Iterator,
        cabc.Generator,
        cabc.AsyncIterable,
        cabc.AsyncIterator,
        cabc.AsyncGenerator,
        cabc.Awaitable,
        cabc.Coroutine,
        cabc.Collection,
        cabc.Container,
        cabc.Reversible,
    }
)

_BARE_CONTAINERS = frozenset(
    {
        list,
        tuple,
        set,
        frozenset,
        dict,
        collections.deque,
        cabc.Sequence,
        cabc.MutableSequence,
        cabc.Set,
        cabc.MutableSet,
        cabc.Mapping,
        cabc.MutableMapping,
    }
)


def _generic(tp: Any, origin: Any, args: tuple[Any, ...], inner: Compile) -> Converter | None:
    def arg(index: int) -> Converter:
        return (inner(args[index]) if len(args) > index else None) or _identity

    if origin is list:
        return _list_of(arg(0), _identity, "list")
    if origin is collections.deque:
        return _list_of(arg(0), collections.deque, "deque")
    if origin in (cabc.Sequence, cabc.MutableSequence):
        return _sequence_of(arg(0))
    if origin in (set, cabc.MutableSet, cabc.Set):
        return _set_of(arg(0), set)
    if origin is frozenset:
        return _set_of(arg(0), frozenset)
    if origin is tuple:
        return _tuple_of(args, inner)
    if origin in (cabc.Mapping, cabc.MutableMapping) or (
        isinstance(origin, type) and issubclass(origin, dict)
    ):
        return _mapping_of(arg(0), arg(1), origin)
    if origin is type:
        return _subclass_of(args[0]) if args else None
    if origin is cabc.Callable:
        return _callable
    if origin in _LAZY:
        return None
    if isinstance(origin, type) and (
        dataclasses.is_dataclass(origin) or issubclass(origin, msgspec.Struct)
    ):
        # A parametrised generic class: msgspec knows what its type variables stand for.
        def convert(value: Any) -> Any:
            return value if isinstance(value, origin) else _msgspec_leaf(value, tp)

        return convert
    return _fallback(tp)
