"""Task runners: where the bodies of submitted task runs execute.

``ThreadPoolTaskRunner`` (the default): sync bodies on threads, async bodies as coroutines.
``ProcessPoolTaskRunner`` (``processes``) and ``DaskTaskRunner`` (``dask_runner``) run every
submitted body, sync or async, elsewhere: their executors are ``RemoteExecutor``s, which take
an encoded request (bytes) and give back an encoded outcome (bytes). The orchestration, the
states and every database write stay in this process (``orchestrate.remote`` encodes, decodes
and records).

A runner is also usable on its own, as in Prefect: ``with ThreadPoolTaskRunner() as runner:
runner.submit(task, {"x": 1})``. Submitting needs the orchestration and the public futures,
which this layer cannot import: the public API installs them (``set_front``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, Protocol, Self, runtime_checkable

from millstream._engine.bridge.executors import Executor
from millstream._engine.bridge.threads import WORKER_THREADS, run_in_worker


@runtime_checkable
class RemoteExecutor(Protocol):
    """Runs task bodies in other processes: one encoded request in, one encoded outcome out.

    ``run`` still runs a sync callable here (on a worker thread): the engine's own helpers
    (transaction hooks) never leave the orchestrating process.
    """

    remote: bool
    allow_pickle: bool
    # Whether the worker can import the task's module by name (False: the function itself is
    # handed to the transport, which must know how to ship code).
    by_reference_only: bool

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    async def send(
        self, worker: Callable[[bytes], bytes], request: bytes, fn: Any, timeout: float | None
    ) -> bytes: ...


class BodyTimedOut(TimeoutError):
    """A remote executor's body ran past its timeout, counted from when it started."""


class RemoteBase:
    """What the remote executors share: local ``run`` for engine helpers, the flags."""

    remote = True
    by_reference_only = True

    def __init__(self, allow_pickle: bool) -> None:
        self.allow_pickle = allow_pickle

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run an engine helper here, on a worker thread (never remotely)."""
        return await run_in_worker(fn, *args)


class Front(Protocol):
    """How a started runner submits tasks on its own (installed by the public API)."""

    def start(self, runner: TaskRunner) -> Any: ...

    def stop(self, runner: TaskRunner, state: Any) -> None: ...

    def cancel(self, runner: TaskRunner, state: Any) -> None: ...

    def submit(
        self,
        runner: TaskRunner,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None,
        dependencies: dict[str, Any] | None,
    ) -> Any: ...

    def map(
        self, runner: TaskRunner, task: Any, parameters: dict[str, Any], wait_for: Any
    ) -> Any: ...


_front: Front | None = None


def set_front(front: Front) -> None:
    """Install how runners used on their own submit (the public API does, on import)."""
    global _front
    _front = front


def _the_front() -> Front:
    if _front is None:
        raise RuntimeError("Import millstream before submitting to a task runner directly")
    return _front


class TaskRunner:
    """Base of the task runners: gives each flow run an executor for submitted task bodies.

    Used on its own it is a context manager: ``with runner: runner.submit(task, parameters)``.
    """

    def __init__(self) -> None:
        self._started = False
        self._standalone: Any = None

    @property
    def name(self) -> str:
        """Prefect's short name: the class name, lower case, without ``TaskRunner``."""
        return type(self).__name__.lower().replace("taskrunner", "")

    def acquire(self) -> Executor:
        """An executor for one flow run's submitted task bodies."""
        raise NotImplementedError

    def release(self, executor: Executor) -> None:
        """Give back what ``acquire`` returned when the flow run ends."""

    def max_concurrency(self) -> int | None:
        """A bound on concurrently running submitted task runs (None: no bound)."""
        return None

    def duplicate(self) -> TaskRunner:
        """A fresh runner with the same configuration."""
        return type(self)()

    # -- used on its own ----------------------------------------------------------------------
    def __enter__(self) -> Self:
        if self._started:
            raise RuntimeError("This task runner is already started")
        self._standalone = _the_front().start(self)
        self._started = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        state, self._standalone = self._standalone, None
        self._started = False
        if state is not None:
            _the_front().stop(self, state)

    def cancel_all(self) -> None:
        """Cancel the runs submitted to this started runner that have not finished (each ends
        Crashed, as a cancelled run does); nothing when it is not started."""
        if self._standalone is not None:
            _the_front().cancel(self, self._standalone)

    def submit(
        self,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: dict[str, Any] | None = None,
    ) -> Any:
        """Start a run of ``task`` with ``parameters`` (a dict by parameter name) on this
        started runner; return its ``PrefectConcurrentFuture``."""
        if not self._started:
            raise RuntimeError("Task runner is not started")
        return _the_front().submit(self, task, parameters, wait_for, dependencies)

    def map(
        self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> Any:
        """Submit one run per element of the iterable parameters (others broadcast);
        return a ``PrefectFutureList``."""
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        return _the_front().map(self, task, parameters, wait_for)


def check_max_workers(max_workers: Any) -> None:
    """``max_workers`` is None or a positive integer (a clear error otherwise)."""
    if max_workers is not None and (
        not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
    ):
        raise ValueError(f"max_workers must be a positive integer, got {max_workers!r}")


class ThreadPoolTaskRunner(TaskRunner):
    """Runs submitted sync task bodies on threads; async tasks run as coroutines.

    ``max_workers`` bounds both: at most that many submitted task runs of one flow run are
    running at once (a run blocked waiting for another run's result does not count while it
    waits). Left out, it is the ``tasks.runner_thread_pool_max_workers`` setting, read when a
    flow run starts, or unbounded (``sys.maxsize``, as in Prefect): one thread per running
    sync body. Each body runs on an anyio worker thread of the loop running its task run
    (``anyio.to_thread.run_sync``); the bound is kept by the scheduler's slots rather than an
    anyio ``CapacityLimiter``, because a worker thread blocked waiting for another run gives
    its slot back, and an anyio token cannot be given back from the thread holding it.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__()
        check_max_workers(max_workers)
        self._max_workers = max_workers

    @property
    def max_workers(self) -> int:
        """The bound in force: the one given, else the setting's, else ``sys.maxsize``."""
        if self._max_workers is not None:
            return self._max_workers
        from millstream._engine.settings import get_current_settings

        configured: int | None = get_current_settings().tasks.runner_thread_pool_max_workers
        return configured if configured is not None else sys.maxsize

    def acquire(self) -> Executor:
        # Shared: a flow run that submits nothing costs no pool and no thread.
        return WORKER_THREADS

    def release(self, executor: Executor) -> None:
        pass

    def max_concurrency(self) -> int | None:
        bound = self.max_workers
        return None if bound >= sys.maxsize else bound

    def duplicate(self) -> ThreadPoolTaskRunner:
        return ThreadPoolTaskRunner(self._max_workers)

    def __eq__(self, other: Any) -> bool:
        return type(other) is type(self) and other._max_workers == self._max_workers

    def __hash__(self) -> int:
        return hash((type(self), self._max_workers))

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self._max_workers!r})"


# Prefect's older name for the thread pool runner.
ConcurrentTaskRunner = ThreadPoolTaskRunner

_default = ThreadPoolTaskRunner()


def default_task_runner() -> TaskRunner:
    """The runner a flow uses when it names none."""
    return _default
