"""Calling and logging transaction hooks (shared by ``Transaction``, ``AsyncTransaction`` and
task runs' transactions)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from millstream._engine.bridge.loops import get_portal, run_here, running_loop

Hook = Callable[..., Any]


def hook_name(hook: Any) -> str:
    """The name a hook is logged by."""
    return str(getattr(hook, "__name__", None) or getattr(type(hook), "__name__", repr(hook)))


def call_sync(hook: Hook, txn: Any) -> None:
    """Call ``hook(txn)`` to the end from sync code: an async hook (or an awaitable a plain one
    returns) is driven on this thread, or on the engine loop thread when a loop runs here."""
    if not inspect.iscoroutinefunction(hook):
        result = hook(txn)
        if not inspect.isawaitable(result):
            return
        hook = lambda _txn: result  # noqa: E731  # an awaitable returned by a plain callable

    async def call(_caller: Any) -> None:
        await hook(txn)

    if running_loop() is None:
        run_here(call)
    else:
        get_portal().call(call)


@contextlib.contextmanager
def hook_logged(logger: Any, hook: Hook, hook_type: str) -> Iterator[None]:
    """Log a hook's run around it (not a hook with ``log_on_run = False``)."""
    name = hook_name(hook)
    should_log = getattr(hook, "log_on_run", True)
    if should_log:
        logger.info("Running %s hook %r", hook_type, name)
    try:
        yield
    except Exception:
        if should_log:
            logger.error("An error was encountered while running %s hook %r", hook_type, name)
        raise
    if should_log:
        logger.info("%s hook %r finished running successfully", hook_type.capitalize(), name)
