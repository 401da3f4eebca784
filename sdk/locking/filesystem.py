"""``FileSystemLockManager``: lock files shared by processes (``prefect.locking.filesystem``)."""

from millstream._engine.results.locking import FileSystemLockManager

__all__ = ["FileSystemLockManager"]
