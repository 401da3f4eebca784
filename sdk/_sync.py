"""THE sync mechanism: how a sync call reaches the engine's coroutines.

A thread with no event loop of its own drives the orchestration coroutine itself (on a loop
private to that thread) and runs the sync body inline; a thread that is running an event loop
hands the coroutine to the portal, the engine's loop thread, and runs the body when it is
posted back. Either way the body runs on the calling thread and the orchestration is the one
written in ``engine.run``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from engine.executors import Executor, get_portal, run_here, running_loop

T = TypeVar("T")
P = ParamSpec("P")


def run_sync(make: Callable[[Executor], Coroutine[Any, Any, T]]) -> T:
    """Run ``make(executor)`` to completion and return its result, from sync code.

    ``executor`` runs the sync bodies the coroutine hands it on this thread.
    """
    if running_loop() is None:
        return run_here(make)
    return get_portal().call(make)


def dual(async_fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """The blocking twin of an async function, derived from it (one implementation)."""

    @functools.wraps(async_fn)
    def sync_twin(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(lambda _executor: async_fn(*args, **kwargs))

    sync_twin.__doc__ = f"Blocking form of ``{async_fn.__name__}``.\n\n{async_fn.__doc__ or ''}"
    return sync_twin
