"""Task runners: where the sync bodies of submitted task runs execute (a thread pool by default)."""

from __future__ import annotations

import sys
from typing import Any

from millstream._engine.bridge.executors import Executor
from millstream._engine.bridge.threads import WORKER_THREADS


class TaskRunner:
    """Base of the task runners: gives each flow run an executor for submitted sync bodies."""

    def __init__(self) -> None:
        self.name = type(self).__name__

    def acquire(self) -> Executor:
        """An executor for one flow run's submitted sync task bodies."""
        raise NotImplementedError

    def release(self, executor: Executor) -> None:
        """Give back what ``acquire`` returned when the flow run ends."""

    def max_concurrency(self) -> int | None:
        """A bound on concurrently running submitted task runs (None: no bound)."""
        return None

    def duplicate(self) -> TaskRunner:
        """A fresh runner with the same configuration."""
        return type(self)()


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
        if max_workers is not None and (
            not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
        ):
            raise ValueError(f"max_workers must be a positive integer, got {max_workers!r}")
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


_default = ThreadPoolTaskRunner()


def default_task_runner() -> TaskRunner:
    """The runner a flow uses when it names none."""
    return _default
