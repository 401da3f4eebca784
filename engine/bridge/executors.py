"""Where a run body executes: the ``Executor`` protocol and its implementations, and lanes.

Executors: ``INLINE`` (``loops``: on the thread driving a private loop), ``CallerThread``
(``loops``: posted back to the thread waiting in ``Portal.call``), ``WORKER_THREADS``
(``threads``: an anyio worker thread, for submitted sync task bodies). A lane is a thread with
an event loop of its own, for one task run whose loop is blocked in a sync wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Executor(Protocol):
    """Runs a sync callable somewhere that is not an event loop and awaits its result.

    ``remote``: task bodies (sync and async) run in other processes through it
    (``task_runners.RemoteExecutor``); ``run`` still runs engine helpers here.
    """

    remote: bool

    async def run(self, fn: Callable[..., T], *args: Any) -> T: ...


def run_on_lane(
    coro: Coroutine[Any, Any, T], context: contextvars.Context
) -> concurrent.futures.Future[T]:
    """Run ``coro`` in ``context`` on a new daemon thread with a loop of its own (a lane).

    For a task run whose loop cannot run it: that loop's thread is blocked in a sync wait.
    """
    outcome: concurrent.futures.Future[T] = concurrent.futures.Future()

    def lane() -> None:
        try:
            outcome.set_result(context.run(asyncio.run, coro))
        except BaseException as exc:
            outcome.set_exception(exc)

    threading.Thread(target=lane, name="millstream-lane", daemon=True).start()
    return outcome
