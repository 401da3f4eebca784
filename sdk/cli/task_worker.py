"""The ``task-worker`` command: serve tasks' queued runs (``Task.delay``) until stopped."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from millstream.cli.loading import load_target
from millstream.cli.output import EXIT_OK, UsageError

__all__ = ["cmd_task_worker"]


def _load_task(target: str) -> Any:
    """``path/to/file.py:task_fn`` or ``package.module:task_fn`` -> the Task object."""
    obj = load_target(target, "task", reuse_loaded=True)
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
