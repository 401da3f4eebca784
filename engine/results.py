"""Result serializers (msgspec msgpack by default, JSON, pickle) and local result storage.

The default encoding is type-faithful msgpack: plain data is msgspec's msgpack (decoding runs
no code); tuples, sets, dataclasses, Structs, enums, datetimes and the like are wrapped in
msgpack extension types naming their class, imported again on load. Values msgspec cannot
encode fall back to pickle (one tag byte says which) unless pickle is turned off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import importlib
import os
import pickle
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import msgspec

from engine.exceptions import SerializationError, StorageKeyError


class Serializer(Protocol):
    """Turns values into bytes and back."""

    type: str

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


_TAG_MSGPACK = b"m"
_TAG_PICKLE = b"p"
# Extension codes for values plain msgpack would not bring back as the same type.
_EXT_TUPLE, _EXT_SET, _EXT_FROZENSET, _EXT_OBJECT, _EXT_DATETIME, _EXT_UUID, _EXT_DECIMAL = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
)
_EXT_DATE, _EXT_TIME, _EXT_TIMEDELTA, _EXT_ENUM, _EXT_COMPLEX = 8, 9, 10, 11, 12


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _import(qualname: str) -> Any:
    module_name, _, attr = qualname.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class _Unsupported(Exception):
    pass


def _enc(value: Any) -> bytes:
    return _ext_encoder.encode(_prepare(value))


def _enc_hook(obj: Any) -> Any:
    enc = _enc
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return msgspec.msgpack.Ext(_EXT_TUPLE, enc(list(obj)))
    if isinstance(obj, frozenset):
        return msgspec.msgpack.Ext(_EXT_FROZENSET, enc(list(obj)))
    if isinstance(obj, set):
        return msgspec.msgpack.Ext(_EXT_SET, enc(list(obj)))
    if isinstance(obj, enum.Enum):
        return msgspec.msgpack.Ext(_EXT_ENUM, enc([_qualname(type(obj)), obj.value]))
    if isinstance(obj, dt.datetime):
        return msgspec.msgpack.Ext(_EXT_DATETIME, obj.isoformat().encode())
    if isinstance(obj, dt.date):
        return msgspec.msgpack.Ext(_EXT_DATE, obj.isoformat().encode())
    if isinstance(obj, dt.time):
        return msgspec.msgpack.Ext(_EXT_TIME, obj.isoformat().encode())
    if isinstance(obj, dt.timedelta):
        return msgspec.msgpack.Ext(_EXT_TIMEDELTA, enc([obj.days, obj.seconds, obj.microseconds]))
    if isinstance(obj, uuid.UUID):
        return msgspec.msgpack.Ext(_EXT_UUID, obj.bytes)
    if isinstance(obj, decimal.Decimal):
        return msgspec.msgpack.Ext(_EXT_DECIMAL, str(obj).encode())
    if isinstance(obj, complex):
        return msgspec.msgpack.Ext(_EXT_COMPLEX, enc([obj.real, obj.imag]))
    cls = type(obj)
    if (
        dataclasses.is_dataclass(obj) or isinstance(obj, msgspec.Struct) or hasattr(obj, "_fields")
    ) and ("<locals>" not in cls.__qualname__):
        if hasattr(obj, "_fields"):
            fields = dict(obj._asdict())
        elif dataclasses.is_dataclass(obj):
            fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        else:
            fields = {f: getattr(obj, f) for f in obj.__struct_fields__}
        return msgspec.msgpack.Ext(_EXT_OBJECT, enc([_qualname(cls), fields]))
    raise _Unsupported(cls)


def _ext_hook(code: int, data: memoryview) -> Any:
    dec = _ext_decoder.decode
    if code == _EXT_TUPLE:
        return tuple(dec(data))
    if code == _EXT_SET:
        return set(dec(data))
    if code == _EXT_FROZENSET:
        return frozenset(dec(data))
    if code == _EXT_ENUM:
        name, value = dec(data)
        return _import(name)(value)
    if code == _EXT_DATETIME:
        return dt.datetime.fromisoformat(bytes(data).decode())
    if code == _EXT_DATE:
        return dt.date.fromisoformat(bytes(data).decode())
    if code == _EXT_TIME:
        return dt.time.fromisoformat(bytes(data).decode())
    if code == _EXT_TIMEDELTA:
        days, seconds, micro = dec(data)
        return dt.timedelta(days=days, seconds=seconds, microseconds=micro)
    if code == _EXT_UUID:
        return uuid.UUID(bytes=bytes(data))
    if code == _EXT_DECIMAL:
        return decimal.Decimal(bytes(data).decode())
    if code == _EXT_COMPLEX:
        real, imag = dec(data)
        return complex(real, imag)
    if code == _EXT_OBJECT:
        name, fields = dec(data)
        return _import(name)(**fields)
    raise SerializationError(f"Unknown msgpack extension code {code} in a stored result")


# datetimes, UUIDs and decimals go through the hook (msgspec would write them as strings).
_ext_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook, decimal_format="number")
_ext_decoder = msgspec.msgpack.Decoder(ext_hook=_ext_hook)


def _prepare(obj: Any) -> Any:
    # msgspec encodes tuples, datetimes, UUIDs, dataclasses natively (losing their type on
    # decode); wrap them first so the hook sees them.
    cls = type(obj)
    if cls in (str, int, float, bool, bytes, type(None)):
        return obj
    if cls is list:
        return [_prepare(v) for v in obj]
    if cls is dict:
        return {k if type(k) is str else _prepare(k): _prepare(v) for k, v in obj.items()}
    try:
        return _enc_hook(obj) if not isinstance(obj, msgspec.msgpack.Ext) else obj
    except _Unsupported:
        return obj


class MsgpackSerializer:
    """The default: type-faithful msgpack through msgspec, with an optional pickle fallback."""

    type = "msgpack"

    def __init__(self, pickle_fallback: bool = True) -> None:
        self.pickle_fallback = pickle_fallback

    def dumps(self, obj: Any) -> bytes:
        try:
            return _TAG_MSGPACK + _ext_encoder.encode(_prepare(obj))
        except (_Unsupported, TypeError, OverflowError, ValueError) as exc:
            if not self.pickle_fallback:
                raise SerializationError(
                    f"Cannot persist a value of type {_describe(obj)} with msgpack ({exc}); "
                    "use result_serializer='pickle', or allow the pickle fallback "
                    "(MILLSTREAM_RESULTS_PICKLE=true)"
                ) from None
        return _TAG_PICKLE + PickleSerializer().dumps(obj)

    def loads(self, data: bytes) -> Any:
        tag, body = data[:1], data[1:]
        if tag == _TAG_MSGPACK:
            return _ext_decoder.decode(body)
        if tag == _TAG_PICKLE:
            return pickle.loads(body)
        raise SerializationError(f"Stored result has unknown encoding tag {tag!r}")


class JSONSerializer:
    """JSON through msgspec (values JSON cannot hold are refused, naming their type)."""

    type = "json"

    def dumps(self, obj: Any) -> bytes:
        try:
            return msgspec.json.encode(obj)
        except (TypeError, OverflowError, ValueError) as exc:
            raise SerializationError(
                f"Cannot persist a value of type {_describe(obj)} as JSON: {exc}"
            ) from None

    def loads(self, data: bytes) -> Any:
        return msgspec.json.decode(data)


class PickleSerializer:
    """The standard library's pickle."""

    type = "pickle"

    def dumps(self, obj: Any) -> bytes:
        try:
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise SerializationError(
                f"Cannot persist a value of type {_describe(obj)}: it cannot be pickled ({exc})"
            ) from None

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


