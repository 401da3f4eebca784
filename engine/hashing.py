"""Deterministic hashing of task inputs for cache keys: the same inputs give the same key in any
process and Python run (``PYTHONHASHSEED`` does not matter)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import pickle
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from engine.exceptions import UnhashableInputError


class _Unhashable(Exception):
    def __init__(self, obj: Any) -> None:
        super().__init__(obj)
        self.obj = obj


def _canonical(obj: Any) -> Any:
    """A form of ``obj`` that msgspec encodes the same way every time."""
    cls = type(obj)
    if cls in (str, int, float, bool, bytes, type(None)):
        return obj
    if cls is list or cls is tuple:
        return [cls.__name__, [_canonical(v) for v in obj]]
    if isinstance(obj, Mapping):
        items = [(_encode(_canonical(k)), _canonical(v)) for k, v in obj.items()]
        return ["dict", sorted(items, key=lambda kv: kv[0])]
    if isinstance(obj, set | frozenset):
        # Set iteration order follows string hashes, which change per process: sort encodings.
        return [cls.__name__, sorted(_encode(_canonical(v)) for v in obj)]
    if isinstance(obj, enum.Enum):
        return ["enum", f"{cls.__module__}.{cls.__qualname__}", _canonical(obj.value)]
    if isinstance(obj, dt.datetime | dt.date | dt.time):
        return [cls.__name__, obj.isoformat()]
    if isinstance(obj, dt.timedelta | uuid.UUID | decimal.Decimal):
        return [cls.__name__, str(obj)]
    if isinstance(obj, msgspec.Struct):
        fields = {f: getattr(obj, f) for f in obj.__struct_fields__}
        return ["struct", f"{cls.__module__}.{cls.__qualname__}", _canonical(fields)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return ["dataclass", f"{cls.__module__}.{cls.__qualname__}", _canonical(fields)]
    if isinstance(obj, tuple):  # named tuples
        return [f"{cls.__module__}.{cls.__qualname__}", [_canonical(v) for v in obj]]
    if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__")):
        return ["ref", f"{getattr(obj, '__module__', '')}.{obj.__qualname__}"]
    try:
        data = pickle.dumps(obj, protocol=4)
    except Exception as exc:
        raise _Unhashable(obj) from exc
    return ["pickle", f"{cls.__module__}.{cls.__qualname__}", data]


_encoder = msgspec.msgpack.Encoder()


def _encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


def stable_hash(*parts: str | bytes, size: int | None = None) -> str:
    """A hex digest of the parts (blake2b), optionally shortened to ``size`` characters."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    text = digest.hexdigest()
    return text[:size] if size else text


def hash_objects(*objs: Any) -> str:
    """A deterministic hash of the objects; ``UnhashableInputError`` when one cannot be hashed."""
    try:
        return stable_hash(_encode([_canonical(o) for o in objs]))
    except _Unhashable as exc:
        raise UnhashableInputError(
            f"Cannot compute a cache key: a value of type {type(exc.obj).__qualname__} "
            "cannot be hashed"
        ) from None


def hash_inputs(inputs: Mapping[str, Any]) -> str:
    """A deterministic hash of a parameter mapping, naming the parameter that cannot be hashed."""
    parts = []
    for name in sorted(inputs):
        try:
            parts.append([name, _canonical(inputs[name])])
        except _Unhashable as exc:
            raise UnhashableInputError(
                f"Cannot compute a cache key: parameter {name!r} of type "
                f"{type(exc.obj).__module__}.{type(exc.obj).__qualname__} cannot be hashed. "
                f"Exclude it with cache_policy=INPUTS - {name!r} or give a cache_key_fn."
            ) from None
    return stable_hash(_encode(parts))
