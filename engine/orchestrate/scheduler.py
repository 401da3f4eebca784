"""Scheduling of submitted task runs: the loops that run them, thread-safe engine futures, and
run groups (the submitted task runs of one flow run)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import uuid
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from millstream._engine.bridge.executors import Executor
from millstream._engine.model.records import TaskRun
from millstream._engine.model.states import (
    Pending,
    State,
    crashed_from_exception,
    state_result,
)
from millstream._engine.orchestrate.slots import Held, Slots, Ticket, held_var

R = TypeVar("R")
T = TypeVar("T")


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


def blocking_here() -> _LoopState | None:
    """The state of the loop this thread runs, if task runs are scheduled on it."""
    loop = asyncio.events._get_running_loop()
    if loop is None:
        return None
    state = _loop_states.get(loop)
    if state is None or state.thread_id != threading.get_ident():
        return None
    return state


class Waiting:
    """A blocking wait on this thread: the loop it runs (if any) hands its waiting runs to
    lanes meanwhile, and the task run it is part of gives its slot back until the wait ends."""

    __slots__ = ("_held", "_state")

    def __init__(self, state: _LoopState | None, held: Held | None) -> None:
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
        self._ticket: Ticket | None = None
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
        state = blocking_here()
        held = held_var.get()
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
        with Waiting(state, held):
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
        held = held_var.get()
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
                f"Task run {self.task_run_id} did not complete within {timeout} seconds"
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

    async def _take_slot(self, future: EngineFuture, home: asyncio.Task[Any] | None) -> Held | None:
        slots = self.slots
        if slots is None:
            if held_var.get() is not None:  # inherited from a submitting run: not ours
                held_var.set(None)
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
        held = Held(slots)
        held_var.set(held)
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
