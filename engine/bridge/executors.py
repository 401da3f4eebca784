"""Where a run body executes: inline coroutine, the calling thread, a worker thread or a pool.

Also how sync callers reach the (async) orchestration: on a thread with no event loop of its
own the orchestration coroutine is driven right there, on a loop private to that thread, and
the sync body runs inline with no loop marked as running; a caller that is itself on an event
loop goes through the portal, the per-process engine loop thread, and its body is posted back.

Submitted sync task bodies run on the elastic pool (a daemon thread per concurrently running
body; the task runner's slots bound them). A task run whose loop is blocked in a sync wait runs
on a lane: a thread with an event loop of its own, for that one run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import ctypes
import os
import queue
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Executor(Protocol):
    """Runs a sync callable somewhere that is not an event loop and awaits its result."""

    async def run(self, fn: Callable[..., T], *args: Any) -> T: ...


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    # The orchestration may have stopped waiting (a timeout): drop the late outcome.
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class CallerThread:
    """Runs sync bodies on the thread that made a sync call, while it waits for the outcome.

    The orchestration coroutine runs on an event loop elsewhere; each ``run`` posts work back
    to the waiting caller, so a sync flow or task body runs on its caller's thread (the main
    thread for a script) exactly as if it had been called directly.
    """

    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
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


class Inline:
    """Runs sync bodies inline on the thread driving the orchestration's private loop.

    While the body runs no event loop is marked as running in this thread, so to the body it
    is plain sync code (nested sync calls drive their own private loop; ``State.result()``
    returns values, not coroutines).
    """

    __slots__ = ()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        running = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(None)
        try:
            return fn(*args)
        finally:
            asyncio.events._set_running_loop(running)


INLINE = Inline()


class _CallerLoops(threading.local):
    """Per-thread event loops, one per nesting depth of sync calls (a loop is not re-entrant)."""

    def __init__(self) -> None:
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.depth = 0


_caller_loops = _CallerLoops()
private_loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    if not loop.is_closed() and not loop.is_running():
        loop.close()


def run_here(make: Callable[[Inline], Coroutine[Any, Any, T]]) -> T:
    """Drive ``make(INLINE)`` to completion on this thread (which must not run a loop)."""
    local = _caller_loops
    depth = local.depth
    if len(local.loops) <= depth:
        loop = asyncio.new_event_loop()
        private_loops.add(loop)
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
            local.loops[depth] = asyncio.new_event_loop()
            private_loops.add(local.loops[depth])
        raise
    finally:
        local.depth = depth


def is_private_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is a caller thread's private orchestration loop."""
    return loop in private_loops


class ElasticPool(concurrent.futures.Executor):
    """A thread pool that grows a thread whenever no idle one can take the next call.

    Nothing here bounds concurrency (the task runner's slots do, in the scheduler), so a body
    that blocks waiting for another run never starves that run of a thread. Threads are
    daemons (a body stuck forever does not hold up the interpreter's exit) and leave after
    ``idle_seconds`` without work.
    """

    def __init__(self, name: str = "millstream-task", idle_seconds: float = 10.0) -> None:
        self._name = name
        self._idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # Threads waiting for work that no submitted call has claimed yet.
        self._idle = 0
        self._count = 0

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        """Run ``fn(*args, **kwargs)`` on a pool thread (a new one if none is idle)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._idle:
                self._idle -= 1  # that thread is now committed to take one call
                spawn = False
            else:
                self._count += 1
                spawn = True
                number = self._count
        self._queue.put((future, fn, args, kwargs))
        if spawn:
            threading.Thread(
                target=self._worker, name=f"{self._name}-{number}", daemon=True
            ).start()
        return future

    def _worker(self) -> None:
        get = self._queue.get
        timeout = self._idle_seconds
        while True:
            try:
                future, fn, args, kwargs = get(timeout=timeout)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # nobody claimed this thread: leave
                        self._idle -= 1
                        return
                continue  # claimed just now: its call is on the way
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to do: the threads leave by themselves once idle."""


