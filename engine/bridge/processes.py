"""Other processes on this host: the process pool task runner, and whether a run's owner lives.

``ProcessPoolTaskRunner`` runs every submitted task body (sync or async) in a pool of worker
processes: the standard library's ``concurrent.futures.ProcessPoolExecutor`` with the
``spawn`` start method (as Prefect: a fork of a process running the engine's threads would
inherit their locks mid-use). Each flow run gets a pool of its own, started with the first
submitted body and shut down when the flow run ends. What crosses, and who records what, is
``orchestrate.remote``'s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import logging
import multiprocessing
import threading
from collections.abc import Callable, Iterable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from millstream._engine.bridge.executors import Executor
from millstream._engine.bridge.task_runners import (
    BodyTimedOut,
    RemoteBase,
    TaskRunner,
    check_max_workers,
)

# In a worker process: where it says that a body with a timeout has started (its clock starts
# then, not while the pool starts or the call waits for a free worker).
_starts: Any = None


def _start_worker(
    starts: Any, initializer: Callable[..., object] | None, initargs: tuple[Any, ...]
) -> None:
    global _starts
    _starts = starts
    # The user's initializer runs after the worker can run bodies, as Prefect orders it.
    if initializer is not None:
        initializer(*initargs)


def _announced(worker: Callable[..., bytes], key: int, *args: Any) -> bytes:
    """In a worker process: run ``worker``, which says when the body of ``key`` starts (after
    importing the task's module: that is not the body's time)."""
    starts = _starts
    return worker(*args, on_start=None if starts is None else functools.partial(starts.put, key))


def _processors(factories: tuple[Callable[[], Any], ...]) -> tuple[Any, ...]:
    made = []
    for factory in factories:
        try:
            made.append(factory())
        except Exception:  # as Prefect: a factory that fails is left out, and said so
            logging.getLogger("millstream.task_runner").exception(
                "Ignoring subprocess message processor factory %r: it raised", factory
            )
    return tuple(made)


async def _within(outcome: asyncio.Future[bytes], started: asyncio.Event, timeout: float) -> bytes:
    """``outcome``, allowing the body ``timeout`` seconds from its start."""
    waiting: asyncio.Future[Any] = asyncio.ensure_future(started.wait())
    either: set[asyncio.Future[Any]] = {waiting, outcome}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if not outcome.done():
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(outcome)
        except TimeoutError:
            # Nobody reads the abandoned outcome: retrieve it so that asyncio does not report it.
            outcome.add_done_callback(_retrieved)
            raise BodyTimedOut(f"{timeout:g} second(s)") from None
    return outcome.result()


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class WorkerDied(RuntimeError):
    """The worker process running a task body ended abruptly (killed, crashed, exited)."""


class ProcessPool(RemoteBase):
    """One flow run's pool of worker processes (started on first use)."""

    def __init__(
        self,
        max_workers: int,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        allow_pickle: bool,
    ) -> None:
        super().__init__(allow_pickle)
        self.max_workers = max_workers
        self._initializer = initializer
        self._initargs = initargs
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._abandoned = 0  # bodies still running whose task run stopped waiting (timeouts)
        self._starts: Any = None
        self._keys = itertools.count()
        self._waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}
        self._ready: dict[
            asyncio.AbstractEventLoop,
            list[tuple[asyncio.Future[bytes], concurrent.futures.Future[bytes]]],
        ] = {}
        self.message_processors: tuple[Any, ...] = ()

    def _the_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    context = multiprocessing.get_context("spawn")
                    if self._starts is None:
                        self._starts = context.SimpleQueue()
                        threading.Thread(
                            target=self._read_starts,
                            args=(self._starts,),
                            name="millstream-pool-starts",
                            daemon=True,
                        ).start()
                    self._pool = concurrent.futures.ProcessPoolExecutor(
                        max_workers=self.max_workers,
                        mp_context=context,
                        initializer=_start_worker,
                        initargs=(self._starts, self._initializer, self._initargs),
                    )
                pool = self._pool
        return pool

    def _read_starts(self, starts: Any) -> None:
        while (key := starts.get()) is not None:
            with self._lock:
                entry = self._waiting.pop(key, None)
            if entry is not None:
                loop, started = entry
                with contextlib.suppress(RuntimeError):  # that loop closed: nobody waits
                    loop.call_soon_threadsafe(started.set)

    def submit(
        self, worker: Callable[..., bytes], *args: Any
    ) -> tuple[concurrent.futures.ProcessPoolExecutor, concurrent.futures.Future[bytes]]:
        """Hand ``worker(*args)`` to a worker process (a new pool if the last one broke)."""
        pool = self._the_pool()
        try:
            return pool, pool.submit(worker, *args)
        except BrokenProcessPool:
            self._replace(pool)
            pool = self._the_pool()
            return pool, pool.submit(worker, *args)

    def _replace(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    async def send(
        self, worker: Callable[..., bytes], request: bytes, fn: Any, timeout: float | None
    ) -> bytes:
        """Run ``worker(request)`` in a worker process and await its encoded outcome;
        ``BodyTimedOut`` when it runs ``timeout`` seconds past its start."""
        args = (request,) if fn is None else (request, fn)
        started: asyncio.Event | None = None
        if timeout is not None:
            key = next(self._keys)
            started = asyncio.Event()
            with self._lock:
                self._waiting[key] = (asyncio.get_running_loop(), started)
            args = (worker, key, *args)
            worker = _announced
        pool, future = self.submit(worker, *args)
        try:
            outcome = self._outcome_of(future)
            if started is None or timeout is None:
                return await outcome
            return await _within(outcome, started, timeout)
        except (asyncio.CancelledError, BodyTimedOut):
            if started is not None:
                with self._lock:
                    self._waiting.pop(key, None)
            if not future.cancel():
                self._abandoned += 1
            raise
        except BrokenProcessPool as exc:
            self._replace(pool)  # the next body gets a new pool
            raise WorkerDied(
                "The worker process running this task ended abruptly (killed, crashed or "
                f"exited): {exc}"
            ) from None

    def _outcome_of(self, future: concurrent.futures.Future[bytes]) -> asyncio.Future[bytes]:
        """An asyncio future of ``future`` on this loop. Outcomes that finish while the loop is
        busy reach it together, in one wake-up (``asyncio.wrap_future`` costs one each)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes] = loop.create_future()

        def finished(done: concurrent.futures.Future[bytes]) -> None:
            with self._lock:
                ready = self._ready.setdefault(loop, [])
                first = not ready
                ready.append((waiter, done))
            if first:
                with contextlib.suppress(RuntimeError):  # that loop closed: nobody waits
                    loop.call_soon_threadsafe(self._deliver, loop)

        future.add_done_callback(finished)
        return waiter

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            ready = self._ready.pop(loop, [])
        for waiter, done in ready:
            if waiter.done():
                continue  # cancelled: nobody waits
            if done.cancelled():
                waiter.cancel()
            elif (exc := done.exception()) is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(done.result())

    def shutdown(self) -> None:
        """Stop the pool: queued bodies are dropped; bodies abandoned at their timeout are
        stopped with their processes (nothing waits for them any more)."""
        if self._starts is not None:
            self._starts.put(None)  # ends the thread reading starts
            self._starts = None
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values()) if self._abandoned else []
        pool.shutdown(wait=not processes, cancel_futures=True)
        for process in processes:
            process.terminate()


class ProcessPoolTaskRunner(TaskRunner):
    """Runs submitted task bodies, sync and async, in worker processes; the flow, its states and
    its records stay in this process.

    ``max_workers``: how many worker processes (and concurrently running submitted task runs);
    left out, the ``tasks.runner_process_pool_max_workers`` setting, else the CPU count (read
    when the runner is made, as Prefect does). ``initializer(*initargs)`` runs once in each
    worker process before any task body (it must be importable by name there).
    ``subprocess_message_processor_factories``: see the property. ``allow_pickle``: let
    parameters, return values and exceptions that msgpack cannot hold cross by pickle (off:
    such a value fails the task run with an error naming it). Task functions must be
    importable by the worker by module and name. ``timeout_seconds`` counts from the body's
    start in the worker (each worker says when a body with a timeout starts); past it the run
    fails at once; a sync body cannot be stopped where it runs, so its process is stopped when
    the flow run ends.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        subprocess_message_processor_factories: Iterable[Any] | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        allow_pickle: bool = False,
    ) -> None:
        super().__init__()
        check_max_workers(max_workers)
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable, got {initializer!r}")
        if max_workers is None:
            # Resolved now, as Prefect does: the setting, else the CPU count.
            from millstream._engine.settings import get_current_settings

            configured = get_current_settings().tasks.runner_process_pool_max_workers
            max_workers = configured or multiprocessing.cpu_count()
        self._max_workers: int = max_workers
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._factories: tuple[Callable[[], Any], ...] = tuple(
            subprocess_message_processor_factories or ()
        )
        self.allow_pickle = bool(allow_pickle)

    @property
    def max_workers(self) -> int:
        """The number of worker processes."""
        return self._max_workers

    @property
    def subprocess_message_processor_factories(self) -> tuple[Callable[[], Any], ...]:
        """Factories of processors of the lines worker processes send back (Prefect's): each
        makes a ``processor(message_type, payload)`` per flow run, called for each line as
        ``("log", {"flow_run_id", "task_run_id", "name", "level", "timestamp", "message"})``;
        it returns the (possibly changed) pair, or None to drop the line."""
        return self._factories

    @subprocess_message_processor_factories.setter
    def subprocess_message_processor_factories(self, factories: Iterable[Any] | None) -> None:
        if self._started:
            raise RuntimeError(
                "Cannot configure subprocess message processor factories while task runner "
                "is started"
            )
        self._factories = tuple(factories or ())

    def set_subprocess_message_processor_factories(self, factories: Iterable[Any] | None) -> None:
        """Set ``subprocess_message_processor_factories`` (Prefect's older spelling)."""
        self.subprocess_message_processor_factories = factories

    def acquire(self) -> Executor:
        pool = ProcessPool(self._max_workers, self._initializer, self._initargs, self.allow_pickle)
        pool.message_processors = _processors(self._factories)
        return pool

    def release(self, executor: Executor) -> None:
        if isinstance(executor, ProcessPool):
            executor.shutdown()

    def max_concurrency(self) -> int | None:
        # A few bodies queued per worker keep the workers fed while this process orchestrates
        # the next runs (one at a time per worker, each worker idles for a round trip per
        # task); runs past that bound wait (Pending) rather than show Running for long.
        return 8 * self.max_workers

    def duplicate(self) -> ProcessPoolTaskRunner:
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)  # a subclass with its own __init__ duplicates too
        copy._started = False
        copy._standalone = None
        return copy

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and other._max_workers == self._max_workers

    def __hash__(self) -> int:
        return hash((type(self), self._max_workers))

    def __repr__(self) -> str:
        return f"ProcessPoolTaskRunner(max_workers={self._max_workers!r})"
