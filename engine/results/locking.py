"""Locks on result records for SERIALIZABLE transactions: ``MemoryLockManager`` (one process)
and ``FileSystemLockManager`` (lock files, shared by processes).

A lock is held by a named holder; the same holder may take it again. ``hold_timeout`` bounds
how long a lock stays held: it is checked whenever the lock is looked at (no timer thread),
so an expired lock is free to the next caller. Waiting is on one condition variable shared by
all keys; locks are taken and released rarely compared with how long they are held.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol

import anyio.to_thread


class LockManager(Protocol):
    """What a result store needs from a lock manager (Prefect's ``LockManager`` protocol)."""

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take the lock on ``key`` for ``holder``; False when ``acquire_timeout`` ran out."""
        ...

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """``acquire_lock`` without blocking the event loop (by default on a worker thread)."""
        return await anyio.to_thread.run_sync(
            self.acquire_lock, key, holder, acquire_timeout, hold_timeout
        )

    def release_lock(self, key: str, holder: str) -> None:
        """Release the lock; ``ValueError`` when ``holder`` does not hold it."""
        ...

    def is_locked(self, key: str) -> bool:
        """Whether anyone holds the lock on ``key``."""
        ...

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether ``holder`` holds the lock on ``key``."""
        ...

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until ``key`` is free; False when ``timeout`` ran out first."""
        ...

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """``wait_for_lock`` without blocking the event loop (by default on a worker thread)."""
        return await anyio.to_thread.run_sync(self.wait_for_lock, key, timeout)


class MemoryLockManager(LockManager):
    """Locks held in this process's memory: one instance per process, as in Prefect.

    Not shared with other processes; for those, give transactions a store whose records they
    do not race for, or run them in one process.
    """

    _instance: ClassVar[MemoryLockManager | None] = None
    _guard: ClassVar[threading.Lock] = threading.Lock()

    _cond: threading.Condition
    _locks: dict[str, tuple[str, float | None]]

    def __new__(cls, *args: Any, **kwargs: Any) -> MemoryLockManager:
        with cls._guard:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._cond = threading.Condition()
                instance._locks = {}
                cls._instance = instance
            return cls._instance

    def _holder_of(self, key: str) -> str | None:
        """The live holder of ``key`` (an expired lock is dropped). Call under ``_cond``."""
        entry = self._locks.get(key)
        if entry is None:
            return None
        holder, expires = entry
        if expires is not None and time.monotonic() >= expires:
            del self._locks[key]
            self._cond.notify_all()
            return None
        return holder

    def _wait(self, free: Any, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not free():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            # Wake at least every 0.1 s: an expiring lock notifies nobody.
            self._cond.wait(0.1 if remaining is None else min(remaining, 0.1))
        return True

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take the lock on ``key`` for ``holder`` (again, if it holds it already)."""
        with self._cond:
            if not self._wait(lambda: self._holder_of(key) in (None, holder), acquire_timeout):
                return False
            expires = None if hold_timeout is None else time.monotonic() + hold_timeout
            self._locks[key] = (holder, expires)
            return True

    def release_lock(self, key: str, holder: str) -> None:
        """Release; ``ValueError`` naming the holder and key when it does not hold the lock."""
        with self._cond:
            if self._holder_of(key) != holder:
                raise ValueError(f"No lock held by {holder} for transaction with key {key}")
            del self._locks[key]
            self._cond.notify_all()

    def is_locked(self, key: str) -> bool:
        """Whether anyone holds the lock on ``key``."""
        with self._cond:
            return self._holder_of(key) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether ``holder`` holds the lock on ``key``."""
        with self._cond:
            return self._holder_of(key) == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until nobody holds ``key``; False when ``timeout`` ran out first."""
        with self._cond:
            return self._wait(lambda: self._holder_of(key) is None, timeout)

    def __repr__(self) -> str:
        return "MemoryLockManager()"


class FileSystemLockManager(LockManager):
    """Locks as files in ``lock_files_directory`` (``<key>.lock``, holding the holder and when
    the lock expires): shared by every process that uses the directory. Waiting polls the file
    every 50 ms; a lock whose ``hold_timeout`` passed is taken over."""

    _POLL = 0.05

    def __init__(self, lock_files_directory: str | os.PathLike[str]) -> None:
        self.lock_files_directory = Path(lock_files_directory).expanduser().absolute()

    def _path(self, key: str) -> Path:
        if not key or "/" in key or "\\" in key or key.startswith("."):
            # Keys become file names: hash the ones that cannot be one.
            key = hashlib.sha256(key.encode()).hexdigest()
        return self.lock_files_directory / f"{key}.lock"

    def _read(self, key: str) -> tuple[str, float | None] | None:
        try:
            info = json.loads(self._path(key).read_text())
        except (FileNotFoundError, ValueError):
            return None
        expires = info.get("expiration")
        if expires is not None and time.time() >= expires:
            return None
        return str(info.get("holder")), expires

    def _poll(self, done: Callable[[], bool], timeout: float | None) -> bool:
        """Check ``done`` every ``_POLL`` seconds; False when ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(self._POLL)
        return True

    def _try_take(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        current = self._read(key)
        if current is not None and current[0] != holder:
            return False
        self.lock_files_directory.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        expires = None if hold_timeout is None else time.time() + hold_timeout
        doc = json.dumps({"holder": holder, "expiration": expires}).encode()
        if current is None:
            path.unlink(missing_ok=True)  # an expired lock (or none)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return False  # another process took it first
            with os.fdopen(fd, "wb") as handle:
                handle.write(doc)
            return True
        path.write_bytes(doc)
        return True

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take the lock file for ``holder``, waiting up to ``acquire_timeout`` seconds."""
        return self._poll(lambda: self._try_take(key, holder, hold_timeout), acquire_timeout)

    def release_lock(self, key: str, holder: str) -> None:
        """Remove the lock file; ``ValueError`` when ``holder`` does not hold the lock."""
        current = self._read(key)
        if current is None:
            raise ValueError(f"No lock for transaction with key {key}")
        if current[0] != holder:
            raise ValueError(f"No lock held by {holder} for transaction with key {key}")
        self._path(key).unlink(missing_ok=True)

    def is_locked(self, key: str) -> bool:
        """Whether a live lock file exists for ``key``."""
        return self._read(key) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether ``holder`` holds the lock on ``key``."""
        current = self._read(key)
        return current is not None and current[0] == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until nobody holds ``key``; False when ``timeout`` ran out first."""
        return self._poll(lambda: not self.is_locked(key), timeout)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, FileSystemLockManager)
            and other.lock_files_directory == self.lock_files_directory
        )

    def __hash__(self) -> int:
        return hash((FileSystemLockManager, self.lock_files_directory))

    def __repr__(self) -> str:
        return f"FileSystemLockManager(lock_files_directory={str(self.lock_files_directory)!r})"
