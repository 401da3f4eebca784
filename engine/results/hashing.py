"""Deterministic hashing of values for cache keys, the same in every process and Python run.

``PYTHONHASHSEED`` does not matter, nor does dict insertion order or set iteration order.

How a value is hashed: it is turned into a canonical msgpack document, encoded with msgspec
(``order="deterministic"``, so str-keyed dicts are written in sorted key order), and the bytes
are hashed with BLAKE2b. Plain data (``str``, ``int``, ``float``, ``bool``, ``None``, ``bytes``,
``list``, str-keyed ``dict``) is ordinary msgpack; every other type becomes a msgpack extension
value tagged with its kind (and its class name for user classes), so that a tuple, a list, a
dataclass and a dict with the same contents never share a key:

* sets and frozensets: their members' encodings, sorted (set order follows string hashes,
  which change from one process to the next); dicts with other keys: pairs sorted by key encoding;
* datetimes, dates, times, timedeltas, UUIDs, decimals, complex numbers, bytearrays, integers
  beyond 64 bits: a fixed text or binary form;
* enums (class and value), dataclasses and msgspec Structs (class and fields), named tuples;
* classes, modules and importable functions: their qualified name; other functions (lambdas,
  closures): their code, defaults and closure values;
* anything else: what pickle would record for it (``__reduce_ex__(4)``: constructor, arguments
  and state), canonicalised the same way, so a set inside an object's state is sorted too.
  Objects pickle refuses (locks, open files, sockets, generators) raise ``UnhashableInputError``.
"""

from __future__ import annotations

import copyreg
import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import sys
import types
import uuid
import zoneinfo
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any

import msgspec

from millstream._engine.exceptions import UnhashableInputError

__all__ = ["hash_inputs", "hash_objects", "stable_hash"]

# Default digest: 32 hex characters (128 bits), the length of Prefect's md5 keys.
_DEFAULT_SIZE = 32
_MAX_SIZE = 64

_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})
_STR = frozenset({str})
_INT64_MIN = -(1 << 63)
_UINT64_MAX = (1 << 64) - 1

_Ext = msgspec.msgpack.Ext
_H_TUPLE = 1
_H_SET = 2
_H_FROZENSET = 3
_H_MAP = 4
_H_DATETIME = 5
_H_DATE = 6
_H_TIME = 7
_H_TIMEDELTA = 8
_H_UUID = 9
_H_DECIMAL = 10
_H_COMPLEX = 11
_H_BIGINT = 12
_H_BYTEARRAY = 13
_H_SURROGATE_STR = 14
_H_ENUM = 20
_H_DATACLASS = 21
_H_STRUCT = 22
_H_NAMEDTUPLE = 23
_H_TYPED_MAP = 24
_H_GLOBAL = 30
_H_FUNCTION = 31
_H_CODE = 32
_H_REDUCE = 33
_H_BACKREF = 34
_H_EMPTY_CELL = 35

# One encoder per process (building one per call would cost more than hashing small inputs).
_encoder = msgspec.msgpack.Encoder(order="deterministic")
_first = itemgetter(0)


