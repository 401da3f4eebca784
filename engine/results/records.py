"""Result records: ``ResultRecord`` (a value with its metadata: storage key, expiration,
serializer) and ``ResultRecordMetadata``, serialized as one JSON document (the value base64);
``NullFileSystem``; the defaults a ``ResultStore`` (``result_store``) starts from.

A file written by a run's ``persist_result`` holds the bare serialized value; reading one
falls back to the given serializer, as Prefect's ``backup_serializer`` does.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import uuid
from typing import Any, Generic, TypeVar

import msgspec

from millstream._engine.exceptions import SerializationError
from millstream._engine.results.base import Serializer, _type_name
from millstream._engine.results.serializers import resolve_serializer
from millstream._engine.results.storage import resolve_storage
from millstream._engine.settings import get_current_settings

R = TypeVar("R")


@functools.cache
def millstream_version() -> str:
    """The installed distribution's version (read once, when a record first needs it:
    importlib.metadata costs milliseconds at import)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("millstream")
    except importlib.metadata.PackageNotFoundError:  # a checkout that was never installed
        return "0+unknown"


def default_storage_key_fn() -> str:
    """A fresh random storage key (Prefect's ``DEFAULT_STORAGE_KEY_FN``)."""
    return uuid.uuid4().hex


def default_serializer() -> Serializer:
    """The serializer of the current settings (``results.default_serializer``)."""
    settings = get_current_settings().results
    return resolve_serializer(settings.default_serializer, pickle_fallback=settings.pickle_fallback)


def default_result_storage() -> Any:
    """The default storage: the saved block ``results.default_storage_block`` names, else
    local storage under ``results.local_storage_path``."""
    from millstream._engine.results.blocks import default_storage_from_block

    settings = get_current_settings()
    if settings.results.default_storage_block:
        return default_storage_from_block(settings.home, settings.results.default_storage_block)
    return resolve_storage(None, settings.results.local_storage_path)


class ResultRecordMetadata:
    """What is known about a stored value: its key, expiration and serializer."""

    def __init__(
        self,
        storage_key: str | None = None,
        expiration: dt.datetime | None = None,
        serializer: Serializer | str | None = None,
        prefect_version: str | None = None,
        storage_block_id: uuid.UUID | None = None,
    ) -> None:
        self.storage_key = storage_key
        self.expiration = expiration
        self.serializer = _serializer(serializer)
        self.prefect_version = millstream_version() if prefect_version is None else prefect_version
        self.storage_block_id = storage_block_id

    def to_dict(self) -> dict[str, Any]:
        """The metadata as JSON-ready values."""
        return {
            "storage_key": self.storage_key,
            "expiration": None if self.expiration is None else self.expiration.isoformat(),
            "serializer": {"type": self.serializer.type},
            "prefect_version": self.prefect_version,
            "storage_block_id": None
            if self.storage_block_id is None
            else str(self.storage_block_id),
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], backup_serializer: Serializer | None = None
    ) -> ResultRecordMetadata:
        """Metadata from ``to_dict``'s shape; ``backup_serializer`` stands in for a serializer
        this process cannot resolve by name when its ``type`` matches."""
        kind = (data.get("serializer") or {}).get("type", "pickle")
        serializer: Serializer
        if backup_serializer is not None and backup_serializer.type == kind:
            serializer = backup_serializer
        else:
            try:
                serializer = resolve_serializer(kind)
            except ValueError:
                raise SerializationError(
                    f"Result record was written with serializer {kind!r}, which this process "
                    "cannot resolve; pass a ResultStore(serializer=...) of that type"
                ) from None
        expiration = data.get("expiration")
        block_id = data.get("storage_block_id")
        return cls(
            storage_key=data.get("storage_key"),
            expiration=None if expiration is None else dt.datetime.fromisoformat(expiration),
            serializer=serializer,
            prefect_version=data.get("prefect_version") or millstream_version(),
            storage_block_id=None if block_id is None else uuid.UUID(block_id),
        )

    def dump_bytes(self) -> bytes:
        """The metadata as JSON bytes."""
        return msgspec.json.encode(self.to_dict())

    @classmethod
    def load_bytes(cls, data: bytes) -> ResultRecordMetadata:
        """Metadata from ``dump_bytes``."""
        return cls.from_dict(msgspec.json.decode(data))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResultRecordMetadata):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.storage_key, self.expiration, self.serializer.type))

    def __repr__(self) -> str:
        return (
            f"ResultRecordMetadata(storage_key={self.storage_key!r}, "
            f"expiration={self.expiration!r}, serializer={self.serializer!r})"
        )