_elastic_pool: ElasticPool | None = None


def elastic_pool() -> ElasticPool:
    """The process-wide pool that runs submitted sync task bodies."""
    global _elastic_pool
    pool = _elastic_pool
    if pool is None:
        with _portal_lock:
            if _elastic_pool is None:
                _elastic_pool = ElasticPool()
            pool = _elastic_pool
    return pool


class PoolExecutor:
    """Runs sync bodies on a ``concurrent.futures`` thread pool (the task runner's)."""

    __slots__ = ("pool",)

    def __init__(self, pool: concurrent.futures.Executor) -> None:
        self.pool = pool

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(self.pool, ctx.run, fn, *args)


class AbandonableThread:
    """Runs a sync body on a fresh daemon thread, so a timeout can stop waiting for it.

    When the waiting coroutine is cancelled (its timeout expired), the exception type given
    is raised asynchronously inside the thread; pure-Python code stops at its next bytecode,
    a blocking C call (``time.sleep``) first finishes.
    """

    __slots__ = ("interrupt",)

    def __init__(self, interrupt: type[BaseException]) -> None:
        self.interrupt = interrupt

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        ctx = contextvars.copy_context()

        def target() -> None:
            value: Any
            try:
                value = ctx.run(fn, *args)
            except BaseException as exc:
                ok, value = False, exc
            else:
                ok = True
            try:
                loop.call_soon_threadsafe(_settle, fut, ok, value)
            except RuntimeError:
                pass

        thread = threading.Thread(target=target, name="millstream-timeout-body", daemon=True)
        thread.start()
        try:
            return await fut
        except asyncio.CancelledError:
            if thread.ident is not None and thread.is_alive():
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread.ident), ctypes.py_object(self.interrupt)
                )
            raise


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


class Portal:
    """The per-process engine loop thread: sync callers run orchestration coroutines on it."""

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
        self.loop.run_forever()

    def call(self, make: Callable[[CallerThread], Coroutine[Any, Any, T]]) -> T:
        """Run ``make(caller)`` on the engine loop; sync bodies it posts run on this thread.

        Blocks the calling thread until the coroutine finishes. Contextvars of the caller are
        visible to the coroutine.
        """
        caller = CallerThread()
        ctx = contextvars.copy_context()
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
        if threading.current_thread() is self.thread:
            # Called from code running on the engine loop itself (an async task body calling a
            # sync flow): blocking this loop would deadlock, so orchestrate on a private loop.
            def private() -> None:
                try:
                    outcome.set_result(ctx.run(asyncio.run, make(caller)))
                except BaseException as exc:
                    outcome.set_exception(exc)

            threading.Thread(target=private, name="millstream-nested", daemon=True).start()
            return caller.serve(outcome)

        def start() -> None:
            task = self.loop.create_task(make(caller), context=ctx)
            task.add_done_callback(lambda t: _transfer(t, outcome))

        self.loop.call_soon_threadsafe(start)
        return caller.serve(outcome)

    def submit(
        self, coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None
    ) -> concurrent.futures.Future[T]:
        """Schedule a coroutine on the engine loop without waiting (in a copy of the
        caller's contextvars, or in ``context``)."""
        ctx = context if context is not None else contextvars.copy_context()
        outcome: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            task = self.loop.create_task(coro, context=ctx)
            task.add_done_callback(lambda t: _transfer(t, outcome))

        self.loop.call_soon_threadsafe(start)
        return outcome


def _transfer(task: asyncio.Task[T], outcome: concurrent.futures.Future[T]) -> None:
    if task.cancelled():
        outcome.set_exception(concurrent.futures.CancelledError())
    elif (exc := task.exception()) is not None:
        outcome.set_exception(exc)
    else:
        outcome.set_result(task.result())


_portal: Portal | None = None
_portal_lock = threading.Lock()


def _forget_portal_after_fork() -> None:
    global _portal, _portal_lock, _elastic_pool
    _portal = None
    _elastic_pool = None  # its threads do not exist in the child
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


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
