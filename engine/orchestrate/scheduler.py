"""Scheduling of submitted task runs: run groups, thread-safe engine futures, input resolution."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import functools
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, Generic, TypeVar

from millstream._engine.bridge.executors import Executor
from millstream._engine.model.records import TaskRun
from millstream._engine.model.states import (
    Pending,
    State,
    StateType,
    crashed_from_exception,
    state_result,
)

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


# -- slots: the task runner's bound on concurrently running task runs -------------------------
class _Ticket:
    """One party waiting for a slot: a thread (``event``) or a coroutine (``fut`` on ``loop``)."""

    __slots__ = ("event", "fut", "granted", "loop", "withdrawn")

    def __init__(
        self,
        event: threading.Event | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.event = event
        self.loop = loop
        self.fut: asyncio.Future[None] | None = loop.create_future() if loop is not None else None
        self.granted = False
        self.withdrawn = False


def _grant(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Slots:
    """A first-come first-served counting semaphore for any thread and any event loop.

    Unlike ``asyncio.Semaphore`` it is not tied to one loop: a run moved to another loop, and a
    worker thread that gave its slot back while it waited, take slots from the same count.
    """

    __slots__ = ("_free", "_lock", "_waiters")

    def __init__(self, count: int) -> None:
        self._free = count
        self._lock = threading.Lock()
        self._waiters: collections.deque[_Ticket] = collections.deque()

    def request(self, loop: asyncio.AbstractEventLoop) -> _Ticket | None:
        """Take a slot now (None), or get a ticket to ``wait`` for one on ``loop``."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return None
            ticket = _Ticket(loop=loop)
            self._waiters.append(ticket)
            return ticket

    async def wait(self, ticket: _Ticket) -> None:
        """Wait until ``ticket`` is granted its slot (a cancelled wait withdraws it)."""
        assert ticket.fut is not None
        try:
            await ticket.fut
        except asyncio.CancelledError:
            self.withdraw(ticket)
            raise

    async def acquire(self) -> None:
        """Take a slot, waiting on the running loop for one."""
        ticket = self.request(asyncio.get_running_loop())
        if ticket is not None:
            await self.wait(ticket)

    def acquire_blocking(self) -> None:
        """Take a slot, blocking this thread (which must not be running a loop) for one."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            ticket = _Ticket(event=threading.Event())
            self._waiters.append(ticket)
        assert ticket.event is not None
        ticket.event.wait()

    def withdraw(self, ticket: _Ticket) -> None:
        """Stop waiting with ``ticket``; a slot it was already granted goes to the next."""
        with self._lock:
            if ticket.withdrawn:
                return
            ticket.withdrawn = True
            if ticket.granted:
                self._release_locked()
            else:
                self._waiters.remove(ticket)

    def release(self) -> None:
        """Give a slot back (to the longest waiting party, if any)."""
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        while self._waiters:
            ticket = self._waiters.popleft()
            ticket.granted = True
            if ticket.event is not None:
                ticket.event.set()
                return
            assert ticket.loop is not None and ticket.fut is not None
            try:
                ticket.loop.call_soon_threadsafe(_grant, ticket.fut)
            except RuntimeError:  # its loop closed: nobody waits there anymore
                ticket.withdrawn = True
                continue
            return
        self._free += 1


class _Held:
    """The slot a running task run holds; given back while the run waits for another run."""

    __slots__ = ("held", "slots")

    def __init__(self, slots: Slots) -> None:
        self.slots = slots
        self.held = True

    def give_back(self) -> bool:
        if not self.held:
            return False
        self.held = False
        self.slots.release()
        return True

    def take_back_blocking(self) -> None:
        self.slots.acquire_blocking()
        self.held = True

    async def take_back(self) -> None:
        await self.slots.acquire()
        self.held = True


# The slot of the task run whose code is running (its coroutine, or its sync body's thread).
_held_var: contextvars.ContextVar[_Held | None] = contextvars.ContextVar(
    "millstream_held_slot", default=None
)


# -- the loops that run task runs -------------------------------------------------------------
_Entry = tuple["RunGroup", Callable[[], Coroutine[Any, Any, State]], Any, contextvars.Context]


class _LoopState:
    """The submitted task runs waiting to start on one event loop, and whether its thread is
    stuck in a blocking wait (then nothing new is started there: it goes to a lane)."""

    __slots__ = ("__weakref__", "blocked", "incoming", "lock", "loop", "queued", "thread_id")

    def __init__(self, loop: asyncio.AbstractEventLoop, thread_id: int) -> None:
        self.loop = loop
        self.thread_id = thread_id
        self.lock = threading.Lock()
        self.blocked = 0
        # Started on the loop, not yet running their body (also: waiting for a slot).
        self.queued: dict[EngineFuture, _Entry] = {}
        # Submitted from another thread, the start posted to the loop but not run yet.
        self.incoming: dict[EngineFuture, _Entry] = {}

    def holds(self, future: EngineFuture) -> bool:
        """Whether ``future``'s run waits here to start (so it can still move elsewhere)."""
        return future in self.queued or future in self.incoming

    def block(self) -> None:
        """This loop's thread is about to block: move every run waiting here to a lane.

        Called on the loop's own thread, so no coroutine of this loop runs meanwhile.
        """
        with self.lock:
            self.blocked += 1
            incoming, self.incoming = self.incoming, {}
        queued, self.queued = self.queued, {}
        for future, (group, make, owner, ctx) in queued.items():
            task = future._task
            ticket = future._ticket
            future._task = None  # tells the old coroutine it was moved
            future._ticket = None
            if ticket is not None and group.slots is not None:
                group.slots.withdraw(ticket)
            if task is not None:
                task.cancel()  # never started, or stopped while waiting for a slot
                group._pending.discard(task)
            group._to_lane(future, make, owner, ctx)
        for future, (group, make, owner, ctx) in incoming.items():
            group._to_lane(future, make, owner, ctx)

    def unblock(self) -> None:
        with self.lock:
            self.blocked -= 1


