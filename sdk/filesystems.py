"""File systems for results and code: ``LocalFileSystem(basepath=...)`` (``prefect.filesystems``).

``read_path``/``write_path``/``get_directory``/``put_directory``/``save``/``load`` are
sync-compatible like Prefect's (awaitable in async code, blocking in sync code). ``save(name)``
keeps the block's fields under the home directory (``<home>/blocks/local-file-system/``), so
``LocalFileSystem.load(name)`` finds it again from any process on the machine; there is no
server to hold block documents.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import anyio.to_thread

from millstream._engine.exceptions import NotSupportedError, ObjectNotFound
from millstream._engine.results import blocks
from millstream._engine.results import storage as _storage
from millstream._engine.results.records import NullFileSystem
from millstream._engine.settings import home_dir
from millstream._sync import dispatch

__all__ = [
    "LocalFileSystem",
    "NullFileSystem",
    "ReadableFileSystem",
    "RemoteFileSystem",
    "SMB",
    "WritableFileSystem",
]

_SLUG = blocks.LOCAL_FILE_SYSTEM


class ReadableFileSystem:
    """Base of file systems that can be read (``read_path``)."""


class WritableFileSystem(ReadableFileSystem):
    """Base of file systems that can be read and written (``read_path``/``write_path``)."""


class LocalFileSystem(_storage.LocalFileSystem, WritableFileSystem):
    """Files under ``basepath`` (default: the current directory)."""

    _block_type_slug = _SLUG

    def __init__(self, basepath: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"LocalFileSystem() got unexpected arguments: {', '.join(kwargs)}")
        super().__init__(basepath)
        self._block_document_id: uuid.UUID | None = None
        self._block_document_name: str | None = None

    @dispatch  # sync-compatible, as Prefect's
    async def read_path(  # type: ignore[override]
        self, path: str | os.PathLike[str]
    ) -> bytes:
        """The bytes of a file under ``basepath``; ``ValueError`` when it does not exist."""
        return await self.aread_path(path)

    @dispatch  # sync-compatible, as Prefect's
    async def write_path(  # type: ignore[override]
        self, path: str | os.PathLike[str], content: bytes
    ) -> str:
        """Write a file under ``basepath`` (atomically); returns its path."""
        return await self.awrite_path(path, content)

    def _get_directory_sync(self, from_path: str | None, local_path: str | None) -> None:
        source = self._resolve_path(from_path)
        target = Path(local_path or ".").resolve()
        if source == target:
            return
        shutil.copytree(source, target, dirs_exist_ok=True, symlinks=True)

    async def aget_directory(
        self, from_path: str | None = None, local_path: str | None = None
    ) -> None:
        """Copy ``from_path`` (default: all of ``basepath``) to ``local_path`` (default: cwd)."""
        await anyio.to_thread.run_sync(self._get_directory_sync, from_path, local_path)

    @dispatch
    async def get_directory(
        self, from_path: str | None = None, local_path: str | None = None
    ) -> None:
        """Sync-compatible ``aget_directory``."""
        await self.aget_directory(from_path, local_path)

    def _put_directory_sync(
        self, local_path: str | None, to_path: str | None, ignore_file: str | None
    ) -> int:
        destination = self._resolve_path(to_path)
        source = Path(local_path or ".").resolve()
        if source == destination:
            return 0
        ignore = None
        if ignore_file is not None:
            patterns = [
                line.strip()
                for line in Path(ignore_file).read_text().splitlines()
                if line.strip() and not line.startswith("#")
            ]
            ignore = shutil.ignore_patterns(*patterns)
        shutil.copytree(source, destination, dirs_exist_ok=True, ignore=ignore)
        return sum(len(files) for _, _, files in os.walk(destination))

    async def aput_directory(
        self,
        local_path: str | None = None,
        to_path: str | None = None,
        ignore_file: str | None = None,
    ) -> int:
        """Copy ``local_path`` (default: cwd) to ``to_path`` under ``basepath``."""
        return await anyio.to_thread.run_sync(
            self._put_directory_sync, local_path, to_path, ignore_file
        )

    @dispatch
    async def put_directory(
        self,
        local_path: str | None = None,
        to_path: str | None = None,
        ignore_file: str | None = None,
    ) -> int:
        """Sync-compatible ``aput_directory``."""
        return await self.aput_directory(local_path, to_path, ignore_file)

    # -- saved blocks ------------------------------------------------------------------------

    def _save_sync(self, name: str, overwrite: bool) -> uuid.UUID:
        fields = {"basepath": str(self.basepath)}
        block_id = blocks.write_block(home_dir(), self._block_type_slug, name, fields, overwrite)
        self._block_document_id = block_id
        self._block_document_name = name
        return block_id

    async def asave(self, name: str | None = None, overwrite: bool = False) -> uuid.UUID:
        """Keep this block's fields under ``name`` (``ValueError`` if taken, unless
        ``overwrite``)."""
        if name is None:
            raise ValueError("You're attempting to save a block document without a name.")
        return await anyio.to_thread.run_sync(self._save_sync, name, overwrite)

    @dispatch
    async def save(self, name: str | None = None, overwrite: bool = False) -> uuid.UUID:
        """Sync-compatible ``asave``."""
        return await self.asave(name, overwrite)

    @classmethod
    def _load_sync(cls, name: str) -> LocalFileSystem:
        slug, _, short = name.rpartition("/")
        if slug and slug != cls._block_type_slug:
            raise ValueError(f"Block {name!r} is not a {cls._block_type_slug} block")
        doc = blocks.read_block(home_dir(), cls._block_type_slug, short)
        if doc is None:
            raise ValueError(
                f"Unable to find block document named {short} for block type {cls._block_type_slug}"
            ) from ObjectNotFound(short)
        block = cls(basepath=doc["basepath"])
        block._block_document_id = uuid.UUID(doc["id"])
        block._block_document_name = short
        return block

    @classmethod
    async def aload(cls, name: str) -> LocalFileSystem:
        """The block saved under ``name`` (``"name"`` or ``"local-file-system/name"``)."""
        return await anyio.to_thread.run_sync(cls._load_sync, name)

    @classmethod
    def load(cls, name: str, **kwargs: Any) -> Any:
        """Sync-compatible ``aload``: awaitable in async code, the block in sync code."""
        return dispatch(cls.aload)(name, **kwargs)

    def __repr__(self) -> str:
        return f"LocalFileSystem(basepath={str(self.basepath)!r})"


class _RemoteRefused(WritableFileSystem):
    """A Prefect file system over the network: refused by name when built."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise NotSupportedError(
            f"{type(self).__name__}(...) stores results over the network; Millstream keeps "
            "results on local disk: use LocalFileSystem(basepath=...) on a mounted volume "
            "(or a path) for result_storage"
        )


class RemoteFileSystem(_RemoteRefused):
    """Prefect's fsspec file system (``s3://``, ``gcs://``, ...): not available here."""


class SMB(_RemoteRefused):
    """Prefect's SMB share file system: not available here."""