def _serializer(value: Serializer | str | None) -> Serializer:
    if value is None:
        return default_serializer()
    return resolve_serializer(value)


class ResultRecord(Generic[R]):
    """A result with its metadata: ``.result`` is the value, ``.metadata`` where it lives."""

    def __init__(self, result: R, metadata: ResultRecordMetadata | None = None) -> None:
        self.result = result
        self.metadata = metadata if metadata is not None else ResultRecordMetadata()
        self._persisted = False

    @property
    def is_persisted(self) -> bool:
        """Whether the record was written to (or read from) storage."""
        return self._persisted

    def mark_persisted(self) -> None:
        """Note that the record is in storage."""
        self._persisted = True

    @property
    def expiration(self) -> dt.datetime | None:
        """When the record stops counting as present (None: never)."""
        return self.metadata.expiration

    @property
    def serializer(self) -> Serializer:
        """The serializer of the value."""
        return self.metadata.serializer

    def serialize_result(self) -> bytes:
        """The value alone, serialized; ``SerializationError`` naming its type when it cannot."""
        try:
            return self.serializer.dumps(self.result)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"Failed to serialize object of type {_type_name(type(self.result))!r} with "
                f"serializer {self.serializer.type!r}. You can try a different serializer "
                '(e.g. result_serializer="json") or disabling persistence (persist_result=False).'
            ) from exc

    def serialize_metadata(self) -> bytes:
        """The metadata alone, as JSON bytes."""
        return self.metadata.dump_bytes()

    def serialize(self) -> bytes:
        """The whole record (metadata and value) as JSON bytes."""
        data = base64.b64encode(self.serialize_result()).decode("ascii")
        return msgspec.json.encode({"metadata": self.metadata.to_dict(), "result": data})

    @classmethod
    def deserialize(
        cls, data: bytes, backup_serializer: Serializer | None = None
    ) -> ResultRecord[Any]:
        """A record from ``serialize``'s bytes; bytes that are not a record are decoded with
        ``backup_serializer`` (a value written by a run's ``persist_result``)."""
        try:
            doc = msgspec.json.decode(data)
            if not isinstance(doc, dict) or not {"metadata", "result"} <= doc.keys():
                raise ValueError("not a result record")
            payload = base64.b64decode(doc["result"], validate=True)
        except (msgspec.DecodeError, ValueError, TypeError, binascii.Error):
            if backup_serializer is None:
                raise SerializationError(
                    "Stored bytes are not a result record and no serializer was given to read them"
                ) from None
            value = backup_serializer.loads(data)
            return cls(value, ResultRecordMetadata(serializer=backup_serializer))
        metadata = ResultRecordMetadata.from_dict(doc["metadata"], backup_serializer)
        return cls(metadata.serializer.loads(payload), metadata)

    @classmethod
    def deserialize_from_result_and_metadata(
        cls, result: bytes, metadata: bytes
    ) -> ResultRecord[Any]:
        """A record from a value and its metadata stored apart."""
        meta = ResultRecordMetadata.load_bytes(metadata)
        return cls(meta.serializer.loads(result), meta)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResultRecord):
            return False
        return bool(self.metadata == other.metadata and self.result == other.result)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return f"ResultRecord(metadata={self.metadata!r}, result={self.result!r})"


class NullFileSystem:
    """A storage that keeps nothing: as a ``metadata_storage``, results are written bare (no
    metadata), as Prefect's ``NullFileSystem``."""

    def read_path(self, path: str) -> None:
        """Nothing is stored."""
        return None

    def write_path(self, path: str, content: bytes) -> None:
        """Keeps nothing."""
        return None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NullFileSystem)

    def __hash__(self) -> int:
        return hash(NullFileSystem)

    def __repr__(self) -> str:
        return "NullFileSystem()"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