_loop_states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
    weakref.WeakKeyDictionary()
)
_loop_states_lock = threading.Lock()


def _loop_state(loop: asyncio.AbstractEventLoop, thread_id: int) -> _LoopState:
    state = _loop_states.get(loop)
    if state is None:
        with _loop_states_lock:
            state = _loop_states.get(loop)
            if state is None:
                state = _loop_states[loop] = _LoopState(loop, thread_id)
    return state


def _blocking_here() -> _LoopState | None:
    """The state of the loop this thread runs, if task runs are scheduled on it."""
    loop = asyncio.events._get_running_loop()
    if loop is None:
        return None
    state = _loop_states.get(loop)
    if state is None or state.thread_id != threading.get_ident():
        return None
    return state


class _Waiting:
    """A blocking wait on this thread: the loop it runs (if any) hands its waiting runs to
    lanes meanwhile, and the task run it is part of gives its slot back until the wait ends."""

    __slots__ = ("_held", "_state")

    def __init__(self, state: _LoopState | None, held: _Held | None) -> None:
        self._state = state
        self._held = held

    def __enter__(self) -> None:
        if self._state is not None:
            self._state.block()
        if self._held is not None and not self._held.give_back():
            self._held = None

    def __exit__(self, *_: object) -> None:
        if self._state is not None:
            self._state.unblock()
        if self._held is not None:
            self._held.take_back_blocking()


