"""Result serializers (type-faithful msgpack, JSON, pickle) and local result storage."""

# Modules, each importing only those before it: base (the Serializer protocol, type names for
# errors), faithful (the type-faithful msgpack encoding, MsgpackSerializer), serializers (JSON,
# pickle, resolve_serializer), keys (storage key templates and validation), storage
# (ResultStorage, LocalFileSystem, resolve_storage), records (ResultRecord and its metadata),
# result_store (ResultStore, as Prefect's), locking (lock managers for SERIALIZABLE).

# ``os`` stays reachable as ``millstream._engine.results.os``: tests patch ``results.os`` functions.
import os as os

from millstream._engine.results.base import Serializer
from millstream._engine.results.faithful import MsgpackSerializer
from millstream._engine.results.keys import render_storage_key, validate_storage_key
from millstream._engine.results.serializers import (
    JSONSerializer,
    PickleSerializer,
    resolve_serializer,
)
from millstream._engine.results.storage import LocalFileSystem, ResultStorage, resolve_storage

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
