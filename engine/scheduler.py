"""Scheduling of submitted task runs: run groups, thread-safe engine futures, input resolution."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, Generic, TypeVar

from engine.records import TaskRun
from engine.states import Pending, State, StateType, crashed_from_exception, state_result

R = TypeVar("R")
T = TypeVar("T")


class BaseAnnotation(Generic[T]):
    """Wraps a task argument to change how the engine treats it."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def unwrap(self) -> T:
        """The wrapped value."""
        return self.value

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BaseAnnotation)
            and type(self) is type(other)
            and (self.value == other.value)
        )

    def __hash__(self) -> int:
        return hash((type(self), id(self.value)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class unmapped(BaseAnnotation[T]):
    """A ``Task.map`` argument passed whole to every mapped run instead of being iterated."""

    def __getitem__(self, _: object) -> T:
        return self.value


class allow_failure(BaseAnnotation[T]):
    """An upstream future whose failure does not block the downstream task; the task
    receives the upstream exception in place of its result."""


class quote(BaseAnnotation[T]):
    """An argument passed as is: not inspected for futures, not iterated by ``map``."""


class EngineFuture:
    """The future of one submitted task run; safe to wait on from any thread or loop."""

    __slots__ = (
        "_callbacks",
        "_event",
        "_group",
        "_lock",
        "_loop",
        "_state",
        "_task",
        "_waiters",
        "task_run",
        "task_run_id",
    )

    def __init__(self, task_run: TaskRun, loop: asyncio.AbstractEventLoop) -> None:
        self.task_run = task_run
        self.task_run_id: uuid.UUID = task_run.id
        self._loop = loop
        self._state: State | None = None
        self._task: asyncio.Task[State] | None = None
        self._lock = threading.Lock()
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[[Any], object]] | None = None
        self._waiters: list[asyncio.Future[State]] | None = None
        self._group: RunGroup | None = None

    # -- completion (always on the owning loop's thread) ---------------------------------------
    def _finish(self, state: State, owner: Any) -> None:
        with self._lock:
            self._state = state
            event = self._event
            callbacks = self._callbacks
            waiters = self._waiters
        if event is not None:
            event.set()
        if waiters:
            for waiter in waiters:
                wloop = waiter.get_loop()
                if wloop is self._loop:
                    if not waiter.done():
                        waiter.set_result(state)
                else:
                    wloop.call_soon_threadsafe(_resolve_waiter, waiter, state)
        if callbacks:
            for callback in callbacks:
                try:
                    callback(owner)
                except Exception:  # a user callback must not break the engine
                    pass

    # -- reading ------------------------------------------------------------------------------
    def done(self) -> bool:
        """Whether the task run reached its final state (or was left NotReady)."""
        return self._state is not None

    @property
    def state(self) -> State:
        """The final state when done, otherwise the run's current state."""
        if self._state is not None:
            return self._state
        current = self.task_run.state
        return current if current is not None else Pending()

    def on_owning_loop(self) -> bool:
        """Whether the caller is running on the loop that runs this task."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def wait(self, timeout: float | None = None) -> bool:
        """Block the calling thread until done or ``timeout``; True when done."""
        if self._state is not None:
            return True
        if self.on_owning_loop() or threading.get_ident() == _loop_thread_id(self._loop):
            # Blocking here blocks the loop that would run this task. If it has not started
            # yet, hand it (and its not-yet-started siblings) to the engine loop thread.
            group = self._group
            if group is None or not group.steal(self):
                raise RuntimeError(
                    "Waiting synchronously for a task run that already started on this same "
                    "event loop would block it forever; use `await future` (or "
                    "`await future.aresult()`) inside async flows."
                )
        with self._lock:
            if self._state is not None:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    async def wait_async(self, timeout: float | None = None) -> State:
        """Wait, from any event loop, for the final state (raises ``TimeoutError``)."""
        if self._state is not None:
            return self._state
        loop = asyncio.get_running_loop()
        if loop is self._loop and self._task is not None:
            coro: Any = asyncio.shield(self._task)
        else:
            waiter: asyncio.Future[State] = loop.create_future()
            with self._lock:
                if self._state is not None:
                    return self._state
                if self._waiters is None:
                    self._waiters = []
                self._waiters.append(waiter)
            coro = waiter
        if timeout is None:
            state: State = await coro
            return state
        state = await asyncio.wait_for(coro, timeout)
        return state

    def add_done_callback(self, fn: Callable[[Any], object], owner: Any) -> None:
        """Call ``fn(owner)`` once done (at once if already done)."""
        with self._lock:
            if self._state is None:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(fn)
                return
        fn(owner)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> Any:
        """Block for the final state and return its result (or raise its exception)."""
        if not self.wait(timeout):
            raise TimeoutError(
                f"Task run {self.task_run_id} did not finish within {timeout} seconds"
            )
        assert self._state is not None
        return state_result(self._state, raise_on_failure)


def _resolve_waiter(waiter: asyncio.Future[State], state: State) -> None:
    if not waiter.done():
        waiter.set_result(state)


_loop_threads: dict[int, int] = {}


def _loop_thread_id(loop: asyncio.AbstractEventLoop) -> int | None:
    return _loop_threads.get(id(loop))


class RunGroup:
    """The submitted task runs of one flow run, on the loop that orchestrates the flow."""

    __slots__ = ("_pending", "_queued", "_stolen", "limiter", "loop", "pool", "thread_id")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        thread_id: int,
        pool: concurrent.futures.Executor | None,
        max_concurrency: int | None,
    ) -> None:
        self.loop = loop
        self.thread_id = thread_id
        _loop_threads[id(loop)] = thread_id
        self.pool = pool
        self.limiter = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self._pending: set[asyncio.Task[State]] = set()
        # Submitted but not started yet: what a blocking wait on this loop's thread may steal.
        self._queued: dict[EngineFuture, tuple[Any, Any, contextvars.Context]] = {}
        self._stolen: list[concurrent.futures.Future[State]] = []

    def submit(
        self,
        future: EngineFuture,
        make: Callable[[], Coroutine[Any, Any, State]],
        owner: Any,
    ) -> None:
        """Start ``make()`` as a task of this group; its outcome settles ``future``."""
        if threading.get_ident() == self.thread_id:
            self._start(future, make, owner)
        else:
            ctx = contextvars.copy_context()
            self.loop.call_soon_threadsafe(ctx.run, self._start, future, make, owner)

    def _start(
        self, future: EngineFuture, make: Callable[[], Coroutine[Any, Any, State]], owner: Any
    ) -> None:
        ctx = contextvars.copy_context()
        task = self.loop.create_task(self._drive(future, make, owner), context=ctx)
        future._task = task
        future._group = self
        self._pending.add(task)
        self._queued[future] = (make, owner, ctx)

    def steal(self, target: EngineFuture) -> bool:
        """Move every not-yet-started run (``target`` among them) to the engine loop thread.

        Called from this group's loop thread by a blocking wait: the loop cannot run them while
        its thread waits. False when ``target`` already started here.
        """
        if target not in self._queued:
            return False
        from engine.executors import get_portal

        portal = get_portal()
        queued, self._queued = self._queued, {}
        for future, (make, owner, ctx) in queued.items():
            task = future._task
            if task is not None:
                task.cancel()  # not started: its coroutine never runs
                self._pending.discard(task)
            future._loop = portal.loop
            future._task = None
            self._stolen.append(portal.submit(self._drive_stolen(future, make, owner), ctx))
        return True

    async def _drive_stolen(
        self, future: EngineFuture, make: Callable[[], Coroutine[Any, Any, State]], owner: Any
    ) -> State:
        try:
            state = await make()
        except BaseException as exc:
            future._finish(crashed_from_exception(exc, "Task run"), owner)
            raise
        future._finish(state, owner)
        return state

    async def _drive(
        self, future: EngineFuture, make: Callable[[], Coroutine[Any, Any, State]], owner: Any
    ) -> State:
        self._queued.pop(future, None)
        limiter = self.limiter
        try:
            if limiter is None:
                state = await make()
            else:
                async with limiter:
                    state = await make()
        except BaseException as exc:
            state = crashed_from_exception(exc, "Task run")
            future._finish(state, owner)
            raise
        finally:
            # Discarded here rather than by a done callback: one less loop callback per run.
            task = future._task
            if task is not None:
                self._pending.discard(task)
        future._finish(state, owner)
        return state

    async def wait_all(self) -> None:
        """Wait, from any loop, until every submitted task (and what they submit) finished."""
        if asyncio.get_running_loop() is self.loop:
            await self._wait_all()
        else:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._wait_all(), self.loop))

    async def _wait_all(self) -> None:
        while self._pending or self._stolen:
            if self._pending:
                await asyncio.wait(list(self._pending))
            while self._stolen:
                stolen = self._stolen.pop()
                if not stolen.done():
                    await asyncio.wrap_future(stolen)

    def cancel_all(self) -> None:
        """Cancel every task still running (the flow run is ending abnormally)."""
        if threading.get_ident() != self.thread_id:
            self.loop.call_soon_threadsafe(self.cancel_all)
            return
        for task in list(self._pending):
            task.cancel()


# -- resolving inputs -------------------------------------------------------------------------
class Upstream:
    """What resolving a task's inputs found: failed upstreams block the run unless allowed."""

    __slots__ = ("failed",)

    def __init__(self) -> None:
        self.failed: list[uuid.UUID] = []


def has_futures(value: Any, is_future: Callable[[Any], bool], depth: int = 0) -> bool:
    """Whether ``value`` is or holds (in lists, tuples, sets, dicts) a future or a state."""
    if is_future(value) or isinstance(value, State | allow_failure):
        return True
    if depth > 5:
        return False
    if isinstance(value, list | tuple | set | frozenset):
        return any(has_futures(v, is_future, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(has_futures(v, is_future, depth + 1) for v in value.values())
    return False


async def resolve_inputs(
    value: Any,
    to_engine: Callable[[Any], EngineFuture | None],
    upstream: Upstream,
    allow: bool = False,
) -> Any:
    """Replace futures and states inside ``value`` by their results."""
    if isinstance(value, quote):
        return value.value
    if isinstance(value, allow_failure):
        return await resolve_inputs(value.value, to_engine, upstream, allow=True)
    engine_future = to_engine(value)
    if engine_future is not None:
        state = await engine_future.wait_async()
        return _state_value(state, engine_future.task_run_id, upstream, allow)
    if isinstance(value, State):
        return _state_value(value, None, upstream, allow)
    if isinstance(value, list):
        return [await resolve_inputs(v, to_engine, upstream, allow) for v in value]
    if isinstance(value, tuple):
        items = [await resolve_inputs(v, to_engine, upstream, allow) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, set | frozenset):
        return type(value)([await resolve_inputs(v, to_engine, upstream, allow) for v in value])
    if isinstance(value, dict):
        return {k: await resolve_inputs(v, to_engine, upstream, allow) for k, v in value.items()}
    return value


def _state_value(state: State, run_id: uuid.UUID | None, upstream: Upstream, allow: bool) -> Any:
    if state.type is StateType.COMPLETED:
        return state_result(state)
    if allow:
        return state_result(state, raise_on_failure=False)
    upstream.failed.append(run_id or state.state_details.task_run_id or uuid.UUID(int=0))
    return None


# -- waiting on many --------------------------------------------------------------------------
async def wait_all_async(futures: Iterable[EngineFuture]) -> None:
    """Wait, from any event loop, until every future is done (one wake-up, not one per run)."""
    pending = [f for f in futures if f._state is None]
    if not pending:
        return
    loop = asyncio.get_running_loop()
    all_done: asyncio.Future[None] = loop.create_future()
    remaining = [len(pending)]

    def settle() -> None:
        remaining[0] -= 1
        if remaining[0] == 0 and not all_done.done():
            all_done.set_result(None)

    def on_done(_owner: Any, fut_loop: asyncio.AbstractEventLoop) -> None:
        if fut_loop is loop:
            settle()
        else:
            loop.call_soon_threadsafe(settle)

    for fut in pending:
        fut.add_done_callback(functools.partial(on_done, fut_loop=fut._loop), None)
    await all_done


def wait_many(
    futures: Iterable[EngineFuture], timeout: float | None = None
) -> tuple[set[EngineFuture], set[EngineFuture]]:
    """Block until all futures are done or ``timeout``; return ``(done, not_done)``."""
    futures = list(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    for fut in futures:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not fut.wait(remaining):
            break
    done = {f for f in futures if f.done()}
    return done, {f for f in futures if not f.done()}


def _ignore_owner(fn: Callable[[EngineFuture], None], fut: EngineFuture, _owner: Any) -> None:
    fn(fut)


def as_completed_sync(
    futures: Iterable[EngineFuture], timeout: float | None = None
) -> Iterator[EngineFuture]:
    """Yield futures as they finish (blocking); ``TimeoutError`` when ``timeout`` passes."""
    pending = list(dict.fromkeys(futures))
    done_queue: list[EngineFuture] = []
    cond = threading.Condition()

    def on_done(fut: EngineFuture) -> None:
        with cond:
            done_queue.append(fut)
            cond.notify_all()

    for fut in pending:
        fut.add_done_callback(functools.partial(_ignore_owner, on_done, fut), None)
    deadline = None if timeout is None else time.monotonic() + timeout
    yielded = 0
    while yielded < len(pending):
        with cond:
            while not done_queue:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"{len(pending) - yielded} (of {len(pending)}) futures unfinished"
                    )
                cond.wait(remaining)
            item = done_queue.pop(0)
        yielded += 1
        yield item