class EngineFuture:
    """The future of one submitted task run; safe to wait on from any thread or loop.

    ``_settle`` is the one place its outcome is set (the run's driver calls it once, on
    whichever loop ran the run); ``wait`` (threads) and ``wait_async`` (any loop) are thin
    waiters on top of it.
    """

    __slots__ = (
        "_callbacks",
        "_event",
        "_group",
        "_lock",
        "_loop",
        "_state",
        "_task",
        "_ticket",
        "_waiters",
        "task_run",
        "task_run_id",
    )

    def __init__(self, task_run: TaskRun, loop: asyncio.AbstractEventLoop) -> None:
        self.task_run = task_run
        self.task_run_id: uuid.UUID = task_run.id
        self._loop = loop
        self._state: State | None = None
        self._task: asyncio.Task[State | None] | None = None
        self._ticket: _Ticket | None = None
        self._lock = threading.Lock()
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[[Any], object]] | None = None
        self._waiters: list[asyncio.Future[State]] | None = None
        self._group: RunGroup | None = None

    # -- the outcome --------------------------------------------------------------------------
    def _settle(self, state: State, owner: Any) -> None:
        """Set the final state and wake every waiter: threads, loops and callbacks."""
        with self._lock:
            if self._state is not None:
                return
            self._state = state
            event = self._event
            callbacks = self._callbacks
            waiters = self._waiters
        if event is not None:
            event.set()
        if waiters:
            here = asyncio.events._get_running_loop()
            for waiter in waiters:
                wloop = waiter.get_loop()
                if wloop is here:
                    _resolve_waiter(waiter, state)
                else:
                    try:
                        wloop.call_soon_threadsafe(_resolve_waiter, waiter, state)
                    except RuntimeError:  # that waiter's loop closed: nobody waits there
                        pass
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
        return asyncio.events._get_running_loop() is self._loop

    # -- waiting ------------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> bool:
        """Block the calling thread until done or ``timeout``; True when done.

        On an event loop's thread the loop cannot run anything meanwhile: the runs waiting to
        start there move to lanes (threads of their own). Inside a task run, its slot of the
        task runner is given back while it waits.
        """
        if self._state is not None:
            return True
        state = _blocking_here()
        held = _held_var.get()
        if state is None and held is None:
            return self._wait_event(timeout)
        task = self._task  # None once moved to a lane (its loop may not be known yet)
        if (
            state is not None
            and task is not None
            and task.get_loop() is state.loop
            and not state.holds(self)
        ):
            raise RuntimeError(
                "Waiting synchronously for a task run that already started on this same "
                "event loop would block it forever; use `await future` (or "
                "`await future.aresult()`) inside async flows."
            )
        with _Waiting(state, held):
            return self._wait_event(timeout)

    def _wait_event(self, timeout: float | None) -> bool:
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
        held = _held_var.get()
        if held is None or not held.give_back():
            return await self._wait_async(timeout)
        try:
            return await self._wait_async(timeout)
        finally:
            await held.take_back()

    async def _wait_async(self, timeout: float | None) -> State:
        waiter: asyncio.Future[State] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._state is not None:
                return self._state
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
        if timeout is None:
            return await waiter
        return await asyncio.wait_for(waiter, timeout)

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


