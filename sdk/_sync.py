"""THE sync mechanism: how a sync call reaches the engine's coroutines.

A thread with no event loop of its own drives the orchestration coroutine itself (on a loop
private to that thread) and runs the sync body inline; a thread that is running an event loop
hands the coroutine to the portal, the engine's loop thread, and runs the body when it is
posted back. Either way the body runs on the calling thread and the orchestration is the one
written in ``millstream._engine.orchestrate``. The whole thread-and-loop model is drawn in
``millstream._engine.bridge``.

``dispatch`` is Prefect's "sync-compatible" calling convention on top of that: the same name
returns a coroutine in async code and the result in sync code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from millstream._engine.bridge.executors import Executor
from millstream._engine.bridge.loops import get_portal, run_here, running_loop

# ``in_async_context`` is the rule ``dispatch`` follows (defined beside the run contexts).
from millstream._engine.orchestrate.context import in_async_context as in_async_context

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


def dispatch(
    async_fn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, T | Coroutine[Any, Any, T]]:
    """A sync-compatible function: in async context (``in_async_context``) it returns
    ``async_fn``'s coroutine to await; otherwise it runs it to completion and returns the
    result. ``_sync=True``/``False`` forces one form, and ``.aio`` is the async function, as
    with Prefect's dispatching functions."""

    @functools.wraps(async_fn)
    def dispatcher(*args: P.args, **kwargs: P.kwargs) -> T | Coroutine[Any, Any, T]:
        forced = kwargs.pop("_sync", None)
        if not (bool(forced) if forced is not None else not in_async_context()):
            return async_fn(*args, **kwargs)
        return run_sync(lambda _executor: async_fn(*args, **kwargs))

    dispatcher.__doc__ = (
        f"Sync-compatible ``{async_fn.__name__}``: awaitable in async code, blocking in sync "
        f"code.\n\n{async_fn.__doc__ or ''}"
    )
    dispatcher.aio = async_fn  # type: ignore[attr-defined]
    return dispatcher
