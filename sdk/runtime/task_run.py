"""The current task run: ``from sdk.runtime import task_run``.

None / {} / [] / 0 outside a task run (also in a flow body).
"""

from __future__ import annotations

from typing import Any

from engine.context import task_run_var
from sdk.runtime._env import override

__all__ = ["id", "name", "parameters", "run_count", "tags", "task_name"]


def _value(name: str) -> Any:
    ctx = task_run_var.get()
    run = ctx.task_run if ctx is not None else None
    if name == "id":
        return str(run.id) if run else None
    if name == "name":
        return run.name if run else None
    if name == "task_name":
        return run.task_name if run else None
    if name == "parameters":
        return dict(ctx.parameters) if ctx else {}
    if name == "tags":
        return list(run.tags) if run else []
    if name == "run_count":
        return run.run_count if run else 0
    raise AttributeError(f"sdk.runtime.task_run has no attribute {name!r}")


def __getattr__(name: str) -> Any:
    return override("task_run", name, _value(name))
