"""Futures of task runs, as Prefect's ``prefect.futures`` names them.

``PrefectFuture`` (the abstract base), ``PrefectTaskRunFuture``, ``PrefectWrappedFuture`` (wraps
another future object), ``PrefectConcurrentFuture`` (wraps a ``concurrent.futures.Future``
whose result is the run's final state, or a plain value), ``PrefectDistributedFuture`` (a task
run known only by its id: its state is read from the store), ``PrefectFutureList``, ``wait``,
``as_completed``, ``resolve_futures_to_states`` and ``resolve_futures_to_results``.

What ``.submit()`` / ``.map()`` and the task runners return is a ``PrefectConcurrentFuture``
backed by the engine's own future of the run (``engine_backed``): waiting on it from an event
loop's thread or a task run is safe (the engine moves runs waiting on that loop elsewhere and
gives the waiting run's slot back), and ``await future`` works in async code. Its
``wrapped_future`` (a ``concurrent.futures.Future`` resolving to the final state) is made on
first use only.
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

from millstream._engine.model.states import Pending, State, state_result
from millstream._engine.orchestrate.annotations import quote
from millstream._engine.orchestrate.scheduler import EngineFuture
from millstream._engine.orchestrate.waiting import as_completed_sync, wait_all_async, wait_many

R = TypeVar("R")
F = TypeVar("F")


class PrefectFuture(abc.ABC, Generic[R]):
    """A handle to the eventual execution of a run: wait for it, read its state and result."""

    def __init__(self, task_run_id: uuid.UUID) -> None:
        self._task_run_id = task_run_id
        self._final: State | None = None

    @property
    def task_run_id(self) -> uuid.UUID:
        """The id of the task run behind this future."""
        return self._task_run_id

    @property
    def _final_state(self) -> State | None:
        return self._final

    @_final_state.setter
    def _final_state(self, state: State | None) -> None:
        # Subclasses of Prefect's futures set it directly.
        self._final = state

    @property
    def state(self) -> State:
        """The run's final state once known, else its current one (Pending when unknown)."""
        final = self._final_state
        return final if final is not None else Pending()

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> None:
        """Wait for the run to finish, at most ``timeout`` seconds (returns either way)."""

    @abc.abstractmethod
    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The run's result, waiting for it; raises its exception if it failed (unless told
        not to) and ``TimeoutError`` when ``timeout`` passes first."""

    @abc.abstractmethod
    def add_done_callback(self, fn: Callable[[PrefectFuture[R]], None]) -> None:
        """Call ``fn(self)`` when the run finishes (at once if it already has)."""


class PrefectTaskRunFuture(PrefectFuture[R]):
    """A future of one task run."""


class PrefectWrappedFuture(PrefectTaskRunFuture[R], Generic[R, F]):
    """A task run future that wraps another future object (``wrapped_future``)."""

    def __init__(self, task_run_id: uuid.UUID, wrapped_future: F) -> None:
        self._wrapped_future: F = wrapped_future
        super().__init__(task_run_id)

    @property
    def wrapped_future(self) -> F:
        """The future object this one wraps."""
        return self._wrapped_future

    def add_done_callback(self, fn: Callable[[PrefectFuture[R]], None]) -> None:
        if self._final_state is not None:
            fn(self)
            return
        self._wrapped_future.add_done_callback(lambda _: fn(self))  # type: ignore[attr-defined]


class PrefectConcurrentFuture(PrefectWrappedFuture[R, "concurrent.futures.Future[Any]"]):
    """A task run future wrapping a ``concurrent.futures.Future``.

    Built by users around their own future (``PrefectConcurrentFuture(task_run_id=...,
    wrapped_future=...)``), its result is the wrapped future's: a ``State`` stands for the run's
    final state. Returned by ``.submit()`` and the task runners, it is backed by the engine's
    future of the run (see the module's docstring).
    """

    _engine_future: EngineFuture | None = None

    def __init__(self, task_run_id: uuid.UUID, wrapped_future: concurrent.futures.Future[Any]):
        super().__init__(task_run_id, wrapped_future)

    @classmethod
    def engine_backed(cls, engine_future: EngineFuture) -> PrefectConcurrentFuture[Any]:
        """The future of a submitted task run (no wrapped future is made until asked for)."""
        self: PrefectConcurrentFuture[Any] = cls.__new__(cls)
        self._engine_future = engine_future
        self._task_run_id = engine_future.task_run_id
        self._final = None
        return self

    # -- state ------------------------------------------------------------------------------
    @property
    def _final_state(self) -> State | None:
        engine = self._engine_future
        if engine is not None:
            return engine._state
        return self._final

    @_final_state.setter
    def _final_state(self, state: State | None) -> None:
        self._final = state

    @property
    def state(self) -> State:
        engine = self._engine_future
        if engine is not None:
            return engine.state
        return super().state

    def done(self) -> bool:
        """Whether the run has finished."""
        engine = self._engine_future
        if engine is not None:
            return engine.done()
        return self._final is not None or self._wrapped_future.done()

    @property
    def wrapped_future(self) -> concurrent.futures.Future[Any]:
        """A ``concurrent.futures.Future`` resolving to the run's final state."""
        if self._engine_future is not None and not hasattr(self, "_wrapped_future"):
            wrapped: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._wrapped_future = wrapped
            self._engine_future.add_done_callback(lambda _: wrapped.set_result(self.state), None)
        return self._wrapped_future

    # -- waiting ----------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> None:
        engine = self._engine_future
        if engine is not None:
            engine.wait(timeout)
            return
        if self._final is not None:
            return
        try:
            value = self._wrapped_future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            return
        except BaseException:
            return  # the wrapped future failed: result() raises it
        if isinstance(value, State):
            self._final = value

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        engine = self._engine_future
        if engine is not None:
            value: R = engine.result(timeout, raise_on_failure)
            return value
        if self._final is None:
            try:
                outcome = self._wrapped_future.result(timeout=timeout)
            except concurrent.futures.TimeoutError as exc:
                raise TimeoutError(
                    f"Task run {self.task_run_id} did not complete within {timeout} seconds"
                ) from exc
            if not isinstance(outcome, State):
                return outcome  # type: ignore[no-any-return]
            self._final = outcome
        final: R = state_result(self._final, raise_on_failure)
        return final

    async def aresult(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The run's result, awaited without blocking the event loop."""
        state = await self.await_state(timeout)
        value: R = state_result(state, raise_on_failure)
        return value

    async def await_state(self, timeout: float | None = None) -> State:
        """The run's final state, awaited without blocking the event loop."""
        engine = self._engine_future
        if engine is not None:
            return await engine.wait_async(timeout)
        import asyncio

        if self._final is None:
            outcome = await asyncio.wait_for(asyncio.wrap_future(self._wrapped_future), timeout)
            if not isinstance(outcome, State):
                from millstream._engine.model.states import State as _State
                from millstream._engine.model.states import StateType

                return _State(type=StateType.COMPLETED, name="Completed", data=outcome)
            self._final = outcome
        return self._final

    def __await__(self) -> Generator[Any, None, R]:
        return self.aresult().__await__()

    def add_done_callback(self, fn: Callable[[PrefectFuture[R]], None]) -> None:
        engine = self._engine_future
        if engine is not None:
            engine.add_done_callback(fn, self)
            return
        super().add_done_callback(fn)

    def __repr__(self) -> str:
        return f"PrefectConcurrentFuture(task_run_id={self.task_run_id}, state={self.state.name})"

    def __eq__(self, other: object) -> bool:
        if self._engine_future is None:
            return other is self
        return isinstance(other, PrefectConcurrentFuture) and other.task_run_id == self.task_run_id

    def __hash__(self) -> int:
        return hash(self.task_run_id) if self._engine_future is not None else id(self)


class PrefectDistributedFuture(PrefectTaskRunFuture[R]):
    """The future of a task run known only by its id, running anywhere that records into the
    same store: its state is read from the store until it is final."""

    _POLL = 0.05

    def _read(self) -> State | None:
        from millstream.client import get_client

        with get_client(sync_client=True) as client:
            try:
                run = client.read_task_run(self.task_run_id)
            except Exception:
                return None
        return getattr(run, "state", None)

    @property
    def state(self) -> State:
        if self._final is not None:
            return self._final
        current = self._read()
        if current is not None and current.is_final():
            self._final = current
        return current if current is not None else Pending()

    def wait(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.state.is_final():
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(self._POLL)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        self.wait(timeout)
        if self._final is None:
            raise TimeoutError(
                f"Task run {self.task_run_id} did not complete within {timeout} seconds"
            )
        value: R = state_result(self._final, raise_on_failure)
        return value

    def add_done_callback(self, fn: Callable[[PrefectFuture[R]], None]) -> None:
        if self.state.is_final():
            fn(self)
            return

        def watch() -> None:
            self.wait()
            fn(self)

        threading.Thread(target=watch, name="millstream-future-watch", daemon=True).start()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrefectDistributedFuture) and other.task_run_id == self.task_run_id

    def __hash__(self) -> int:
        return hash(self.task_run_id)


def _engine_of(future: Any) -> EngineFuture | None:
    engine = getattr(future, "_engine_future", None)
    return engine if isinstance(engine, EngineFuture) else None


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError(f"'timeout' must be a non-negative number, got {timeout}")


class PrefectFutureList(list[PrefectFuture[R]]):
    """A list of futures (what ``Task.map`` returns) with whole-list ``wait`` and ``result``."""

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every future is done or ``timeout`` passes (never raises for it)."""
        wait(self, timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        """The results of every future, in order. A failure is raised as soon as it happens
        (not after the runs before it); ``TimeoutError`` when ``timeout`` passes first."""
        _check_timeout(timeout)
        message = f"Timed out waiting for all futures to complete within {timeout} seconds"
        positions: dict[PrefectFuture[R], list[int]] = {}
        for i, future in enumerate(self):
            positions.setdefault(future, []).append(i)
        results: list[Any] = [None] * len(self)
        try:
            for future in as_completed(list(self), timeout=timeout):
                value = future.result(raise_on_failure=raise_on_failure)
                for i in positions[future]:
                    results[i] = value
        except _WaitTimeoutError as exc:
            raise TimeoutError(message) from exc
        return results

    async def aresult(self, raise_on_failure: bool = True) -> list[R]:
        """The results of every future, awaited without blocking the event loop."""
        engines = [_engine_of(f) for f in self]
        if all(e is not None for e in engines):
            await wait_all_async(e for e in engines if e is not None)
            return [state_result(e.state, raise_on_failure) for e in engines if e is not None]
        return [await _aresult(f, raise_on_failure) for f in self]

    def __await__(self) -> Generator[Any, None, list[R]]:
        return self.aresult().__await__()


async def _aresult(future: PrefectFuture[Any], raise_on_failure: bool) -> Any:
    aresult = getattr(future, "aresult", None)
    if aresult is not None:
        return await aresult(raise_on_failure=raise_on_failure)
    import anyio.to_thread

    return await anyio.to_thread.run_sync(lambda: future.result(raise_on_failure=raise_on_failure))


class _WaitTimeoutError(TimeoutError):
    """Waiting on futures timed out (not a TimeoutError raised by a task body)."""


class DoneAndNotDoneFutures(NamedTuple, Generic[R]):
    """What ``wait`` returns: the done and the not-done futures."""

    done: set[PrefectFuture[R]]
    not_done: set[PrefectFuture[R]]


def _is_done(future: PrefectFuture[Any]) -> bool:
    engine = _engine_of(future)
    if engine is not None:
        return engine.done()
    return future._final_state is not None


def wait(
    futures: Iterable[PrefectFuture[R]], timeout: float | None = None
) -> DoneAndNotDoneFutures[R]:
    """Wait until all futures are done or ``timeout`` passes; return the done and not done.

    Duplicates count once. Never raises for the timeout.
    """
    _check_timeout(timeout)
    unique = list(dict.fromkeys(futures))
    by_engine = {e: f for f in unique if (e := _engine_of(f)) is not None}
    others = [f for f in unique if _engine_of(f) is None]
    deadline = None if timeout is None else time.monotonic() + timeout
    if by_engine:
        wait_many(by_engine, timeout)
    for future in others:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        future.wait(remaining)
    done = {f for f in unique if _is_done(f)}
    return DoneAndNotDoneFutures(done, {f for f in unique if f not in done})


def as_completed(
    futures: Iterable[PrefectFuture[R]], timeout: float | None = None
) -> Iterator[PrefectFuture[R]]:
    """Yield futures as they finish (duplicates once); ``TimeoutError`` when ``timeout``
    passes first."""
    _check_timeout(timeout)
    unique = list(dict.fromkeys(futures))
    by_engine = {e: f for f in unique if (e := _engine_of(f)) is not None}
    if len(by_engine) == len(unique):
        try:
            for engine_future in as_completed_sync(by_engine, timeout):
                yield by_engine[engine_future]
        except TimeoutError as exc:
            if isinstance(exc, _WaitTimeoutError):
                raise
            raise _WaitTimeoutError(str(exc)) from None
        return
    yield from _as_completed_any(unique, timeout)


def _as_completed_any(
    futures: list[PrefectFuture[R]], timeout: float | None
) -> Iterator[PrefectFuture[R]]:
    finished: list[PrefectFuture[R]] = []
    cond = threading.Condition()

    def on_done(future: PrefectFuture[R]) -> None:
        with cond:
            finished.append(future)
            cond.notify_all()

    for future in futures:
        future.add_done_callback(on_done)
    deadline = None if timeout is None else time.monotonic() + timeout
    seen: set[int] = set()
    while len(seen) < len(futures):
        with cond:
            while not finished:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise _WaitTimeoutError(
                        f"{len(futures) - len(seen)} (of {len(futures)}) futures unfinished"
                    )
                cond.wait(remaining)
            item = finished.pop(0)
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, PrefectConcurrentFuture) and item._engine_future is None:
            item.wait(0)  # records the final state the wrapped future holds
        yield item


def _resolve(value: Any, fn: Callable[[PrefectFuture[Any]], Any], memo: dict[int, Any]) -> Any:
    if isinstance(value, quote):
        return value
    if isinstance(value, PrefectFuture):
        key = id(value)
        if key not in memo:
            memo[key] = fn(value)
        return memo[key]
    if isinstance(value, PrefectFutureList):
        return [_resolve(v, fn, memo) for v in value]
    if isinstance(value, list | tuple | set | frozenset):
        items = [_resolve(v, fn, memo) for v in value]
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return type(value)(*items)
        return type(value)(items)
    if isinstance(value, dict):
        items = [(_resolve(k, fn, memo), _resolve(v, fn, memo)) for k, v in value.items()]
        return type(value)(items) if type(value) is not dict else dict(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _resolve(getattr(value, f.name), fn, memo)
            for f in dataclasses.fields(value)
            if f.init
        }
        return dataclasses.replace(value, **changes)
    return value


def _state_of(future: PrefectFuture[Any]) -> State:
    future.wait()
    return future.state


def _result_of(future: PrefectFuture[Any]) -> Any:
    future.wait()
    if future.state.is_completed():
        return future.result()
    raise Exception("At least one result did not complete successfully")


def resolve_futures_to_states(value: Any) -> Any:
    """Replace futures (also inside lists, tuples, sets and dicts) by their final states,
    waiting for them; values inside ``quote`` are left alone."""
    return _resolve(value, _state_of, {})


def resolve_futures_to_results(value: Any) -> Any:
    """Replace futures (also inside collections) by their results, waiting for them; raises
    ``Exception("At least one result did not complete successfully")`` if one did not."""
    return _resolve(value, _result_of, {})


__all__ = [
    "DoneAndNotDoneFutures",
    "PrefectConcurrentFuture",
    "PrefectDistributedFuture",
    "PrefectFuture",
    "PrefectFutureList",
    "PrefectTaskRunFuture",
    "PrefectWrappedFuture",
    "as_completed",
    "resolve_futures_to_results",
    "resolve_futures_to_states",
    "wait",
]
