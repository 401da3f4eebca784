"""Event loops for sync callers: a private loop per calling thread, and the portal.

A thread with no running loop drives the orchestration coroutine itself, on a loop private to
that thread (``run_here``), and runs sync bodies inline (``INLINE``). A thread that is running
an event loop cannot do that (a loop is not re-entrant), so it hands the coroutine to the
portal, the per-process engine loop thread (``Portal.call``), and serves the sync bodies the
coroutine posts back (``CallerThread``) until it finishes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import queue
import selectors
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    return asyncio.events._get_running_loop()


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    # The orchestration may have stopped waiting (a timeout): drop the late outcome.
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class Inline:
    """Runs sync bodies inline on the thread driving the orchestration's private loop.

    While the body runs no event loop is marked as running in this thread, so to the body it
    is plain sync code (nested sync calls drive their own private loop; ``State.result()``
    returns values, not coroutines).
    """

    __slots__ = ()
    remote = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn(*args)`` here, with no loop marked as running meanwhile."""
        running = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(None)
        try:
            return fn(*args)
        finally:
            asyncio.events._set_running_loop(running)


INLINE = Inline()


class CallerThread:
    """Runs sync bodies on the thread that made a sync call, while it waits for the outcome.

    The orchestration coroutine runs on the engine loop; each ``run`` posts work back to the
    waiting caller, so a sync flow or task body runs on its caller's thread exactly as if it
    had been called directly.
    """

    __slots__ = ("_queue",)
    remote = False

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Post ``fn(*args)`` to the waiting caller thread and await its outcome."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((contextvars.copy_context(), fn, args, fut, loop))
        return await fut

    def serve(self, outcome: concurrent.futures.Future[T]) -> T:
        """Run posted work on this thread until ``outcome`` resolves; return its result."""
        outcome.add_done_callback(lambda _: self._queue.put(None))
        get = self._queue.get
        while True:
            item = get()
            if item is None:
                return outcome.result()
            ctx, fn, args, fut, loop = item
            try:
                value = ctx.run(fn, *args)
            except BaseException as exc:
                ok, value = False, exc
            else:
                ok = True
            try:
                loop.call_soon_threadsafe(_settle, fut, ok, value)
            except RuntimeError:  # the loop closed under us: nothing waits for this anymore
                pass


class _CallerLoops(threading.local):
    """Per-thread event loops, one per nesting depth of sync calls (a loop is not re-entrant)."""

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.depth = 0


_caller_loops = _CallerLoops()
_private_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


class _ReadySelector(selectors.DefaultSelector):
    """A selector that does not poll when told not to wait and only its loop's wake-up pipe is
    registered: there is nothing it could report that the loop's ready queue does not already
    hold.

    A private loop turns twice per sync task call with callbacks ready, each turn polling with a
    zero timeout; the poll releases the GIL, and taking it back from the store's and the logs'
    threads cost more than the rest of a small task call. A loop with other file descriptors
    (user code doing I/O on it) polls as usual.
    """

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0 and len(self.get_map()) <= 1:
            return []
        return super().select(timeout)


def _new_private_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.SelectorEventLoop(_ReadySelector())
    _private_loops.add(loop)
    return loop


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    if not loop.is_closed() and not loop.is_running():
        loop.close()


def run_here(make: Callable[[Inline], Coroutine[Any, Any, T]]) -> T:
    """Drive ``make(INLINE)`` to completion on this thread (which must not run a loop)."""
    local = _caller_loops
    depth = local.depth
    if len(local.loops) <= depth:
        loop = _new_private_loop()
        # Close the thread's loops when the thread object goes away (no unclosed-loop leaks).
        weakref.finalize(threading.current_thread(), _close_loop, loop)
        local.loops.append(loop)
    loop = local.loops[depth]
    local.depth = depth + 1
    try:
        return loop.run_until_complete(make(INLINE))
    except BaseException:
        if loop.is_closed() or any(not t.done() for t in asyncio.all_tasks(loop)):
            # Interrupted between steps (Ctrl-C): this loop holds half-run tasks; replace it.
            for task in asyncio.all_tasks(loop):
                task.cancel()
            local.loops[depth] = _new_private_loop()
        raise
    finally:
        local.depth = depth


