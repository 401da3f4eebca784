"""``MemoryLockManager``: locks held in this process's memory (``prefect.locking.memory``)."""

from millstream._engine.results.locking import MemoryLockManager

__all__ = ["MemoryLockManager"]
