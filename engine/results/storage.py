"""Where persisted results live: ``ResultStorage``, ``LocalFileSystem`` and ``resolve_storage``."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Protocol

import anyio.to_thread

from millstream._engine.exceptions import StorageKeyError
from millstream._engine.results.keys import validate_storage_key


class ResultStorage(Protocol):
    """Where persisted results live: files under ``basepath``, addressed by relative keys."""

    @property
    def basepath(self) -> Path:
        """The directory keys are relative to (stored with each result to find it again)."""
        ...

    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        ...

    def read(self, key: str) -> bytes:
        """The bytes stored under ``key``."""
        ...

    def exists(self, key: str) -> bool:
        """Whether something is stored under ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove what is stored under ``key`` (nothing if absent)."""
        ...


class LocalFileSystem:
    """Results as files under one directory; writes are atomic (temp file, fsync, rename)."""

    def __init__(self, basepath: str | os.PathLike[str] | None = None) -> None:
        # Absolute now: the path is stored with each result and read back from any cwd.
        # No basepath: the current directory, as Prefect's LocalFileSystem().
        self.basepath = Path(basepath if basepath is not None else ".").expanduser().absolute()

    def _path(self, key: str) -> Path:
        path = self.basepath / validate_storage_key(key)
        # A symlink inside the root (a folder or the file itself) must not lead a key outside.
        real = path.resolve()
        root = self.basepath.resolve()
        if real != root and not real.is_relative_to(root):
            raise StorageKeyError(
                f"result_storage_key {key!r} leads outside the storage directory {str(root)!r} "
                f"through a symlink (to {str(real)!r}); keys stay inside it"
            )
        return path

    def write(self, key: str, data: bytes) -> None:
        """Write atomically: readers and crashes see the old file or the whole new one."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        # O_EXCL: never write through someone else's file; 0o666 lets the umask decide, as for
        # any file the user creates.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                # Data on disk before the rename, so a power loss cannot leave an empty file
                # under the final name.
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def read(self, key: str) -> bytes:
        """The file's bytes; ``FileNotFoundError`` naming the path when it is missing."""
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key``."""
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the file (nothing if absent)."""
        self._path(key).unlink(missing_ok=True)

    def _resolve_path(self, path: str | os.PathLike[str] | None) -> Path:
        """``path`` under ``basepath`` (relative to it, or absolute inside it), resolved;
        ``ValueError`` naming both when it falls outside."""
        base = self.basepath.resolve()
        if path is None:
            return base
        resolved = Path(path).expanduser()
        if not resolved.is_absolute():
            resolved = base / resolved
        resolved = resolved.resolve()
        if resolved != base and base not in resolved.parents:
            raise ValueError(f"Provided path {resolved} is outside of the base path {base}.")
        return resolved

    def _read_path_sync(self, path: str | os.PathLike[str]) -> bytes:
        """The bytes of a file (Prefect's block method); ``ValueError`` when it is missing or
        not a file."""
        resolved = self._resolve_path(path)
        if not resolved.exists():
            raise ValueError(f"Path {resolved} does not exist.")
        if not resolved.is_file():
            raise ValueError(f"Path {resolved} is not a file.")
        return resolved.read_bytes()

    def _write_path_sync(self, path: str | os.PathLike[str], content: bytes) -> str:
        """Write a file atomically (Prefect's block method); returns its path."""
        resolved = self._resolve_path(path)
        if resolved.exists() and not resolved.is_file():
            raise ValueError(f"Path {resolved} already exists and is not a file.")
        key = resolved.relative_to(self.basepath.resolve()).as_posix()
        LocalFileSystem(self.basepath.resolve()).write(key, content)
        return str(resolved)

    async def aread_path(self, path: str | os.PathLike[str]) -> bytes:
        """``read_path`` on a worker thread."""
        return await anyio.to_thread.run_sync(self._read_path_sync, path)

    async def awrite_path(self, path: str | os.PathLike[str], content: bytes) -> str:
        """``write_path`` on a worker thread."""
        return await anyio.to_thread.run_sync(self._write_path_sync, path, content)

    # Blocking here; ``millstream.filesystems.LocalFileSystem`` makes them sync-compatible.
    read_path = _read_path_sync
    write_path = _write_path_sync

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalFileSystem) and other.basepath == self.basepath

    def __hash__(self) -> int:
        return hash((LocalFileSystem, self.basepath))

    def __repr__(self) -> str:
        return f"LocalFileSystem(basepath={str(self.basepath)!r})"


def resolve_storage(
    value: str | os.PathLike[str] | ResultStorage | None, default_dir: Path
) -> ResultStorage:
    """Storage for ``result_storage``: a directory path, a storage object, or ``default_dir``."""
    if value is None:
        return LocalFileSystem(default_dir)
    if isinstance(value, str) and "://" in value:
        raise ValueError(
            f"result_storage {value!r} looks like a URL; only local directories are supported"
        )
    if isinstance(value, str | os.PathLike):
        return LocalFileSystem(value)
    if getattr(value, "basepath", None) is not None and all(
        callable(getattr(value, name, None)) for name in ("read", "write", "exists", "delete")
    ):
        return value
    raise ValueError(
        "result_storage must be a directory path or a storage object with basepath, read(), "
        f"write(), exists() and delete(), got {value!r}"
    )
