"""Futures of submitted task runs: ``PrefectFuture``, lists of them, ``wait``, ``as_completed``."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

from millstream._engine.model.states import State, state_result
from millstream._engine.orchestrate.scheduler import EngineFuture
from millstream._engine.orchestrate.waiting import as_completed_sync, wait_all_async, wait_many

R = TypeVar("R")


class PrefectFuture(Generic[R]):
    """The future of a submitted task run.

    ``result()`` blocks the calling thread; inside an async flow, ``await future`` (or
    ``await future.aresult()``) waits without blocking the event loop.
    """

    __slots__ = ("_engine_future",)

    def __init__(self, engine_future: EngineFuture) -> None:
        self._engine_future = engine_future

    @property
    def task_run_id(self) -> uuid.UUID:
        """The id of the task run behind this future."""
        return self._engine_future.task_run_id

    @property
    def state(self) -> State:
        """The task run's current state (final once the future is done)."""
        return self._engine_future.state

    def done(self) -> bool:
        """Whether the task run has finished."""
        return self._engine_future.done()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the task run finishes or ``timeout`` seconds pass."""
        self._engine_future.wait(timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The task run's result; raises its exception if it failed (unless told not to)."""
        value: R = self._engine_future.result(timeout, raise_on_failure)
        return value

    async def aresult(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """The task run's result, awaited without blocking the event loop."""
        state = await self._engine_future.wait_async(timeout)
        value: R = state_result(state, raise_on_failure)
        return value

    async def await_state(self, timeout: float | None = None) -> State:
        """The task run's final state, awaited without blocking the event loop."""
        return await self._engine_future.wait_async(timeout)

    def __await__(self) -> Generator[Any, None, R]:
        return self.aresult().__await__()

    def add_done_callback(self, fn: Callable[[PrefectFuture[R]], object]) -> None:
        """Call ``fn(self)`` when the task run finishes (at once if it already has)."""
        self._engine_future.add_done_callback(fn, self)

    def __repr__(self) -> str:
        return f"PrefectFuture(task_run_id={self.task_run_id}, state={self.state.name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrefectFuture) and other.task_run_id == self.task_run_id

    def __hash__(self) -> int:
        return hash(self.task_run_id)


class PrefectFutureList(list[PrefectFuture[R]]):
    """A list of futures (what ``Task.map`` returns) with whole-list ``wait`` and ``result``."""

    def wait(self, timeout: float | None = None) -> None:
        """Block until every future is done or ``timeout`` passes."""
        wait(self, timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        """The results of every future, in order; raises the first failure (unless told not to)."""
        _, not_done = wait(self, timeout)
        if not_done:
            raise TimeoutError(f"{len(not_done)} of {len(self)} futures did not finish in time")
        return [f.result(raise_on_failure=raise_on_failure) for f in self]

    async def aresult(self, raise_on_failure: bool = True) -> list[R]:
        """The results of every future, awaited without blocking the event loop."""
        await wait_all_async(f._engine_future for f in self)
        return [state_result(f._engine_future.state, raise_on_failure) for f in self]

    def __await__(self) -> Generator[Any, None, list[R]]:
        return self.aresult().__await__()


class DoneAndNotDoneFutures(NamedTuple, Generic[R]):
    """What ``wait`` returns: the done and the not-done futures."""

    done: set[PrefectFuture[R]]
    not_done: set[PrefectFuture[R]]


def wait(
    futures: Iterable[PrefectFuture[R]], timeout: float | None = None
) -> DoneAndNotDoneFutures[R]:
    """Block until all futures are done or ``timeout`` passes; return done and not done."""
    by_engine = {f._engine_future: f for f in futures}
    done, not_done = wait_many(by_engine, timeout)
    return DoneAndNotDoneFutures({by_engine[f] for f in done}, {by_engine[f] for f in not_done})


def as_completed(
    futures: Iterable[PrefectFuture[R]], timeout: float | None = None
) -> Iterator[PrefectFuture[R]]:
    """Yield futures as they finish; ``TimeoutError`` if ``timeout`` passes first."""
    by_engine = {f._engine_future: f for f in futures}
    for engine_future in as_completed_sync(by_engine, timeout):
        yield by_engine[engine_future]


def resolve_futures_to_states(value: Any) -> Any:
    """Replace futures (also inside lists, tuples, sets and dicts) by their final states."""
    if isinstance(value, PrefectFuture):
        value.wait()
        return value.state
    if isinstance(value, list | tuple | set):
        return type(value)(resolve_futures_to_states(v) for v in value)
    if isinstance(value, dict):
        return {k: resolve_futures_to_states(v) for k, v in value.items()}
    return value


__all__ = [
    "DoneAndNotDoneFutures",
    "PrefectFuture",
    "PrefectFutureList",
    "as_completed",
    "resolve_futures_to_states",
    "wait",
]
