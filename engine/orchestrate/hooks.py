"""State hooks and retry conditions: user callables run in order, errors logged, never fatal."""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any

from millstream._engine.bridge.executors import Executor
from millstream._engine.model.records import TaskRun
from millstream._engine.model.spec import Hook, TaskSpec
from millstream._engine.model.states import State

logger = logging.getLogger("millstream.engine")


async def run_hooks(
    hooks: tuple[Hook, ...], args: tuple[Any, ...], executor: Executor | None, kind: str
) -> None:
    """Run state hooks in order; an exception is logged and never changes the state.

    A sync hook runs where the run's sync bodies run (``executor``), else on a worker thread.
    """
    for hook in hooks:
        try:
            if inspect.iscoroutinefunction(hook):
                await hook(*args)
                continue
            if executor is not None:
                result = await executor.run(hook, *args)
            else:
                result = await asyncio.to_thread(hook, *args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            name = getattr(hook, "__name__", repr(hook))
            logger.exception("An error was encountered while running %s hook %r", kind, name)


async def retry_allowed(
    spec: TaskSpec, task_run: TaskRun, state: State, executor: Executor | None
) -> bool:
    """What ``retry_condition_fn(task, task_run, state)`` says (no condition: retry); a
    condition that raises is logged and means no retry."""
    fn = spec.retry_condition_fn
    if fn is None:
        return True
    try:
        if inspect.iscoroutinefunction(fn):
            return bool(await fn(spec.owner, task_run, state))
        if executor is not None:
            return bool(await executor.run(fn, spec.owner, task_run, state))
        return bool(fn(spec.owner, task_run, state))
    except Exception:
        logger.exception("retry_condition_fn %r raised; not retrying", fn)
        return False
