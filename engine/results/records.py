"""Result records and the user-facing result store: ``ResultRecord`` and ``ResultStore``.

A ``ResultRecord`` is a value with its metadata (storage key, expiration, serializer). A
``ResultStore`` writes records as files of its ``result_storage`` (one JSON document holding
the metadata and the serialized value, base64) and reads them back; with ``metadata_storage``
the metadata and the value are written to two storages under the same key. It is what
``transaction(key=..., store=...)`` stages values into, as in Prefect.

A file written by a run's ``persist_result`` holds the bare serialized value; reading one
falls back to the store's serializer, as Prefect's ``backup_serializer`` does.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import importlib.metadata
import os
import socket
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import anyio.to_thread
import msgspec

from millstream._engine.exceptions import ConfigurationError, SerializationError
from millstream._engine.results.base import Serializer, _type_name
from millstream._engine.results.serializers import resolve_serializer
from millstream._engine.results.storage import resolve_storage
from millstream._engine.settings import get_current_settings

R = TypeVar("R")

try:
    VERSION = importlib.metadata.version("millstream")
except importlib.metadata.PackageNotFoundError:  # a checkout that was never installed
    VERSION = "0+unknown"


def default_storage_key_fn() -> str:
    """A fresh random storage key (Prefect's ``DEFAULT_STORAGE_KEY_FN``)."""
    return uuid.uuid4().hex


def default_serializer() -> Serializer:
    """The serializer of the current settings (``results.default_serializer``)."""
    settings = get_current_settings().results
    return resolve_serializer(settings.default_serializer, pickle_fallback=settings.pickle_fallback)


def default_result_storage() -> Any:
    """Local storage under the current settings' ``results.local_storage_path``."""
    return resolve_storage(None, get_current_settings().results.local_storage_path)


class ResultRecordMetadata:
    """What is known about a stored value: its key, expiration and serializer."""

    def __init__(
        self,
        storage_key: str | None = None,
        expiration: dt.datetime | None = None,
        serializer: Serializer | str | None = None,
        prefect_version: str = VERSION,
        storage_block_id: uuid.UUID | None = None,
    ) -> None:
        self.storage_key = storage_key
        self.expiration = expiration
        self.serializer = _serializer(serializer)
        self.prefect_version = prefect_version
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
            prefect_version=data.get("prefect_version", VERSION),
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


_NO_LOCKS = (
    "Result store is not configured with a lock manager. Please set a lock manager when "
    "creating the result store to enable locking."
)


class ResultStore:
    """Stores and reads result records by key (Prefect's ``prefect.results.ResultStore``).

    ``result_storage``: a directory (``str`` or ``Path``) or a storage object with
    ``read_path``/``write_path`` (or ``read``/``write``); default: the settings' local
    storage. ``metadata_storage``: where metadata goes when kept apart from values.
    ``lock_manager``: needed for SERIALIZABLE transactions. ``serializer``: a name or object.
    """

    def __init__(
        self,
        result_storage: Any = None,
        metadata_storage: Any = None,
        lock_manager: Any = None,
        cache_result_in_memory: bool = True,
        serializer: Serializer | str | None = None,
        storage_key_fn: Callable[[], str] = default_storage_key_fn,
        cache: OrderedDict[str, ResultRecord[Any]] | None = None,
    ) -> None:
        self.result_storage = _storage(result_storage, "result_storage")
        self.metadata_storage = _storage(metadata_storage, "metadata_storage")
        self.lock_manager = lock_manager
        self.cache_result_in_memory = cache_result_in_memory
        self.serializer = _serializer(serializer)
        self.storage_key_fn = storage_key_fn
        self.cache: OrderedDict[str, ResultRecord[Any]] = (
            cache if cache is not None else OrderedDict()
        )

    # -- copying ---------------------------------------------------------------------------

    def model_copy(self, update: dict[str, Any] | None = None) -> ResultStore:
        """A copy with some attributes replaced (pydantic's name, as Prefect uses it)."""
        fields = {
            "result_storage": self.result_storage,
            "metadata_storage": self.metadata_storage,
            "lock_manager": self.lock_manager,
            "cache_result_in_memory": self.cache_result_in_memory,
            "serializer": self.serializer,
            "storage_key_fn": self.storage_key_fn,
        }
        fields.update(update or {})
        return ResultStore(**fields)

    def update_for_task(self, task: Any) -> ResultStore:
        """A copy using the task's result storage, serializer and in-memory choice."""
        return self._update_for(task)

    def update_for_flow(self, flow: Any) -> ResultStore:
        """A copy using the flow's result storage, serializer and in-memory choice."""
        return self._update_for(flow)

    async def aupdate_for_task(self, task: Any) -> ResultStore:
        """``update_for_task`` for async callers."""
        return self._update_for(task)

    async def aupdate_for_flow(self, flow: Any) -> ResultStore:
        """``update_for_flow`` for async callers."""
        return self._update_for(flow)

    def _update_for(self, owner: Any) -> ResultStore:
        update: dict[str, Any] = {}
        storage = getattr(owner, "result_storage", None)
        if storage is not None:
            update["result_storage"] = storage
        serializer = getattr(owner, "result_serializer", None)
        if serializer is not None:
            update["serializer"] = serializer
        update["cache_result_in_memory"] = getattr(owner, "cache_result_in_memory", True)
        return self.model_copy(update=update)

    @classmethod
    async def _from_metadata(cls, metadata: ResultRecordMetadata) -> ResultRecord[Any]:
        """The record ``metadata`` describes, read from the default storage."""
        store = cls(serializer=metadata.serializer)
        key = metadata.storage_key
        if key is None:
            raise ValueError("Result record metadata has no storage key")
        return await store.aread(key)

    # -- reading and writing ---------------------------------------------------------------

    @staticmethod
    def generate_default_holder() -> str:
        """A lock holder name for this host, process and thread (and asyncio task)."""
        name = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        try:
            import asyncio

            current = asyncio.current_task()
        except RuntimeError:
            current = None
        return f"{name}:{id(current)}" if current is not None else name

    def _result_storage(self) -> Any:
        if self.result_storage is None:
            self.result_storage = default_result_storage()
        return self.result_storage

    def exists(self, key: str) -> bool:
        """Whether a record is stored under ``key`` and has not expired."""
        try:
            if isinstance(self.metadata_storage, NullFileSystem):
                _read(self._result_storage(), key)
                return True
            if self.metadata_storage is not None:
                metadata = ResultRecordMetadata.load_bytes(_read(self.metadata_storage, key))
            else:
                raw = _read(self._result_storage(), key)
                metadata = ResultRecord.deserialize(raw, self.serializer).metadata
        except Exception:
            return False
        return metadata.expiration is None or metadata.expiration > _now()

    async def aexists(self, key: str) -> bool:
        """``exists`` on a worker thread."""
        return await anyio.to_thread.run_sync(self.exists, key)

    def read(self, key: str, holder: str | None = None) -> ResultRecord[Any]:
        """The record stored under ``key`` (waiting first if another holder has it locked)."""
        holder = holder or self.generate_default_holder()
        if self.lock_manager is not None and not self.is_lock_holder(key, holder):
            self.wait_for_lock(key)
        cached = self.cache.get(key)
        if cached is not None:
            if cached.expiration is None or cached.expiration > _now():
                return cached
            del self.cache[key]
        if self.metadata_storage is not None and not isinstance(
            self.metadata_storage, NullFileSystem
        ):
            meta = _read(self.metadata_storage, key)
            metadata = ResultRecordMetadata.load_bytes(meta)
            value = _read(self._result_storage(), metadata.storage_key or key)
            record = ResultRecord.deserialize_from_result_and_metadata(value, meta)
        else:
            record = ResultRecord.deserialize(_read(self._result_storage(), key), self.serializer)
        if self.cache_result_in_memory:
            self.cache[key] = record
        record.mark_persisted()
        return record

    async def aread(self, key: str, holder: str | None = None) -> ResultRecord[Any]:
        """``read`` on a worker thread."""
        holder = holder or self.generate_default_holder()
        return await anyio.to_thread.run_sync(self.read, key, holder)

    def create_result_record(
        self, obj: Any, key: str | None = None, expiration: dt.datetime | None = None
    ) -> ResultRecord[Any]:
        """A record of ``obj`` for this store (a fresh key when none is given); not written."""
        metadata = ResultRecordMetadata(
            storage_key=key or self.storage_key_fn(),
            expiration=expiration,
            serializer=self.serializer,
        )
        return ResultRecord(obj, metadata)

    def write(
        self,
        obj: Any,
        key: str | None = None,
        expiration: dt.datetime | None = None,
        holder: str | None = None,
    ) -> None:
        """Write ``obj`` as a record under ``key``."""
        record = self.create_result_record(obj, key=key, expiration=expiration)
        self.persist_result_record(record, holder=holder)

    async def awrite(
        self,
        obj: Any,
        key: str | None = None,
        expiration: dt.datetime | None = None,
        holder: str | None = None,
    ) -> None:
        """``write`` on a worker thread."""
        holder = holder or self.generate_default_holder()
        await anyio.to_thread.run_sync(lambda: self.write(obj, key, expiration, holder))

    def persist_result_record(
        self, result_record: ResultRecord[Any], holder: str | None = None
    ) -> None:
        """Write a record; ``RuntimeError`` when another holder has its key locked."""
        holder = holder or self.generate_default_holder()
        key = result_record.metadata.storage_key
        if key is None:
            raise ValueError("Storage key is required on result record")
        if (
            self.lock_manager is not None
            and self.is_locked(key)
            and not self.is_lock_holder(key, holder)
        ):
            raise RuntimeError(
                f"Cannot write to result record with key {key} because it is locked by "
                "another holder."
            )
        storage = self._result_storage()
        if isinstance(self.metadata_storage, NullFileSystem):
            _write(storage, key, result_record.serialize_result())  # the bare value
        elif self.metadata_storage is not None:
            _write(storage, key, result_record.serialize_result())
            _write(self.metadata_storage, key, result_record.serialize_metadata())
        else:
            _write(storage, key, result_record.serialize())
        result_record.mark_persisted()
        if self.cache_result_in_memory:
            self.cache[key] = result_record

    async def apersist_result_record(
        self, result_record: ResultRecord[Any], holder: str | None = None
    ) -> None:
        """``persist_result_record`` on a worker thread."""
        holder = holder or self.generate_default_holder()
        await anyio.to_thread.run_sync(self.persist_result_record, result_record, holder)

    # -- locking ---------------------------------------------------------------------------

    def supports_isolation_level(self, level: Any) -> bool:
        """READ_COMMITTED always; SERIALIZABLE with a lock manager."""
        name = getattr(level, "value", level)
        if name == "READ_COMMITTED":
            return True
        if name == "SERIALIZABLE":
            return self.lock_manager is not None
        raise ValueError(f"Unsupported isolation level: {level}")

    def _locks(self) -> Any:
        if self.lock_manager is None:
            raise ConfigurationError(_NO_LOCKS)
        return self.lock_manager

    def acquire_lock(
        self, key: str, holder: str | None = None, timeout: float | None = None
    ) -> bool:
        """Lock ``key`` for ``holder``; ``ConfigurationError`` without a lock manager."""
        return bool(
            self._locks().acquire_lock(key, holder or self.generate_default_holder(), timeout)
        )

    async def aacquire_lock(
        self, key: str, holder: str | None = None, timeout: float | None = None
    ) -> bool:
        """``acquire_lock`` without blocking the loop."""
        locks = self._locks()
        return bool(
            await locks.aacquire_lock(key, holder or self.generate_default_holder(), timeout)
        )

    def release_lock(self, key: str, holder: str | None = None) -> None:
        """Release ``holder``'s lock on ``key``."""
        self._locks().release_lock(key, holder or self.generate_default_holder())

    def is_locked(self, key: str) -> bool:
        """Whether ``key`` is locked."""
        return bool(self._locks().is_locked(key))

    def is_lock_holder(self, key: str, holder: str | None = None) -> bool:
        """Whether ``holder`` holds the lock on ``key``."""
        return bool(self._locks().is_lock_holder(key, holder or self.generate_default_holder()))

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until ``key`` is unlocked."""
        return bool(self._locks().wait_for_lock(key, timeout))

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """``wait_for_lock`` without blocking the loop."""
        return bool(await self._locks().await_for_lock(key, timeout))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResultStore):
            return NotImplemented
        return (
            self.result_storage == other.result_storage
            and self.metadata_storage == other.metadata_storage
            and self.lock_manager == other.lock_manager
            and self.serializer.type == other.serializer.type
            and self.cache_result_in_memory == other.cache_result_in_memory
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return (
            f"ResultStore(result_storage={self.result_storage!r}, "
            f"serializer={self.serializer!r}, lock_manager={self.lock_manager!r})"
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _storage(value: Any, name: str) -> Any:
    if value is None or isinstance(value, NullFileSystem):
        return value
    if isinstance(value, str | os.PathLike):
        return resolve_storage(Path(value), Path(value))
    if callable(getattr(value, "read_path", None)) or callable(getattr(value, "read", None)):
        return value
    raise TypeError(
        f"ResultStore({name}=...) takes a directory path or a storage object with read_path() "
        f"and write_path(), got {value!r}"
    )


def _read(storage: Any, key: str) -> bytes:
    read_path = getattr(storage, "_read_path_sync", None) or getattr(storage, "read_path", None)
    data = read_path(key) if callable(read_path) else storage.read(key)
    return bytes(data)


def _write(storage: Any, key: str, data: bytes) -> None:
    write_path = getattr(storage, "_write_path_sync", None) or getattr(storage, "write_path", None)
    if callable(write_path):
        write_path(key, data)
    else:
        storage.write(key, data)
