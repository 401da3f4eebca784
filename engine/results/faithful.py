"""The default serializer: the type-faithful msgpack encoding and ``MsgpackSerializer``.

Encoding of ``MsgpackSerializer`` (the default): one tag byte, then the body.

* ``b"m"`` — msgspec msgpack. Plain data (``str``, ``int``, ``float``, ``bool``, ``None``,
  ``bytes``, ``list``, ``dict``) is ordinary msgpack. Values plain msgpack would bring back as
  another type are msgpack *extension* values whose payload is itself this encoding: tuples,
  sets, frozensets, dicts with non-scalar keys, datetimes, dates, times, timedeltas, UUIDs,
  decimals, complex numbers, bytearrays, integers beyond 64 bits (codes 1-13, rebuilt by builtin
  constructors only), and enums, dataclasses, msgspec Structs and named tuples (codes 20-23,
  which carry ``"module:QualName"``). Decoding runs no user code except for codes 20-23: those
  import the named module and rebuild the value, after checking that the name resolves to a class
  of the expected kind (an ``Enum`` is called with its value, a Struct with its fields, a
  dataclass is rebuilt like pickle does, without ``__init__``; a named tuple via ``_make``).
* ``b"p"`` — stdlib pickle of the whole value, when some part of it has no msgpack encoding
  (and the pickle fallback is on). Loading it runs arbitrary code, like any pickle.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import importlib
import pickle
import uuid
import weakref
import zoneinfo
from collections.abc import Callable
from typing import Any, ClassVar, cast

import msgspec

from millstream._engine.exceptions import SerializationError
from millstream._engine.results.base import Serializer, _type_name

_TAG_MSGPACK = b"m"
_TAG_PICKLE = b"p"

# Builtin types, rebuilt by builtin constructors (no import, no user code).
_EXT_TUPLE = 1
_EXT_SET = 2
_EXT_FROZENSET = 3
_EXT_DICT = 4  # a dict whose keys msgpack cannot hold as map keys: flat [k1, v1, k2, v2, ...]
_EXT_DATETIME = 5
_EXT_DATE = 6
_EXT_TIME = 7
_EXT_TIMEDELTA = 8
_EXT_UUID = 9
_EXT_DECIMAL = 10
_EXT_COMPLEX = 11
_EXT_BIGINT = 12
_EXT_BYTEARRAY = 13
# User classes, named "module:QualName" and imported on load.
_EXT_ENUM = 20
_EXT_DATACLASS = 21
_EXT_STRUCT = 22
_EXT_NAMEDTUPLE = 23

_Ext = msgspec.msgpack.Ext
_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})
_STR = frozenset({str})
_INT64_MIN = -(1 << 63)
_UINT64_MAX = (1 << 64) - 1


class _Unsupported(Exception):
    """A value inside the result that the msgpack encoding cannot hold (the pickle path may)."""

    def __init__(self, obj: Any) -> None:
        super().__init__(obj)
        self.obj = obj


def _class_ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import_class(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _pickles_by_state(cls: type) -> bool:
    """True when pickle would rebuild ``cls`` from its attributes (no custom pickling hooks)."""
    for name in ("__reduce__", "__reduce_ex__", "__getstate__", "__setstate__", "__getnewargs__"):
        attr = getattr(cls, name, None)
        # dataclass(slots=True) adds its own __getstate__/__setstate__, which do just that.
        if attr is None or attr is getattr(object, name, None):
            continue
        if getattr(attr, "__module__", None) == "dataclasses":
            continue
        return False
    return True


# Which extension code a user class is encoded with (None: not at all). Weak keys: classes made
# at runtime must stay collectable.
_class_codes: weakref.WeakKeyDictionary[type, int | None] = weakref.WeakKeyDictionary()


def _class_code(cls: type) -> int | None:
    try:
        return _class_codes[cls]
    except KeyError:
        pass
    code: int | None = None
    if issubclass(cls, enum.Enum):
        code = _EXT_ENUM
    elif issubclass(cls, msgspec.Struct):
        code = _EXT_STRUCT
    elif dataclasses.is_dataclass(cls) and _pickles_by_state(cls):
        code = _EXT_DATACLASS
    elif issubclass(cls, tuple) and hasattr(cls, "_fields") and hasattr(cls, "_make"):
        code = _EXT_NAMEDTUPLE
    if code is not None:
        # Only classes a later process can find again by name (not local or shadowed ones).
        try:
            if _import_class(_class_ref(cls)) is not cls:
                code = None
        except Exception:
            code = None
    _class_codes[cls] = code
    return code


def _encode_ext(obj: Any, big: bool) -> bytes:
    return _encoder.encode(_prepare(obj, big))


def _prepare(obj: Any, big: bool) -> Any:
    """``obj`` as msgspec-native values and extension values (see the module docstring).

    ``big`` is the slow mode used after msgspec overflowed: integers are range-checked one by one
    instead of passing lists and dicts of scalars through untouched.
    """
    cls = type(obj)
    if cls in _SCALARS:
        if big and cls is int and not _INT64_MIN <= obj <= _UINT64_MAX:
            return _Ext(_EXT_BIGINT, obj.to_bytes((obj.bit_length() + 8) // 8, "big", signed=True))
        return obj
    if cls is list:
        # Lists of scalars are the common bulky case: checked in C, passed through as they are.
        if not big and _SCALARS.issuperset(map(type, obj)):
            return obj
        return [_prepare(v, big) for v in obj]
    if cls is dict:
        if _STR.issuperset(map(type, obj)) or (not big and _SCALARS.issuperset(map(type, obj))):
            if not big and _SCALARS.issuperset(map(type, obj.values())):
                return obj
            return {k: _prepare(v, big) for k, v in obj.items()}
        flat = [_prepare(x, big) for item in obj.items() for x in item]
        return _Ext(_EXT_DICT, _encoder.encode(flat))
    if cls is tuple:
        return _Ext(_EXT_TUPLE, _encode_ext(list(obj), big))
    if cls is set:
        return _Ext(_EXT_SET, _encode_ext(list(obj), big))
    if cls is frozenset:
        return _Ext(_EXT_FROZENSET, _encode_ext(list(obj), big))
    if cls is dt.datetime:
        tz = obj.tzinfo
        if tz is None or type(tz) is dt.timezone:
            return _Ext(_EXT_DATETIME, _encoder.encode([obj.isoformat(), obj.fold, None]))
        if type(tz) is zoneinfo.ZoneInfo and tz.key is not None:
            # Keep the zone, not just today's offset: wall time, fold and zone key.
            wall = obj.replace(tzinfo=None).isoformat()
            return _Ext(_EXT_DATETIME, _encoder.encode([wall, obj.fold, tz.key]))
        raise _Unsupported(obj)
    if cls is dt.date:
        return _Ext(_EXT_DATE, obj.isoformat().encode())
    if cls is dt.time:
        if obj.tzinfo is None or type(obj.tzinfo) is dt.timezone:
            return _Ext(_EXT_TIME, _encoder.encode([obj.isoformat(), obj.fold]))
        raise _Unsupported(obj)
    if cls is dt.timedelta:
        return _Ext(_EXT_TIMEDELTA, _encoder.encode([obj.days, obj.seconds, obj.microseconds]))
    if cls is uuid.UUID:
        return _Ext(_EXT_UUID, obj.bytes)
    if cls is decimal.Decimal:
        return _Ext(_EXT_DECIMAL, str(obj).encode())
    if cls is complex:
        return _Ext(_EXT_COMPLEX, _encoder.encode([obj.real, obj.imag]))
    if cls is bytearray:
        return _Ext(_EXT_BYTEARRAY, bytes(obj))
    code = _class_code(cls)
    if code is None:
        raise _Unsupported(obj)
    ref = _class_ref(cls)
    if code == _EXT_ENUM:
        payload: Any = [ref, _prepare(obj.value, big)]
    elif code == _EXT_STRUCT:
        payload = [ref, {f: _prepare(getattr(obj, f), big) for f in obj.__struct_fields__}]
    elif code == _EXT_DATACLASS:
        # The instance's full state, as pickle would keep it (attributes set in __post_init__
        # included); slotted dataclasses have no __dict__, only their fields.
        state = getattr(obj, "__dict__", None)
        if state is None:
            state = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        payload = [ref, {k: _prepare(v, big) for k, v in state.items()}]
    else:
        payload = [ref, [_prepare(v, big) for v in obj]]
    return _Ext(code, _encoder.encode(payload))


def _user_class(ref: str, check: Callable[[Any], bool], kind: str) -> Any:
    try:
        cls = _import_class(ref)
    except Exception as exc:
        raise SerializationError(
            f"Stored result refers to {kind} {ref!r}, which cannot be imported: {exc}"
        ) from exc
    # Refuse names that do not resolve to the kind of class they were written as: the payload
    # must never make us call an arbitrary callable.
    if not (isinstance(cls, type) and check(cls)):
        raise SerializationError(f"Stored result refers to {ref!r}, which is not a {kind}")
    return cls


def _is_dataclass_type(cls: type) -> bool:
    return dataclasses.is_dataclass(cls)


def _is_namedtuple_type(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_make")


def _is_struct_type(cls: type) -> bool:
    return issubclass(cls, msgspec.Struct)


def _is_enum_type(cls: type) -> bool:
    return issubclass(cls, enum.Enum)


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == _EXT_TUPLE:
        return tuple(_decoder.decode(data))
    if code == _EXT_SET:
        return set(_decoder.decode(data))
    if code == _EXT_FROZENSET:
        return frozenset(_decoder.decode(data))
    if code == _EXT_DICT:
        flat = _decoder.decode(data)
        return dict(zip(flat[::2], flat[1::2], strict=True))
    if code == _EXT_DATETIME:
        text, fold, zone = _decoder.decode(data)
        value = dt.datetime.fromisoformat(text).replace(fold=fold)
        return value if zone is None else value.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    if code == _EXT_DATE:
        return dt.date.fromisoformat(bytes(data).decode())
    if code == _EXT_TIME:
        text, fold = _decoder.decode(data)
        return dt.time.fromisoformat(text).replace(fold=fold)
    if code == _EXT_TIMEDELTA:
        days, seconds, micro = _decoder.decode(data)
        return dt.timedelta(days=days, seconds=seconds, microseconds=micro)
    if code == _EXT_UUID:
        return uuid.UUID(bytes=bytes(data))
    if code == _EXT_DECIMAL:
        return decimal.Decimal(bytes(data).decode())
    if code == _EXT_COMPLEX:
        real, imag = _decoder.decode(data)
        return complex(real, imag)
    if code == _EXT_BIGINT:
        return int.from_bytes(data, "big", signed=True)
    if code == _EXT_BYTEARRAY:
        return bytearray(data)
    if code == _EXT_ENUM:
        ref, value = _decoder.decode(data)
        return _user_class(ref, _is_enum_type, "Enum")(value)
    if code == _EXT_STRUCT:
        ref, fields = _decoder.decode(data)
        return _user_class(ref, _is_struct_type, "msgspec Struct")(**fields)
    if code == _EXT_DATACLASS:
        ref, state = _decoder.decode(data)
        cls = _user_class(ref, _is_dataclass_type, "dataclass")
        # As pickle does: a bare instance and its attributes, no __init__ or __post_init__.
        instance = cls.__new__(cls)
        for name, value in state.items():
            object.__setattr__(instance, name, value)
        return instance
    if code == _EXT_NAMEDTUPLE:
        ref, values = _decoder.decode(data)
        return _user_class(ref, _is_namedtuple_type, "named tuple")._make(values)
    raise SerializationError(f"Stored result holds unknown msgpack extension code {code}")


# One encoder and decoder per process: building them per call would cost more than small values
# take to encode.
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


def _no_msgpack_reason(obj: Any, inner: Any) -> str:
    if inner is obj:
        return "msgpack has no encoding for that type"
    return f"it contains a value of type {_type_name(type(inner))}, which msgpack cannot encode"


# Encodings larger than this stay in the bytearray they were encoded into (see _tagged).
_ONE_BUFFER_BYTES = 1 << 20


def _tagged(tag: bytes, prepared: Any) -> bytes:
    # Encoded straight after the tag in one buffer: a large result is held once more while it
    # is encoded, not twice (tag + body would copy the body). A large one is returned as that
    # bytearray (bytes-like: it is only ever written to a file, never inlined or journaled,
    # both of which take at most inline_max_bytes); a small one as real bytes.
    buf = bytearray(tag)
    _encoder.encode_into(prepared, buf, len(tag))
    if len(buf) <= _ONE_BUFFER_BYTES:
        return bytes(buf)
    return cast(bytes, buf)


def try_msgpack(obj: Any) -> tuple[bytes | None, str]:
    """``(the msgpack encoding (tag byte and body), "")``, or ``(None, why msgpack cannot hold
    obj)``."""
    try:
        try:
            return _tagged(_TAG_MSGPACK, _prepare(obj, False)), ""
        except OverflowError:
            # An integer beyond 64 bits somewhere: walk again, checking every integer.
            return _tagged(_TAG_MSGPACK, _prepare(obj, True)), ""
    except _Unsupported as exc:
        return None, _no_msgpack_reason(obj, exc.obj)
    except RecursionError:
        return None, "it is nested too deeply or refers to itself"
    except (TypeError, ValueError, OverflowError) as exc:
        return None, f"msgpack cannot encode it: {exc}"


class MsgpackSerializer(Serializer):
    """The default serializer: type-faithful msgspec msgpack, with an optional pickle fallback.

    ``pickle_fallback=False`` refuses values msgpack cannot hold, with a ``SerializationError``
    that names the type, instead of pickling them.
    """

    type: ClassVar[str] = "msgpack"

    def __init__(self, pickle_fallback: bool = True) -> None:
        self.pickle_fallback = pickle_fallback

    def dumps(self, obj: Any) -> bytes:
        """Tag byte and msgpack body; tag byte and pickle when msgpack cannot hold ``obj``."""
        encoded, reason = try_msgpack(obj)
        if encoded is not None:
            return encoded
        if not self.pickle_fallback:
            raise SerializationError(
                f"Cannot persist a result of type {_type_name(type(obj))} with the msgpack "
                f"serializer: {reason}. Set result_serializer='pickle', or allow the pickle "
                "fallback with MILLSTREAM_RESULTS_PICKLE=true."
            )
        try:
            return _TAG_PICKLE + pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise SerializationError(
                f"Cannot persist a result of type {_type_name(type(obj))}: {reason}, and it "
                f"cannot be pickled either ({exc})"
            ) from exc

    def loads(self, data: bytes) -> Any:
        """Decode either body, by its tag byte."""
        tag, body = data[:1], memoryview(data)[1:]
        if tag == _TAG_MSGPACK:
            try:
                return _decoder.decode(body)
            except msgspec.DecodeError as exc:
                raise SerializationError(f"Stored msgpack result is corrupt: {exc}") from exc
        if tag == _TAG_PICKLE:
            return pickle.loads(body)
        raise SerializationError(f"Stored result has unknown encoding tag {bytes(tag)!r}")

    def __repr__(self) -> str:
        return f"MsgpackSerializer(pickle_fallback={self.pickle_fallback!r})"
