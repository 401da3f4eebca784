"""The ``task-worker`` command: serve tasks' queued runs (``Task.delay``) until stopped."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from millstream.cli.output import EXIT_OK, UsageError

__all__ = ["cmd_task_worker"]


def _load_task(target: str) -> Any:
    """``path/to/file.py:task_fn`` or ``package.module:task_fn`` -> the Task object."""
    where, sep, attr = target.rpartition(":")
    if not sep or not where or not attr:
        raise UsageError(f"{target!r}: give the task as path/to/file.py:task_function")
    try:
        if where.endswith(".py"):
            path = Path(where).resolve()
            if not path.is_file():
                raise UsageError(f"{target!r}: file {where!r} not found")
            sys.path.insert(0, str(path.parent))
            module = sys.modules.get(path.stem)
            if module is None or getattr(module, "__file__", None) != str(path):
                spec = importlib.util.spec_from_file_location(path.stem, path)
                assert spec is not None and spec.loader is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[path.stem] = module
                spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
        obj = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"{target!r}: cannot load the task: {exc}") from None
    if not hasattr(obj, "delay") or not hasattr(obj, "spec"):
        raise UsageError(f"{target!r} is not a task (decorate it with @task)")
    return obj


def cmd_task_worker(args: argparse.Namespace) -> int:
    """``task-worker TARGET...``: run the queued runs of these tasks."""
    from millstream.task_worker import serve

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    tasks = [_load_task(t) for t in args.targets]
    print(
        f"Task worker serving {', '.join(t.name for t in tasks)} (Ctrl+C to stop)",
        file=sys.stderr,
        flush=True,
    )
    serve(*tasks, limit=args.limit, timeout=args.timeout)
    return EXIT_OK
