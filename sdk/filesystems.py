"""Result storage objects: ``LocalFileSystem(basepath=...)`` for ``result_storage``."""

from millstream._engine.results import LocalFileSystem

__all__ = ["LocalFileSystem"]
