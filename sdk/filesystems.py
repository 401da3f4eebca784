"""Result storage objects: ``LocalFileSystem(basepath=...)`` for ``result_storage``."""

from engine.results import LocalFileSystem

__all__ = ["LocalFileSystem"]