class RunGroup:
    """The submitted task runs of one flow run, on the loop that orchestrates the flow."""

    __slots__ = (
        "_lane",
        "_lane_tasks",
        "_pending",
        "_stolen",
        "loop",
        "pool",
        "slots",
        "thread_id",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        thread_id: int,
        pool: Executor | None,
        max_concurrency: int | None,
    ) -> None:
        self.loop = loop
        self.thread_id = thread_id
        self._lane = _loop_state(loop, thread_id)
        self.pool = pool
        self.slots = Slots(max_concurrency) if max_concurrency else None
        self._pending: set[asyncio.Task[State | None]] = set()
        # Outcomes of runs moved to lanes (their loop's thread blocked in a wait), and the
        # tasks running them there (for cancel_all).
        self._stolen: list[concurrent.futures.Future[State | None]] = []
        self._lane_tasks: set[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = set()

    def submit(
        self,
        future: EngineFuture,
        make: Callable[[], Coroutine[Any, Any, State]],
        owner: Any,
    ) -> None:
        """Start ``make()`` as a task of this group; its outcome settles ``future``."""
        future._group = self
        lane = self._lane
        if threading.get_ident() == self.thread_id and not lane.blocked:
            self._start(future, make, owner)
            return
        ctx = contextvars.copy_context()
        with lane.lock:
            blocked = lane.blocked
            if not blocked:
                lane.incoming[future] = (self, make, owner, ctx)
        if blocked:
            self._to_lane(future, make, owner, ctx)
        else:
            self.loop.call_soon_threadsafe(self._start_incoming, future)

    def _start_incoming(self, future: EngineFuture) -> None:
        lane = self._lane
        with lane.lock:
            entry = lane.incoming.pop(future, None)
        if entry is not None:  # else it moved to a lane meanwhile
            _, make, owner, ctx = entry
            ctx.run(self._start, future, make, owner)

    def _start(
        self, future: EngineFuture, make: Callable[[], Coroutine[Any, Any, State]], owner: Any
    ) -> None:
        ctx = contextvars.copy_context()
        # The driver learns its own task through ``future._task``, set before it first runs.
        task = self.loop.create_task(self._drive(future, make, owner), context=ctx)
        future._task = task
        self._pending.add(task)
        self._lane.queued[future] = (self, make, owner, ctx)

    def _to_lane(
        self,
        future: EngineFuture,
        make: Callable[[], Coroutine[Any, Any, State]],
        owner: Any,
        ctx: contextvars.Context,
    ) -> None:
        """Run ``make()`` on a thread and loop of its own (this group's loop cannot)."""
        from millstream._engine.bridge.executors import run_on_lane

        future._task = None
        # A copy: the moved task may still be unwinding in ``ctx`` on its old loop.
        self._stolen.append(run_on_lane(self._drive_lane(future, make, owner), ctx.copy()))

    async def _drive_lane(
        self, future: EngineFuture, make: Callable[[], Coroutine[Any, Any, State]], owner: Any
    ) -> State | None:
        loop = future._loop = asyncio.get_running_loop()
        current = asyncio.current_task()
        assert current is not None
        me = (loop, current)
        self._lane_tasks.add(me)
        try:
            return await self._drive(future, make, owner, on_lane=True)
        finally:
            self._lane_tasks.discard(me)

    async def _take_slot(
        self, future: EngineFuture, home: asyncio.Task[Any] | None
    ) -> _Held | None:
        slots = self.slots
        if slots is None:
            if _held_var.get() is not None:  # inherited from a submitting run: not ours
                _held_var.set(None)
            return None
        ticket = slots.request(asyncio.get_running_loop())
        if ticket is not None:
            if home is None:
                await slots.wait(ticket)
            else:
                # Still queued while it waits: a blocking wait here may move it to a lane.
                future._ticket = ticket
                await slots.wait(ticket)
                future._ticket = None
        held = _Held(slots)
        _held_var.set(held)
        return held

    async def _drive(
        self,
        future: EngineFuture,
        make: Callable[[], Coroutine[Any, Any, State]],
        owner: Any,
        on_lane: bool = False,
    ) -> State | None:
        """Run one task run to its final state and settle its future with it (the only
        caller of ``_settle``): on this group's loop, or on a lane."""
        queued = self._lane.queued
        # Its task on this group's loop (None on a lane): no longer the future's once moved.
        home = None if on_lane else future._task
        state: State | None = None
        try:
            held = await self._take_slot(future, home)
            if home is not None:
                queued.pop(future, None)
            try:
                state = await make()
            finally:
                if held is not None:
                    held.give_back()
        except BaseException as exc:
            if home is not None:
                if future._task is not home:  # moved to a lane while waiting for a slot
                    return None
                queued.pop(future, None)
            state = crashed_from_exception(exc, "Task run")
            raise
        finally:
            if home is not None:
                # Discarded here rather than by a done callback: one less loop callback per run.
                self._pending.discard(home)
            if state is not None:
                future._settle(state, owner)
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
                    await asyncio.wait([asyncio.wrap_future(stolen)])

    def cancel_all(self) -> None:
        """Cancel every task still running (the flow run is ending abnormally)."""
        # Lanes first, from here: this group's loop may be the one blocked waiting for them.
        for loop, lane_task in list(self._lane_tasks):
            try:
                loop.call_soon_threadsafe(lane_task.cancel)
            except RuntimeError:  # that lane just ended
                pass
        if threading.get_ident() != self.thread_id:
            self.loop.call_soon_threadsafe(self._cancel_pending)
        else:
            self._cancel_pending()

    def _cancel_pending(self) -> None:
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

    def on_done(_owner: Any) -> None:
        # Called on the thread of whichever loop ran the task run (it may have moved).
        if asyncio.events._get_running_loop() is loop:
            settle()
        else:
            loop.call_soon_threadsafe(settle)

    for fut in pending:
        fut.add_done_callback(on_done, None)
    held = _held_var.get()
    if held is None or not held.give_back():
        await all_done
        return
    try:
        await all_done
    finally:
        await held.take_back()


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
            item = done_queue.pop(0) if done_queue else None
        if item is None:
            # Outside the condition's lock: giving back or taking a slot may take a while.
            with _Waiting(_blocking_here(), _held_var.get()), cond:
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
