"""THE sync mechanism: sync callers run engine coroutines through the engine loop's portal."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from engine.executors import CallerThread, get_portal

T = TypeVar("T")
P = ParamSpec("P")


def run_sync(make: Callable[[CallerThread], Coroutine[Any, Any, T]]) -> T:
    """Run ``make(caller)`` on the engine loop and block for its result.

    Sync bodies the coroutine posts to ``caller`` run on this thread, so a sync flow or task
    body runs where it was called from.
    """
    return get_portal().call(make)


def dual(async_fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """The blocking twin of an async function, derived from it (one implementation)."""

    @functools.wraps(async_fn)
    def sync_twin(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(lambda _caller: async_fn(*args, **kwargs))

    sync_twin.__doc__ = f"Blocking form of ``{async_fn.__name__}``.\n\n{async_fn.__doc__ or ''}"
    return sync_twin
