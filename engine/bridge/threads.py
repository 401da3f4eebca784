"""Sync bodies on anyio worker threads: submitted task runs, and any body with a timeout.

A body is never stopped from outside (no injected exceptions, no interpreter hooks): at a
timeout the run ends ``TimedOut`` at the deadline and the body's thread is abandoned; it runs
on in the background and whatever it returns or raises is dropped. Prefect cannot stop a
blocking sync body either (its worker-thread timeouts only take effect once a blocking call
returns; on the main thread it uses SIGALRM, which a library must not take from the user).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

from millstream._engine.bridge.loops import get_portal

T = TypeVar("T")

# One unbounded limiter per event loop: the task runner's bound is the scheduler's slots (a
# run waiting for another gives its slot back, which a worker thread holding an anyio token
# could not), so anyio's default of 40 threads must not bound anything on top of them.
_unbounded: RunVar[anyio.CapacityLimiter] = RunVar("millstream_unbounded_limiter")


def _limiter() -> anyio.CapacityLimiter:
    try:
        return _unbounded.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(math.inf)
        _unbounded.set(limiter)
        return limiter


async def _to_thread(fn: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True, limiter=_limiter())


async def run_in_worker(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on an anyio worker thread, in a copy of this context; cancelling
    the caller abandons the thread (it runs on, its outcome is dropped).

    The thread is a daemon, so a body stuck forever never holds up the interpreter's exit:
    anyio's worker threads inherit the daemon flag of the loop thread that starts them, so a
    caller on a non-daemon thread (a loop on the main thread) uses the engine loop's workers.
    """
    if threading.current_thread().daemon:
        return await _to_thread(fn, *args)
    outcome = get_portal().submit(_to_thread(fn, *args))
    return await asyncio.wrap_future(outcome)


class WorkerThreads:
    """The executor of submitted sync task bodies: an anyio worker thread each."""

    __slots__ = ()
    remote = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a worker thread and await its outcome."""
        return await run_in_worker(fn, *args)


WORKER_THREADS = WorkerThreads()


def _call(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    return fn(*args, **kwargs)


async def call_with_timeout(
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    seconds: float,
    error_type: type[BaseException],
) -> T:
    """Call the sync ``fn(*args, **kwargs)`` on a worker thread; at ``seconds`` stop waiting
    and raise ``error_type("Scope timed out after <seconds> second(s).")`` (Prefect's text),
    abandoning the thread.

    The abandoned body runs on to its end in the background (on a daemon thread, see
    ``run_in_worker``) and its outcome is dropped.
    """
    with anyio.move_on_after(seconds):
        return await run_in_worker(_call, fn, args, kwargs)
    raise error_type(f"Scope timed out after {seconds:g} second(s).")
