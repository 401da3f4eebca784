"""``ResultStore``: writes result records as files of its ``result_storage`` and reads them back
(Prefect's ``prefect.results.ResultStore``); with ``metadata_storage`` the metadata and the value
go to two storages under one key. ``transaction(key=..., store=...)`` stages values into one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread

from millstream._engine.exceptions import ConfigurationError
from millstream._engine.results.base import Serializer
from millstream._engine.results.records import (
    NullFileSystem,
    ResultRecord,
    ResultRecordMetadata,
    _now,
    _serializer,
    default_result_storage,
    default_storage_key_fn,
)
from millstream._engine.results.storage import resolve_storage

__all__ = ["ResultStore"]


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
            # A saved block's id, as Prefect records it (None for unsaved storage).
            storage_block_id=getattr(self._result_storage(), "_block_document_id", None),
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
