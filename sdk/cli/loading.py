"""What ``serve`` and ``task-worker`` share: loading ``path/to/file.py:name`` or
``package.module:name`` from the command line."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from millstream.cli.output import UsageError

__all__ = ["load_target"]


def load_target(target: str, kind: str, *, reuse_loaded: bool = False) -> Any:
    """The object ``target`` names (``kind``: "flow" or "task", for the messages). The file's
    folder stays on ``sys.path`` (the served code imports its neighbours at run time); with
    ``reuse_loaded`` a file already loaded under its name is not run again (several tasks of
    one file)."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise UsageError(f"{target!r}: give the {kind} as path/to/file.py:{kind}_function")
    try:
        module = _load_file(target, where, reuse_loaded) if where.endswith(".py") else None
        if module is None:
            module = importlib.import_module(where)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"{target!r}: cannot load the {kind}: {exc}") from None


def _load_file(target: str, where: str, reuse_loaded: bool) -> Any:
    path = Path(where).resolve()
    if not path.is_file():
        raise UsageError(f"{target!r}: file {where!r} not found")
    sys.path.insert(0, str(path.parent))
    module = sys.modules.get(path.stem) if reuse_loaded else None
    if module is not None and getattr(module, "__file__", None) == str(path):
        return module
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module