def is_private_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is a caller thread's private orchestration loop."""
    return loop in _private_loops


class Portal:
    """The per-process engine loop thread: sync callers run orchestration coroutines on it.

    Hand-built rather than ``anyio.from_thread.BlockingPortal``: a call costs one
    ``call_soon_threadsafe`` and one task, where the blocking portal first waits for the loop
    to acknowledge the spawn and runs each call in a task group under a cancel scope (measured
    in ``engine/bridge/__init__.py``).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(
            target=self._main, args=(started,), name="millstream-engine", daemon=True
        )
        self.thread.start()
        started.wait()
        assert self.thread.ident is not None
        self.thread_id: int = self.thread.ident

    def _main(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(started.set)
        # A task, not a bare future: anyio takes the task run_until_complete drives for the
        # loop's root task, and keeps the loop's worker threads until it ends (never).
        self.loop.run_until_complete(self._forever())

    async def _forever(self) -> None:
        await self.loop.create_future()

    def call(self, make: Callable[[CallerThread], Coroutine[Any, Any, T]]) -> T:
        """Run ``make(caller)`` on the engine loop; sync bodies it posts run on this thread.

        Blocks the calling thread until the coroutine finishes. Contextvars of the caller are
        visible to the coroutine.
        """
        caller = CallerThread()
        ctx = contextvars.copy_context()
        if threading.current_thread() is self.thread:
            # Called from code running on the engine loop itself (an async task body calling a
            # sync flow): blocking this loop would deadlock, so orchestrate on a private loop.
            outcome: concurrent.futures.Future[T] = concurrent.futures.Future()

            def private() -> None:
                try:
                    outcome.set_result(ctx.run(asyncio.run, make(caller)))
                except BaseException as exc:
                    outcome.set_exception(exc)

            threading.Thread(target=private, name="millstream-nested", daemon=True).start()
            return caller.serve(outcome)
        return caller.serve(self.submit(make(caller), ctx))

    def submit(
        self, coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None
    ) -> concurrent.futures.Future[T]:
        """Schedule a coroutine on the engine loop without waiting (in a copy of the
        caller's contextvars, or in ``context``). Cancelling the returned future cancels
        the coroutine."""
        ctx = context if context is not None else contextvars.copy_context()
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
        loop = self.loop

        def start() -> None:
            if outcome.cancelled():
                coro.close()
                return
            task = loop.create_task(coro, context=ctx)
            task.add_done_callback(lambda t: _transfer(t, outcome))
            outcome.add_done_callback(lambda f: _cancel_from(f, loop, task))

        loop.call_soon_threadsafe(start)
        return outcome


def _cancel_from(
    outcome: concurrent.futures.Future[Any],
    loop: asyncio.AbstractEventLoop,
    task: asyncio.Task[Any],
) -> None:
    if outcome.cancelled() and not task.done():
        loop.call_soon_threadsafe(task.cancel)


def _transfer(task: asyncio.Task[T], outcome: concurrent.futures.Future[T]) -> None:
    try:
        if task.cancelled():
            outcome.set_exception(concurrent.futures.CancelledError())
        elif (exc := task.exception()) is not None:
            outcome.set_exception(exc)
        else:
            outcome.set_result(task.result())
    except concurrent.futures.InvalidStateError:  # cancelled: the caller stopped waiting
        pass


_portal: Portal | None = None
_portal_lock = threading.Lock()


def _forget_portal_after_fork() -> None:
    global _portal, _portal_lock
    _portal = None  # its thread does not exist in the child
    _portal_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_portal_after_fork)


def get_portal() -> Portal:
    """The engine loop thread, started on first use."""
    global _portal
    portal = _portal
    if portal is None:
        with _portal_lock:
            if _portal is None:
                _portal = Portal()
            portal = _portal
    return portal