def _describe(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


_BUILTIN: dict[str, type[Any]] = {
    "msgpack": MsgpackSerializer,
    "json": JSONSerializer,
    "pickle": PickleSerializer,
}


def resolve_serializer(value: Any, *, pickle_fallback: bool = True) -> Any:
    """A serializer from a name ("msgpack", "json", "pickle") or an object with dumps/loads."""
    if value is None or value == "msgpack":
        return MsgpackSerializer(pickle_fallback)
    if isinstance(value, str):
        cls = _BUILTIN.get(value)
        if cls is None:
            raise ValueError(
                f"Unknown result_serializer {value!r}; use one of {sorted(_BUILTIN)} or an "
                "object with dumps() and loads()"
            )
        return cls()
    if callable(getattr(value, "dumps", None)) and callable(getattr(value, "loads", None)):
        if not isinstance(getattr(value, "type", None), str):
            raise ValueError(f"Serializer {value!r} needs a string attribute 'type'")
        return value
    raise ValueError(
        f"result_serializer must be a name or an object with dumps() and loads(), got {value!r}"
    )


def validate_storage_key(key: str) -> str:
    """The key, if it stays inside its storage directory; ``StorageKeyError`` otherwise."""
    if not key or os.path.isabs(key) or key.startswith(("/", "\\")):
        raise StorageKeyError(f"Result storage key {key!r} must be a non-empty relative path")
    if ".." in Path(key).parts or ".." in key.replace("\\", "/").split("/"):
        raise StorageKeyError(f"Result storage key {key!r} must not contain '..'")
    return key


def render_storage_key(template: str, parameters: Mapping[str, Any]) -> str:
    """Render ``result_storage_key`` over the parameters (``{x}`` or ``{parameters[x]}``)."""
    try:
        key = template.format(**parameters, parameters=parameters)
    except (KeyError, IndexError) as exc:
        raise StorageKeyError(
            f"result_storage_key {template!r} refers to {exc}, which is not a parameter "
            f"(parameters: {sorted(parameters)})"
        ) from None
    return validate_storage_key(key)


class LocalFileSystem:
    """Results as files under one directory; writes are atomic (temp file, then rename)."""

    def __init__(self, basepath: str | os.PathLike[str]) -> None:
        self.basepath = Path(basepath).expanduser().absolute()

    def _path(self, key: str) -> Path:
        return self.basepath / validate_storage_key(key)

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"LocalFileSystem({str(self.basepath)!r})"


def resolve_storage(value: Any, default_dir: Path) -> LocalFileSystem:
    """Storage from ``result_storage``: a directory path, a storage object, or the default."""
    if value is None:
        return LocalFileSystem(default_dir)
    if isinstance(value, str | os.PathLike):
        return LocalFileSystem(value)
    if isinstance(value, LocalFileSystem):
        return value
    basepath = getattr(value, "basepath", None)
    if basepath is not None and callable(getattr(value, "write", None)):
        return value  # type: ignore[no-any-return]
    raise ValueError(
        f"result_storage must be a directory path or a storage object with basepath, "
        f"read() and write(), got {value!r}"
    )
