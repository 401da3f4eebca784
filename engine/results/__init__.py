"""Result serializers (type-faithful msgpack, JSON, pickle) and local result storage."""

# ``os`` stays reachable as ``engine.results.os``: tests patch ``results.os`` functions.
import os as os

from engine.results.faithful import (
    JSONSerializer,
    LocalFileSystem,
    MsgpackSerializer,
    PickleSerializer,
    ResultStorage,
    Serializer,
    render_storage_key,
    resolve_serializer,
    resolve_storage,
    validate_storage_key,
)

__all__ = [
    "JSONSerializer",
    "LocalFileSystem",
    "MsgpackSerializer",
    "PickleSerializer",
    "ResultStorage",
    "Serializer",
    "render_storage_key",
    "resolve_serializer",
    "resolve_storage",
    "validate_storage_key",
]