def stable_hash(*parts: str | bytes, size: int | None = None) -> str:
    """A hex BLAKE2b digest of the parts: ``size`` hex characters (default 32, at most 64).

    Each part is length-prefixed, so ``("ab", "c")`` and ``("a", "bc")`` differ.
    """
    if size is None:
        size = _DEFAULT_SIZE
    elif not 1 <= size <= _MAX_SIZE:
        raise ValueError(f"stable_hash size must be between 1 and {_MAX_SIZE}, got {size!r}")
    digest = hashlib.blake2b(digest_size=_MAX_SIZE // 2)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:size]


def _type_name(cls: type) -> str:
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


class _Unhashable(Exception):
    """``obj`` (somewhere inside the value being hashed) cannot be hashed, for ``reason``."""

    def __init__(self, obj: Any, reason: str) -> None:
        super().__init__(obj, reason)
        self.obj = obj
        self.reason = reason


def _find_global(module: str, qualname: str) -> Any:
    # Only modules already imported: hashing must never import (and run) anything.
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


class _Canonicalizer:
    """Turns one value into its canonical msgpack document (see the module docstring).

    ``slow`` is the second attempt after msgspec refused the fast form: integers beyond 64 bits
    and strings with lone surrogates are then found one by one instead of letting lists and dicts
    of scalars through untouched. ``active`` holds the objects being walked (by id, with their
    depth), so an object reached again inside itself becomes a back-reference, as in pickle.
    """

    __slots__ = ("active", "slow")

    def __init__(self, slow: bool) -> None:
        self.slow = slow
        self.active: dict[int, int] = {}

    def encode(self, obj: Any) -> bytes:
        return _encoder.encode(self.canon(obj))

    def ext(self, code: int, payload: Any) -> msgspec.msgpack.Ext:
        return _Ext(code, _encoder.encode(payload))

    def canon(self, obj: Any) -> Any:
        cls = type(obj)
        if cls in _SCALARS:
            if self.slow:
                return self.slow_scalar(obj, cls)
            return obj
        if cls is list:
            if not self.slow and _SCALARS.issuperset(map(type, obj)):
                return obj
            return [self.canon(v) for v in obj]
        if cls is dict:
            return self.mapping(obj)
        return self.other(obj, cls)

    def slow_scalar(self, obj: Any, cls: type) -> Any:
        if cls is int and not _INT64_MIN <= obj <= _UINT64_MAX:
            return _Ext(_H_BIGINT, obj.to_bytes((obj.bit_length() + 8) // 8, "big", signed=True))
        if cls is str and not _utf8_ok(obj):
            return _Ext(_H_SURROGATE_STR, obj.encode("utf-8", "surrogatepass"))
        return obj

    def mapping(self, obj: dict[Any, Any]) -> Any:
        if _STR.issuperset(map(type, obj)) and not (self.slow and not all(map(_utf8_ok, obj))):
            # The encoder sorts str keys itself.
            if not self.slow and _SCALARS.issuperset(map(type, obj.values())):
                return obj
            return {k: self.canon(v) for k, v in obj.items()}
        pairs = sorted(([self.encode(k), self.canon(v)] for k, v in obj.items()), key=_first)
        return self.ext(_H_MAP, pairs)

    def other(self, obj: Any, cls: type) -> Any:
        if cls is tuple:
            return self.ext(_H_TUPLE, [self.canon(v) for v in obj])
        if cls is set or cls is frozenset:
            members = sorted(self.encode(v) for v in obj)
            return self.ext(_H_SET if cls is set else _H_FROZENSET, members)
        if cls is dt.datetime:
            return self.ext(_H_DATETIME, [obj.isoformat(), obj.fold, _zone(obj.tzinfo, obj)])
        if cls is dt.date:
            return _Ext(_H_DATE, obj.isoformat().encode())
        if cls is dt.time:
            return self.ext(_H_TIME, [obj.isoformat(), obj.fold, _zone(obj.tzinfo, None)])
        if cls is dt.timedelta:
            return self.ext(_H_TIMEDELTA, [obj.days, obj.seconds, obj.microseconds])
        if cls is uuid.UUID:
            return _Ext(_H_UUID, obj.bytes)
        if cls is decimal.Decimal:
            return _Ext(_H_DECIMAL, str(obj).encode())
        if cls is complex:
            return self.ext(_H_COMPLEX, [obj.real, obj.imag])
        if cls is bytearray:
            return _Ext(_H_BYTEARRAY, bytes(obj))
        if isinstance(obj, enum.Enum):
            return self.ext(_H_ENUM, [_type_name(cls), self.canon(obj.value)])
        if isinstance(obj, type):
            return _Ext(_H_GLOBAL, f"{obj.__module__}:{obj.__qualname__}".encode())
        if isinstance(obj, types.ModuleType):
            return _Ext(_H_GLOBAL, obj.__name__.encode())
        if isinstance(obj, types.CodeType):
            return self.code(obj)
        if isinstance(obj, dict):
            return self.ext(_H_TYPED_MAP, [_type_name(cls), self.mapping(dict(obj))])
        # Objects that may contain themselves: walk them once, refer back on the way down.
        key = id(obj)
        depth = self.active.get(key)
        if depth is not None:
            return self.ext(_H_BACKREF, depth)
        self.active[key] = len(self.active)
        try:
            return self.composite(obj, cls)
        finally:
            del self.active[key]

    def composite(self, obj: Any, cls: type) -> Any:
        if isinstance(obj, msgspec.Struct):
            fields = {f: self.canon(getattr(obj, f)) for f in obj.__struct_fields__}
            return self.ext(_H_STRUCT, [_type_name(cls), fields])
        if dataclasses.is_dataclass(obj):
            fields = {f.name: self.canon(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
            return self.ext(_H_DATACLASS, [_type_name(cls), fields])
        if isinstance(obj, tuple) and hasattr(cls, "_fields"):
            return self.ext(_H_NAMEDTUPLE, [_type_name(cls), [self.canon(v) for v in obj]])
        if isinstance(obj, types.FunctionType):
            return self.function(obj)
        return self.reduced(obj, cls)

    def function(self, fn: types.FunctionType) -> Any:
        name = f"{fn.__module__}:{fn.__qualname__}"
        if _find_global(fn.__module__, fn.__qualname__) is fn:
            # Importable: by name, as pickle does (its code is the business of TASK_SOURCE).
            return _Ext(_H_GLOBAL, name.encode())
        # Lambdas, closures, local functions: what they do, not where they live in memory.
        cells = []
        for cell in fn.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # a cell not filled yet
                cells.append(_Ext(_H_EMPTY_CELL, b""))
            else:
                cells.append(self.canon(contents))
        payload = [
            name,
            self.code(fn.__code__),
            self.canon(fn.__defaults__),
            self.canon(fn.__kwdefaults__),
            cells,
        ]
        return self.ext(_H_FUNCTION, payload)

    def code(self, code: types.CodeType) -> Any:
        consts = [self.canon(c) for c in code.co_consts]
        return self.ext(_H_CODE, [code.co_name, code.co_code, consts, list(code.co_names)])

    def reduced(self, obj: Any, cls: type) -> Any:
        reducer = copyreg.dispatch_table.get(cls)
        try:
            rv = reducer(obj) if reducer is not None else obj.__reduce_ex__(4)
        except Exception as exc:
            raise _Unhashable(obj, str(exc) or type(exc).__name__) from None
        if isinstance(rv, str):
            # A global (a builtin function, a singleton): pickle records its name.
            module = getattr(obj, "__module__", None) or cls.__module__
            return _Ext(_H_GLOBAL, f"{module}:{rv}".encode())
        if not isinstance(rv, tuple) or len(rv) < 2:
            raise _Unhashable(obj, f"__reduce_ex__ returned {type(rv).__name__}")
        func, args, state, items, dict_items = (*rv, None, None, None)[:5]
        payload = [
            self.canon(func),
            self.canon(args),
            self.canon(state),
            None if items is None else self.canon(list(items)),
            None if dict_items is None else self.canon([tuple(kv) for kv in dict_items]),
        ]
        return self.ext(_H_REDUCE, payload)


def _utf8_ok(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _zone(tz: dt.tzinfo | None, when: dt.datetime | None) -> str | None:
    # The offset is in the ISO text already; this tells zones with equal offsets apart.
    if tz is None or type(tz) is dt.timezone:
        return None
    if type(tz) is zoneinfo.ZoneInfo and tz.key is not None:
        return tz.key
    return f"{_type_name(type(tz))}:{tz.tzname(when)}"


def _digest(build: Callable[[_Canonicalizer], Any]) -> str:
    try:
        return stable_hash(_encoder.encode(build(_Canonicalizer(slow=False))))
    except (OverflowError, UnicodeEncodeError):
        # A huge integer or a lone surrogate somewhere: build again, checking each scalar.
        return stable_hash(_encoder.encode(build(_Canonicalizer(slow=True))))


def _detail(top: Any, exc: _Unhashable) -> str:
    if exc.obj is top:
        return f" ({exc.reason})"
    return f": it contains a {_type_name(type(exc.obj))} ({exc.reason})"


def hash_objects(*objs: Any) -> str:
    """A deterministic hex digest of ``objs`` (32 characters).

    Raises ``UnhashableInputError`` naming the type when a value cannot be hashed.
    """
    if _SCALARS.issuperset(map(type, objs)):
        try:
            return stable_hash(_encoder.encode(objs))
        except (OverflowError, UnicodeEncodeError):
            pass

    def build(walker: _Canonicalizer) -> Any:
        out = []
        for obj in objs:
            try:
                out.append(walker.canon(obj))
            except _Unhashable as exc:
                raise UnhashableInputError(
                    f"Cannot compute a cache key: a value of type {_type_name(type(obj))} "
                    f"cannot be hashed{_detail(obj, exc)}"
                ) from None
            except RecursionError:
                raise UnhashableInputError(
                    f"Cannot compute a cache key: a value of type {_type_name(type(obj))} "
                    "is nested too deeply or contains itself"
                ) from None
        return out

    return _digest(build)


def _advice(kind: str, name: str) -> str:
    if kind == "parameter":
        return f"Exclude it with cache_policy=INPUTS - {name!r} or give a cache_key_fn."
    return "Leave it out of the cache policy or give a cache_key_fn."


def hash_inputs(inputs: Mapping[str, Any], *, kind: str = "parameter") -> str:
    """A deterministic hex digest of a parameter mapping (32 characters; order does not matter).

    When a value cannot be hashed, raises ``UnhashableInputError`` naming that parameter;
    ``kind`` is how the message calls it ("parameter", "flow parameter").
    """
    if (
        type(inputs) is dict
        and _STR.issuperset(map(type, inputs))
        and _SCALARS.issuperset(map(type, inputs.values()))
    ):
        try:
            return stable_hash(_encoder.encode(inputs))
        except (OverflowError, UnicodeEncodeError):
            pass

    def build(walker: _Canonicalizer) -> Any:
        canonical: dict[Any, Any] = {}
        for name, value in inputs.items():
            try:
                canonical[name] = walker.canon(value)
            except _Unhashable as exc:
                raise UnhashableInputError(
                    f"Cannot compute a cache key: {kind} {name!r} of type "
                    f"{_type_name(type(value))} cannot be hashed{_detail(value, exc)}. "
                    f"{_advice(kind, name)}"
                ) from None
            except RecursionError:
                raise UnhashableInputError(
                    f"Cannot compute a cache key: {kind} {name!r} of type "
                    f"{_type_name(type(value))} is nested too deeply or contains itself. "
                    f"{_advice(kind, name)}"
                ) from None
        if _STR.issuperset(map(type, canonical)):
            return canonical
        # Parameter names are strings; anything else still gets a deterministic order.
        pairs = sorted(([walker.encode(k), v] for k, v in canonical.items()), key=_first)
        return walker.ext(_H_MAP, pairs)

    return _digest(build)
