"""The ``LockManager`` protocol a result store's ``lock_manager`` follows."""

from millstream._engine.results.locking import LockManager

__all__ = ["LockManager"]
