"""State hooks and retry conditions: awaited in order, their errors logged, never fatal.

The sdk wraps each user hook once, when the spec is built (``model.spec.Hooks``): an async hook
is awaited, a sync one runs on a worker thread. Orchestration only ever awaits them here.
"""

from __future__ import annotations

import logging
from typing import Any

from millstream._engine.model.records import TaskRun
from millstream._engine.model.spec import StateHook, TaskSpec
from millstream._engine.model.states import State

logger = logging.getLogger("millstream.engine")


async def run_hooks(hooks: tuple[StateHook, ...], args: tuple[Any, Any, State], kind: str) -> None:
    """Await state hooks in order; an exception is logged and never changes the state."""
    for hook in hooks:
        try:
            await hook(*args)
        except Exception:
            name = getattr(hook, "__name__", repr(hook))
            logger.exception("An error was encountered while running %s hook %r", kind, name)


async def retry_allowed(spec: TaskSpec, task_run: TaskRun, state: State) -> bool:
    """What ``retry_condition_fn(task, task_run, state)`` says (no condition: retry); a
    condition that raises is logged and means no retry."""
    condition = spec.hooks.retry_condition
    if condition is None:
        return True
    try:
        return await condition(spec.owner, task_run, state)
    except Exception:
        logger.exception("retry_condition_fn %r raised; not retrying", spec.retry_condition_fn)
        return False
