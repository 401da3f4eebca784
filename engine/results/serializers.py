"""The JSON and pickle serializers, and ``resolve_serializer`` (a name or an object to one)."""

from __future__ import annotations

import pickle
from typing import Any, ClassVar

import msgspec

from millstream._engine.exceptions import SerializationError
from millstream._engine.results.base import Serializer, _type_name
from millstream._engine.results.faithful import MsgpackSerializer

_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


class JSONSerializer(Serializer):
    """JSON through msgspec. Not type-faithful: tuples and sets come back as lists, datetimes,
    UUIDs and decimals as strings, dataclasses and Structs as dicts."""

    type: ClassVar[str] = "json"

    def dumps(self, obj: Any) -> bytes:
        """JSON bytes; ``SerializationError`` naming the type when JSON cannot hold ``obj``."""
        try:
            return _json_encoder.encode(obj)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise SerializationError(
                f"Cannot persist a result of type {_type_name(type(obj))} as JSON: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        """Decode JSON bytes."""
        try:
            return _json_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise SerializationError(f"Stored JSON result is corrupt: {exc}") from exc

    def __repr__(self) -> str:
        return "JSONSerializer()"


class PickleSerializer(Serializer):
    """The standard library's pickle (highest protocol). Loading runs arbitrary code."""

    type: ClassVar[str] = "pickle"

    def dumps(self, obj: Any) -> bytes:
        """Pickle bytes; ``SerializationError`` naming the type when ``obj`` cannot be pickled."""
        try:
            return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise SerializationError(
                f"Cannot persist a result of type {_type_name(type(obj))} with pickle: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        """Unpickle bytes."""
        return pickle.loads(data)

    def __repr__(self) -> str:
        return "PickleSerializer()"


_SERIALIZER_NAMES = ("json", "msgpack", "pickle")


def resolve_serializer(
    value: str | Serializer | None, *, pickle_fallback: bool = True
) -> Serializer:
    """The serializer for ``result_serializer``: a name, a serializer object, or None (msgpack).

    ``pickle_fallback`` applies to the msgpack serializer built from a name or None; a serializer
    object is used as it is.
    """
    if value is None or value == "msgpack":
        return MsgpackSerializer(pickle_fallback=pickle_fallback)
    if value == "json":
        return JSONSerializer()
    if value == "pickle":
        return PickleSerializer()
    if isinstance(value, str):
        raise ValueError(
            f"Unknown result_serializer {value!r}: use one of {', '.join(_SERIALIZER_NAMES)} "
            "or an object with dumps(), loads() and a string attribute 'type'"
        )
    if isinstance(value, type):
        raise ValueError(
            f"result_serializer {value.__qualname__} is a class: pass an instance, "
            f"e.g. {value.__qualname__}()"
        )
    if callable(getattr(value, "dumps", None)) and callable(getattr(value, "loads", None)):
        if not isinstance(getattr(value, "type", None), str):
            raise ValueError(
                f"result_serializer {value!r} needs a string attribute 'type' naming it "
                "(it is stored with each result)"
            )
        return value
    raise ValueError(
        f"result_serializer must be one of {', '.join(_SERIALIZER_NAMES)} or an object with "
        f"dumps() and loads(), got {value!r}"
    )
